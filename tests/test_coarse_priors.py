"""Priors from coarser lattices (docs/theory.md#priors): maps, densities, ensembles, pipeline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from checks import assert_layers_in_turn
from hydra import compose, initialize_config_dir
from scipy import stats

import trivflow
from trivflow import hmc
from trivflow.analysis import gamma_method
from trivflow.app.config import register_configs, validate
from trivflow.app.experiment import run
from trivflow.lattice.theory import Phi4Theory
from trivflow.priors import (
    CoarseTheoryPrior,
    Ensemble,
    EnsembleSettings,
    Interleave4Prior,
    InterpolationPrior,
    Prior,
    deinterleave4,
    generate_ensemble,
    interleave4,
    interpolate2,
    load_ensemble,
    obtain_ensemble,
    save_ensemble,
)
from trivflow.priors import ensemble as ensemble_module

CONF = str(Path(trivflow.__file__).parent / "conf")
register_configs()


def dense_action(phi: np.ndarray, beta: float, lam: float) -> float:
    """S by explicit loops over sites and forward bonds (independent of trivflow.lattice)."""
    n0, n1 = phi.shape
    s = 0.0
    for x in range(n0):
        for y in range(n1):
            p = phi[x, y]
            s += p * p + lam * (p * p - 1.0) ** 2 - beta * p * (phi[(x + 1) % n0, y] + phi[x, (y + 1) % n1])
    return s


def fake_ensemble(L: int, n: int = 7, beta: float = 0.5, lam: float = 0.5, seed: int = 0) -> Ensemble:
    configs = np.random.default_rng(seed).normal(size=(n, L, L))
    return Ensemble(configs, {"L": L, "d": 2, "beta": beta, "lam": lam, "chains": 1})


# ------------------------------------------------------------------------------------------------
# the lattice maps
# ------------------------------------------------------------------------------------------------


def test_interleave_round_trip_and_index_map():
    cs = jnp.asarray(np.random.default_rng(1).normal(size=(4, 3, 5)))
    phi = interleave4(cs)
    assert phi.shape == (6, 10)
    for a in range(2):
        for b in range(2):
            for i in range(3):
                for j in range(5):
                    assert phi[2 * i + a, 2 * j + b] == cs[2 * a + b, i, j]
    np.testing.assert_array_equal(deinterleave4(phi), cs)
    np.testing.assert_array_equal(interleave4(deinterleave4(phi)), phi)


def test_interleave_jacobian_is_a_permutation_with_log_det_zero():
    jac = jax.jacobian(lambda x: interleave4(x.reshape(4, 2, 2)).ravel())(jnp.zeros(16))
    jac = np.asarray(jac)
    assert set(np.unique(jac)) == {0.0, 1.0}
    np.testing.assert_array_equal(jac.sum(axis=0), 1.0)
    np.testing.assert_array_equal(jac.sum(axis=1), 1.0)
    sign, logdet = np.linalg.slogdet(jac)
    assert abs(sign) == 1.0 and logdet == 0.0


def test_interpolation_hand_checked_example():
    c = jnp.array([[1.0, 2.0], [3.0, 5.0], [7.0, 11.0]])  # 3 × 2 coarse, periodic
    phi = np.asarray(interpolate2(c))
    assert phi.shape == (6, 4)
    # even-even sites keep c
    np.testing.assert_array_equal(phi[::2, ::2], c)
    # (odd, even): mean of the coarse sites above and below (row 5 wraps to row 0)
    np.testing.assert_allclose(phi[1::2, 0], [(1 + 3) / 2, (3 + 7) / 2, (7 + 1) / 2])
    np.testing.assert_allclose(phi[1::2, 2], [(2 + 5) / 2, (5 + 11) / 2, (11 + 2) / 2])
    # (even, odd): mean of left and right (column 3 wraps to column 0)
    np.testing.assert_allclose(phi[::2, 1], [(1 + 2) / 2, (3 + 5) / 2, (7 + 11) / 2])
    np.testing.assert_allclose(phi[::2, 3], [(2 + 1) / 2, (5 + 3) / 2, (11 + 7) / 2])
    # (odd, odd): mean of 4
    assert phi[1, 1] == pytest.approx((1 + 2 + 3 + 5) / 4)
    assert phi[5, 3] == pytest.approx((11 + 7 + 2 + 1) / 4)


def test_interpolation_matches_a_loop_reference():
    c = np.random.default_rng(2).normal(size=(4, 3))
    n0, n1 = c.shape
    ref = np.empty((2 * n0, 2 * n1))
    for x in range(2 * n0):
        for y in range(2 * n1):
            xs = [x // 2] if x % 2 == 0 else [x // 2, (x // 2 + 1) % n0]
            ys = [y // 2] if y % 2 == 0 else [y // 2, (y // 2 + 1) % n1]
            ref[x, y] = np.mean([c[i, j] for i in xs for j in ys])
    np.testing.assert_allclose(interpolate2(jnp.asarray(c)), ref, rtol=1e-15)


# ------------------------------------------------------------------------------------------------
# the priors: log_prob against its definition, samples from the ensemble
# ------------------------------------------------------------------------------------------------


def test_coarse_theory_prior_log_prob_and_samples():
    ens = fake_ensemble(4, beta=0.576)
    prior = CoarseTheoryPrior(ens.configs, 0.576, 0.5)
    assert isinstance(prior, Prior) and prior.shape == (4, 4)
    z = np.asarray(prior.sample(jax.random.key(0), 50))
    assert z.shape == (50, 4, 4) and z.dtype == np.float64
    members = np.concatenate([ens.configs, -ens.configs])
    assert all(np.any(np.all(m == members, axis=(1, 2))) for m in z)  # every sample is ± a member
    signs = {int(np.sign(np.sum(m * ens.configs[np.argmax(np.all(np.abs(m) == np.abs(ens.configs), axis=(1, 2)))])))
             for m in z}
    assert signs == {-1, 1}
    for m in z[:3]:
        assert float(prior.log_prob(jnp.asarray(m))) == pytest.approx(-dense_action(m, 0.576, 0.5), rel=1e-12)
    with pytest.raises(ValueError, match="ONE configuration of shape"):
        prior.log_prob(jnp.asarray(z[:2]))


def test_interleave4_prior_log_prob_is_sum_of_coarse_actions():
    ens = fake_ensemble(3, n=5)
    prior = Interleave4Prior(ens.configs, 0.5, 0.5, flip_sign=False)
    assert prior.shape == (6, 6)
    z = np.asarray(prior.sample(jax.random.key(3), 4))
    for m in z:
        parts = [m[a::2, b::2] for a in range(2) for b in range(2)]
        for p in parts:  # each sublattice is a member
            assert np.any(np.all(p == ens.configs, axis=(1, 2)))
        expect = -sum(dense_action(p, 0.5, 0.5) for p in parts)
        assert float(prior.log_prob(jnp.asarray(m))) == pytest.approx(expect, rel=1e-12)


def test_interpolation_prior_without_noise():
    ens = fake_ensemble(4)
    prior = InterpolationPrior(ens.configs, 0.5, 0.5, flip_sign=False)
    z = np.asarray(prior.sample(jax.random.key(4), 3))
    for m in z:
        c = m[::2, ::2]
        assert np.any(np.all(c == ens.configs, axis=(1, 2)))
        np.testing.assert_array_equal(m, interpolate2(jnp.asarray(c)))
        # degenerate density: log_prob is the coarse one
        assert float(prior.log_prob(jnp.asarray(m))) == pytest.approx(-dense_action(c, 0.5, 0.5), rel=1e-12)


def test_interpolation_prior_with_noise_log_prob():
    sigma = 0.3
    ens = fake_ensemble(4)
    prior = InterpolationPrior(ens.configs, 0.5, 0.5, noise=sigma)
    z = np.asarray(prior.sample(jax.random.key(5), 200))
    resid = z - np.asarray(jax.vmap(interpolate2)(jnp.asarray(z[:, ::2, ::2])))
    np.testing.assert_array_equal(resid[:, ::2, ::2], 0.0)  # no noise on even-even sites
    off = np.concatenate([resid[:, 1::2, :].ravel(), resid[:, ::2, 1::2].ravel()])
    assert off.size == 200 * 48
    assert np.std(off) == pytest.approx(sigma, rel=0.05)  # 9600 draws: 4σ ≈ 2.9 %
    m = z[0]
    expect = -dense_action(m[::2, ::2], 0.5, 0.5) + stats.norm.logpdf(
        np.concatenate([resid[0, 1::2, :].ravel(), resid[0, ::2, 1::2].ravel()]), scale=sigma).sum()
    assert float(prior.log_prob(jnp.asarray(m))) == pytest.approx(expect, rel=1e-12)


def test_priors_under_jit_and_bad_input():
    ens = fake_ensemble(4)
    prior = Interleave4Prior(ens.configs, 0.5, 0.5)
    z = jax.jit(lambda k: prior.sample(k, 5))(jax.random.key(0))
    np.testing.assert_allclose(jax.jit(jax.vmap(prior.log_prob))(z), jax.vmap(prior.log_prob)(z), rtol=1e-13)
    hash(prior)  # identity hash: usable as a cache key by the training loop
    with pytest.raises(ValueError, match="^noise must be a finite number >= 0"):
        InterpolationPrior(ens.configs, 0.5, 0.5, noise=-1.0)
    with pytest.raises(ValueError, match="batch_size"):
        prior.sample(jax.random.key(0), 0)


# ------------------------------------------------------------------------------------------------
# ensembles
# ------------------------------------------------------------------------------------------------


def test_ensemble_observables_match_an_independent_hmc_run(tmp_path):
    theory = Phi4Theory(L=6, d=2, beta=0.537, lam=0.5)
    settings = EnsembleSettings(size=32 * 150, spacing=4, therm=200, chains=32, seed=11)
    ens = obtain_ensemble(theory, settings, tmp_path)
    assert ens.configs.shape == (4800, 6, 6) and ens.configs.dtype == np.float64
    assert ens.meta["acceptance"] > 0.8

    key = jax.random.key(123)
    positions = hmc.random_positions(jax.random.fold_in(key, 1), 32, theory.shape)
    ref = hmc.run_chains(key, hmc.phi4_kernel(10), positions, hmc.phi4_params(theory), step_size=0.1,
                         num_traj=600, num_therm=200, measure_fn=hmc.phi4_measure, progress=False)
    m_ref = np.asarray(ref.observables["M"])
    for name, fn, ref_series in (("M2", lambda c: np.mean(c) ** 2, m_ref**2),
                                 ("absM", lambda c: abs(np.mean(c)), np.abs(m_ref))):
        a = gamma_method(ens.series(fn))
        b = gamma_method(ref_series)
        z = abs(a.mean - b.mean) / math.hypot(a.err, b.err)
        assert z < 4.0, (name, a.mean, a.err, b.mean, b.err)


def test_ensemble_cache_reuse_and_wrong_theory_refused(tmp_path, monkeypatch):
    theory = Phi4Theory(L=4, d=2, beta=0.45, lam=0.5)
    settings = EnsembleSettings(size=20, spacing=1, therm=5, chains=4, seed=0)
    first = obtain_ensemble(theory, settings, tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and files[0].stem.startswith("phi4_L4_d2_b0.45")

    def no_generation(*args, **kwargs):
        raise AssertionError("the cached ensemble should have been reused")

    monkeypatch.setattr(ensemble_module, "generate_ensemble", no_generation)
    again = obtain_ensemble(theory, settings, tmp_path)
    np.testing.assert_array_equal(again.configs, first.configs)
    by_path = obtain_ensemble(theory, settings, tmp_path / "elsewhere", path=files[0])
    np.testing.assert_array_equal(by_path.configs, first.configs)
    with pytest.raises(ValueError, match=r"prior.ensemble=.*beta=0.45.*needs.*beta=0.5"):
        obtain_ensemble(Phi4Theory(L=4, d=2, beta=0.5, lam=0.5), settings, tmp_path, path=files[0])
    with pytest.raises(FileNotFoundError, match="prior.ensemble"):
        load_ensemble(tmp_path / "missing.npz")


def test_ensemble_save_load_round_trip(tmp_path):
    ens = fake_ensemble(4)
    path = save_ensemble(tmp_path / "e.npz", ens)
    back = load_ensemble(path, Phi4Theory(L=4, d=2, beta=0.5, lam=0.5))
    np.testing.assert_array_equal(back.configs, ens.configs)
    assert back.meta == ens.meta


def test_generate_ensemble_keeps_size_configs():
    ens = generate_ensemble(Phi4Theory(L=4, d=2, beta=0.45, lam=0.5),
                            EnsembleSettings(size=10, spacing=2, therm=3, chains=4))
    assert ens.configs.shape == (10, 4, 4)  # ceil(10/4) = 3 per chain, the first 10 kept


# ------------------------------------------------------------------------------------------------
# configuration and pipeline
# ------------------------------------------------------------------------------------------------

TINY = ["sampler.num_chains=2", "sampler.num_traj=100", "sampler.num_therm=10", "sampler.batch_size=50",
        "train.steps=10", "train.batch_size=8", "train.log_every=5", "progress=false", "plots=false",
        "prior.ensemble_size=40", "prior.chains=8", "prior.therm=20", "prior.spacing=2"]


def compose_cfg(overrides):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        return compose(config_name="config", overrides=overrides)


@pytest.mark.parametrize("overrides,message", [
    (["experiment=coarse_interp", "prior=interp4_x2", "lattice=L6"],
     r"lattice.L=6 is invalid for prior.name='interp4_x2'"),
    (["experiment=coarse_interp", "prior=interp4_x2", "train.L=10", "train.beta=0.6"], r"train.L=10 is invalid"),
    (["experiment=coarse_interp", "prior=interp4_x2", "lattice=L12"], r"prior.beta_coarser is null .* no beta for L=3"),
    (["experiment=coarse_interp", "lattice.L=44", "lattice.beta=0.67"], r"prior.beta_coarse is null .* L=22"),
    (["experiment=coarse_interp", "prior.name=bogus"], r"prior.name='bogus' is invalid"),
    (["experiment=coarse_interp", "baselines=[hmc@gaussian]"], r"baselines='hmc@gaussian' is invalid"),
    (["experiment=coarse_interp", "baselines=[fhmc@nope]"], r"baselines='fhmc@nope' is invalid"),
    (["experiment=coarse_interp", "prior=interp", "prior.noise=0"],
     r"prior.noise=0.0 is invalid for training with prior interp: expected sigma > 0"),
    (["experiment=coarse_interp", "prior=interp4_x2", "prior.beta_coarser=0.45", "baselines=[imh]"],
     r"imh.*interp4_x2"),
    (["experiment=coarse_interp", "sampler=imh", "volumes=[32]"], r"volumes=\[32\] is invalid"),
    (["experiment=coarse_interp", "prior.noise=0.1"], r"prior.noise=0.1 is invalid for prior.name='interp4'"),
    (["experiment=coarse_interp", "prior.spacing=0"], r"prior.spacing must be an integer >= 1"),
    (["experiment=coarse_interp", "prior.ensemble=/nonexistent.npz"], r"prior.ensemble='/nonexistent.npz'"),
])
def test_bad_prior_configs_fail_before_compute(overrides, message):
    with pytest.raises(ValueError, match=message):
        validate(compose_cfg(overrides))


def test_wrong_ensemble_file_is_refused_at_validation(tmp_path):
    path = save_ensemble(tmp_path / "e.npz", fake_ensemble(8, beta=0.5))
    with pytest.raises(ValueError, match=r"prior.ensemble=.*needs L=8, d=2, beta=0.576"):
        validate(compose_cfg(["experiment=coarse_interp", f"prior.ensemble={path}"]))
    path = save_ensemble(tmp_path / "f.npz", fake_ensemble(8, beta=0.576))
    validate(compose_cfg(["experiment=coarse_interp", f"prior.ensemble={path}"]))


@pytest.mark.slow  # three flows and two ensembles: ~40 s on an idle 2-core CPU
def test_coarse_interp_x2_end_to_end_and_checkpoint(tmp_path):
    """interp4_x2 at L = 8 (β of the L = 4 and L = 2 levels given explicitly) beside FHMC@gaussian.
    (The default-prior coarse_interp and coarse_bigvol experiments also run in tests/test_run.py.)"""
    from trivflow.app.experiment import make_plan, prepare_flow

    def obtain_flow(cfg, theory, out_dir, progress):  # the flow the plan of cfg samples with
        return prepare_flow(make_plan(cfg, theory, out_dir).flows[cfg.prior.name], cfg, theory, out_dir,
                            progress=progress)

    cfg = compose_cfg(["experiment=coarse_interp", "prior=interp4_x2", "lattice=L8", "prior.beta_coarse=0.45",
                       "prior.beta_coarser=0.3", "baselines=[fhmc@gaussian]", *TINY])
    results = run(cfg, tmp_path / "run")
    assert set(results["runs"]) == {"fhmc", "fhmc@gaussian"}
    assert results["runs"]["fhmc"]["prior"] == "interp4_x2" and results["runs"]["fhmc@gaussian"]["prior"] == "gaussian"
    tr = results["training"]
    assert tr["lattice"]["L"] == 8 and tr["prior"]["source"] == {"L": 4, "d": 2, "beta": 0.45, "lam": 0.5}
    assert tr["coarse"]["lattice"] == {"L": 4, "d": 2, "beta": 0.45, "lam": 0.5}
    assert tr["coarse"]["prior"]["source"] == {"L": 2, "d": 2, "beta": 0.3, "lam": 0.5}
    assert results["trainings"]["gaussian"]["prior"] == {"name": "gaussian"}
    run_dir = tmp_path / "run"
    assert (run_dir / "flow" / "coarse" / "flow_config.json").is_file()
    assert len(list((run_dir / "priors").glob("*.npz"))) == 2
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["runs"]["fhmc"]["acceptance"] > 0.5

    # the checkpoint loads as g2 ∘ g1 (one Compose: FHMC's hand-written pullback applies) ...
    theory = validate(cfg)
    loaded = obtain_flow(compose_cfg(["lattice=L8", "sampler=fhmc", f"flow.checkpoint={run_dir}"]), theory,
                         tmp_path, progress=False)
    assert "coarse" in loaded.config
    from trivflow.flows import flow_forward_and_pullback

    z = jax.random.normal(jax.random.key(0), (8, 8))
    assert_layers_in_turn(loaded.flow, z, rtol=1e-12)
    flow_forward_and_pullback(loaded.flow.graphdef, loaded.flow.params, z)
    # ... and another kernel size is refused for the composed flow too
    bad = compose_cfg(["lattice=L8", "sampler=fhmc", f"flow.checkpoint={run_dir}", "flow.kernel_size=5"])
    with pytest.raises(ValueError, match="kernel_size"):
        obtain_flow(bad, theory, tmp_path, progress=False)


def test_coarse_bigvol_end_to_end_with_imh(tmp_path):
    from trivflow.priors import make_prior

    cfg = compose_cfg(["experiment=coarse_bigvol", "lattice=L8", "prior.beta_coarse=0.45", "baselines=[imh]", *TINY])
    results = run(cfg, tmp_path)
    assert set(results["runs"]) == {"fhmc", "imh"}
    assert results["runs"]["imh"]["prior"] == "coarse_bigvol"
    assert results["training"]["prior"]["source"] == {"L": 8, "d": 2, "beta": 0.45, "lam": 0.5}
    assert 0.0 <= results["training"]["mh_acceptance"] <= 1.0
    (ens_file,) = (tmp_path / "priors").glob("*.npz")
    # a later run pointed at the ensemble file reuses it (its theory is checked)
    prior, info = make_prior({**cfg.prior, "ensemble": str(ens_file)}, L_train=8, d=2, lam=0.5, seed=0,
                             directory=tmp_path / "second")
    assert isinstance(prior, CoarseTheoryPrior) and info["ensemble"] == str(ens_file)
    assert prior.size == 40 and not (tmp_path / "second").exists()
