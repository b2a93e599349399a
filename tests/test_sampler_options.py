"""The hmc/fhmc options of issue 14 (all off by default): dual-averaging step-size adaptation,
Fourier-accelerated HMC, the momentum draw, and JAX's persistent compilation cache
(docs/theory.md#step-size-adaptation, docs/theory.md#fourier-accelerated-hmc)."""

import json
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from checks import assert_same_mean, leapfrog_round_trip
from hydra import compose, initialize_config_dir

import trivflow
import trivflow.state
from trivflow import hmc, lattice
from trivflow.analysis import gamma_method
from trivflow.app.config import register_configs, validate
from trivflow.hmc.adaptation import DualAveraging
from trivflow.hmc.fourier import FourierMetric, lattice_mass, momentum_draw
from trivflow.lattice import free

FREE = lattice.Phi4Theory(L=8, d=2, beta=0.45, lam=0.0)
INTERACTING = lattice.Phi4Theory(L=8, d=2, beta=0.576, lam=0.5)
CONF = str(Path(trivflow.__file__).parent / "conf")
register_configs()


def exact_free_metric(theory):
    """M̂ = Â: m² = 2 − 2dβ."""
    return FourierMetric(lattice_mass(theory.shape, theory.beta, 2.0 - 2.0 * theory.d * theory.beta), theory.shape)


def modes(phi, params):
    """The zero mode M = φ̂(0)/V and the highest mode, p = (π, π): Σ_x (−1)^{x₀+x₁} φ_x / V."""
    sign = (-1.0) ** (np.arange(phi.shape[0])[:, None] + np.arange(phi.shape[1])[None, :])
    return {"M": jnp.mean(phi), "stag": jnp.mean(phi * sign), **hmc.phi4_measure(phi, params)}


def run(theory, *, num_steps=10, step_size=0.1, num_chains=32, num_traj=2000, num_therm=100, seed=0,
        measure_fn=hmc.phi4_measure, **kernel_kw):
    adapt = kernel_kw.pop("adapt", None)
    kernel = hmc.build_kernel(hmc.phi4_potential, num_steps=num_steps, value_and_grad_fn=hmc.phi4_value_and_grad,
                              **kernel_kw)
    pos = hmc.random_positions(jax.random.key(seed), num_chains, theory.shape)
    return hmc.run_chains(jax.random.key(seed + 1), kernel, pos, hmc.phi4_params(theory), step_size=step_size,
                          num_traj=num_traj, num_therm=num_therm, measure_fn=measure_fn, progress=False,
                          adapt=adapt, chunk_size=500)


def assert_free_moments(res, theory=FREE, n_sigma=4.0):
    """⟨φ²⟩ and χ = V⟨M²⟩ within n_sigma of the exact free-theory values."""
    L, d, beta = theory.L, theory.d, theory.beta
    phi2 = gamma_method(res.observables["G0"])
    chi = gamma_method(theory.volume * res.observables["M2"])
    assert abs(phi2.mean - free.phi2(L, d, beta)) < n_sigma * phi2.err, (phi2.mean, phi2.err, free.phi2(L, d, beta))
    assert abs(chi.mean - free.chi(L, d, beta)) < n_sigma * chi.err, (chi.mean, chi.err, free.chi(L, d, beta))
    assert phi2.err / free.phi2(L, d, beta) < 0.01 and chi.err / free.chi(L, d, beta) < 0.05
    dh = gamma_method(np.exp(-res.delta_H))
    assert abs(dh.mean - 1.0) < 4 * dh.err, (dh.mean, dh.err)


# --- step-size adaptation -------------------------------------------------------------------------

@pytest.mark.parametrize("initial", [0.02, 0.5])
def test_dual_averaging_reaches_its_target_and_the_frozen_chain_is_exact(initial):
    res = run(FREE, num_steps=5, step_size=initial, num_therm=500, adapt=DualAveraging(target=0.75))
    eps = res.extra["step_size"]
    assert eps != initial and res.extra["adapt_target"] == 0.75
    # the measured chain runs at the frozen ε: its mean acceptance probability is near the target
    assert abs(float(np.mean(res.acceptance_prob)) - 0.75) < 0.05, (eps, np.mean(res.acceptance_prob))
    assert_free_moments(res)


