"""Summarise a sampler run into the ``runs.<name>`` block of results.json (docs/results.md).

Every error is a Γ-method error (docs/theory.md#gamma-method) over all chains as replicas; derived
quantities (ξ, the connected susceptibility) use Wolff's linearised error propagation.

Multi-chain diagnostics: the Γ-method treats the chains as replicas of one Markov process, which
holds only if they sample the same distribution. ``diagnostics`` holds, for each of the theory's
τ observables, ArviZ's rank-normalised split R-hat and the bulk and tail effective sample sizes
(Vehtari et al. 2021; ESS in measurements, all chains together). Two levels:

* R-hat > :data:`RHAT_WARN` = 1.01 (Vehtari et al.'s threshold) for any τ observable puts a
  warning in ``warnings``: the chains do not yet agree on that observable's distribution;
* R-hat(primary) > :data:`RHAT_MAX` = 1.1 (chains that do not mix at all, e.g. the broken phase
  where no chain changes the sign of M) also sets ``diagnostics.reliable = false``: the errors of
  M, χ_conn and ξ are not reliable, and the printed summary says so.
"""

from __future__ import annotations

import logging

import numpy as np

from .analysis import gamma_method, json_float
from .hmc.driver import ChainResult
from .theory import Theory

#: R-hat above this for any τ observable gives a warning (Vehtari et al. 2021)
RHAT_WARN = 1.01
#: R-hat of the primary observable above this marks chains that do not mix at all (the common 1.1
#: rule): ``reliable = false``
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


def ess(series, method: str) -> float:
    """ArviZ's rank-normalised effective sample size (``method`` "bulk" or "tail") of a
    ``(chains, n)`` series, in measurements over all chains; NaN for fewer than 8 points per
    chain or a series frozen at one value."""
    import arviz as az

    x = np.asarray(series, dtype=float)
    if x.shape[1] < 8 or np.all(x == x.flat[0]):
        return float("nan")
    previous = logging.getLogger("arviz").level
    logging.getLogger("arviz").setLevel(logging.ERROR)
    try:
        with np.errstate(all="ignore"):
            return float(az.ess(x, method=method))
    finally:
        logging.getLogger("arviz").setLevel(previous)


def diagnostics(observables: dict, names=("M", "absM", "M2"), primary: str = "M") -> dict:
    """``{"rhat": {name: R-hat}, "ess_bulk": {name: ESS}, "ess_tail": {name: ESS}, "reliable":
    bool}`` for each of ``names``: reliable unless R-hat(primary) > :data:`RHAT_MAX` (module
    docstring)."""
    rhat = {k: split_rhat(observables[k]) for k in names}
    return {"rhat": {k: json_float(v) for k, v in rhat.items()},
            "ess_bulk": {k: json_float(ess(observables[k], "bulk")) for k in names},
            "ess_tail": {k: json_float(ess(observables[k], "tail")) for k in names},
            "reliable": not rhat[primary] > RHAT_MAX}


def rhat_warnings(diag: dict) -> list[str]:
    """One warning naming every τ observable with R-hat > :data:`RHAT_WARN` (none if none)."""
    high = {k: v for k, v in diag["rhat"].items() if v is not None and v > RHAT_WARN}
    if not high:
        return []
    return [f"R-hat > {RHAT_WARN} for " + ", ".join(f"{k} ({v:.4g})" for k, v in high.items())
            + ": the chains do not yet agree on the distribution; run longer (more num_traj or num_therm)"]


def mixing_warning(observables: dict, rhat: float, name: str = "M") -> str:
    """The warning for chains that do not mix, with the spread of the per-chain means of ``name``."""
    means = np.mean(np.asarray(observables[name]), axis=1)
    spread = (f"; per-chain means of {name} from {means.min():.3g} to {means.max():.3g}"
              if means.size > 1 else "")
    return (f"chains do not mix: R-hat({name}) = {rhat:.3g} > {RHAT_MAX}{spread}; the errors of {name} and of "
            "everything derived from it are NOT reliable (a broken phase, a frozen chain, or a run far shorter "
            "than tau_int)")


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


def summarize_run(result: ChainResult, theory: Theory, *, sampler: str, s_tau: float = 4.0,
                  **analysis_options) -> dict:
    """The results.json block of one run of any theory: acceptance, ⟨e^{−ΔH}⟩, observables, τ_int.

    ``observables`` is the theory's (:meth:`~trivflow.theory.Theory.analyse`, each
    ``[mean, err]``; ``analysis_options`` go to it, e.g. φ⁴'s ``plateau``). τ_int in units of
    trajectories (measurements × meas_every), each ``[tau, err, window]``, for the theory's
    :attr:`~trivflow.theory.Theory.tau_observables`. Where the theory knows exact values an
    ``exact`` block stands beside the measured ones. ``diagnostics``: R-hat and bulk/tail ESS of
    the τ observables and whether the chains mix (:func:`diagnostics`); ``warnings``:
    divergences, too short runs, R-hat above :data:`RHAT_WARN`, chains that do not mix.
    """
    obs = result.observables
    n_div = int(np.sum(result.divergent))
    _check_finite(obs, sampler, n_div)
    names = tuple(theory.tau_observables)
    gammas = {name: gamma_method(obs[name], s_tau=s_tau) for name in names}
    observables = theory.analyse(obs, gammas, s_tau=s_tau, **analysis_options)
    emdh = None
    if result.delta_H is not None:
        with np.errstate(over="ignore"):
            e = np.exp(-np.asarray(result.delta_H))
        # ⟨e^{−ΔH}⟩ = 1 is a property of the exact reversible integrator over ALL proposals; a
        # divergent trajectory (rejected) can make e^{−ΔH} overflow, and then there is no estimate
        emdh = gamma_method(e, s_tau=s_tau) if np.all(np.isfinite(e)) else None
    every = result.meas_every
    tau = {name: [json_float(r.tau_int * every), json_float(r.tau_int_err * every), int(r.window * every)]
           for name, r in gammas.items()}
    warnings = [] if not n_div else [
        f"{n_div} divergent trajectories (|ΔH| > 1000 or non-finite; rejected) out of "
        f"{result.num_chains * result.num_traj}" + ("; <exp(-dH)> undefined" if emdh is None and result.delta_H
                                                      is not None else "")]
    warnings += [
        f"tau_int({name}): no automatic window up to W = {r.w_max}: the run is too short for its "
        "autocorrelation time, tau_int and every error are unreliable"
        for name, r in gammas.items() if r.window >= r.w_max
    ]
    primary = theory.primary_observable
    diag = diagnostics(obs, names, primary)
    warnings += rhat_warnings(diag)
    if not diag["reliable"]:
        warnings.append(mixing_warning(obs, split_rhat(obs[primary]), primary))
    exact = theory.exact()
    return {
        "sampler": sampler,
        "warnings": warnings,
        "diagnostics": diag,
        **({"exact": exact} if exact is not None else {}),
        "num_chains": result.num_chains,
        "num_traj": result.num_traj,
        "num_therm": result.num_therm,
        "meas_every": every,
        "acceptance": result.acceptance,
        "num_divergent": n_div,
        "exp_minus_dH": emdh.mean_err() if emdh is not None else [None, None],
        "observables": observables,
        "tau_int": tau,
        "s_tau": s_tau,
        "seconds": result.seconds,
        "therm_seconds": result.therm_seconds,
        "compile_seconds": result.compile_seconds,
        "traj_per_second": result.traj_per_second,
    }


#: the name this function had while φ⁴ was the only theory
summarize_phi4_run = summarize_run
