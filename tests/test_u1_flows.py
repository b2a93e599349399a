"""Gauge-equivariant flows for 2D U(1) (issue 16, Kanwar et al. arXiv:2003.06413): log|det J| against
``jax.jacobian``, gauge equivariance of g and invariance of S̃ and of the flow's log-density, the
masks, and FHMC / independence MH with an untrained flow against the exact plaquette (4σ)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trivflow import hmc
from trivflow.gauge import U1Theory, gauge_transform, plaquette_angles, topological_charge
from trivflow.gauge.flows import GaugeFlowConfig, HaarPrior, gauge_flow, layer_masks
from trivflow.hmc.flowed import fhmc_kernel, pulled_back_measure, pulled_back_potential
from trivflow.samplers import flow_proposal, run_imh
from trivflow.summary import summarize_run


@pytest.fixture(scope="module")
def flow():
    return gauge_flow(num_layers=8, hidden_channels=(4,), components=3, seed=1)


def random_links(key, L, scale=7.0):
    return jax.random.uniform(key, (2, L, L), jnp.float64, -scale, scale)


def test_masks_touch_each_active_plaquette_through_one_updated_link():
    L = 8
    for mu in (0, 1):
        for offset in range(4):
            active, frozen = layer_masks(L, mu, offset)
            assert not np.any(active & frozen) and int(active.sum()) == L * L // 4
            # perturb the updated links: active plaquettes move, frozen ones do not
            theta = jnp.zeros((2, L, L))
            moved = theta.at[mu].set(jnp.where(active, 0.3, 0.0))
            dp = np.asarray(plaquette_angles(moved) - plaquette_angles(theta))
            np.testing.assert_allclose(np.abs(dp[np.asarray(active)]), 0.3)
            np.testing.assert_allclose(dp[np.asarray(frozen)], 0.0)


def test_log_det_matches_jax_jacobian_on_4x4(flow):
    theta = random_links(jax.random.key(0), 4)
    y, log_det = flow.forward(theta)
    jac = jax.jacobian(lambda x: flow.forward(x)[0])(theta).reshape(32, 32)
    sign, logabs = np.linalg.slogdet(np.asarray(jac))
    assert sign > 0 and float(log_det) == pytest.approx(logabs, abs=1e-10)
    assert abs(float(log_det)) > 1e-3  # the untrained flow is not the identity


def test_flow_is_gauge_equivariant_and_its_density_and_pulled_back_action_are_invariant(flow):
    k1, k2 = jax.random.split(jax.random.key(2))
    theta = random_links(k1, 8)
    alpha = jax.random.uniform(k2, (8, 8), jnp.float64, -5.0, 5.0)
    moved = gauge_transform(theta, alpha)
    y, ld = flow.forward(theta)
    y2, ld2 = flow.forward(moved)
    np.testing.assert_allclose(np.cos(y2 - gauge_transform(y, alpha)), 1.0, atol=1e-12)  # g(Ωθ) = Ω g(θ)
    assert float(ld2) == pytest.approx(float(ld), abs=1e-10)  # log q = log r − log|det| is invariant
    theory = U1Theory(L=8, beta=2.0)
    s_tilde = pulled_back_potential(theory.potential_fn)
    params = {"flow": flow, "theory": theory.params(jnp.float64)}
    assert float(s_tilde(moved, params)) == pytest.approx(float(s_tilde(theta, params)), abs=1e-10)
    assert round(float(topological_charge(y2))) == round(float(topological_charge(y)))


def test_flow_is_periodic_in_every_link_and_refuses_bad_shapes(flow):
    theta = random_links(jax.random.key(3), 4)
    y, ld = flow.forward(theta)
    y2, ld2 = flow.forward(theta.at[1, 2, 3].add(2 * math.pi))
    np.testing.assert_allclose(np.cos(y2 - y), 1.0, atol=1e-12)
    assert float(ld2) == pytest.approx(float(ld), abs=1e-10)
    with pytest.raises(ValueError, match="L must be a multiple of 4"):
        flow.forward(jnp.zeros((2, 6, 6)))
    with pytest.raises(ValueError, match=r"shape \(2, L, L\)"):
        flow.forward(jnp.zeros((4, 4)))
    with pytest.raises(ValueError, match="components must be an integer >= 1"):
        GaugeFlowConfig(components=0)


def test_haar_prior():
    prior = HaarPrior((2, 4, 4))
    z = prior.sample(jax.random.key(0), 1000)
    assert z.shape == (1000, 2, 4, 4) and float(z.min()) >= -math.pi and float(z.max()) < math.pi
    assert float(prior.log_prob(z[0])) == pytest.approx(-32 * math.log(2 * math.pi))


@pytest.mark.slow  # ~30 s on a shared 2-core CPU (compilation of the flowed kernel)
def test_fhmc_with_an_untrained_flow_reproduces_the_exact_plaquette(flow):
    theory = U1Theory(L=4, beta=2.0)
    kernel = fhmc_kernel(theory.potential_fn, num_steps=10, force_fn=theory.force_fn)
    params = {"flow": flow, "theory": theory.params(jnp.float64)}
    result = hmc.run_chains(jax.random.key(1), kernel, theory.random_field(jax.random.key(0), 8, jnp.float64),
                            params, step_size=0.1, num_traj=600, num_therm=100,
                            measure_fn=pulled_back_measure(theory.measure_fn), progress=False)
    q = result.observables["Q"]
    np.testing.assert_allclose(q, np.round(q), atol=1e-10)
    block = summarize_run(result, theory, sampler="fhmc")
    for name in ("plaquette", "Q2"):
        mean, err = block["observables"][name]
        assert abs(mean - block["exact"][name]) < 4 * err, (name, mean, err, block["exact"][name])
    assert block["acceptance"] > 0.5


@pytest.mark.slow  # ~20 s on a shared 2-core CPU
def test_imh_with_an_untrained_flow_reproduces_the_exact_plaquette(flow):
    theory = U1Theory(L=4, beta=1.0)
    params = {"flow": flow, "theory": theory.params(jnp.float64)}
    propose = flow_proposal(HaarPrior(theory.shape), theory.potential_fn)
    result = run_imh(jax.random.key(2), propose, params, num_chains=8, num_steps=2000, num_therm=100,
                     measure_fn=theory.measure_fn, batch_size=1000, progress=False)
    block = summarize_run(result, theory, sampler="imh")
    mean, err = block["observables"]["plaquette"]
    assert abs(mean - block["exact"]["plaquette"]) < 4 * err, (mean, err, block["exact"]["plaquette"])
    assert 0.01 < block["acceptance"] < 0.9
