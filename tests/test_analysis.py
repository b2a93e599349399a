"""Tests of trivflow.analysis (Γ-method, derived quantities, binning).

AR(1) processes x_{i+1} = ρ x_i + √(1−ρ²) η_i (stationary start, Var x = 1) have
ρ(t) = ρ^t and τ_int = (1+ρ)/(2(1−ρ)), which we recover; pyerrors 2.17 serves as reference.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trivflow.analysis import (
    GammaResult,
    Primaries,
    autocovariance,
    bin_series,
    binned_error,
    derived,
    gamma_method,
    tau_int,
)
from trivflow.analysis.gamma import _next_fast_len

pe = pytest.importorskip("pyerrors")


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def ar1(rho: float, n_rep: int, n: int, seed: int, noise=None) -> np.ndarray:
    """Stationary AR(1) chains of shape (n_rep, n) with unit variance."""
    rng = np.random.default_rng(seed)
    eta = rng.standard_normal((n_rep, n)) if noise is None else noise
    c = math.sqrt(1.0 - rho * rho)
    u = c * eta
    u[:, 0] = eta[:, 0]  # x_0 = η_0 ~ N(0, 1): stationary start
    try:
        from scipy.signal import lfilter
    except ImportError:  # pragma: no cover - scipy ships with jax
        x = np.empty((n_rep, n))
        x[:, 0] = u[:, 0]
        for i in range(1, n):
            x[:, i] = rho * x[:, i - 1] + u[:, i]
        return x
    return lfilter([1.0], [1.0, -rho], u, axis=-1)


def tau_exact(rho: float) -> float:
    return (1.0 + rho) / (2.0 * (1.0 - rho))


def var_mean_exact(rho: float, n_rep: int, n: int) -> float:
    """Exact Var of the global mean of n_rep independent stationary AR(1) chains of length n."""
    t = np.arange(1, n)
    per_chain = (n + 2.0 * np.sum((n - t) * rho**t)) / n**2
    return per_chain / n_rep


def pe_obs(x: np.ndarray, s_tau: float = 4.0):
    x = np.atleast_2d(x)
    o = pe.Obs(list(x), [f"ens|r{i}" for i in range(x.shape[0])])
    o.gamma_method(S=s_tau)
    return o


def pe_dtau_ours(o, res: GammaResult) -> float:
    """Our δτ formula τ√((4W+2)/N) rebuilt from pyerrors' Madras–Sokal δτ (same W)."""
    n, w = res.n_total, res.window
    tau_raw = o.e_tauint["ens"] * (1 + 1 / n) / (1 + (2 * w + 1) / n)
    return o.e_dtauint["ens"] * (o.e_tauint["ens"] / tau_raw) * math.sqrt(
        (4 * w + 2) / (4 * w + 2 - 4 * tau_raw)
    )


@pytest.fixture(scope="module")
def ar_cache():
    cache = {}

    def get(rho, n_rep, n, seed):
        key = (rho, n_rep, n, seed)
        if key not in cache:
            cache[key] = ar1(rho, n_rep, n, seed)
        return cache[key]

    return get


# ----------------------------------------------------------------------------------------------
# Γ(t) itself
# ----------------------------------------------------------------------------------------------


def _is_5_smooth(m: int) -> bool:
    for p in (2, 3, 5):
        while m % p == 0:
            m //= p
    return m == 1


def test_next_fast_len():
    for n in [1, 2, 7, 11, 97, 1000, 1001, 30001, 65537]:
        m = _next_fast_len(n)
        assert m >= n and _is_5_smooth(m)
        assert not any(_is_5_smooth(j) for j in range(n, m))  # the smallest such
    assert _next_fast_len(1001) == 1024


