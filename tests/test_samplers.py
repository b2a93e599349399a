"""NUTS through NumPyro, and NumPyro's integrator as an independent oracle for ours."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.hmc_util import velocity_verlet

from trivflow import hmc, lattice
from trivflow.analysis import gamma_method
from trivflow.lattice import free
from trivflow.samplers import run_nuts

FREE = lattice.Phi4Theory(L=6, d=2, beta=0.45, lam=0.0)


def test_leapfrog_trajectory_matches_numpyro_velocity_verlet():
    theory = lattice.preset("L8")
    params = hmc.phi4_params(theory)
    x0 = jax.random.normal(jax.random.key(0), theory.shape)
    p0 = jax.random.normal(jax.random.key(1), theory.shape)
    potential = lambda x: hmc.phi4_potential(x, params)  # noqa: E731
    init_fn, update_fn = velocity_verlet(potential, lambda inv_mass, r: 0.5 * jnp.sum(r * r))
    state = init_fn(x0, p0)
    for _ in range(10):
        state = update_fn(0.1, None, state)
    u0, g0 = hmc.phi4_value_and_grad(x0, params)
    x, p, u, _ = hmc.leapfrog(lambda x: hmc.phi4_value_and_grad(x, params), x0, p0, u0, g0, 0.1, 10)
    np.testing.assert_allclose(x, state.z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(p, state.r, rtol=1e-12, atol=1e-12)
    assert float(u) == pytest.approx(float(state.potential_energy), rel=1e-12)


def test_nuts_reproduces_free_theory_exactly_within_4_sigma():
    pos = hmc.random_positions(jax.random.key(0), 4, FREE.shape)
    res = run_nuts(jax.random.key(1), hmc.phi4_potential, pos, hmc.phi4_params(FREE), num_warmup=200,
                   num_samples=1000, measure_fn=hmc.phi4_measure, progress=False)
    phi2 = gamma_method(res.observables["G0"])
    chi = gamma_method(FREE.volume * res.observables["M2"])
    assert abs(phi2.mean - free.phi2(6, 2, 0.45)) < 4 * phi2.err and phi2.err < 0.01
    assert abs(chi.mean - free.chi(6, 2, 0.45)) < 4 * chi.err and chi.err < 0.3
    assert res.observables["M"].shape == (4, 1000)
    assert 0.5 < res.acceptance <= 1.0
    assert not res.divergent.any()


def test_nuts_rejects_bad_counts():
    with pytest.raises(ValueError, match="num_samples=0"):
        run_nuts(jax.random.key(0), hmc.phi4_potential, jnp.zeros((1, 4, 4)), hmc.phi4_params(FREE),
                 num_warmup=10, num_samples=0)