def _adapted_run(**kw):
    theory = lattice.Phi4Theory(L=4, d=2, beta=0.45, lam=0.0)
    pos = hmc.random_positions(jax.random.key(0), 2, theory.shape)
    return hmc.run_chains(jax.random.key(1), hmc.phi4_kernel(5), pos, hmc.phi4_params(theory, pos.dtype),
                          step_size=0.05, num_traj=16, num_therm=8, measure_fn=hmc.phi4_measure,
                          progress=False, adapt=DualAveraging(0.8), **kw)


def test_adapted_run_does_not_depend_on_chunks_and_resumes_bit_for_bit(tmp_path, monkeypatch):
    """The adaptation state is saved with the chains: a run killed while adapting, at the end of
    thermalization or while measuring continues to the same numbers and the same frozen ε."""
    from test_resume import Killed, assert_same_result, die_after

    from trivflow.hmc import series

    ref = _adapted_run(chunk_size=1000)
    assert ref.extra["step_size"] != 0.05
    for n_saves, phase, t in ((1, "therm", 4), (2, "therm", 8), (4, "measure", 16)):
        path = tmp_path / f"hmc{n_saves}.npz"
        die_after(series, monkeypatch, n_saves)
        with pytest.raises(Killed):
            _adapted_run(state_path=path, chunk_size=4)
        monkeypatch.setattr(series, "save_state", trivflow.state.save_state)
        assert (trivflow.state.read_meta(path)["phase"], trivflow.state.read_meta(path)["t"]) == (phase, t)
        res = _adapted_run(state_path=path, chunk_size=4)
        assert res.extra["resumed_at"] == t and res.extra["step_size"] == ref.extra["step_size"]
        assert_same_result(res, ref)
    done = _adapted_run(state_path=path, chunk_size=4)  # a completed state: no compute, same ε
    assert done.extra["step_size"] == ref.extra["step_size"]


def test_adaptation_needs_thermalization_and_a_valid_target():
    with pytest.raises(ValueError, match="num_therm >= 1"):
        run(FREE, num_therm=0, num_traj=10, num_chains=2, adapt=DualAveraging())
    with pytest.raises(ValueError, match="target_accept"):
        DualAveraging(target=1.2)


# --- Fourier acceleration -------------------------------------------------------------------------

def test_fourier_metric_algebra():
    """π = M^{1/2}ξ has K(π) = ½|ξ|², M⁻¹M^{1/2}M^{1/2} = 1, and K = ½ Σ_p |π̂(p)|²/M̂(p) over the full
    spectrum (NumPy's fftn, unitary), also for an odd extent."""
    for shape in [(8, 8), (6, 5)]:
        metric = FourierMetric(lattice_mass(shape, 0.4, 0.3), shape)
        xi = jax.random.normal(jax.random.key(0), shape, jnp.float64)
        pi = metric.sample(xi)
        assert float(metric.kinetic_energy(pi)) == pytest.approx(0.5 * float(jnp.sum(xi**2)), rel=1e-12)
        np.testing.assert_allclose(metric.velocity(metric.sample(pi)), xi, atol=1e-12)
        p = [2 * np.pi * np.arange(n) / n for n in shape]
        grid = np.meshgrid(*p, indexing="ij")
        m_full = 0.4 * sum(4 * np.sin(g / 2) ** 2 for g in grid) + 0.3
        k_full = 0.5 * np.sum(np.abs(np.fft.fftn(np.asarray(pi), norm="ortho")) ** 2 / m_full)
        assert float(metric.kinetic_energy(pi)) == pytest.approx(k_full, rel=1e-12)
    with pytest.raises(ValueError, match="fourier_mass"):
        lattice_mass((8, 8), 0.4, 0.0)


