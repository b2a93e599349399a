"""Figures of a run and of a sweep (matplotlib, PNG).

Each ``plot_*`` function takes plain arrays (or a :class:`~trivflow.analysis.GammaResult`) and
returns a :class:`matplotlib.figure.Figure`; nothing touches pyplot's global state, so the
module works headless (the Agg canvas renders the PNG) and inside notebooks alike.
:func:`plot_run` makes every figure of a run directory from its artifacts (:mod:`trivflow.io`)
into ``<run_dir>/plots/``:

    training.png            loss, ESS and batch MH acceptance vs training step (one per trained flow:
                            training_coarse.png, training_<prior>.png for a baseline's prior)
    <label>_autocorr_M.png  ρ(t) = Γ(t)/Γ(0) and τ_int(W) of M with the chosen window W
    <label>_M_history.png   M vs trajectory for the first few chains
    <label>_M_hist.png      histogram of M over all chains (the bimodal tunnelling distribution)
    <label>_thermalisation.png  block means of each τ observable (M, |M|, M²) over the run with
                            between-chain errors, against the whole run's mean ± error
    <label>_delta_H.png     histogram of ΔH with ⟨e^{−ΔH}⟩ (HMC/FHMC only)
    <label>_correlator.png  C(t) and m_eff(t) with the plateau used for ξ (theories with a correlator C)

Units: lags, windows and τ_int are in trajectories (measurement lag × ``meas_every``), as in
results.json.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, MaxNLocator

from .formatting import paren

__all__ = [
    "rho_errors",
    "tau_int_of_w_errors",
    "correlator_with_errors",
    "plot_autocorrelation",
    "plot_correlator",
    "plot_delta_h",
    "plot_histogram",
    "plot_history",
    "plot_run",
    "plot_tau_vs_kernel_size",
    "plot_tau_vs_xi",
    "plot_training",
    "save",
]

PLOTS_DIR = "plots"


def save(fig: Figure, path) -> Path:
    """Write ``fig`` as PNG (dpi 120) to ``path``, creating its directory; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=120)
    return path


def _title(fig: Figure, label: str, what: str) -> None:
    fig.suptitle(f"{label}: {what}" if label else what, fontsize=10)


