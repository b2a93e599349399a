"""How often the topological charge changes along a chain, and how fast that rate falls with β.

τ_int(Q) needs a run many times longer than itself; where topology freezes no affordable run is,
and its Γ-method estimate is meaningless. The number of changes of the integer charge along the
chains is a measurement at any length: n changes in N chain-steps give the rate r = n/N per
trajectory (or independence-MH step), and n = 0 still says r ≲ 1/N. On the lattice Q changes only
when a plaquette angle passes through ±π, whose Wilson action is ≈ 2β above the vacuum's, so
r ∝ e^{−cβ} is expected at weak coupling (docs/theory.md#u1-tunnelling).

Conventions: ``q`` is the measured series of the geometric charge, shape ``(num_chains,
num_meas)``, one measurement per trajectory; a change is a step t → t + 1 with
rint(Q_{t+1}) ≠ rint(Q_t) (Q is an integer up to rounding, so rint only removes the rounding);
a jump by two units counts once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: fewer changes than this in some chain: its Q has not explored the sectors, and ⟨Q²⟩, χ_t and
#: τ_int(Q) of the run are not equilibrium estimates (:func:`frozen_charge_warning`)
MIN_CHANGES_PER_CHAIN = 10


def charge_changes(q) -> np.ndarray:
    """Number of changes of rint(Q) along each chain: Σ_t [rint(Q_{t+1}) ≠ rint(Q_t)].

    Args:
        q: the charge, shape ``(num_chains, num_meas)``.

    Returns:
        integer array of shape ``(num_chains,)``.
    """
    q = np.rint(np.asarray(q, dtype=float))
    if q.ndim != 2:
        raise ValueError(f"charge_changes: q must have shape (num_chains, num_meas), got {q.shape}")
    return np.count_nonzero(np.diff(q, axis=1), axis=1)


def change_rate(q) -> tuple[float, float]:
    """The rate r = n/N of changes of rint(Q) per step, with its error ``(r, δr)``.

    n = Σ_chains :func:`charge_changes`, N = num_chains · (num_meas − 1) steps. δr is the larger
    of the standard error of the per-chain rates over the independent chains (valid however the
    changes cluster in time) and the Poisson error √n/N with n replaced by 1 when no change
    occurred: a run without one reports the scale 1/N it could resolve, not an error of 0.
    """
    per_chain = charge_changes(q)
    steps = np.asarray(q).shape[1] - 1
    if steps < 1:
        raise ValueError("change_rate: need at least 2 measurements per chain")
    n, N = int(per_chain.sum()), per_chain.size * steps
    between = float(np.std(per_chain / steps, ddof=1) / math.sqrt(per_chain.size)) if per_chain.size > 1 else 0.0
    return n / N, max(between, math.sqrt(max(n, 1)) / N)


def frozen_charge_warning(q) -> list[str]:
    """A one-item list with a warning when some chain's rint(Q) changed fewer than
    :data:`MIN_CHANGES_PER_CHAIN` times, else ``[]``: the run's Q has not explored the topological
    sectors (topology freezing, or a run far too short), so ⟨Q²⟩, χ_t, τ_int(Q) and the errors of
    everything coupled to Q are not equilibrium estimates."""
    per_chain = charge_changes(q)
    if per_chain.min() >= MIN_CHANGES_PER_CHAIN:
        return []
    steps = per_chain.size * (np.asarray(q).shape[1] - 1)
    state = "frozen" if per_chain.sum() == 0 else "nearly frozen"
    return [f"topological charge {state}: rint(Q) changed {int(per_chain.sum())} times in {steps} chain-steps "
            f"(per chain {int(per_chain.min())}-{int(per_chain.max())}, fewer than {MIN_CHANGES_PER_CHAIN} in "
            f"{int(np.sum(per_chain < MIN_CHANGES_PER_CHAIN))} of {per_chain.size} chains): Q2, chi_t, tau_int(Q) "
            "and everything coupled to Q are NOT equilibrium estimates"]


@dataclass(frozen=True)
class RateFit:
    """Result of :func:`fit_rate_exponential`: r(β) = r₀ e^{−cβ}."""

    c: float
    c_err: float
    log_r0: float
    log_r0_err: float
    cov: np.ndarray
    #: Poisson deviance 2 Σ [n log(n/μ) − (n − μ)] (a χ² with ``dof`` degrees of freedom for Poisson counts)
    deviance: float
    dof: int


def fit_rate_exponential(beta, changes, steps, *, max_iter: int = 100, tol: float = 1e-12) -> RateFit:
    """Maximum-likelihood fit of counts n_i ~ Poisson(N_i r₀ e^{−c β_i}).

    Log-linear Poisson regression (log μ_i = log N_i + log r₀ − c β_i) by Newton's method on the
    concave log-likelihood Σ_i [n_i log μ_i − μ_i]; points with n_i = 0 enter as the upper limits
    they are. Errors from the inverse Fisher information Σ_i μ_i x_i x_iᵀ at the optimum, not
    rescaled by deviance/dof: changes that cluster in time (a change and its reversal a few steps
    apart) make the counts over-dispersed, and then deviance/dof > 1 says by how much these errors
    are too small.

    Args:
        beta: couplings β_i, ≥ 2 distinct values.
        changes: counts n_i ≥ 0, > 0 at ≥ 2 distinct β (else the likelihood grows without bound).
        steps: N_i > 0, the chain-steps each count was made in.
    """
    b, n, N = (np.asarray(a, dtype=float).ravel() for a in (beta, changes, steps))
    if not (b.size == n.size == N.size) or np.unique(b).size < 2:
        raise ValueError(f"fit_rate_exponential: need equal lengths and >= 2 distinct beta, got {b}, {n}, {N}")
    if np.any(n < 0) or np.any(N <= 0):
        raise ValueError(f"fit_rate_exponential: need changes >= 0 and steps > 0, got {n}, {N}")
    if np.unique(b[n > 0]).size < 2:
        raise ValueError(f"fit_rate_exponential: need changes > 0 at >= 2 distinct beta, got {n} at {b}: otherwise "
                         "the likelihood has no maximum (zero counts only bound the rate from above)")
    x = np.stack([np.ones_like(b), -b], axis=1)  # θ = (log r₀, c)
    # start from the weighted least squares of log((n + 1/2)/N): finite for n = 0
    y = np.log((n + 0.5) / N)
    theta = np.linalg.lstsq(x * np.sqrt(n + 0.5)[:, None], y * np.sqrt(n + 0.5), rcond=None)[0]

    def loglik(t):  # Σ [n log μ − μ] up to the constant Σ n log N
        eta = x @ t
        return float(np.sum(n * eta - N * np.exp(eta)))

    for _ in range(max_iter):
        mu = N * np.exp(x @ theta)
        step = np.linalg.solve(x.T @ (mu[:, None] * x), x.T @ (n - mu))
        while loglik(theta + step) < loglik(theta) and np.max(np.abs(step)) > tol:
            step = step / 2  # Newton on a concave function: halve until it does not go down hill
        theta = theta + step
        if np.max(np.abs(step)) < tol:
            break
    else:
        raise RuntimeError(f"fit_rate_exponential: no convergence in {max_iter} Newton steps")
    mu = N * np.exp(x @ theta)
    cov = np.linalg.inv(x.T @ (mu[:, None] * x))
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(n > 0, n * np.log(n / mu), 0.0)
    deviance = float(2 * np.sum(term - (n - mu)))
    return RateFit(c=float(theta[1]), c_err=float(math.sqrt(cov[1, 1])), log_r0=float(theta[0]),
                   log_r0_err=float(math.sqrt(cov[0, 0])), cov=cov, deviance=deviance, dof=b.size - 2)
