"""β tuning (trivflow.tuning): the search against the exact free-theory ξ(β), the error of β*
by its coverage over noisy repetitions, one real HMC tuning, config validation before compute."""

import json
import math
from pathlib import Path

import jax
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import trivflow
from trivflow.app.config import register_configs, validate
from trivflow.app.experiment import run
from trivflow.lattice import LINE_OF_CONSTANT_PHYSICS, free
from trivflow.tuning import (
    TunePoint,
    fit_log_xi,
    free_beta,
    hmc_xi_measure,
    initial_bracket,
    lcp_beta_guess,
    select_fit_points,
    tune_beta,
)

CONF = str(Path(trivflow.__file__).parent / "conf")
register_configs()


def compose_cfg(overrides):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        return compose(config_name="config", overrides=overrides)


def xi_free(beta, d=2):
    """Exact free ξ = 1/m, cosh m = (1 − β(d−1))/β (independent of trivflow.tuning.free_beta)."""
    return 1.0 / free.mass(d, beta)


def exact_measure(rel_err, rng=None, d=2):
    """Stub measurement: exact free ξ(β), with Gaussian noise of relative size rel_err if rng."""
    def measure(beta):
        xi = xi_free(beta, d)
        noisy = xi * (1 + rel_err * rng.standard_normal()) if rng is not None else xi
        return noisy, rel_err * xi, {"seconds": 0.0}
    return measure


def test_free_beta_inverts_the_exact_free_mass():
    for xi in (0.7, 1.5, 4.0, 10.0):
        for d in (1, 2, 3):
            assert xi_free(free_beta(xi, d), d) == pytest.approx(xi, rel=1e-12)


def test_fit_recovers_exact_root_of_linear_log_xi():
    """log ξ exactly linear in β: the fit's root is exact and the error is the propagated one."""
    a, b, target = math.log(3.0), 20.0, 4.0
    betas = [0.60, 0.61, 0.63]
    pts = [TunePoint(x, math.exp(a + b * (x - 0.6)), 0.01 * math.exp(a + b * (x - 0.6))) for x in betas]
    fit = fit_log_xi(pts, target)
    exact = 0.6 + (math.log(target) - a) / b
    assert fit.beta_star == pytest.approx(exact, abs=1e-12)
    assert fit.slope[0] == pytest.approx(b, rel=1e-10) and fit.chi2 == pytest.approx(0, abs=1e-18)
    # equal weights σ_y = 0.01: σ_a² = σ²/n, σ_b² = σ²/Σ(β−β̄)², cov(a, b) = 0 at β̄
    dx = np.array(betas) - np.mean(betas)
    expect = math.sqrt(1e-4 / 3 + (exact - np.mean(betas)) ** 2 * 1e-4 / np.sum(dx**2)) / b
    assert fit.beta_err == pytest.approx(expect, rel=1e-10)
    assert fit_log_xi(pts, target, degree=2).degree == 1  # three points: no quadratic


def test_quadratic_fit_is_exact_for_quadratic_log_xi():
    def y(x):
        return math.log(2.0) + 15.0 * (x - 0.5) + 40.0 * (x - 0.5) ** 2
    pts = [TunePoint(x, math.exp(y(x)), 0.01 * math.exp(y(x))) for x in (0.48, 0.50, 0.51, 0.53)]
    fit = fit_log_xi(pts, 3.0, degree=2)
    root = 0.5 + (-15.0 + math.sqrt(15.0**2 + 4 * 40.0 * math.log(1.5))) / (2 * 40.0)
    assert fit.degree == 2 and fit.beta_star == pytest.approx(root, abs=1e-12)
    assert fit.slope[0] == pytest.approx(15.0 + 80.0 * (root - 0.5), rel=1e-10)
    # error: a shift δ of every log ξ moves the root by δ/y′; the propagated error is at most that
    # for uncorrelated errors (0.01/y′) times the leverage; check against a finite-difference Jacobian
    def root_of(ys):
        return fit_log_xi([TunePoint(p.beta, math.exp(v), 0.01 * p.xi) for p, v in zip(pts, ys)], 3.0,
                          degree=2).beta_star
    ys0 = [math.log(p.xi) for p in pts]
    jac = [(root_of([v + 1e-7 * (i == j) for j, v in enumerate(ys0)]) - fit.beta_star) / 1e-7
           for i in range(4)]
    assert fit.beta_err == pytest.approx(0.01 * math.sqrt(sum(g * g for g in jac)), rel=1e-4)


def test_final_fit_uses_the_points_near_the_target():
    pts = [TunePoint(b, x, 0.01 * x) for b, x in [(0.60, 2.0), (0.62, 3.5), (0.63, 4.1), (0.64, 4.8), (0.70, 9.0)]]
    assert [p.beta for p in select_fit_points(pts, 4.0, None, 0.3)] == [0.62, 0.63, 0.64]
    assert [p.beta for p in select_fit_points(pts, 4.0, 2, 0.3)] == [0.63, 0.62]  # nearest the root 0.628
    assert {p.beta for p in select_fit_points(pts, 20.0, None, 0.3)} == {0.70, 0.64}  # none inside: nearest two


