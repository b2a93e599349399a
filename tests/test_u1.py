"""2D U(1) gauge theory (issue 16, docs/theory.md#u1): the exact formulas against brute force on
2 × 2, HMC against the exact plaquette, ⟨Q²⟩ and Wilson loops within 4σ (Γ-method errors), Q an
integer, gauge invariance, the analytic force, reversibility of the leapfrog, refusals."""

from __future__ import annotations

import math
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import trivflow
from trivflow import hmc
from trivflow.app.config import refuse_unread_overrides, register_configs, validate
from trivflow.gauge import (
    U1Theory,
    exact,
    gauge_transform,
    plaquette_angles,
    topological_charge,
    u1_observables,
    wilson_action,
    wilson_force,
    wrap_angle,
)
from trivflow.hmc.integrators import leapfrog
from trivflow.summary import summarize_run
from trivflow.theory import THEORIES, Theory, make_theory

CONF = str(Path(trivflow.__file__).parent / "conf")
register_configs()


def explicit_plaquettes(theta: np.ndarray) -> np.ndarray:
    """θ_P(x) = θ₀(x) + θ₁(x+0̂) − θ₀(x+1̂) − θ₁(x) by explicit index arithmetic, for a batch
    ``(..., 2, L, L)`` (independent of the library's rolls)."""
    L = theta.shape[-1]
    out = np.empty(theta.shape[:-3] + (L, L))
    for x0 in range(L):
        for x1 in range(L):
            out[..., x0, x1] = (theta[..., 0, x0, x1] + theta[..., 1, (x0 + 1) % L, x1]
                                - theta[..., 0, x0, (x1 + 1) % L] - theta[..., 1, x0, x1])
    return out


def random_links(key, L, scale=3 * math.pi):
    """Link angles far outside (−π, π] too: everything is 2π-periodic."""
    return jax.random.uniform(key, (2, L, L), jnp.float64, -scale, scale)


# --- the configuration-level functions -------------------------------------------------------


def test_plaquette_convention_and_wrap():
    theta = np.asarray(random_links(jax.random.key(0), 4))
    np.testing.assert_allclose(plaquette_angles(jnp.asarray(theta)), explicit_plaquettes(theta), atol=1e-13)
    x = jnp.array([-3 * math.pi, -math.pi, -1.0, 0.0, math.pi, math.pi + 1e-9, 7.0])
    w = np.asarray(wrap_angle(x))
    assert np.all(w > -math.pi) and np.all(w <= math.pi)
    np.testing.assert_allclose(w[[1, 4]], math.pi)  # −π and π both map to π: (−π, π]
    np.testing.assert_allclose(np.cos(w), np.cos(np.asarray(x)), atol=1e-12)


def test_topological_charge_is_an_integer_and_can_be_nonzero():
    keys = jax.random.split(jax.random.key(1), 200)
    q = np.asarray(jax.vmap(lambda k: topological_charge(random_links(k, 6)))(keys))
    np.testing.assert_allclose(q, np.round(q), atol=1e-10)
    assert np.any(np.round(q) != 0)
    # constant field strength 2π/V on every plaquette: θ₁(x) = 2πx₀/V, closed by θ₀ on the last
    # column x₀ = L−1, θ₀(L−1, x₁) = −2πx₁/L; then [θ_P] = 2π/V everywhere and Q = 1
    L = 8
    theta = np.zeros((2, L, L))
    theta[1] = 2 * math.pi * np.arange(L)[:, None] / L**2
    theta[0, L - 1, :] = -2 * math.pi * np.arange(L) / L
    np.testing.assert_allclose(wrap_angle(plaquette_angles(jnp.asarray(theta))), 2 * math.pi / L**2, atol=1e-13)
    assert float(topological_charge(jnp.asarray(theta))) == pytest.approx(1.0, abs=1e-12)
    assert float(topological_charge(-jnp.asarray(theta))) == pytest.approx(-1.0, abs=1e-12)


def test_action_charge_and_loops_are_gauge_invariant():
    k1, k2 = jax.random.split(jax.random.key(2))
    theta = random_links(k1, 6)
    alpha = jax.random.uniform(k2, (6, 6), jnp.float64, -10.0, 10.0)
    moved = gauge_transform(theta, alpha)
    assert not np.allclose(moved, theta)
    assert float(wilson_action(moved, 1.3)) == pytest.approx(float(wilson_action(theta, 1.3)), rel=1e-12)
    assert round(float(topological_charge(moved))) == round(float(topological_charge(theta)))
    a, b = u1_observables(theta), u1_observables(moved)
    for name in a:
        np.testing.assert_allclose(b[name], a[name], atol=1e-11, err_msg=name)


