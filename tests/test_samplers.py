"""NUTS through NumPyro, and NumPyro's integrator as an independent oracle for ours."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.hmc_util import velocity_verlet

from trivflow import hmc, lattice
from trivflow.analysis import gamma_method
from trivflow.lattice import free
from trivflow.samplers import IMHState, imh_kernel, run_imh, run_nuts

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


def gaussian_proposal(sigma, theory):
    """Proposals z ~ N(0, σ²) per site with w = log r(z) + S(z), for the free theory."""
    V = theory.volume

    def propose(key, params):
        z = sigma * jax.random.normal(key, theory.shape)
        log_r = -0.5 * jnp.sum(z * z) / sigma**2 - 0.5 * V * jnp.log(2 * jnp.pi * sigma**2)
        return z, log_r + hmc.phi4_potential(z, params)

    return propose


def test_independence_mh_is_exact_for_a_mismatched_proposal():
    theory = lattice.Phi4Theory(L=4, d=2, beta=0.3, lam=0.0)
    res = run_imh(jax.random.key(0), gaussian_proposal(0.85, theory), hmc.phi4_params(theory), num_chains=8,
                  num_steps=6000, batch_size=1500, measure_fn=hmc.phi4_measure, progress=False)
    assert res.observables["G0"].shape == (8, 6000)
    assert 0.1 < res.acceptance < 0.9  # a genuinely imperfect proposal
    phi2 = gamma_method(res.observables["G0"])
    chi = gamma_method(theory.volume * res.observables["M2"])
    assert abs(phi2.mean - free.phi2(4, 2, 0.3)) < 4 * phi2.err and phi2.err < 0.01
    assert abs(chi.mean - free.chi(4, 2, 0.3)) < 4 * chi.err


def test_independence_mh_accepts_everything_with_the_exact_density():
    """With q = p (the exact free-theory Gaussian) every proposal is accepted."""
    theory = lattice.Phi4Theory(L=4, d=2, beta=0.3, lam=0.0)
    a_hat = free.dispersion(4, 2, 0.3)
    log_z = free.log_z(4, 2, 0.3)

    def propose(key, params):
        noise = jnp.fft.fftn(jax.random.normal(key, theory.shape))
        z = jnp.real(jnp.fft.ifftn(noise / jnp.sqrt(a_hat)))  # covariance A⁻¹
        s = hmc.phi4_potential(z, params)
        return z, (-s - log_z) + s  # log q = −S − log Z

    res = run_imh(jax.random.key(1), propose, hmc.phi4_params(theory), num_chains=2, num_steps=200,
                  measure_fn=hmc.phi4_measure, progress=False)
    assert res.acceptance == 1.0


def test_independence_mh_numbers_do_not_depend_on_the_chunk_size():
    """IMH is a kernel of the chain driver: step t of chain c uses fold_in(chain_key[c], t)."""
    theory = lattice.Phi4Theory(L=4, d=2, beta=0.3, lam=0.0)
    kw = dict(num_chains=3, num_steps=24, num_therm=5, meas_every=2, measure_fn=hmc.phi4_measure, progress=False)
    a = run_imh(jax.random.key(2), gaussian_proposal(0.85, theory), hmc.phi4_params(theory), batch_size=4, **kw)
    b = run_imh(jax.random.key(2), gaussian_proposal(0.85, theory), hmc.phi4_params(theory), batch_size=1000, **kw)
    for name in a.observables:
        np.testing.assert_array_equal(a.observables[name], b.observables[name], err_msg=name)
    for name in ("delta_H", "accepted", "acceptance_prob", "divergent"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    # num_therm and meas_every honoured; the unconditional first step is thermalization
    assert a.observables["M"].shape == (3, 12) and a.accepted.shape == (3, 24)
    assert a.num_therm == 5 + 1 and a.meas_every == 2
    assert np.all(np.isfinite(a.delta_H)) and not a.divergent.any()
    np.testing.assert_allclose(a.acceptance_prob, np.minimum(1.0, np.exp(-a.delta_H)), rtol=1e-14)
    assert isinstance(a.final_state, IMHState) and a.final_state.position.shape == (3, 4, 4)
    np.testing.assert_array_equal(a.final_state.position, b.final_state.position)


def test_independence_mh_kernel_first_step_accepts_and_rejects_non_finite_weights():
    """The chain starts with w = +∞ (the first proposal is accepted unconditionally, ΔH = −∞);
    a proposal with a non-finite weight is rejected and flagged divergent."""
    def propose(key, params):
        phi = jax.random.normal(key, (2, 2))
        return phi, jnp.where(phi[0, 0] > 0, jnp.nan, jnp.sum(phi**2))

    kernel = imh_kernel(propose)
    assert imh_kernel(propose) is kernel  # cached: the driver's compile cache finds it again
    state = kernel.init(jnp.zeros((2, 2)), None)
    assert state.log_weight == jnp.inf
    for seed in range(20):
        new, info = kernel.step(jax.random.key(seed), state, None)
        if bool(info.divergent):
            assert not info.accepted and info.acceptance_prob == 0 and new.log_weight == jnp.inf
        else:
            assert info.accepted and info.delta_H == -jnp.inf and info.acceptance_prob == 1
            assert new.log_weight == jnp.sum(new.position**2)
