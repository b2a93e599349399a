"""Flowed HMC: the pulled-back force, exactness with an untrained flow, NumPyro's integrator."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from checks import assert_same_mean, leapfrog_round_trip
from numpyro.infer.hmc_util import velocity_verlet

from trivflow import hmc, lattice
from trivflow.flows import Flow, build_flow, split_flow
from trivflow.priors import GaussianPrior
from trivflow.samplers import flow_proposal, run_imh

THEORY = lattice.preset("L8")


@functools.lru_cache
def untrained_flow(kernel_size=3, log_scale=0.1):
    """The paper's flow at its random initialisation, with a non-zero global scale so that
    every part of the map (couplings and rescaling) is exercised."""
    graphdef, params = split_flow(build_flow(kernel_size=kernel_size, seed=7))
    params = jax.tree_util.tree_map(lambda x: x, params)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    leaves = [jnp.full_like(x, log_scale) if x.size == 1 else x for x in leaves]
    return graphdef, jax.tree_util.tree_unflatten(treedef, leaves)


def fhmc_setup(theory=THEORY):
    """``params = {"flow": Flow, "theory": ...}`` of the untrained flow, the form every flow
    sampler takes."""
    return {"flow": Flow.from_module(*untrained_flow()), "theory": hmc.phi4_params(theory)}


def test_untrained_flow_is_not_the_identity():
    params = fhmc_setup()
    z = jax.random.normal(jax.random.key(0), THEORY.shape)
    phi, log_det = params["flow"].forward(z)
    assert float(jnp.max(jnp.abs(phi - z))) > 0.05 and abs(float(log_det)) > 1.0


@pytest.mark.parametrize("analytic", [True, False])
def test_pulled_back_force_equals_autodiff_and_finite_differences(analytic):
    params = fhmc_setup()
    potential = hmc.pulled_back_potential(hmc.phi4_potential)
    vg = hmc.pulled_back_value_and_grad(hmc.phi4_potential, hmc.phi4_force_fn if analytic else None)
    x = jax.random.normal(jax.random.key(1), THEORY.shape)
    value, grad = jax.jit(vg)(x, params)
    assert float(value) == pytest.approx(float(potential(x, params)), rel=1e-12)
    np.testing.assert_allclose(grad, jax.grad(potential)(x, params), rtol=1e-10, atol=1e-12)
    h = 1e-6
    for idx in [(0, 0), (3, 4), (7, 2)]:
        e = jnp.zeros_like(x).at[idx].set(h)
        fd = (potential(x + e, params) - potential(x - e, params)) / (2 * h)
        assert float(grad[idx]) == pytest.approx(float(fd), abs=1e-6)


def test_fhmc_trajectory_matches_numpyro_velocity_verlet_on_the_pulled_back_action():
    params = fhmc_setup()
    potential = hmc.pulled_back_potential(hmc.phi4_potential)
    vg = hmc.pulled_back_value_and_grad(hmc.phi4_potential, hmc.phi4_force_fn)
    x0 = jax.random.normal(jax.random.key(2), THEORY.shape)
    p0 = jax.random.normal(jax.random.key(3), THEORY.shape)
    init_fn, update_fn = velocity_verlet(lambda x: potential(x, params), lambda m, r: 0.5 * jnp.sum(r * r))
    state = init_fn(x0, p0)
    for _ in range(10):
        state = update_fn(0.1, None, state)
    u0, g0 = vg(x0, params)
    x, p, u, _ = hmc.leapfrog(lambda y: vg(y, params), x0, p0, u0, g0, 0.1, 10)
    np.testing.assert_allclose(x, state.z, rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(p, state.r, rtol=1e-10, atol=1e-11)
    assert float(u) == pytest.approx(float(state.potential_energy), rel=1e-11)


def test_fhmc_is_reversible():
    params = fhmc_setup()
    vg = hmc.pulled_back_value_and_grad(hmc.phi4_potential, hmc.phi4_force_fn)
    x0 = jax.random.normal(jax.random.key(4), THEORY.shape)
    p0 = jax.random.normal(jax.random.key(5), THEORY.shape)
    dx, dp = leapfrog_round_trip(lambda y: vg(y, params), x0, p0)
    assert dx < 1e-10 and dp < 1e-10


def test_fhmc_with_an_untrained_flow_reproduces_hmc():
    """Exactness: any invertible g gives the same ⟨M²⟩, ⟨|M|⟩ (within 3σ combined)."""
    params = fhmc_setup()
    common = dict(step_size=0.1, num_traj=4000, num_therm=200, chunk_size=2000, progress=False)
    pos = hmc.random_positions(jax.random.key(10), 32, THEORY.shape)
    ref = hmc.run_chains(jax.random.key(11), hmc.phi4_kernel(10), pos, params["theory"],
                         measure_fn=hmc.phi4_measure, **common)
    # the force through the flow's block layout, as the application runs φ⁴ (test_block_force.py)
    kernel = hmc.fhmc_kernel(hmc.phi4_potential, num_steps=10, force_fn=hmc.phi4_force_fn,
                             block_value_and_grad_fn=hmc.phi4_block_value_and_grad)
    measure = hmc.pulled_back_measure(hmc.phi4_measure)
    res = hmc.run_chains(jax.random.key(12), kernel, pos, params, measure_fn=measure, **common)
    assert res.acceptance > 0.8
    assert abs(float(np.mean(np.exp(-res.delta_H))) - 1.0) < 0.01
    for name in ("M2", "absM", "G0"):
        assert_same_mean(res.observables[name], ref.observables[name], name)


def test_independence_mh_with_an_untrained_flow_is_exact_on_a_small_lattice():
    # weak couplings, where the untrained flow's proposals overlap well enough for short runs
    theory = lattice.Phi4Theory(L=4, d=2, beta=0.3, lam=0.2)
    params = fhmc_setup(theory)
    propose = flow_proposal(GaussianPrior(theory.shape), hmc.phi4_potential)
    res = run_imh(jax.random.key(0), propose, params, num_chains=8, num_steps=8000, batch_size=4000,
                  measure_fn=hmc.phi4_measure, progress=False)
    pos = hmc.random_positions(jax.random.key(1), 16, theory.shape)
    ref = hmc.run_chains(jax.random.key(2), hmc.phi4_kernel(10), pos, params["theory"], step_size=0.1,
                         num_traj=4000, num_therm=100, measure_fn=hmc.phi4_measure, progress=False)
    assert 0.05 < res.acceptance < 0.9, res.acceptance
    for name in ("M2", "absM"):
        assert_same_mean(res.observables[name], ref.observables[name], name)