def test_force_matches_autodiff_and_finite_differences():
    theta = random_links(jax.random.key(3), 4)
    beta = 1.7
    force = wilson_force(theta, beta)
    np.testing.assert_allclose(force, jax.grad(wilson_action)(theta, beta), rtol=1e-12, atol=1e-12)
    eps = 1e-6
    for index in [(0, 0, 0), (1, 2, 3), (0, 3, 1), (1, 0, 3)]:
        e = jnp.zeros_like(theta).at[index].set(eps)
        fd = (wilson_action(theta + e, beta) - wilson_action(theta - e, beta)) / (2 * eps)
        assert float(force[index]) == pytest.approx(float(fd), abs=1e-8), index


def test_leapfrog_on_u1_is_reversible():
    theory = U1Theory(L=4, beta=2.0)
    params = theory.params(jnp.float64)
    vg = jax.jit(lambda x: theory.value_and_grad_fn(x, params))
    x0 = random_links(jax.random.key(4), 4, math.pi)
    p0 = jax.random.normal(jax.random.key(5), x0.shape, jnp.float64)
    u0, g0 = vg(x0)
    x1, p1, u1, g1 = leapfrog(vg, x0, p0, u0, g0, 0.05, 40)
    x2, p2, _, _ = leapfrog(vg, x1, -p1, u1, g1, 0.05, 40)
    assert float(jnp.max(jnp.abs(x1 - x0))) > 0.1  # it moved
    np.testing.assert_allclose(x2, x0, atol=1e-12)
    np.testing.assert_allclose(-p2, p0, atol=1e-12)
    h0, h1 = u0 + 0.5 * jnp.sum(p0 ** 2), u1 + 0.5 * jnp.sum(p1 ** 2)
    assert abs(float(h1 - h0)) < 0.05  # energy nearly conserved at ε = 0.05 (O(ε²))


# --- exact results ----------------------------------------------------------------------------


def gauge_fixed_grid(n: int) -> np.ndarray:
    """All configurations of the 2 × 2 lattice on an n-point grid per link in the maximal-tree
    gauge θ₀(0,0) = θ₁(0,0) = θ₁(1,0) = 0 (the other 5 links free), shape ``(n⁵, 2, 2, 2)``.
    The periodic trapezoid rule integrates the smooth gauge-invariant integrands exactly up to
    Fourier modes ≥ n."""
    grid = 2 * math.pi * np.arange(n) / n
    free = np.stack(np.meshgrid(*[grid] * 5, indexing="ij"), axis=-1).reshape(-1, 5)
    theta = np.zeros((len(free), 2, 2, 2))
    theta[:, 0, 1, 0], theta[:, 0, 0, 1], theta[:, 0, 1, 1] = free[:, 0], free[:, 1], free[:, 2]
    theta[:, 1, 0, 1], theta[:, 1, 1, 1] = free[:, 3], free[:, 4]
    return theta


@pytest.mark.parametrize("beta", [0.7, 1.5])
def test_exact_plaquette_and_loops_match_brute_force_integration_on_2x2(beta):
    p = explicit_plaquettes(gauge_fixed_grid(20))
    w = np.exp(beta * (np.cos(p).sum(axis=(-2, -1)) - 4.0))
    plaq = np.sum(w * np.cos(p).mean(axis=(-2, -1))) / np.sum(w)
    assert plaq == pytest.approx(exact.plaquette(2, beta), abs=1e-10)
    # a 1×2 loop: the angle of two neighbouring plaquettes, both orientations
    loop = 0.5 * (np.cos(p[..., 0, 0] + p[..., 1, 0]) + np.cos(p[..., 0, 0] + p[..., 0, 1]))
    assert np.sum(w * loop) / np.sum(w) == pytest.approx(exact.wilson_loop(2, beta, 2), abs=1e-10)


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_exact_q2_matches_monte_carlo_integration_on_2x2(beta):
    """⟨Q²⟩ by importance-weighted Monte Carlo over Haar-uniform links (Q is discontinuous, so no
    grid rule): mean and delta-method error of Σ w Q² / Σ w, w = e^{−S}."""
    rng = np.random.default_rng(7)
    num, den = [], []
    for _ in range(8):
        theta = rng.uniform(-math.pi, math.pi, size=(500_000, 2, 2, 2))
        p = explicit_plaquettes(theta)
        q = np.sum(p - 2 * math.pi * np.round(p / (2 * math.pi)), axis=(-2, -1)) / (2 * math.pi)
        w = np.exp(beta * (np.cos(p).sum(axis=(-2, -1)) - 4.0))
        num.append(w * q * q)
        den.append(w)
    num, den = np.concatenate(num), np.concatenate(den)
    est = num.mean() / den.mean()
    err = np.std(num - est * den) / den.mean() / math.sqrt(len(den))
    value = exact.q2(2, beta)
    assert err < 0.02 * value  # a test that can fail: 2% or better
    assert abs(est - value) < 4 * err, (est, err, value)


