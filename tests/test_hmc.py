"""HMC: integrators (reversibility, ε² energy error), kernel exactness, driver, free-theory moments."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trivflow import hmc, lattice
from trivflow.analysis import gamma_method
from trivflow.lattice import free

INTERACTING = lattice.Phi4Theory(L=8, d=2, beta=0.576, lam=0.5)
FREE = lattice.Phi4Theory(L=8, d=2, beta=0.45, lam=0.0)


@functools.lru_cache
def thermal_configuration(theory, seed=0, num_traj=50):
    """One configuration after a short HMC run, so integrator tests see realistic fields."""
    kernel = hmc.phi4_kernel(10)
    pos = hmc.random_positions(jax.random.key(seed), 1, theory.shape)
    res = hmc.run_chains(jax.random.key(seed + 1), kernel, pos, hmc.phi4_params(theory),
                         step_size=0.1, num_traj=num_traj, progress=False)
    return res.final_state.position[0]


def integrate(name, theory, position, momentum, step_size, num_steps):
    params = hmc.phi4_params(theory)
    vg = lambda x: hmc.phi4_value_and_grad(x, params)  # noqa: E731
    u, g = vg(position)
    return jax.jit(hmc.get_integrator(name), static_argnums=(0, 6))(vg, position, momentum, u, g, step_size, num_steps)


@pytest.mark.parametrize("name", ["leapfrog", "omelyan"])
def test_integrator_is_reversible(name):
    x0 = thermal_configuration(INTERACTING)
    p0 = jax.random.normal(jax.random.key(5), x0.shape)
    x1, p1, _, _ = integrate(name, INTERACTING, x0, p0, 0.1, 10)
    x2, p2, _, _ = integrate(name, INTERACTING, x1, -p1, 0.1, 10)
    assert float(jnp.max(jnp.abs(x2 - x0))) < 1e-10
    assert float(jnp.max(jnp.abs(p2 + p0))) < 1e-10


@pytest.mark.parametrize("name", ["leapfrog", "omelyan"])
def test_energy_error_scales_as_step_size_squared(name):
    """|ΔH| at fixed τ_MD = 1 falls as ε²: fitted log–log slope 2 ± 0.2."""
    x0 = thermal_configuration(INTERACTING)
    params = hmc.phi4_params(INTERACTING)
    step_sizes = np.array([0.2, 0.1, 0.05, 0.025])
    errors = []
    for eps in step_sizes:
        dh = []
        for seed in range(8):
            p0 = jax.random.normal(jax.random.key(100 + seed), x0.shape)
            h0 = hmc.kinetic_energy(p0) + hmc.phi4_potential(x0, params)
            x1, p1, u1, _ = integrate(name, INTERACTING, x0, p0, float(eps), int(round(1 / eps)))
            dh.append(float(hmc.kinetic_energy(p1) + u1 - h0))
        errors.append(np.sqrt(np.mean(np.square(dh))))
    slope = np.polyfit(np.log(step_sizes), np.log(errors), 1)[0]
    assert slope == pytest.approx(2.0, abs=0.2), (slope, errors)


def test_omelyan_beats_leapfrog_at_same_step_size():
    x0 = thermal_configuration(INTERACTING)
    p0 = jax.random.normal(jax.random.key(7), x0.shape)
    params = hmc.phi4_params(INTERACTING)
    h0 = hmc.kinetic_energy(p0) + hmc.phi4_potential(x0, params)
    dh = {}
    for name in ("leapfrog", "omelyan"):
        _, p1, u1, _ = integrate(name, INTERACTING, x0, p0, 0.1, 10)
        dh[name] = abs(float(hmc.kinetic_energy(p1) + u1 - h0))
    assert dh["omelyan"] < dh["leapfrog"] / 3


def run_free(num_chains=32, num_traj=3000, seed=0, **kw):
    kernel = hmc.phi4_kernel(10)
    pos = hmc.random_positions(jax.random.key(seed), num_chains, FREE.shape)
    return hmc.run_chains(jax.random.key(seed + 1), kernel, pos, hmc.phi4_params(FREE),
                          step_size=0.1, num_traj=num_traj, num_therm=100,
                          measure_fn=hmc.phi4_measure, progress=False, **kw)


def test_free_theory_moments_match_exact_within_4_sigma():
    res = run_free()
    V = FREE.volume
    phi2 = gamma_method(res.observables["G0"])
    chi = gamma_method(V * res.observables["M2"])
    exact_phi2, exact_chi = free.phi2(8, 2, 0.45), free.chi(8, 2, 0.45)
    assert abs(phi2.mean - exact_phi2) < 4 * phi2.err, (phi2.mean, phi2.err, exact_phi2)
    assert abs(chi.mean - exact_chi) < 4 * chi.err, (chi.mean, chi.err, exact_chi)
    # the errors are meaningful: small relative to the values, so the check has teeth
    assert phi2.err / exact_phi2 < 0.005 and chi.err / exact_chi < 0.03
    # the zero-momentum correlator too, t = 0 … L/2
    exact_c = free.zero_momentum_correlator(8, 2, 0.45)
    for t in range(5):
        c = gamma_method(res.observables["C"][..., t])
        assert abs(c.mean - exact_c[t]) < 4 * c.err, (t, c.mean, c.err, exact_c[t])


def test_exp_minus_delta_h_is_one_within_errors():
    res = run_free(num_chains=16, num_traj=2000, seed=3)
    r = gamma_method(np.exp(-res.delta_H))
    assert abs(r.mean - 1.0) < 4 * r.err and r.err < 0.01
    assert 0.9 < res.acceptance < 1.0


def test_vmapped_chains_equal_a_loop_over_chains_and_chunking_is_invisible():
    kernel = hmc.phi4_kernel(5)
    params = hmc.phi4_params(INTERACTING)
    pos = hmc.random_positions(jax.random.key(0), 3, INTERACTING.shape)
    keys = jax.random.split(jax.random.key(9), 3)
    common = dict(step_size=0.15, num_traj=24, num_therm=5, meas_every=2, measure_fn=hmc.phi4_measure,
                  progress=False)
    together = hmc.run_chains(None, kernel, pos, params, chain_keys=keys, chunk_size=8, **common)
    for c in range(3):
        alone = hmc.run_chains(None, kernel, pos[c : c + 1], params, chain_keys=keys[c : c + 1],
                               chunk_size=6, **common)
        np.testing.assert_allclose(alone.observables["M"][0], together.observables["M"][c], rtol=1e-12)
        np.testing.assert_array_equal(alone.accepted[0], together.accepted[c])
    assert together.observables["M"].shape == (3, 12)
    assert together.delta_H.shape == (3, 24)


def test_compile_caches_are_bounded_and_a_rerun_does_not_recompile():
    """One compile-cache idiom: functools.lru_cache with a maxsize (no unbounded dicts)."""
    from trivflow.hmc import chunks

    for cache in (chunks.chunk_function, chunks._compile):
        assert cache.cache_info().maxsize is not None
    kernel = hmc.phi4_kernel(3)
    pos = hmc.random_positions(jax.random.key(0), 2, (4, 4))
    kw = dict(step_size=0.1, num_traj=8, num_therm=2, chunk_size=4, progress=False)
    first = hmc.run_chains(jax.random.key(1), kernel, pos, hmc.phi4_params(FREE, pos.dtype), **kw)
    again = hmc.run_chains(jax.random.key(2), kernel, pos, hmc.phi4_params(INTERACTING, pos.dtype), **kw)
    assert first.compile_seconds > 0 and again.compile_seconds == 0  # new params, key: same program


def test_divergent_trajectories_are_rejected_and_flagged():
    kernel = hmc.phi4_kernel(10)
    params = hmc.phi4_params(INTERACTING)
    pos = hmc.random_positions(jax.random.key(0), 4, INTERACTING.shape)
    res = hmc.run_chains(jax.random.key(1), kernel, pos, params, step_size=2.0, num_traj=10,
                         measure_fn=hmc.phi4_measure, progress=False)
    assert res.divergent.any()
    assert not res.accepted[res.divergent].any()
    assert np.all(np.isfinite(res.final_state.position))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        # the library's names; the application's validate() says sampler.<name> (tests/test_run.py)
        (dict(step_size=0.0), "^step_size must be a positive finite number, got step_size=0.0"),
        (dict(step_size=-0.1), "step_size=-0.1"),
        (dict(num_traj=0), "^num_traj must be an integer >= 1, got num_traj=0"),
        (dict(num_therm=-1), "^num_therm must be an integer >= 0, got num_therm=-1"),
        (dict(meas_every=0), "meas_every=0"),
        (dict(num_traj=10, meas_every=3), "^num_traj=10 must be a multiple of meas_every=3"),
        (dict(chunk_size=0), "chunk_size=0"),
    ],
)
def test_bad_driver_input_is_rejected_before_compute(kwargs, message):
    args = dict(step_size=0.1, num_traj=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        hmc.run_chains(jax.random.key(0), hmc.phi4_kernel(10), jnp.zeros((1, 4, 4)), None, **args)


def test_bad_kernel_input():
    with pytest.raises(ValueError, match="^num_steps must be a positive integer, got num_steps=0"):
        hmc.phi4_kernel(0)
    with pytest.raises(ValueError, match="^integrator must be one of"):
        hmc.phi4_kernel(10, integrator="verlet2")
