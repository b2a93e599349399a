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
from .theory import Theory, analysis_warnings

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
    divergences, too short runs, R-hat above :data:`RHAT_WARN`, chains that do not mix, and the
    theory's own (:func:`~trivflow.theory.analysis_warnings`: U(1)'s frozen charge).
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
    warnings += analysis_warnings(theory, obs)
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


def evaluations_per_traj(sampler: str, *, num_steps: int | None = None, integrator: str = "leapfrog",
                         nuts_steps=None) -> dict:
    """The machine-independent cost of one chain-trajectory: ``{"force_evals": F, "flow_evals": G}``.

    * hmc: F = n·f (n integration steps, f force evaluations per step: 1 leapfrog, 2 Omelyan;
      :data:`trivflow.hmc.integrators.FORCE_EVALS_PER_STEP`), G = 0; Fourier acceleration adds FFTs,
      no force;
    * fhmc: F as HMC's, each a force of the pulled-back action S̃ = S∘g − log|det J_g|, which is one
      flow pass forward and one backward, so G = F;
    * nuts: F = the mean number of leapfrog steps per sample (``nuts_steps``, NumPyro's
      ``num_steps`` per draw), G = 0;
    * imh: F = 0, G = 1 (one flow sample and one action per proposal).
    """
    from .hmc.integrators import FORCE_EVALS_PER_STEP

    if sampler in ("hmc", "fhmc"):
        force = int(num_steps) * FORCE_EVALS_PER_STEP[integrator]
        return {"force_evals": force, "flow_evals": force if sampler == "fhmc" else 0}
    if sampler == "nuts":
        return {"force_evals": float(np.mean(nuts_steps)), "flow_evals": 0}
    if sampler == "imh":
        return {"force_evals": 0, "flow_evals": 1}
    raise ValueError(f"sampler={sampler!r} is invalid: expected one of hmc, fhmc, nuts, imh")


def setup_seconds(training: dict | None) -> float:
    """Wall seconds spent before sampling on what a flow sampler needs: the training of every level of
    the flow (``training["seconds"]``, nested levels under ``"coarse"``) and the HMC ensembles of
    coarse-lattice priors (``training["prior"]["ensemble_meta"]["seconds"]``, the generation time
    stored with the ensemble, also when it was read from the cache). 0 without a flow."""
    if not training:
        return 0.0
    ensemble = (training.get("prior") or {}).get("ensemble_meta") or {}
    return (float(training.get("seconds", 0.0)) + float(ensemble.get("seconds", 0.0))
            + setup_seconds(training.get("coarse")))


def cost_block(run: dict, per_traj: dict, *, setup: float = 0.0, primary: str | None = None) -> dict:
    """The results.json ``cost`` of one run (docs/results.md#cost).

    ``run`` is the run's block (:func:`summarize_run`: ``tau_int``, ``seconds``, ``therm_seconds``,
    ``num_chains``, ``num_traj``), ``per_traj`` the evaluations per chain-trajectory
    (:func:`evaluations_per_traj`), ``setup`` the seconds of training and prior ensembles
    (:func:`setup_seconds`). With τ = τ_int(primary) in trajectories and N = chains × trajectories:

    * ``per_traj``: force and flow evaluations and ``seconds`` = sampling seconds / N;
    * ``per_indep``: each per-trajectory figure × 2τ, with error × 2δτ (an independent sample is 2τ
      trajectories; timing noise neglected), ``[value, err]``;
    * ``setup_seconds``, and ``amortised_seconds_per_indep`` = (setup + thermalisation + sampling
      seconds) / (N / 2τ): what each independent sample of this run cost, everything before it
      included except compilation (cached across runs).
    """
    primary = primary or next(iter(run["tau_int"]))
    tau, tau_err = run["tau_int"][primary][:2]
    n = run["num_chains"] * run["num_traj"]
    per = {**per_traj, "seconds": run["seconds"] / n}
    known = tau is not None and np.isfinite(tau)

    def indep(v):
        return [json_float(2 * tau * v), json_float(2 * tau_err * v) if tau_err is not None else None] \
            if known else [None, None]

    total = setup + run["therm_seconds"] + run["seconds"]
    return {
        "observable": primary,
        "per_traj": {k: v if isinstance(v, int) else json_float(v) for k, v in per.items()},
        "per_indep": {k: indep(v) for k, v in per.items()},
        "setup_seconds": json_float(setup),
        "amortised_seconds_per_indep": indep(total / n),
    }