def test_exact_limits_and_reference_values():
    from scipy.special import ive

    beta = 2.3
    g = exact.g_and_derivatives(np.arange(6), beta)[0]
    np.testing.assert_allclose(g, ive(np.arange(6), beta), rtol=1e-12, atol=1e-13)  # g(n) = I_n(β) (scaled)
    assert exact.plaquette(40, beta) == pytest.approx(exact.plaquette_infinite_volume(beta), rel=1e-12)
    assert exact.chi_t(40, beta) == pytest.approx(exact.chi_t_infinite_volume(beta), rel=1e-8)
    assert exact.wilson_loop(40, beta, 4) == pytest.approx(exact.plaquette_infinite_volume(beta) ** 4, rel=1e-10)
    assert exact.wilson_loop(2, beta, 4) == pytest.approx(1.0)  # a loop around all of 2×2 encloses Σθ_P = 0
    assert exact.q2(2, 3.0) == pytest.approx(1.905e-4, rel=1e-3)  # docs/theory.md#u1 (brute force 2×2)
    assert np.isfinite(exact.q2(64, 128.0)) and exact.plaquette(64, 128.0) < 1  # no overflow
    with pytest.raises(ValueError, match="beta must be > 0"):
        exact.q2(4, 0.0)


# --- the theory and the engine ----------------------------------------------------------------


def test_u1_implements_the_theory_interface():
    theory = make_theory("u1", L=4, beta=2.0)
    assert isinstance(theory, Theory) and THEORIES["u1"] is U1Theory
    assert theory.shape == (2, 4, 4) and theory.volume == 16
    assert theory.with_extent(6) == U1Theory(L=6, beta=2.0)
    ex = theory.exact()
    assert ex["plaquette"] == pytest.approx(exact.plaquette(4, 2.0)) and ex["chi_t"] == pytest.approx(ex["Q2"] / 16)
    x = theory.random_field(jax.random.key(0), 3, jnp.float64)
    assert x.shape == (3, 2, 4, 4) and float(jnp.max(jnp.abs(x))) <= math.pi
    np.testing.assert_allclose(theory.value_and_grad_fn(x[0], theory.params())[1], theory.force(x[0]))
    for kwargs, message in [({"L": 4, "beta": 0.0}, "beta must be > 0"), ({"L": 4, "beta": -1.0}, "beta must be > 0"),
                            ({"L": 1, "beta": 1.0}, "L must be an integer >= 2"),
                            ({"L": 4, "beta": 1.0, "d": 3}, "d must be 2")]:
        with pytest.raises(ValueError, match=message):
            U1Theory(**kwargs)


def run_hmc(theory, *, num_traj, num_chains=16, seed=0, step_size=0.2, num_steps=10):
    kernel = hmc.build_kernel(theory.potential_fn, num_steps=num_steps, value_and_grad_fn=theory.value_and_grad_fn)
    positions = theory.random_field(jax.random.key(seed), num_chains, jnp.float64)
    return hmc.run_chains(jax.random.key(seed + 1), kernel, positions, theory.params(jnp.float64),
                          step_size=step_size, num_traj=num_traj, num_therm=100, measure_fn=theory.measure_fn,
                          progress=False)