def test_fourier_leapfrog_is_reversible_and_conserves_energy():
    params = hmc.phi4_params(INTERACTING)
    vg = lambda x: hmc.phi4_value_and_grad(x, params)  # noqa: E731
    metric = FourierMetric(lattice_mass(INTERACTING.shape, INTERACTING.beta, 0.5), INTERACTING.shape)
    x0 = hmc.random_positions(jax.random.key(2), 1, INTERACTING.shape)[0]
    p0 = metric.sample(jax.random.normal(jax.random.key(3), x0.shape, x0.dtype))

    def integrate(x, p):
        return hmc.leapfrog(vg, x, p, *vg(x), 0.1, 10, velocity=metric.velocity)

    f = jax.jit(integrate)
    x1, p1, u1, _ = f(x0, p0)
    x2, p2, _, _ = f(x1, -p1)
    assert float(jnp.max(jnp.abs(x2 - x0))) < 1e-10 and float(jnp.max(jnp.abs(p2 + p0))) < 1e-10
    dh = float(metric.kinetic_energy(p1) + u1 - metric.kinetic_energy(p0) - vg(x0)[0])
    assert abs(dh) < 0.5, dh
    # velocity=None is the unit-mass leapfrog exactly
    assert max(leapfrog_round_trip(vg, x0, p0)) < 1e-10


def test_fourier_acceleration_with_the_exact_kernel_decorrelates_every_free_mode_in_one_trajectory():
    """M̂ = Â: every mode of the free field oscillates with frequency 1, so τ_MD = π/2 maps it onto a
    fresh momentum: τ_int ≈ ½ for the zero mode M and the highest mode p = (π, π) alike, while plain
    HMC at the same τ_MD is slow for M (Â(0) = 0.2: frequency 0.45)."""
    tau_md = np.pi / 2
    fa = run(FREE, num_steps=10, step_size=tau_md / 10, num_chains=16, num_traj=1000, measure_fn=modes,
             metric=exact_free_metric(FREE))
    for name in ("M", "stag"):
        tau = gamma_method(fa.observables[name]).tau_int
        assert tau < 1.0, (name, tau)
    plain = run(FREE, num_steps=10, step_size=tau_md / 10, num_chains=16, num_traj=1000, measure_fn=modes)
    assert gamma_method(plain.observables["M"]).tau_int > 2.0
    big = run(FREE, num_steps=10, step_size=tau_md / 10, num_chains=32, num_traj=2000, measure_fn=modes,
              metric=exact_free_metric(FREE), seed=4)
    assert_free_moments(big)


def test_fourier_accelerated_hmc_reproduces_hmc_at_lambda_half():
    metric = FourierMetric(lattice_mass(INTERACTING.shape, INTERACTING.beta, 0.5), INTERACTING.shape)
    fa = run(INTERACTING, num_chains=32, num_traj=2000, metric=metric, seed=6)
    ref = run(INTERACTING, num_chains=32, num_traj=2000, seed=8)
    for name in ("G0", "absM"):
        assert_same_mean(fa.observables[name], ref.observables[name], name, n_sigma=4.0)
    dh = gamma_method(np.exp(-fa.delta_H))
    assert abs(dh.mean - 1.0) < 4 * dh.err and dh.err < 0.02


def test_fourier_fhmc_is_exact_on_a_flow():
    """FHMC with Fourier acceleration in φ̃ (an untrained, non-trivial flow): ⟨e^{−ΔH}⟩ = 1 and the
    free-theory moments of φ = g(φ̃)."""
    from trivflow.flows import Flow, build_flow, split_flow

    flow = Flow.from_module(*split_flow(build_flow(kernel_size=3, num_layers=1, hidden_channels=(), seed=1)))
    kernel = hmc.fhmc_kernel(hmc.phi4_potential, num_steps=10, force_fn=hmc.phi4_force_fn,
                             metric=exact_free_metric(FREE))
    pos = hmc.random_positions(jax.random.key(0), 16, FREE.shape)
    res = hmc.run_chains(jax.random.key(1), kernel, pos, {"flow": flow, "theory": hmc.phi4_params(FREE)},
                         step_size=0.1, num_traj=2000, num_therm=100, progress=False,
                         measure_fn=hmc.pulled_back_measure(hmc.phi4_measure))
    assert res.acceptance > 0.5
    assert_free_moments(res)