def plot_training(history: Mapping[str, np.ndarray], *, title: str = "") -> Figure:
    """Training curves vs step: reverse-KL loss, ESS = (Σe^{−w})²/(BΣe^{−2w}) and the batch
    independence-MH acceptance (docs/theory.md#training-reverse-kl), the last two on log axes.
    ``history``: arrays ``step``, ``loss``, ``ess``, ``mh_acceptance`` of equal length
    (:func:`trivflow.io.load_training_history`); ``title``: what was trained (lattice, prior)."""
    step = np.asarray(history["step"])
    fig = Figure(figsize=(10, 3.2), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, key, ylabel in zip(axes, ("loss", "ess", "mh_acceptance"),
                               ("loss = mean w (≥ −log Z)", "ESS / batch", "MH acceptance (batch)")):
        ax.plot(step, np.asarray(history[key]), lw=1)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
    for ax in axes[1:]:  # log axes: an ESS of 0.003 and an acceptance of 0.02 are not flat lines at 0
        ax.set_yscale("log", nonpositive="mask")
        ax.set_ylim(top=1.05)
    _title(fig, title, "flow training")
    return fig


def rho_errors(rho, n_total: int, window: int) -> np.ndarray:
    """Wolff's error of the normalised autocorrelation (hep-lat/0306017, eq. (E.11), as
    ADerrors/pyerrors draw it)::

        δρ(t)² ≈ (1/N) Σ_{k=1}^{t+Λ} [ρ(k+t) + ρ(|k−t|) − 2 ρ(k) ρ(t)]²

    with the sum cut at Λ = max(W, 1) beyond t (ρ is noise past the window) and at the largest
    lag available. ``rho``: ρ(0 … w_max); returns δρ of the same length (δρ(0) = 0)."""
    rho = np.asarray(rho, dtype=float)
    w_max = rho.size - 1
    lam = max(int(window), 1)
    err = np.zeros_like(rho)
    for t in range(1, w_max + 1):
        k = np.arange(1, min(t + lam, w_max - t) + 1)
        if k.size == 0:
            err[t] = np.nan  # no lag k + t left to sum over
            continue
        terms = rho[k + t] + rho[np.abs(k - t)] - 2.0 * rho[k] * rho[t]
        err[t] = np.sqrt(np.sum(terms**2) / n_total)
    return err


def tau_int_of_w_errors(tau_int_of_w, n_total: int) -> np.ndarray:
    """δτ_int(W) = τ_int(W) √((4W+2)/N) for each W (Wolff eq. (42), docs/theory.md#gamma-method)."""
    tau = np.asarray(tau_int_of_w, dtype=float)
    w = np.arange(tau.size)
    return np.abs(tau) * np.sqrt((4 * w + 2) / n_total)


def plot_autocorrelation(result, *, meas_every: int = 1, name: str = "M", label: str = "",
                         max_lag: int | None = None) -> Figure:
    """Normalised autocorrelation ρ(t) = Γ(t)/Γ(0) with Wolff's error bars (:func:`rho_errors`)
    and τ_int(W) = ½ + Σ_{t=1}^{W} ρ(t) with its error band (:func:`tau_int_of_w_errors`) of a
    Γ-method analysis (docs/theory.md#gamma-method), the automatic window W marked and the
    bias-corrected τ_int ± δτ_int at W as a band. Lags in trajectories (× ``meas_every``).

    Args:
        result: :class:`~trivflow.analysis.GammaResult` of the observable.
        max_lag: largest lag shown, in measurements (default: min(w_max, max(4W, 20))).
    """
    every = int(meas_every)
    w = int(result.window)
    n = min(result.w_max, max(4 * w, 20)) if max_lag is None else min(int(max_lag), result.w_max)
    lag = np.arange(n + 1) * every
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    ax_rho, ax_tau = fig.subplots(1, 2)
    drho = rho_errors(result.rho, result.n_total, w)[: n + 1]
    ax_rho.plot(lag, result.rho[: n + 1], marker=".", lw=1)
    ax_rho.errorbar(lag, result.rho[: n + 1], yerr=drho, fmt="none", ecolor="C0", elinewidth=0.8, capsize=0,
                    label="ρ(t) ± δρ (Wolff)")
    ax_rho.axhline(0.0, color="0.5", lw=0.8)
    ax_rho.set_ylabel(f"ρ_{name}(t) = Γ(t)/Γ(0)")
    tau_w = result.tau_int_of_w[: n + 1] * every
    dtau_w = tau_int_of_w_errors(result.tau_int_of_w, result.n_total)[: n + 1] * every
    ax_tau.plot(lag, tau_w, marker=".", lw=1, label="τ_int(W)")
    ax_tau.fill_between(lag, tau_w - dtau_w, tau_w + dtau_w, color="C0", alpha=0.2, label="τ_int(W) ± δτ_int(W)")
    tau, err = result.tau_int * every, result.tau_int_err * every
    ax_tau.axhspan(tau - err, tau + err, color="C1", alpha=0.25,
                   label=f"τ_int = {paren(tau, err)} (bias-corrected)")
    ax_tau.set_ylabel(f"τ_int({name}) [trajectories]")
    for ax in (ax_rho, ax_tau):
        ax.axvline(w * every, color="C3", ls="--", lw=1, label=f"W = {w * every} (S_τ = {result.s_tau:g})")
        ax.set_xlabel("t, W [trajectories]")
    ax_rho.legend(fontsize=8)
    ax_tau.legend(fontsize=8, loc="lower right")
    _title(fig, label, f"autocorrelation of {name} (Γ-method, {result.n_replicas} chains, N = {result.n_total})")
    return fig


def plot_history(series, draws=None, *, max_chains: int = 3, max_points: int = 2000, name: str = "M",
                 label: str = "") -> Figure:
    """Monte Carlo history of ``series`` (num_chains, num_meas) for the first ``max_chains``
    chains, thinned to at most ``max_points`` points per chain (every ⌈num_meas/max_points⌉-th
    measurement: 4 × 20 000 points would overplot into a block); ``draws`` (num_meas,): the
    trajectory of each measurement (default 1 … num_meas)."""
    series = np.atleast_2d(np.asarray(series))
    x = np.arange(1, series.shape[1] + 1) if draws is None else np.asarray(draws)
    stride = max(1, -(-series.shape[1] // max_points))
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    ax = fig.subplots()
    for c in range(min(max_chains, series.shape[0])):
        ax.plot(x[::stride], series[c, ::stride], lw=0.6, alpha=0.8, label=f"chain {c}")
    ax.set_xlabel("trajectory")
    ax.set_ylabel(name)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # off the data
    _title(fig, label, f"{name} history" + (f" (one measurement in {stride} shown)" if stride > 1 else ""))
    return fig


def block_means(series, num_blocks: int = 10):
    """Means of ``series`` (num_chains, num_meas) over consecutive blocks of the measured chain, and
    their errors from the spread between chains: ``(centres, means, errors)``, each (num_blocks,).

    The chains are independent replicas, so the error of a block mean is std over chains of the
    chain's block mean / √num_chains, valid however long the autocorrelation (no Γ-method needed);
    NaN for a single chain. ``centres`` are measurement indices (0-based) of the blocks' middles.
    """
    series = np.atleast_2d(np.asarray(series, dtype=float))
    chains, n = series.shape
    num_blocks = max(1, min(num_blocks, n))
    edges = np.linspace(0, n, num_blocks + 1).astype(int)
    per_chain = np.stack([series[:, a:b].mean(axis=1) for a, b in zip(edges[:-1], edges[1:])], axis=1)
    errors = per_chain.std(axis=0, ddof=1) / np.sqrt(chains) if chains > 1 else np.full(num_blocks, np.nan)
    return (edges[:-1] + edges[1:] - 1) / 2, per_chain.mean(axis=0), errors


def plot_thermalisation(series: Mapping[str, np.ndarray], draws=None, *, results: Mapping | None = None,
                        num_blocks: int = 10, label: str = "") -> Figure:
    """Is the measured chain stationary? For each observable ``name -> (num_chains, num_meas)``: the
    mean over chains of consecutive blocks of the run with the between-chain error
    (:func:`block_means`) against the trajectory, and the whole run's mean ± Γ-method error as a
    band (``results``: ``name -> [mean, err]``, results.json ``observables``). Blocks of the start
    that lie outside the band say the thermalisation (``sampler.num_therm``) was too short."""
    names = list(series)
    fig = Figure(figsize=(9, 1.2 + 1.9 * len(names)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(names), 1, sharex=True))
    for ax, name in zip(axes, names):
        values = np.atleast_2d(np.asarray(series[name]))
        x = np.arange(1, values.shape[1] + 1) if draws is None else np.asarray(draws)
        centres, means, errors = block_means(values, num_blocks)
        ax.errorbar(np.interp(centres, np.arange(x.size), x), means, yerr=errors, fmt="o", ms=3, capsize=2,
                    label=f"mean of {values.shape[0]} chains over 1/{means.size} of the run")
        mean_err = (results or {}).get(name)
        if mean_err is not None and mean_err[0] is not None:
            m, e = mean_err[0], mean_err[1] or 0.0
            ax.axhspan(m - e, m + e, color="C1", alpha=0.3, label=f"whole run {paren(m, e)}")
            ax.axhline(m, color="C1", lw=0.8)
        ax.set_ylabel(name)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # off the data
    axes[-1].set_xlabel("trajectory")
    _title(fig, label, "thermalisation: block means against the whole run")
    return fig


def plot_histogram(series, *, bins: int = 60, name: str = "M", label: str = "") -> Figure:
    """Normalised histogram of ``series`` over all chains and measurements.

    A series that takes one value up to rounding (the topological charge of frozen chains: an
    integer ± 1e-15) gets one bin of unit width around it; numpy refuses ``bins`` bins over a
    range of a few ulps."""
    values = np.ravel(np.asarray(series))
    fig = Figure(figsize=(5, 3.4), layout="constrained")
    ax = fig.subplots()
    lo, hi = float(values.min()), float(values.max())
    one_value = not hi - lo > 1e-9 * max(1.0, abs(lo), abs(hi))
    ax.hist(values, bins=1 if one_value else bins, range=(lo - 0.5, hi + 0.5) if one_value else None, density=True,
            histtype="stepfilled", alpha=0.7)
    ax.set_xlabel(name)
    ax.set_ylabel("density")
    _title(fig, label, f"{name} distribution ({values.size} measurements)")
    return fig


def plot_delta_h(delta_h, *, bins: int = 60, label: str = "") -> Figure:
    """Histogram of ΔH = H(end) − H(start) over all chains and trajectories, with the mean and
    ⟨e^{−ΔH}⟩ in the legend (outside the axes); exactness requires ⟨e^{−ΔH}⟩ = 1
    (docs/theory.md#observables). The error of ⟨e^{−ΔH}⟩ is the Γ-method's over the chains
    (``delta_h`` of shape (num_chains, num_traj), all finite), as in results.json; otherwise
    the naive σ/√N, marked so."""
    from .analysis import gamma_method

    raw = np.atleast_2d(np.asarray(delta_h, dtype=float))
    dh = np.ravel(raw)
    dh = dh[np.isfinite(dh)]
    e = np.exp(-dh)
    if np.all(np.isfinite(raw)) and raw.shape[1] >= 8:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            g = gamma_method(np.exp(-raw))
        emdh = f"{paren(g.mean, g.err)} (Γ-method)"
    else:
        emdh = f"{paren(e.mean(), e.std() / np.sqrt(max(e.size, 1)))} (naive)"
    fig = Figure(figsize=(6.5, 3.4), layout="constrained")
    ax = fig.subplots()
    ax.hist(dh, bins=bins, density=True, histtype="stepfilled", alpha=0.7,
            label=f"⟨ΔH⟩ = {dh.mean():.3g}\n⟨e^(−ΔH)⟩ = {emdh}")
    ax.set_xlabel("ΔH")
    ax.set_ylabel("density")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # off the data
    _title(fig, label, f"ΔH ({dh.size} trajectories)")
    return fig


def correlator_with_errors(correlator, magnetization, *, s_tau: float = 4.0):
    """The connected zero-momentum correlator C(t) = ⟨c(t)⟩ − ⟨M⟩² and the effective mass
    m_eff(t) = arccosh{[C(t−1) + C(t+1)] / [2 C(t)]} (t = 1 … L/2 − 1) with Γ-method errors by
    linear propagation (:func:`trivflow.analysis.derived`; docs/theory.md#observables).

    Args:
        correlator: series ``c(t)`` of shape (chains, measurements, L/2 + 1).
        magnetization: series M of shape (chains, measurements).

    Returns:
        ``(C, δC, m_eff, δm_eff)``: arrays of length L/2 + 1, L/2 + 1, L/2 − 1, L/2 − 1 (NaN where
        m_eff is undefined: C noise-dominated).
    """
    from .analysis import Primaries, derived
    from .lattice.observables import effective_mass

    correlator = np.asarray(correlator, dtype=float)
    nt = correlator.shape[-1]
    # stacked once for the 2 nt − 2 derived quantities below (long runs: 10⁶–10⁷ samples per primary)
    data = Primaries([correlator[..., t] for t in range(nt)] + [np.asarray(magnetization, dtype=float)])

    def connected(means):
        means = np.asarray(means)
        return means[:-1] - means[-1] ** 2

    def estimate(f):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                r = derived(f, data, s_tau=s_tau)
            return r.mean, r.err
        except ValueError:  # f undefined within a finite-difference step
            return np.nan, np.nan

    c = np.array([estimate(lambda m, t=t: connected(m)[t]) for t in range(nt)])
    central = effective_mass(connected(data.means))
    m = np.array([estimate(lambda mm, t=t: effective_mass(connected(mm))[t]) if np.isfinite(central[t])
                  else (np.nan, np.nan) for t in range(nt - 2)])
    return c[:, 0], c[:, 1], m[:, 0], m[:, 1]


def plot_correlator(correlator, magnetization, *, plateau: tuple[int, int], xi=None, label: str = "",
                    s_tau: float = 4.0) -> Figure:
    """C(t) (log axis) and the effective mass m_eff(t) with Γ-method errors
    (:func:`correlator_with_errors`), the plateau [t_min, t_max] over which m̄ is averaged shaded,
    and m̄ = 1/ξ ± δξ/ξ² drawn across it when ``xi = [ξ, δξ]`` (results.json) is given."""
    c, dc, m, dm = correlator_with_errors(correlator, magnetization, s_tau=s_tau)
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    ax_c, ax_m = fig.subplots(1, 2)
    t = np.arange(c.size)
    positive = c > 0
    ax_c.errorbar(t[positive], c[positive], yerr=dc[positive], fmt="o", capsize=2)
    ax_c.set_yscale("log")
    ax_c.set_ylabel("C(t) = ⟨c(t)⟩ − ⟨M⟩²")
    tm = np.arange(1, m.size + 1)
    ok = np.isfinite(m)
    ax_m.errorbar(tm[ok], m[ok], yerr=dm[ok], fmt="o", capsize=2, label="m_eff(t)")
    t_min, t_max = plateau
    ax_m.axvspan(t_min - 0.3, t_max + 0.3, color="0.85", label=f"plateau t = {t_min} … {t_max}")
    if xi is not None and xi[0] is not None and xi[0] > 0:
        mbar, dmbar = 1.0 / xi[0], (xi[1] or 0.0) / xi[0] ** 2
        ax_m.fill_between([t_min - 0.3, t_max + 0.3], mbar - dmbar, mbar + dmbar, color="C1", alpha=0.4,
                          label=f"m̄ = 1/ξ = {paren(mbar, dmbar)} (ξ = {paren(*xi[:2])})")
    ax_m.set_ylabel("m_eff(t)")
    for ax in (ax_c, ax_m):
        ax.set_xlabel("t")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_m.legend(fontsize=8)
    _title(fig, label, "zero-momentum correlator and effective mass")
    return fig


def plot_tau_vs_xi(points: Mapping[str, Mapping[str, Sequence[float]]], fits: Mapping[str, object] | None = None,
                   *, name: str = "M") -> Figure:
    """τ_int vs ξ on log–log axes, one series per sampler, with the fitted τ = c ξ^z.

    Args:
        points: ``sampler -> {"xi", "xi_err", "tau", "tau_err"}`` (sequences of equal length).
        fits: ``sampler -> ZFit`` (:func:`trivflow.report.fit_z`) to draw as lines.
    """
    fig = Figure(figsize=(5.5, 4), layout="constrained")
    ax = fig.subplots()
    for i, (sampler, p) in enumerate(points.items()):
        color = f"C{i}"
        ax.errorbar(p["xi"], p["tau"], xerr=p["xi_err"], yerr=p["tau_err"], fmt="o", color=color,
                    capsize=2, label=sampler)
        fit = (fits or {}).get(sampler)
        if fit is not None:
            xi = np.geomspace(np.min(p["xi"]), np.max(p["xi"]), 50)
            quality = f" (χ²/dof = {fit.chi2:.1f}/{fit.dof})" if fit.dof > 0 else ""  # dof 0: χ² says nothing
            ax.plot(xi, np.exp(fit.log_c) * xi ** fit.z, color=color, lw=1,
                    label=f"{sampler}: z = {paren(fit.z, fit.z_err)}{quality}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _label_log_axis(ax.xaxis, [v for p in points.values() for v in p["xi"]])
    _label_log_axis(ax.yaxis, [v for p in points.values() for v in p["tau"]])
    ax.set_xlabel("ξ")
    ax.set_ylabel(f"τ_int({name}) [trajectories]")
    ax.legend(fontsize=8)
    fig.suptitle(f"critical slowing down: τ_int({name}) ∝ ξ^z")
    return fig


def _label_log_axis(axis, values) -> None:
    """Labelled ticks at round numbers inside the data's range on a log axis: a sweep spans
    less than a decade or two, where the log locator's decades (and their %g-labelled minor ticks)
    may label 8, 9, 10 while the points lie at 13–16. Ticks from a linear 5-bin locator over
    [min, max] of ``values``, plain-number labels, no minor labels."""
    from matplotlib.ticker import FixedLocator, MaxNLocator, NullFormatter

    v = np.asarray([x for x in values if x is not None and x > 0], dtype=float)
    if v.size == 0:
        return
    lo, hi = v.min(), v.max()
    ticks = [t for t in MaxNLocator(nbins=5).tick_values(lo, hi) if lo * 0.9 <= t <= hi * 1.1 and t > 0]
    if len(ticks) < 2:
        ticks = [lo, hi] if lo != hi else [lo]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_formatter(NullFormatter())


def plot_tau_vs_kernel_size(points: Mapping[str, Mapping[str, Sequence[float]]], *, name: str = "M") -> Figure:
    """τ_int and the cost per independent sample vs the flow's kernel size: in force evaluations
    2τ_int·F (machine-independent, first) and in seconds 2τ_int/(trajectories per second).
    ``points``: ``series label -> {"k", "tau", "tau_err", "evals", "evals_err", "cost", "cost_err"}``."""
    fig = Figure(figsize=(12, 3.4), layout="constrained")
    ax_tau, ax_evals, ax_cost = fig.subplots(1, 3)
    for i, (series, p) in enumerate(points.items()):
        for ax, key in ((ax_tau, "tau"), (ax_evals, "evals"), (ax_cost, "cost")):
            ax.errorbar(p["k"], p[key], yerr=p[f"{key}_err"], fmt="o-", color=f"C{i}", capsize=2, label=series)
    ax_tau.set_ylabel(f"τ_int({name}) [trajectories]")
    ax_evals.set_ylabel("force evaluations per independent sample")
    ax_cost.set_ylabel("seconds per independent sample")
    for ax in (ax_tau, ax_evals, ax_cost):
        ax.set_xlabel("kernel size k")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # k is an odd integer: no k = 3.5
        ax.legend(fontsize=8)
    fig.suptitle("τ_int and cost vs kernel size")
    return fig


def plot_run(run_dir, out_dir=None) -> list[Path]:
    """Make every figure of a run directory from its artifacts; returns the PNG paths.

    Reads ``results.json``, ``training_history.npz`` (when present) and each run label's chains
    file; τ_int is recomputed from the stored series of the theory's primary observable (M for
    φ⁴) with the run's ``s_tau`` (the same numbers
    as results.json). Figures go to ``out_dir`` (default ``<run_dir>/plots``).
    """
    from . import io
    from .analysis import gamma_method

    run_dir = Path(run_dir)
    results = io.load_results(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / PLOTS_DIR
    written = []

    def emit(fig: Figure, filename: str) -> None:
        written.append(save(fig, out / filename))

    def where(lattice: dict) -> str:
        return ", ".join(f"{k} = {lattice[key]}" for k, key in (("L", "L"), ("β", "beta"), ("λ", "lam"))
                         if key in lattice)

    main_prior = results.get("config", {}).get("prior", {}).get("name")
    for history_dir in _training_dirs(run_dir, io.HISTORY_FILE):
        # one figure per trained flow: the main one, its coarse level (interp4_x2: g₁ in coarse/),
        # and each baseline prior's under trainings/<prior>/
        parts = history_dir.relative_to(run_dir).parts
        prior = parts[1] if parts[:1] == ("trainings",) else main_prior
        training = (results.get("trainings", {}).get(prior) if parts[:1] == ("trainings",)
                    else results.get("training")) or {}
        coarse = parts[-1:] == ("coarse",)
        trained = ("coarse level g₁ of the flow" if coarse else
                   f"flow trained at {where(training.get('lattice', results['lattice']))}")
        trained += f", prior {prior}" if prior else ""
        suffix = "".join(f"_{p}" for p in parts if p != "trainings")
        emit(plot_training(io.load_training_history(history_dir), title=trained), f"training{suffix}.png")
    for label, block in results["runs"].items():
        idata = io.load_chains(run_dir, label)
        post, stats = idata.posterior, idata.sample_stats
        prior = f", prior {block['prior']}" if block.get("prior") else ""
        title = f"{label} [{block['sampler']}{prior}; {where(block.get('lattice', results['lattice']))}]"
        name = post.attrs.get("primary_observable", "M")  # the theory's headline series
        m = post[name].values
        every = int(post.attrs.get("meas_every", block.get("meas_every", 1)))
        with warnings.catch_warnings():  # "window not found" is already reported in results.json
            warnings.simplefilter("ignore", RuntimeWarning)
            res = gamma_method(m, s_tau=block.get("s_tau", 4.0))
        emit(plot_autocorrelation(res, meas_every=every, name=name, label=title), f"{label}_autocorr_{name}.png")
        emit(plot_history(m, post["draw"].values, name=name, label=title), f"{label}_{name}_history.png")
        emit(plot_histogram(m, name=name, label=title), f"{label}_{name}_hist.png")
        observed = [k for k in block.get("tau_int", {}) if k in post and post[k].ndim == 2]
        if observed:
            emit(plot_thermalisation({k: post[k].values for k in observed}, post["draw"].values,
                                     results=block.get("observables"), label=title), f"{label}_thermalisation.png")
        if "delta_H" in stats:
            emit(plot_delta_h(stats["delta_H"].values, label=title), f"{label}_delta_H.png")
        lattice = block.get("lattice", results["lattice"])
        if "C" in post and "M" in post and lattice.get("L", 0) >= 4:  # φ⁴'s correlator: where ξ comes from
            from .lattice.observables import default_plateau

            plateau = (results.get("config", {}).get("analysis", {}).get("plateau")
                       or default_plateau(lattice["L"]))
            emit(plot_correlator(post["C"].values, post["M"].values, plateau=tuple(plateau),
                                 xi=block["observables"].get("xi"), label=title, s_tau=block.get("s_tau", 4.0)),
                 f"{label}_correlator.png")
    return written


def _training_dirs(run_dir: Path, history_file: str) -> list[Path]:
    """Directories of a run that hold a training history: the run directory, ``coarse/``, and
    ``trainings/<prior>/`` with its ``coarse/``, in that order, those that exist."""
    candidates = [run_dir, run_dir / "coarse"]
    for d in sorted((run_dir / "trainings").glob("*")) if (run_dir / "trainings").is_dir() else []:
        candidates += [d, d / "coarse"]
    return [d for d in candidates if (d / history_file).is_file()]


def plot_tuning(result, path, title: str = "") -> None:
    """ξ(β) ± δξ of every point, the final fit of log ξ and β* ± δβ* (a PNG at ``path``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3.6))
    pts = [p for p in result.points if p.defined]
    ax.errorbar([p.beta for p in pts], [p.xi for p in pts], [p.xi_err for p in pts], fmt="o", ms=4,
                label="HMC measurements")
    for i, p in enumerate(result.points):
        if p.defined:
            ax.annotate(str(i), (p.beta, p.xi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.axhline(result.target_xi, color="grey", lw=0.8, ls="--", label=f"target ξ = {result.target_xi:g}")
    f = result.fit
    if f is not None and f.beta_star is not None:
        xs = np.linspace(min(f.betas + (f.beta_star,)), max(f.betas + (f.beta_star,)), 50)
        ax.plot(xs, np.exp(f.log_xi(xs)), lw=1, label=f"fit: log ξ of degree {f.degree} in β")
        ax.axvspan(f.beta_star - f.beta_err, f.beta_star + f.beta_err, color="C1", alpha=0.3,
                   label=f"β* = {f.beta_star:.5f}({round(f.beta_err * 1e5):d})")
    ax.set_xlabel("β")
    ax.set_ylabel("ξ")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
