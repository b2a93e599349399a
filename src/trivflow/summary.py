"""Summarise a sampler run into the ``runs.<name>`` block of results.json (docs/results.md).

Every error is a Γ-method error (docs/theory.md#gamma-method) over all chains as replicas; derived
quantities (ξ, the connected susceptibility) use Wolff's linearised error propagation.

Mixing: the Γ-method treats the chains as replicas of one Markov process, which holds only if
they sample the same distribution. The rank-normalised split R-hat of ArviZ (Vehtari et al.
2021) of M, |M| and M² is recorded in ``mixing``; R-hat(M) > :data:`RHAT_MAX` (chains that do
not mix, e.g. the broken phase where no chain changes the sign of M) puts a warning in
``warnings`` and ``mixing.reliable = false``: the errors of M, χ_conn and ξ are not reliable.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from .analysis import derived, gamma_method
from .hmc.driver import ChainResult
from .lattice.observables import default_plateau, effective_mass
from .lattice.theory import Phi4Theory


def xi_from_means(means: np.ndarray, plateau: tuple[int, int]) -> float:
    """ξ = 1/m̄ from the vector of means ``[c(0), …, c(L/2), M]``.

    C(t) = ⟨c(t)⟩ − ⟨M⟩² is the connected correlator; m̄ the mean of m_eff(t) over the
    plateau. Returns NaN when the effective mass is undefined (noise-dominated C).
    """
    c = means[:-1] - means[-1] ** 2
    t_min, t_max = plateau
    m = effective_mass(c)[t_min - 1 : t_max]
    m_bar = np.mean(m)
    return float(1.0 / m_bar) if np.isfinite(m_bar) and m_bar > 0 else float("nan")


def correlation_length(correlator: np.ndarray, magnetization: np.ndarray, L: int,
                       plateau: tuple[int, int] | None = None, s_tau: float = 4.0):
    """ξ with its Γ-method error from per-chain series ``c(t)`` (R, N, L/2+1) and ``M`` (R, N).

    Returns None where ξ is undefined: L < 4 (no effective mass), or a correlator whose
    plateau is noise (arccosh argument < 1), as in very short runs.
    """
    if L < 4:
        return None
    plateau = plateau or default_plateau(L)
    data = [correlator[..., t] for t in range(correlator.shape[-1])] + [magnetization]
    means = np.array([np.mean(a) for a in data])
    if not np.isfinite(xi_from_means(means, plateau)):
        return None
    try:
        return derived(lambda m: xi_from_means(np.asarray(m), plateau), data, s_tau=s_tau)
    except ValueError:  # f non-finite within a finite-difference step: ξ at the edge of definition
        return None


#: R-hat above this marks chains that do not mix (the common 1.1 rule; 1.01 is too strict for
#: the short runs of a parameter scan).
RHAT_MAX = 1.1


def split_rhat(series) -> float:
    """ArviZ's rank-normalised split R-hat of a ``(chains, n)`` series; a single chain is split
    into two halves first (ArviZ needs two). NaN for fewer than 8 points per half-chain."""
    import arviz as az

    x = np.asarray(series, dtype=float)
    if x.shape[0] == 1:
        n = x.shape[1] // 2
        x = x[0, : 2 * n].reshape(2, n)
    if x.shape[1] < 8:
        return float("nan")
    if np.all(x == x.flat[0]):  # frozen at one value: no variance to compare
        return float("inf") if x.shape[0] > 1 else float("nan")
    previous = logging.getLogger("arviz").level
    logging.getLogger("arviz").setLevel(logging.ERROR)
    try:
        return float(az.rhat(x))
    finally:
        logging.getLogger("arviz").setLevel(previous)


def mixing(observables: dict) -> dict:
    """``{"rhat": {M, absM, M2}, "reliable": bool}`` (module docstring)."""
    rhat = {k: split_rhat(observables[k]) for k in ("M", "absM", "M2")}
    reliable = not rhat["M"] > RHAT_MAX
    return {"rhat": {k: _num(v) for k, v in rhat.items()}, "reliable": reliable}


def mixing_warning(observables: dict, rhat_m: float) -> str:
    """The warning for chains that do not mix, with the spread of the per-chain means of M."""
    means = np.mean(np.asarray(observables["M"]), axis=1)
    spread = (f"; per-chain means of M from {means.min():.3g} to {means.max():.3g}"
              if means.size > 1 else "")
    return (f"chains do not mix: R-hat(M) = {rhat_m:.3g} > {RHAT_MAX}{spread}; the errors of M, chi_connected "
            "and xi are NOT reliable (a broken phase, a frozen chain, or a run far shorter than tau_int)")


def _pair(result) -> list[float | None]:
    return [_num(result.mean), _num(result.err)]


def _num(x) -> float | None:
    """JSON-safe float: NaN/inf become null so that results.json stays valid JSON."""
    x = float(x)
    return x if math.isfinite(x) else None


def free_theory_exact(theory: Phi4Theory) -> dict | None:
    """Exact G0 = ⟨φ²⟩, chi = V⟨M²⟩ = 1/Â(0) and ξ = 1/m of the free theory (λ = 0,
    docs/theory.md#action) on the run's lattice; None for λ ≠ 0. ξ is the effective-mass value, which
    for the free field equals 1/m on any plateau (one pole), so it is comparable to the
    measured ξ for L ≥ 4."""
    if theory.lam != 0:
        return None
    from .lattice import free

    L, d, beta = theory.L, theory.d, theory.beta
    return {"G0": free.phi2(L, d, beta), "chi": free.chi(L, d, beta),
            "xi": 1.0 / free.mass(d, beta) if L >= 4 else None}


def _check_finite(observables: dict, sampler: str, num_divergent: int) -> None:
    """Refuse to analyse a run whose measurements are NaN/inf, saying where and why it matters."""
    for name, series in observables.items():
        bad = ~np.isfinite(np.asarray(series))
        if bad.any():
            per_chain = bad.reshape(bad.shape[0], -1).any(axis=1)
            raise ValueError(
                f"{sampler}: {int(bad.sum())} non-finite measurements of {name} in chains "
                f"{np.flatnonzero(per_chain).tolist()[:10]} ({num_divergent} divergent trajectories): the chain "
                "left the region where the action (or the flow) is finite, so no estimate of this run can be "
                "trusted; for a flow sampler the flow is unusable at this step size (the chains, state and "
                "log are in the run directory)")


def summarize_phi4_run(result: ChainResult, theory: Phi4Theory, *, sampler: str,
                       s_tau: float = 4.0, plateau: tuple[int, int] | None = None) -> dict:
    """The results.json block of one φ⁴ run: acceptance, ⟨e^{−ΔH}⟩, observables, τ_int.

    Observables, each ``[mean, err]``: M2, absM, chi = V⟨M²⟩, chi_connected = V(⟨M²⟩ − ⟨M⟩²),
    G0, xi. τ_int in units of trajectories (measurements × meas_every), each
    ``[tau, err, window]``, for M, absM, M2. For the free theory (λ = 0) an ``exact`` block
    (:func:`free_theory_exact`) stands beside the measured observables. ``mixing``: R-hat of
    M, absM, M2 and whether the chains mix (:func:`mixing`); ``warnings``: divergences, too
    short runs, chains that do not mix.
    """
    obs = result.observables
    _check_finite(obs, sampler, int(np.sum(result.divergent)))
    V = theory.volume
    m, abs_m, m2, g0 = (gamma_method(obs[k], s_tau=s_tau) for k in ("M", "absM", "M2", "G0"))
    chi_conn = derived(lambda a: V * (a[1] - a[0] ** 2), [obs["M"], obs["M2"]], s_tau=s_tau)
    xi = correlation_length(obs["C"], obs["M"], theory.L, plateau, s_tau)
    emdh, n_div = None, int(np.sum(result.divergent))
    if result.delta_H is not None:
        with np.errstate(over="ignore"):
            e = np.exp(-np.asarray(result.delta_H))
        # ⟨e^{−ΔH}⟩ = 1 is a property of the exact reversible integrator over ALL proposals; a
        # divergent trajectory (rejected) can make e^{−ΔH} overflow, and then there is no estimate
        emdh = gamma_method(e, s_tau=s_tau) if np.all(np.isfinite(e)) else None
    every = result.meas_every
    tau = {name: [_num(r.tau_int * every), _num(r.tau_int_err * every), int(r.window * every)]
           for name, r in (("M", m), ("absM", abs_m), ("M2", m2))}
    warnings = [] if not n_div else [
        f"{n_div} divergent trajectories (|ΔH| > 1000 or non-finite; rejected) out of "
        f"{result.num_chains * result.num_traj}" + ("; <exp(-dH)> undefined" if emdh is None and result.delta_H
                                                      is not None else "")]
    warnings += [
        f"tau_int({name}): no automatic window up to W = {r.w_max}: the run is too short for its "
        "autocorrelation time, tau_int and every error are unreliable"
        for name, r in (("M", m), ("absM", abs_m), ("M2", m2)) if r.window >= r.w_max
    ]
    mix = mixing(obs)
    if not mix["reliable"]:
        warnings.append(mixing_warning(obs, split_rhat(obs["M"])))
    exact = free_theory_exact(theory)
    return {
        "sampler": sampler,
        "warnings": warnings,
        "mixing": mix,
        **({"exact": exact} if exact is not None else {}),
        "num_chains": result.num_chains,
        "num_traj": result.num_traj,
        "num_therm": result.num_therm,
        "meas_every": every,
        "acceptance": result.acceptance,
        "num_divergent": int(np.sum(result.divergent)),
        "exp_minus_dH": _pair(emdh) if emdh is not None else [None, None],
        "observables": {
            "M": _pair(m),
            "M2": _pair(m2),
            "absM": _pair(abs_m),
            "chi": [_num(V * m2.mean), _num(V * m2.err)],
            "chi_connected": _pair(chi_conn),
            "G0": _pair(g0),
            "xi": _pair(xi) if xi is not None else [None, None],
        },
        "tau_int": tau,
        "s_tau": s_tau,
        "seconds": result.seconds,
        "therm_seconds": result.therm_seconds,
        "compile_seconds": result.compile_seconds,
        "traj_per_second": result.traj_per_second,
    }