@pytest.mark.parametrize("n_rep,n", [(1, 37), (3, 50), (5, 11)])
def test_autocovariance_equals_direct_sum(n_rep, n):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n_rep, n)) + 0.3
    d = x - x.mean()
    w_max = n - 1
    direct = np.array(
        [sum(d[r, : n - t] @ d[r, t:] for r in range(n_rep)) / (n_rep * n - n_rep * t)
         for t in range(w_max + 1)]
    )
    np.testing.assert_allclose(autocovariance(d, w_max), direct, rtol=1e-10, atol=1e-13)
    res = gamma_method(x, w_max=w_max, s_tau=4.0)
    np.testing.assert_allclose(res.gamma, direct, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(res.rho, direct / direct[0], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(
        res.tau_int_of_w, 0.5 + np.concatenate([[0.0], np.cumsum(direct[1:] / direct[0])]),
        rtol=1e-10, atol=1e-12,
    )


def test_one_dim_equals_single_replica(ar_cache):
    x = ar_cache(0.5, 1, 4000, 3)
    a, b = gamma_method(x[0]), gamma_method(x)
    assert (a.mean, a.err, a.tau_int, a.window, a.n_replicas) == (
        b.mean, b.err, b.tau_int, b.window, b.n_replicas)


# ----------------------------------------------------------------------------------------------
# AR(1): known τ_int and error of the mean
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9, 0.95])
@pytest.mark.parametrize("n_rep", [1, 8])
def test_ar1_recovers_tau_and_error(ar_cache, rho, n_rep):
    n_total = 80_000
    x = ar_cache(rho, n_rep, n_total // n_rep, 100 + int(100 * rho) + n_rep)
    res = gamma_method(x, s_tau=4.0)
    tau = tau_exact(rho)
    assert res.n_total == n_total and res.n_replicas == n_rep
    # τ within 3 of its stated errors; stated error sane
    assert abs(res.tau_int - tau) < 3 * res.tau_int_err, (res.tau_int, res.tau_int_err, tau)
    assert 0 < res.tau_int_err / res.tau_int < 0.15
    # the window is a few τ (S_τ = 4) and not at the w_max limit
    assert 1 <= res.window < 40 * tau + 10
    # error of the mean vs the exact one: δσ/σ ≈ ½ δτ/τ
    err_exact = math.sqrt(var_mean_exact(rho, n_rep, n_total // n_rep))
    assert abs(res.err / err_exact - 1) < 3 * 0.5 * res.tau_int_err / res.tau_int + 0.01
    assert math.isclose(res.err, math.sqrt(2 * tau * 1.0 / n_total), rel_tol=0.25)
    # and the mean itself is consistent with 0
    assert abs(res.mean) < 4 * err_exact
    # internal consistency: σ² = 2 τ_int Γ(0)(1+1/N)/N, δτ = τ√((4W+2)/N)
    assert math.isclose(res.err**2, 2 * res.tau_int * res.gamma[0] * (1 + 1 / n_total) / n_total,
                        rel_tol=1e-12)
    assert math.isclose(res.tau_int_err, res.tau_int * math.sqrt((4 * res.window + 2) / n_total),
                        rel_tol=1e-12)
    # the reported τ is the bias-corrected τ_int(W)
    w = res.window
    assert math.isclose(res.tau_int, max(res.tau_int_of_w[w], 0.5) * (1 + (2 * w + 1) / n_total)
                        / (1 + 1 / n_total), rel_tol=1e-12)
    # ρ(t) close to ρ^t at small t
    assert abs(res.rho[1] - rho) < 0.05


def test_tau_int_convenience(ar_cache):
    x = ar_cache(0.9, 8, 10_000, 190 + 8)
    res = gamma_method(x)
    assert tau_int(x) == (res.tau_int, res.tau_int_err, res.window)


def test_large_multichain_uses_one_fft_pass(monkeypatch):
    """64 chains × 20 000 points: the autocorrelation of all chains comes from one batched FFT pair
    (O(N log N), not an O(N W) sum over lags). The cost itself is measured in benchmarks/, not here:
    a timed assertion fails on a loaded machine."""
    calls = []
    rfft = np.fft.rfft
    monkeypatch.setattr(np.fft, "rfft", lambda a, *args, **kw: calls.append(np.shape(a)) or rfft(a, *args, **kw))
    x = ar1(0.95, 64, 20_000, seed=7)
    res = gamma_method(x)
    assert calls == [(64, 20_000)]
    assert res.gamma.shape == (10_001,)
    assert abs(res.tau_int - tau_exact(0.95)) < 3 * res.tau_int_err
    assert res.tau_int_err / res.tau_int < 0.05


# ----------------------------------------------------------------------------------------------
# Comparison with pyerrors
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9, 0.95])
def test_matches_pyerrors_single_replica(ar_cache, rho):
    """One replica: same estimator, window and bias correction as pyerrors → agreement to round-off.

    Only δτ differs by construction (Wolff eq. (42) vs pyerrors' Madras–Sokal form); it is checked
    after converting pyerrors' number.
    """
    x = ar_cache(rho, 1, 20_000, 300 + int(100 * rho))
    res = gamma_method(x, s_tau=4.0)
    o = pe_obs(x, 4.0)
    assert res.window == o.e_windowsize["ens"]
    assert math.isclose(res.mean, o.value, rel_tol=1e-12, abs_tol=1e-15)
    assert math.isclose(res.tau_int, o.e_tauint["ens"], rel_tol=1e-9)
    assert math.isclose(res.err, o.dvalue, rel_tol=1e-9)
    assert math.isclose(res.err_err, o.ddvalue, rel_tol=1e-9)
    assert math.isclose(res.tau_int_err, pe_dtau_ours(o, res), rel_tol=1e-9)
    # and the two δτ conventions differ by at most ~20 % here
    assert 1.0 <= res.tau_int_err / o.e_dtauint["ens"] < 1.2


@pytest.mark.parametrize("rho", [0.5, 0.9, 0.95])
@pytest.mark.parametrize("n_rep", [4, 16])
def test_matches_pyerrors_multi_replica(ar_cache, rho, n_rep):
    """R replicas: exact agreement with center="replica" (pyerrors' convention); with the default
    global mean the difference is O(τ/N_r) and well within the stated errors."""
    x = ar_cache(rho, n_rep, 40_000 // n_rep, 500 + int(100 * rho) + n_rep)
    o = pe_obs(x, 4.0)
    rep = gamma_method(x, s_tau=4.0, center="replica")
    assert rep.window == o.e_windowsize["ens"]
    assert math.isclose(rep.tau_int, o.e_tauint["ens"], rel_tol=1e-9)
    assert math.isclose(rep.err, o.dvalue, rel_tol=1e-9)
    assert math.isclose(rep.tau_int_err, pe_dtau_ours(o, rep), rel_tol=1e-9)

    glo = gamma_method(x, s_tau=4.0)
    assert math.isclose(glo.mean, o.value, rel_tol=1e-12, abs_tol=1e-15)
    # per-replica centering lowers every ρ(t) by ≈ 2τ/N_r, i.e. τ_int(W) by ≈ 2τW/N_r: allow the
    # statistical error plus that systematic shift
    n_r = x.shape[1]
    syst = 2 * glo.tau_int * glo.window / n_r
    assert abs(glo.tau_int - o.e_tauint["ens"]) < glo.tau_int_err + syst
    assert abs(glo.err / o.dvalue - 1) < 0.5 * (glo.tau_int_err + syst) / glo.tau_int
    if rho == 0.5:  # N_r ≫ W: agreement well within the stated error
        assert abs(glo.tau_int - o.e_tauint["ens"]) < glo.tau_int_err
    # the global mean keeps between-replica fluctuations: Γ(t) is not smaller on average
    assert glo.gamma[0] >= rep.gamma[0]


# ----------------------------------------------------------------------------------------------
# derived quantities
# ----------------------------------------------------------------------------------------------


def ratio_inputs(n_rep: int, n: int, seed: int):
    """Correlated primaries a = 1 + 0.2 x, b = 2 + 0.1 (0.6 x + 0.8 y), x, y AR(1) (ρ 0.9, 0.5)."""
    x = ar1(0.9, n_rep, n, seed)
    y = ar1(0.5, n_rep, n, seed + 1)
    return 1.0 + 0.2 * x, 2.0 + 0.1 * (0.6 * x + 0.8 * y)


def ratio(m):
    return m[0] / m[1]


@pytest.mark.parametrize("n_rep", [1, 4])
def test_derived_ratio_vs_hand_and_pyerrors(n_rep):
    a, b = ratio_inputs(n_rep, 20_000 // n_rep, 11 + n_rep)
    abar, bbar = a.mean(), b.mean()
    res = derived(ratio, [a, b])
    assert math.isclose(res.mean, abar / bbar, rel_tol=1e-14)

    # by hand: project with the exact gradient (1/b̄, −ā/b̄²) and analyse as a primary
    proj = abar / bbar + (a - abar) / bbar - abar * (b - bbar) / bbar**2
    hand = gamma_method(proj)
    assert hand.window == res.window
    assert math.isclose(res.err, hand.err, rel_tol=1e-7)
    assert math.isclose(res.tau_int, hand.tau_int, rel_tol=1e-7)
    # same with a user-supplied gradient: identical to the hand projection up to round-off
    exact = derived(ratio, [a, b], grad=[1 / bbar, -abar / bbar**2])
    assert math.isclose(exact.err, hand.err, rel_tol=1e-10)

    # pyerrors: Obs arithmetic (autograd gradient)
    names = [f"ens|r{i}" for i in range(n_rep)]
    oa, ob = pe.Obs(list(a), names), pe.Obs(list(b), names)
    q = oa / ob
    q.gamma_method(S=4.0)
    rep = derived(ratio, [a, b], center="replica")
    assert rep.window == q.e_windowsize["ens"]
    assert math.isclose(rep.err, q.dvalue, rel_tol=1e-7)
    assert math.isclose(rep.tau_int, q.e_tauint["ens"], rel_tol=1e-7)
    assert math.isclose(res.mean, q.value, rel_tol=1e-12)
    assert abs(res.tau_int - q.e_tauint["ens"]) < res.tau_int_err
    assert abs(res.err / q.dvalue - 1) < 0.5 * res.tau_int_err / res.tau_int
    if n_rep == 1:
        assert math.isclose(res.err, q.dvalue, rel_tol=1e-7)

    # the correlation matters: naive uncorrelated propagation would differ noticeably
    ea, eb = gamma_method(a).err, gamma_method(b).err
    naive = math.sqrt((ea / bbar) ** 2 + (abar * eb / bbar**2) ** 2)
    assert abs(naive / res.err - 1) > 0.05


def test_derived_input_forms_and_identity(ar_cache):
    x = ar_cache(0.9, 4, 5000, 42)
    y = 3.0 + 0.5 * ar_cache(0.5, 4, 5000, 43)
    r_list = derived(lambda m: m[0] * m[1], [x, y])
    r_arr = derived(lambda m: m[0] * m[1], np.stack([x, y]))
    r_tup = derived(lambda m: m[0] * m[1], (x, y))
    assert r_list.err == r_arr.err == r_tup.err
    # f = identity of one primary reproduces gamma_method
    g = gamma_method(x)
    d = derived(lambda m: m[0], [x])
    assert d.window == g.window
    assert math.isclose(d.err, g.err, rel_tol=1e-9)
    assert math.isclose(d.mean, g.mean, rel_tol=1e-14)
    # linear f: exact error propagation of a linear combination
    lin = derived(lambda m: 2 * m[0] - 3 * m[1], [x, y])
    direct = gamma_method(2 * x - 3 * y)
    assert math.isclose(lin.err, direct.err, rel_tol=1e-8)
    assert lin.window == direct.window
    # f returning numpy scalars / 0-d arrays is fine
    assert derived(lambda m: np.asarray(m[0] ** 2), [y]).mean == pytest.approx(y.mean() ** 2)


def test_derived_of_shared_primaries(ar_cache):
    """Primaries prepared once serve several derived quantities with the same numbers, bit for bit,
    as passing the data each time; F depending on some of them only has the error of the linear
    combination of those, computed directly; F depending on none is exact."""
    x = ar_cache(0.9, 4, 5000, 42)
    y = 3.0 + 0.5 * ar_cache(0.5, 4, 5000, 43)
    z = 1.0 + ar_cache(0.7, 4, 5000, 44)
    prim = Primaries([x, y, z])
    fs = [lambda m: m[0] * m[2], lambda m: 2 * m[1] - 3 * m[2], lambda m: m[1] / m[2] - m[0] ** 2]
    for f in fs:
        shared, each = derived(f, prim), derived(f, [x, y, z])
        for field in dataclasses.fields(GammaResult):
            np.testing.assert_array_equal(getattr(shared, field.name), getattr(each, field.name), err_msg=field.name)
    lin = derived(lambda m: 2 * m[1] - 3 * m[2], prim)
    direct = gamma_method(2 * y - 3 * z)
    assert math.isclose(lin.err, direct.err, rel_tol=1e-8) and lin.window == direct.window
    # a function of none of them is exact
    const = derived(lambda m: 1.5, prim)
    assert const.mean == 1.5 and const.err == 0.0
    np.testing.assert_array_equal(prim.means, np.stack([x, y, z]).mean(axis=(1, 2)))
    with pytest.raises(ValueError, match="read-only"):  # shared by every call: a caller cannot corrupt it
        prim.means[0] = 0.0


def test_derived_tiny_and_zero_means():
    """Finite-difference step adapts to standard error and to the magnitude of the mean."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal(4000)
    for scale, offset in [(1e-9, 1e-3), (1e-3, 0.0), (1.0, 1e6), (1e6, 0.0)]:
        a = offset + scale * base
        res = derived(lambda m: m[0] ** 2, [a])
        gm = gamma_method(a)
        expected = 2 * abs(gm.mean) * gm.err
        assert math.isclose(res.err, expected, rel_tol=1e-5, abs_tol=1e-300), (scale, offset)


def test_derived_errors():
    a = np.ones(100) + np.arange(100) % 3
    with pytest.raises(ValueError, match="same shape"):
        derived(ratio, [a, a[:50]])
    with pytest.raises(ValueError, match="empty"):
        derived(ratio, [])
    with pytest.raises(ValueError, match="scalar"):
        derived(lambda m: m, [a, a])
    with pytest.raises(ValueError, match="not finite"):
        derived(lambda m: float("nan"), [a])
    with pytest.raises(ValueError, match="grad must have shape"):
        derived(ratio, [a, a], grad=[1.0])
    with pytest.raises(ValueError, match="callable"):
        derived(3.0, [a])
    with pytest.raises(ValueError, match=r"data_list\[1\] contains 2 non-finite"):
        derived(ratio, [a, np.where(np.arange(100) < 2, np.nan, a)])


def test_derived_constant_result_no_warnings():
    a = 1.0 + np.random.default_rng(0).standard_normal(500)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = derived(lambda m: m[0] - m[1], [a, a])
    assert res.err == 0.0 and res.tau_int == 0.5 and res.window == 0


# ----------------------------------------------------------------------------------------------
# edge cases, options and invariances
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data,match",
    [
        (np.array([]), "empty"),
        (np.zeros((3, 0)), "empty"),
        (np.arange(9.0), "at least 10"),
        (np.arange(20.0).reshape(20, 1), "at least 2 measurements"),
        (np.zeros((2, 3, 4)), "1-D .* or 2-D"),
        (np.array(3.0), "1-D .* or 2-D"),
        (np.ones(20) + 1j, "real"),
        ([[1.0, 2.0, 3.0], [1.0, 2.0]], "rectangular"),
        (np.array(["a"] * 20), "numeric"),
    ],
)
def test_bad_input_raises(data, match):
    with pytest.raises(ValueError, match=match):
        gamma_method(data)


def test_non_finite_values_are_counted():
    x = np.random.default_rng(0).standard_normal((2, 100))
    x[0, 3], x[1, 7], x[1, 9] = np.nan, np.inf, -np.inf
    with pytest.raises(ValueError, match=r"contains 3 non-finite value\(s\) .* out of 200"):
        gamma_method(x)


@pytest.mark.parametrize("kw,match", [
    ({"s_tau": -1.0}, "s_tau"), ({"s_tau": float("nan")}, "s_tau"),
    ({"w_max": 0}, "w_max"), ({"w_max": 100}, "w_max"), ({"w_max": 2.5}, "w_max"),
    ({"center": "local"}, "center"),
])
def test_bad_options_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        gamma_method(np.random.default_rng(0).standard_normal(100), **kw)


@pytest.mark.parametrize("value", [0.0, 0.1, -3.7e5, 1e-300])
@pytest.mark.parametrize("shape", [(50,), (4, 25)])
def test_constant_series(value, shape):
    x = np.full(shape, value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = gamma_method(x)
        d = res.to_dict()
    assert res.mean == value
    assert (res.err, res.tau_int, res.tau_int_err, res.window, res.err_err) == (0.0, 0.5, 0.0, 0, 0.0)
    assert np.all(res.gamma == 0) and res.rho[0] == 1 and np.all(res.rho[1:] == 0)
    assert np.all(res.tau_int_of_w == 0.5)
    json.dumps(d, allow_nan=False)


def test_window_not_found_warns():
    x = ar1(0.99, 1, 2000, seed=9)
    with pytest.warns(RuntimeWarning, match="window criterion"):
        res = gamma_method(x, w_max=5)
    assert res.window == 5 and res.gamma.shape == (6,)


def test_s_tau_zero_is_naive_error():
    x = ar1(0.9, 2, 5000, seed=2)
    res = gamma_method(x, s_tau=0.0)
    n = x.size
    assert res.window == 0 and res.tau_int == pytest.approx(0.5, rel=1e-12)
    assert res.err == pytest.approx(x.std() / math.sqrt(n), rel=1e-3)
    # pyerrors (one replica): Γ(0)/(N−1); ours Γ(0)(1+1/N)/N — equal up to a factor 1 − 1/N²
    one = gamma_method(x[0], s_tau=0.0)
    assert one.err == pytest.approx(pe_obs(x[0], 0.0).dvalue, rel=1e-7)


def test_anticorrelated_series_clipped_to_naive():
    """Alternating-sign AR(1) (ρ = −0.8): τ_int(W) < ½ is reported as ½ (as pyerrors)."""
    x = ar1(-0.8, 1, 10_000, seed=4)
    res = gamma_method(x)
    assert res.window >= 1
    assert res.tau_int_of_w[1] < 0.5
    assert res.tau_int == pytest.approx(0.5 * (1 + (2 * res.window + 1) / x.size) / (1 + 1 / x.size))
    assert res.err > 0


def test_result_is_frozen_and_json(ar_cache):
    res = gamma_method(ar_cache(0.5, 1, 4000, 3))
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.tau_int = 3.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        res.gamma[0] = 1.0
    d = json.loads(json.dumps(res.to_dict(arrays=True), allow_nan=False))
    assert d["window"] == res.window and len(d["gamma"]) == res.w_max + 1 == 2001
    assert d["tau_int"] == res.tau_int and d["n_total"] == 4000 and d["s_tau"] == 4.0
    assert "gamma" not in res.to_dict(arrays=False)
    assert "gamma" not in res.to_dict() and len(json.dumps(res.to_dict())) < 400  # concise by default
    assert "τ_int" in str(res)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rho=st.floats(0.0, 0.9),
    n_rep=st.integers(1, 4),
    shift=st.floats(-100.0, 100.0),
    scale=st.floats(1e-3, 1e3) | st.floats(-1e3, -1e-3),
)
def test_invariances(seed, rho, n_rep, shift, scale):
    x = ar1(rho, n_rep, 400, seed)
    base = gamma_method(x)
    moved = gamma_method(shift + scale * x)
    assert moved.window == base.window
    assert moved.tau_int == pytest.approx(base.tau_int, rel=1e-6)
    assert moved.err == pytest.approx(abs(scale) * base.err, rel=1e-6)
    assert moved.mean == pytest.approx(shift + scale * base.mean, rel=1e-9, abs=1e-9 * abs(scale))
    # replica order is irrelevant
    perm = gamma_method(x[::-1])
    assert perm.window == base.window and perm.err == pytest.approx(base.err, rel=1e-10)


# ----------------------------------------------------------------------------------------------
# binning
# ----------------------------------------------------------------------------------------------


def test_bin_series():
    x = np.arange(23.0)
    b = bin_series(x, 5)
    np.testing.assert_allclose(b, [2.0, 7.0, 12.0, 17.0])  # tail 20..22 dropped
    y = np.stack([x, 2 * x])
    assert bin_series(y, 4).shape == (2, 5)
    np.testing.assert_allclose(bin_series(y, 4)[1], 2 * bin_series(x, 4))
    np.testing.assert_allclose(bin_series(x, 1), x)
    for bad in [0, -1, 2.5, True]:
        with pytest.raises(ValueError, match="bin_size"):
            bin_series(x, bad)
    with pytest.raises(ValueError, match="no complete bin"):
        bin_series(x, 24)


def test_binned_error():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 1005))
    b = x[:, :1000].reshape(3, 100, 10).mean(axis=-1).ravel()
    assert binned_error(x, 10) == pytest.approx(b.std(ddof=1) / math.sqrt(b.size), rel=1e-12)
    with pytest.raises(ValueError, match="at least 2 bins"):
        binned_error(x[0], 600)
    with pytest.raises(ValueError, match="1 non-finite"):
        binned_error(np.where(np.arange(50) == 3, np.nan, 1.0), 5)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        binned_error(np.zeros((2, 2, 20)), 5)


def test_binned_error_approaches_gamma_error(ar_cache):
    x = ar_cache(0.9, 8, 10_000, 190 + 8)  # τ = 9.5
    g = gamma_method(x)
    assert binned_error(x, 1) < 0.4 * g.err  # naive error far too small
    assert binned_error(x, 500) == pytest.approx(g.err, rel=0.2)


# ----------------------------------------------------------------------------------------------
# slow: calibration of the stated errors over many independent runs
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("rho,n", [(0.9, 20_000), (0.5, 5_000)])
def test_error_calibration_over_many_runs(rho, n):
    """Over 400 independent AR(1) runs the stated σ(ā) and δτ match the observed spreads."""
    runs = ar1(rho, 400, n, seed=2024)
    res = [gamma_method(r) for r in runs]
    means = np.array([r.mean for r in res])
    errs = np.array([r.err for r in res])
    taus = np.array([r.tau_int for r in res])
    dtaus = np.array([r.tau_int_err for r in res])
    cover = np.mean(np.abs(means) < errs)
    assert abs(cover - 0.683) < 0.07
    assert np.std(means) == pytest.approx(math.sqrt(var_mean_exact(rho, 1, n)), rel=0.1)
    # τ: little bias (window truncation), stated δτ of the right size
    assert abs(np.mean(taus) - tau_exact(rho)) < 3 * np.std(taus) / math.sqrt(len(taus)) + 0.02 * tau_exact(rho)
    assert 0.7 < np.std(taus) / np.mean(dtaus) < 1.4


@pytest.mark.slow
def test_global_vs_replica_centering_bias():
    """Many short chains: per-replica centering (pyerrors) biases τ low by O(τ W / N_r)."""
    rho, n_rep, n = 0.95, 64, 1000  # τ = 19.5, N_r ≈ 50 τ
    x = ar1(rho, n_rep, n, seed=77)
    glo, rep = gamma_method(x), gamma_method(x, center="replica")
    tau = tau_exact(rho)
    assert abs(glo.tau_int - tau) < 3 * glo.tau_int_err
    assert rep.tau_int < glo.tau_int


def test_summary_of_a_run_with_divergences_warns_and_refuses_non_finite_measurements():
    """A rejected divergent trajectory with ΔH = −2000 makes e^{−ΔH} overflow: no ⟨e^{−ΔH}⟩,
    a warning with the count; NaN measurements stop the analysis naming run and chains."""
    from trivflow.hmc.driver import ChainResult
    from trivflow.lattice.theory import Phi4Theory
    from trivflow.summary import summarize_phi4_run

    rng = np.random.default_rng(0)
    C, N, L = 2, 400, 4
    obs = {"M": rng.normal(size=(C, N)), "absM": np.abs(rng.normal(size=(C, N))), "M2": rng.random((C, N)),
           "G0": rng.random((C, N)), "C": rng.random((C, N, L // 2 + 1))}
    delta_h = rng.normal(scale=0.1, size=(C, N))
    delta_h[1, 7] = -2000.0
    divergent = np.zeros((C, N), bool)
    divergent[1, 7] = True
    result = ChainResult(obs, delta_h, ~divergent, np.ones((C, N)), divergent, None, C, N, 0, 1, 1.0, 0.0, 0.0)
    theory = Phi4Theory(L=L, d=2, beta=0.5, lam=0.5)
    block = summarize_phi4_run(result, theory, sampler="fhmc")
    assert block["exp_minus_dH"] == [None, None] and block["num_divergent"] == 1
    assert block["warnings"][0].startswith("1 divergent trajectories") and "undefined" in block["warnings"][0]
    obs["M"][1, 5] = np.nan
    with pytest.raises(ValueError, match=r"fhmc: 1 non-finite measurements of M in chains \[1\]"):
        summarize_phi4_run(result, theory, sampler="fhmc")