# --- momentum draw --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["rbg", "float32"])
def test_momentum_draw_changes_the_stream_not_the_distribution(name):
    draw = momentum_draw(name)
    xi = np.asarray(draw(jax.random.key(0), (200_000,), jnp.float64))
    assert xi.dtype == np.float64
    assert abs(xi.mean()) < 4 / np.sqrt(xi.size) and abs(xi.var() - 1) < 4 * np.sqrt(2 / xi.size)
    assert abs(np.mean(xi**4) - 3) < 4 * np.sqrt(96 / xi.size)  # Var(ξ⁴) = 105 − 9
    assert not np.array_equal(xi, np.asarray(jax.random.normal(jax.random.key(0), (200_000,), jnp.float64)))
    res = run(FREE, num_chains=32, num_traj=2000, momentum_draw=name)
    assert_free_moments(res)


def test_default_options_are_the_reference_kernel_bit_for_bit():
    a = run(INTERACTING, num_chains=4, num_traj=100, num_therm=10)
    b = run(INTERACTING, num_chains=4, num_traj=100, num_therm=10, momentum_draw="threefry", metric=None)
    np.testing.assert_array_equal(a.observables["M"], b.observables["M"])
    np.testing.assert_array_equal(a.delta_H, b.delta_H)


# --- configuration --------------------------------------------------------------------------------

def compose_cfg(overrides):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        return compose(config_name="config", overrides=overrides)


def test_options_are_off_by_default():
    s = compose_cfg([]).sampler
    assert (s.adapt_step_size, s.fourier_mass, s.momentum_draw) == (False, None, "threefry")


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["sampler.fourier_mass=0"], "sampler.fourier_mass=0.0 is invalid"),
        (["sampler.fourier_mass=-1"], "sampler.fourier_mass=-1.0 is invalid"),
        (["sampler.momentum_draw=philox"], "sampler.momentum_draw='philox' is invalid"),
        (["sampler.adapt_step_size=true", "sampler.num_therm=0"], "sampler.num_therm=0 is invalid"),
        (["sampler.adapt_step_size=true", "sampler.target_accept=1.5"], "sampler.target_accept=1.5 is invalid"),
        (["compile_cache=' '"], "compile_cache=' ' is invalid"),
        (["compile_cache_max_gb=0"], r"compile_cache_max_gb=0(\.0)? is invalid: expected a positive number of GiB"),
        (["compile_cache_max_gb=-1"], r"compile_cache_max_gb=-1(\.0)? is invalid"),
        (["sampler=nuts", "sampler.fourier_mass=0.2"], "sampler.fourier_mass=0.2 is invalid.*would be ignored"),
        (["sampler=nuts", "sampler.adapt_step_size=true"], "sampler.adapt_step_size=True is invalid.*ignored"),
        (["sampler=imh", "sampler.momentum_draw=rbg"], "sampler.momentum_draw='rbg' is invalid.*ignored"),
        (["prior.draw=philox"], "prior.draw='philox' is invalid: expected one of"),
        (["prior.draw=float32"], "prior.draw='float32' is invalid.*ignored"),  # the default job trains no flow
        (["sampler=fhmc", "prior=interp", "prior.draw=rbg"], "prior.draw='rbg' is invalid.*ignored"),
    ],
)
def test_bad_option_values_fail_before_compute(overrides, message):
    with pytest.raises(ValueError, match=message):
        validate(compose_cfg(overrides))


def test_prior_draw_is_accepted_where_a_flow_trains_from_the_gaussian_prior():
    validate(compose_cfg(["sampler=fhmc", "prior.draw=float32"]))
    validate(compose_cfg(["sampler=imh", "prior.draw=rbg"]))


def test_experiment_records_the_adapted_step_size(tmp_path):
    from trivflow.app.experiment import run as run_experiment

    cfg = compose_cfg(["lattice=free", "sampler.num_chains=2", "sampler.num_traj=200", "sampler.num_therm=50",
                       "sampler.adapt_step_size=true", "sampler.fourier_mass=0.2", "sampler.momentum_draw=rbg",
                       "progress=false", "plots=false", f"compile_cache={tmp_path / 'cache'}"])
    results = run_experiment(cfg, tmp_path / "run")
    step = json.loads((tmp_path / "run" / "results.json").read_text())["runs"]["hmc"]["step_size"]
    assert step["initial"] == 0.1 and step["target_accept"] == 0.8 and step["adapted"] > 0
    assert results["runs"]["hmc"]["step_size"] == step