@pytest.mark.parametrize("target,bracket", [(1.5, (0.44, 0.46)),   # root 0.4483 inside
                                            (1.5, (0.30, 0.32)),   # bracket below the root
                                            (1.5, (0.47, 0.49)),   # bracket above the root
                                            (10.0, (0.40, 0.45))])  # root 0.49875, close to the limit 1/d
def test_tuning_finds_the_exact_free_beta(target, bracket):
    exact = 1.0 / (math.cosh(1.0 / target) + 1.0)
    res = tune_beta(exact_measure(1e-6), target, *bracket, max_iter=12, beta_max=0.5)
    assert res.converged, res.message
    # all points are fitted, the far bracket ends too: the quadratic's misfit (Birge-scaled) sets δβ*
    assert abs(res.beta - exact) < 3 * res.beta_err and res.beta_err < 1e-4
    assert all(p.beta < 0.5 for p in res.points)
    assert abs(res.points[-1].xi - target) <= res.points[-1].xi_err  # the stopping rule


def ising_like_xi(beta):
    """ξ = 0.2/(0.7 − β): d log ξ/dβ = 5ξ as on the λ = 0.5 line, ν = 1 (2D Ising class)."""
    return 0.2 / (0.7 - beta)


@pytest.mark.parametrize("xi_fn,target,bracket,rel,beta_max",
                         [(xi_free, 1.5, (0.44, 0.46), 0.01, 0.5), (ising_like_xi, 4.0, (0.62, 0.64), 0.007, 0.7),
                          (ising_like_xi, 4.0, (0.64, 0.66), 0.007, 0.7)])
def test_beta_error_covers_the_exact_root(xi_fn, target, bracket, rel, beta_max):
    """Noisy exact ξ: the pulls (β* − β_exact)/δβ* over 300 searches are close to N(0, 1).

    The stopping rule and the steps depend on the noise, so the coverage is not exact; we
    require ≥ 55 % within 1σ and ≥ 85 % within 2σ (68 %, 95 % ideal) and no pull beyond 6σ.
    """
    rng = np.random.default_rng(7)
    exact = brentq_like(lambda b: math.log(xi_fn(b) / target), *(0.3, beta_max - 1e-9))

    def measure(beta):
        xi = xi_fn(beta)
        return xi * (1 + rel * rng.standard_normal()), rel * xi, {}

    pulls = []
    for _ in range(300):
        res = tune_beta(measure, target, *bracket, max_iter=8, beta_max=beta_max)
        assert res.beta is not None
        pulls.append((res.beta - exact) / res.beta_err)
    pulls = np.abs(pulls)
    assert np.mean(pulls < 1) > 0.55 and np.mean(pulls < 2) > 0.85 and np.max(pulls) < 6


def brentq_like(f, lo, hi):
    """Bisection root of a monotone f (independent of the code under test)."""
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi)


def test_undefined_xi_is_stepped_around():
    """ξ undefined (NaN) above β = 0.47: the search treats those points as "too large"."""
    exact_fn = exact_measure(1e-4)

    def measure(beta):
        return (float("nan"), float("nan"), {}) if beta > 0.47 else exact_fn(beta)

    res = tune_beta(measure, 1.5, 0.30, 0.49, max_iter=12, beta_max=0.5)  # root β = 0.4485
    assert res.points[1].xi is None and res.converged, res
    assert abs(res.beta - free_beta(1.5)) < 3 * res.beta_err


def test_all_undefined_ends_without_an_estimate():
    res = tune_beta(lambda b: (None, None, {}), 2.0, 0.40, 0.45, max_iter=5)
    assert not res.converged and res.beta is None and "undefined" in res.message and len(res.points) == 2


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="target_xi=-1"):
        tune_beta(exact_measure(0.01), -1, 0.4, 0.45)
    with pytest.raises(ValueError, match="bracket"):
        tune_beta(exact_measure(0.01), 2.0, 0.45, 0.4)
    with pytest.raises(ValueError, match="must return"):
        tune_beta(lambda b: 1.0, 2.0, 0.4, 0.45)


def test_initial_brackets():
    assert lcp_beta_guess(4.0) == pytest.approx(0.634)
    assert lcp_beta_guess(10.0) == pytest.approx(LINE_OF_CONSTANT_PHYSICS[40])
    assert 0.634 < lcp_beta_guess(4.25) < LINE_OF_CONSTANT_PHYSICS[18]  # interpolation at L = 17
    lo, hi = initial_bracket(2, 0.5, 4.5)
    assert lo < LINE_OF_CONSTANT_PHYSICS[18] < hi and hi - lo == pytest.approx(0.12 / 4.5)
    lo, hi = initial_bracket(2, 0.0, 20.0)
    assert lo < free_beta(20.0) < hi < 0.5
    with pytest.raises(ValueError, match="give the bracket explicitly"):  # the library names no tune.* key
        initial_bracket(2, 0.3, 2.0)


