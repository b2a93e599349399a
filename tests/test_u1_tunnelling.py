"""Changes of the topological charge along a chain (trivflow.gauge.tunnelling): the count, the rate
and its error, the frozen-charge warning in results.json, and the Poisson fit of the rate's fall
with β against an independent minimiser and against counts drawn from a known rate."""

import math

import numpy as np
import pytest
from scipy import optimize

from trivflow.gauge import U1Theory
from trivflow.gauge.tunnelling import (
    MIN_CHANGES_PER_CHAIN,
    change_rate,
    charge_changes,
    fit_rate_exponential,
    frozen_charge_warning,
)


def test_changes_count_steps_where_the_integer_charge_differs():
    q = np.array([[0.0, 1e-11, 1.0, 1.0 - 3e-12, -1.0, -1.0, 1.0],   # 0→1, 1→−1, −1→1: a jump by 2 counts once
                  [2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]])              # frozen
    assert charge_changes(q).tolist() == [3, 0]
    rate, err = change_rate(q)
    assert rate == pytest.approx(3 / 12)
    per_chain = np.array([3, 0]) / 6
    assert err == pytest.approx(max(np.std(per_chain, ddof=1) / math.sqrt(2), math.sqrt(3) / 12))
    with pytest.raises(ValueError, match="shape"):
        charge_changes(np.zeros(5))


def test_a_run_without_a_change_reports_the_rate_it_could_resolve_not_zero_error():
    q = np.zeros((4, 101))
    assert change_rate(q) == (0.0, pytest.approx(1 / 400))


def test_frozen_charge_warning_names_the_counts():
    rng = np.random.default_rng(0)
    mixing = np.cumsum(rng.choice([-1, 0, 1], size=(4, 200)), axis=1).astype(float)
    assert frozen_charge_warning(mixing) == []
    stuck = mixing.copy()
    stuck[2] = 1.0  # one chain never moves
    (msg,) = frozen_charge_warning(stuck)
    assert "nearly frozen" in msg and f"fewer than {MIN_CHANGES_PER_CHAIN} in 1 of 4 chains" in msg
    (msg,) = frozen_charge_warning(np.ones((3, 50)))
    assert msg.startswith("topological charge frozen: rint(Q) changed 0 times in 147 chain-steps")


def test_summary_of_a_frozen_u1_run_warns_and_reports_the_rate():
    from trivflow.hmc.driver import ChainResult
    from trivflow.summary import summarize_run

    rng = np.random.default_rng(1)
    C, N = 4, 300
    q = np.repeat(rng.integers(-2, 3, size=(C, 1)), N, axis=1).astype(float)  # each chain in its own sector
    obs = {"Q": q, "Q2": q**2, "plaquette": 0.9 + 0.01 * rng.standard_normal((C, N))}
    zeros = np.zeros((C, N))
    result = ChainResult(obs, zeros, np.ones((C, N), bool), np.ones((C, N)), zeros.astype(bool), None, C, N, 0, 1,
                         1.0, 0.0, 0.0)
    block = summarize_run(result, U1Theory(L=8, beta=2.0), sampler="hmc")
    assert block["observables"]["Q_change_rate"] == [0.0, pytest.approx(1 / (C * (N - 1)))]
    assert any(w.startswith("topological charge frozen") for w in block["warnings"])


def test_phi4_theories_have_no_theory_warnings():
    from trivflow.lattice import Phi4Theory
    from trivflow.theory import analysis_warnings

    assert analysis_warnings(Phi4Theory(L=4), {"M": np.zeros((2, 10))}) == []


def _neg_loglik(theta, beta, n, N):
    eta = np.log(N) + theta[0] - theta[1] * beta
    return float(np.sum(np.exp(eta) - n * eta))


def test_rate_fit_is_the_poisson_maximum_likelihood_of_an_independent_minimiser():
    beta = np.array([2.0, 3.125, 4.5, 6.125, 8.0, 12.5])
    n = np.array([32458, 10656, 1289, 388, 1, 0])
    N = np.array([63984, 63984, 63984, 319992, 63984, 63984])
    fit = fit_rate_exponential(beta, n, N)
    ref = optimize.minimize(_neg_loglik, x0=[0.0, 1.0], args=(beta, n, N), method="Nelder-Mead",
                            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000})
    assert fit.log_r0 == pytest.approx(ref.x[0], abs=1e-6) and fit.c == pytest.approx(ref.x[1], abs=1e-6)
    # the covariance is the inverse of the numerical Hessian of −log L at the optimum
    h = 1e-4
    hess = np.empty((2, 2))
    for i in range(2):
        for j in range(2):
            def f(di, dj):
                t = np.array([fit.log_r0, fit.c])
                t[i] += di
                t[j] += dj
                return _neg_loglik(t, beta, n, N)
            hess[i, j] = (f(h, h) - f(h, -h) - f(-h, h) + f(-h, -h)) / (4 * h * h)
    np.testing.assert_allclose(fit.cov, np.linalg.inv(hess), rtol=1e-4)
    mu = N * np.exp(fit.log_r0 - fit.c * beta)
    dev = 2 * np.sum(np.where(n > 0, n * np.log(np.where(n > 0, n, 1) / mu), 0.0) - (n - mu))
    assert fit.deviance == pytest.approx(dev) and fit.dof == 4


def test_rate_fit_recovers_a_known_rate_within_its_errors():
    rng = np.random.default_rng(7)
    beta = np.array([2.0, 4.0, 6.0, 8.0, 10.0])
    N = np.full(5, 20000.0)
    pulls = []
    for _ in range(200):
        n = rng.poisson(N * 0.8 * np.exp(-1.3 * beta))
        fit = fit_rate_exponential(beta, n, N)
        pulls.append((fit.c - 1.3) / fit.c_err)
    pulls = np.array(pulls)
    # 200 fits: the pull of c has mean 0 and width 1 (within 4σ of their sampling errors)
    assert abs(pulls.mean()) < 4 / math.sqrt(200) and abs(pulls.std() - 1) < 4 / math.sqrt(2 * 200)


def test_rate_fit_refuses_what_it_cannot_fit():
    with pytest.raises(ValueError, match="no maximum"):
        fit_rate_exponential([2, 4], [0, 0], [100, 100])
    with pytest.raises(ValueError, match="no maximum"):  # one count and a zero: c -> infinity
        fit_rate_exponential([2, 4, 4], [50, 0, 0], [100, 100, 100])
    with pytest.raises(ValueError, match="distinct beta"):
        fit_rate_exponential([2, 2], [3, 1], [100, 100])