# --- persistent compilation cache -----------------------------------------------------------------

def test_second_compile_of_the_same_program_is_a_persistent_cache_hit(tmp_path):
    from jax._src import compilation_cache

    from trivflow.app.environment import configure_compile_cache, default_compile_cache_dir

    assert default_compile_cache_dir().parts[-2:] == ("trivflow", "jax")
    previous = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    hits = []

    def listener(event, **kwargs):
        if event == "/jax/compilation_cache/cache_hits":
            hits.append(event)

    jax.monitoring.register_event_listener(listener)
    try:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        assert configure_compile_cache(str(tmp_path / "cache")) == str(tmp_path / "cache")

        def program(x):
            return jnp.sin(x) * 41.0 + jnp.cos(x)  # a program no other test compiles

        x = jnp.arange(7.0)
        jax.jit(program).lower(x).compile()
        entries = list((tmp_path / "cache").iterdir())
        assert entries and not hits
        jax.clear_caches()  # drop the in-memory caches: only the persistent one can answer
        jax.jit(program).lower(x).compile()
        assert hits, "the second compilation did not hit the persistent cache"
        assert configure_compile_cache(None) is None and jax.config.jax_compilation_cache_dir is None
    finally:
        jax.monitoring.unregister_event_listener(listener)
        jax.config.update("jax_compilation_cache_dir", previous[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[1])
        compilation_cache.reset_cache()


def test_the_persistent_cache_is_bounded_and_evicts_the_least_recently_used(tmp_path):
    from jax._src import compilation_cache

    from trivflow.app.environment import configure_compile_cache

    previous = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs,
                jax.config.jax_compilation_cache_max_size)
    cache = tmp_path / "cache"

    def size():  # what JAX bounds: the executables, not their 8-byte access-time files
        return sum(f.stat().st_size for f in cache.glob("*-cache"))

    x = jnp.arange(5.0) + 0.5  # made before the cache opens: only compile_one's programs enter it

    def compile_one(c):
        jax.jit(lambda x: jnp.tanh(x) * c + jnp.sinh(x) / (c + 1.0)).lower(x).compile()

    try:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        configure_compile_cache(str(cache), max_gb=None)
        assert jax.config.jax_compilation_cache_max_size == -1  # null: no bound
        compile_one(3.25)
        (first,) = cache.glob("*-cache")
        one = size()
        assert one > 0
        bound = 1.5 * one  # room for one executable, not two
        # bounding a cache filled without a bound: its entries get JAX's access-time files, without
        # which every later write would fail ("Error writing persistent compilation cache entry")
        configure_compile_cache(str(cache), max_gb=bound / 2**30)
        assert jax.config.jax_compilation_cache_max_size == int(bound)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for c in (4.25, 5.25, 6.25):
                compile_one(c)
                assert 0 < size() <= bound
        assert not first.exists()  # the least recently used went first
    finally:
        jax.config.update("jax_compilation_cache_dir", previous[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[1])
        jax.config.update("jax_compilation_cache_max_size", previous[2])
        compilation_cache.reset_cache()


def test_the_application_writes_every_program_to_the_persistent_cache(tmp_path):
    """JAX writes only programs that compiled for ≥ 1 s by default; the small ones before a job's
    first sample were then compiled again in every job (docs/performance.md)."""
    from jax._src import compilation_cache

    from trivflow.app.environment import CACHE_MIN_COMPILE_SECONDS, configure_compile_cache

    previous = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    try:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
        configure_compile_cache(str(tmp_path / "cache"))
        assert CACHE_MIN_COMPILE_SECONDS == 0.0
        assert jax.config.jax_persistent_cache_min_compile_time_secs == CACHE_MIN_COMPILE_SECONDS
    finally:
        jax.config.update("jax_compilation_cache_dir", previous[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[1])
        compilation_cache.reset_cache()