@pytest.mark.slow  # ~25 s each on a shared 2-core CPU, most of it compilation
@pytest.mark.parametrize("L", [4, 8])
def test_hmc_reproduces_exact_plaquette_q2_and_loops(L):
    theory = U1Theory(L=L, beta=2.0)
    result = run_hmc(theory, num_traj=1000)
    q = result.observables["Q"]
    np.testing.assert_allclose(q, np.round(q), atol=1e-10)  # an integer on every measured configuration
    block = summarize_run(result, theory, sampler="hmc")
    assert set(block["tau_int"]) == {"Q", "Q2", "plaquette"} and block["diagnostics"]["reliable"]
    ex, obs = block["exact"], block["observables"]
    for name in ("plaquette", "Q2", "chi_t", "W_1x2", "W_2x2"):
        mean, err = obs[name]
        assert abs(mean - ex[name]) < 4 * err, (name, mean, err, ex[name])
    assert obs["Q2"][1] < 0.1 * ex["Q2"]  # a tight test: better than 10%


# --- the application: refusals ---------------------------------------------------------------


def composed(overrides):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        return compose(config_name="config", overrides=overrides)


def test_app_builds_the_u1_theory_and_refuses_bad_input_naming_the_key():
    theory = validate(composed(["action=u1", "lattice.L=6", "lattice.beta=3"]))
    assert theory == U1Theory(L=6, beta=3.0)
    with pytest.raises(ValueError, match=re.escape("lattice.beta must be > 0 (the Wilson action's coupling "
                                                   "beta = 1/g^2), got beta=0.0")):
        validate(composed(["action=u1", "lattice.beta=0"]))
    with pytest.raises(ValueError, match="lattice.d must be 2"):
        validate(composed(["action=u1", "lattice.d=3"]))
    with pytest.raises(ValueError, match="sampler.fourier_mass=1.0 is invalid: expected null for action=u1"):
        validate(composed(["action=u1", "sampler.fourier_mass=1.0"]))
    with pytest.raises(ValueError, match="task='tune_beta' is invalid"):
        validate(composed(["action=u1", "experiment=tune_beta"]))
    overrides = ["action=u1", "lattice.lam=0.3"]
    with pytest.raises(ValueError, match=re.escape("lattice.lam=0.3 is read by no stage of this run, so it is "
                                                   "refused: action=u1 has no coupling lam")):
        refuse_unread_overrides(composed(overrides), overrides)
    refuse_unread_overrides(composed(["lattice.lam=0.3"]), ["lattice.lam=0.3"])  # φ⁴ reads it


@pytest.mark.slow  # ~20 s on a shared 2-core CPU (compilation); the CLI command of issue 16 in-process
def test_app_runs_u1_end_to_end_with_exact_block_and_plots(tmp_path):
    import json

    from trivflow.app.experiment import format_summary, run

    cfg = composed(["action=u1", "lattice.L=4", "lattice.beta=2", "sampler.num_traj=200", "sampler.num_chains=4",
                    "sampler.num_therm=20", "progress=false", "compile_cache=null"])
    results = run(cfg, tmp_path)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["lattice"] == {"L": 4, "d": 2, "beta": 2.0}
    block = on_disk["runs"]["hmc"]
    assert set(block["observables"]) >= {"plaquette", "Q", "Q2", "chi_t", "W_1x1", "W_1x2", "W_2x2"}
    assert list(block["tau_int"]) == ["Q", "Q2", "plaquette"]
    assert block["exact"]["plaquette"] == pytest.approx(exact.plaquette(4, 2.0))
    assert block["exact"]["Q2"] == pytest.approx(exact.q2(4, 2.0))
    import arviz as az  # the rate of changes of the integer charge is the chains file's

    from trivflow.gauge.tunnelling import change_rate
    q = az.from_netcdf(tmp_path / "chains.nc").posterior["Q"].values
    assert block["observables"]["Q_change_rate"] == pytest.approx(list(change_rate(q)))
    assert block["observables"]["Q_change_rate"][0] > 0.1 and not any("frozen" in w for w in block["warnings"])
    assert (tmp_path / "plots" / "hmc_autocorr_Q.png").exists() and not list(tmp_path.glob("plots/*correlator*"))
    text = format_summary(results)
    assert text.splitlines()[0].startswith("L=4 d=2 beta=2.0") and "exact (u1): plaquette 0.69925" in text


def test_cli_refuses_bad_u1_input_with_one_line(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "trivflow.run", "action=u1", "lattice.beta=-1",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0 and not (tmp_path / "run" / "results.json").exists()
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["trivflow: error: lattice.beta must be > 0 (the Wilson action's coupling beta = 1/g^2), got "
                     "beta=-1.0"], proc.stderr[-2000:]