def test_hmc_tuning_of_the_free_theory_recovers_the_exact_beta():
    """Real HMC measurements at L = 8, λ = 0, ξ_target = 1.5: β* within 3σ of the exact value."""
    target, exact = 1.5, 1.0 / (math.cosh(1 / 1.5) + 1)
    measure = hmc_xi_measure(jax.random.key(3), 8, 2, 0.0, num_chains=16, num_traj=1500, num_therm=100,
                             chunk_size=1500, warm_dbeta=0.02, warm_therm=20)
    res = tune_beta(measure, target, 0.36, 0.40, max_iter=6, beta_max=0.5)
    assert res.beta is not None, res.message
    assert abs(res.beta - exact) < 3 * res.beta_err, (res.beta, res.beta_err, exact)
    assert res.beta_err < 0.004  # a real constraint: the bracket is 0.04 wide
    assert any(p.extra["warm_start_from"] is not None for p in res.points[2:])
    assert all(p.extra["num_traj"] == 1500 and "tau_int" in p.extra for p in res.points)


def test_tune_beta_experiment_writes_the_block(tmp_path):
    cfg = compose_cfg(["experiment=tune_beta", "lattice=free", "lattice.L=6", "target_xi=1.2",
                       "sampler.num_chains=8", "sampler.num_traj=500", "sampler.num_therm=50",
                       "tune.max_iter=3", "progress=false"])
    results = run(cfg, tmp_path)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    block = on_disk["tune_beta"]
    assert {"L", "lam", "target_xi", "beta", "beta_err", "points", "converged"} <= set(block)
    assert block["L"] == 6 and block["lam"] == 0.0 and block["target_xi"] == 1.2
    assert 2 <= len(block["points"]) <= 3 == on_disk["config"]["tune"]["max_iter"]
    for p in block["points"]:
        assert {"beta", "xi", "xi_err", "tau_int", "seconds"} <= set(p)
    assert on_disk["lattice"]["beta"] == block["beta"] == results["tune_beta"]["beta"]
    assert len(on_disk["runs"]) == len(block["points"])
    assert {"experiment", "seed", "versions", "command", "config"} <= set(on_disk)
    assert (tmp_path / "plots" / "tune_beta.png").exists()
    exact = free_beta(1.2)
    assert abs(block["beta"] - exact) < 4 * block["beta_err"] + 1e-3


def test_default_target_is_the_line_of_constant_physics():
    cfg = compose_cfg(["experiment=tune_beta", "lattice=L16"])
    assert cfg.task == "tune_beta" and cfg.target_xi is None
    validate(cfg)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["target_xi=0"], "target_xi=0.0 is invalid: expected 0 < target_xi < L/2 = 8"),
        (["target_xi=-2"], "target_xi=-2.0 is invalid"),
        (["target_xi=8"], "target_xi=8.0 is invalid: expected 0 < target_xi < L/2 = 8"),
        (["lattice.L=2", "target_xi=0.5"], "lattice.L=2 is invalid: expected >= 4 for task=tune_beta"),
        (["tune.beta_lo=0.64", "tune.beta_hi=0.63"],
         "tune.beta_lo=0.64 is invalid: expected 0 <= tune.beta_lo < tune.beta_hi=0.63"),
        (["tune.beta_lo=0.6"], "tune.beta_hi=None is invalid: expected a number as well"),
        (["tune.beta_hi=0.6"], "tune.beta_lo=None is invalid: expected a number as well"),
        (["tune.beta_lo=-0.1", "tune.beta_hi=0.6"], "tune.beta_lo=-0.1 is invalid"),
        (["lattice=free", "tune.beta_lo=0.4", "tune.beta_hi=0.5"], "tune.beta_hi=0.5 is invalid: expected < 1/d = 0.5"),
        (["lattice.lam=0.3"],
         "tune.beta_lo=None is invalid: expected a number with tune.beta_hi: no automatic bracket"),
        (["lattice.d=3"], "no automatic bracket for lattice.d=3"),
        (["tune.max_iter=1"], "tune.max_iter=1 is invalid: expected an integer >= 2"),
        (["tune.fit_points=1"], "tune.fit_points=1 is invalid"),
        (["tune.tol_sigma=0"], "tune.tol_sigma=0.0 is invalid"),
        (["tune.xi_rtol=-0.1"], "tune.xi_rtol=-0.1 is invalid"),
        (["tune.bracket_width=0"], "tune.bracket_width=0.0 is invalid"),
        (["tune.warm_therm=-1"], "tune.warm_therm=-1 is invalid"),
        (["sampler=fhmc"], "sampler.name='fhmc' is invalid: expected 'hmc' for task=tune_beta"),
        (["baselines=[hmc]"], "baselines=\\['hmc'\\] is invalid: expected empty for task=tune_beta"),
        (["task=tune"], "task='tune' is invalid: expected one of \\['sample', 'tune_beta'\\]"),
        (["resume=true"], "resume=True is invalid: expected false for task=tune_beta"),
    ],
)
def test_bad_tuning_config_fails_before_compute(overrides, message):
    cfg = compose_cfg(["experiment=tune_beta", *overrides])
    with pytest.raises(ValueError, match=message):
        validate(cfg)
