"""Aggregate a sweep (or a single run): ``python -m trivflow.report <dir> [--out DIR]``.

Collects every ``results.json`` at or below ``<dir>`` (a run directory, a Hydra multirun
``multirun/<exp>/<date>/`` with one ``<job num>/`` per job, or any tree of them) and writes into
``--out`` (default ``<dir>/report``):

* ``table.md``, ``table.csv`` — one row per (job, run label): experiment, L, d, β, λ, flow kernel size,
  number of layers and prior (flow samplers only), sampler, acceptance, τ_int(M) ± err, ξ ± err,
  chain-trajectories per second, cost per independent sample, the ratios of τ_int(M) and of the
  cost to plain HMC's at the same lattice point (:func:`add_ratios`), training seconds, the flow's
  MH acceptance, the job's command-line overrides, and the row this one duplicates (if any).
  ``table.md`` writes every value with its error in parenthesis notation (``18.5(9)``,
  :mod:`trivflow.formatting`); ``table.csv`` keeps value and error in separate columns;
* ``fits.json`` — the dynamical exponent z of every series with ≥ 2 distinct ξ (:func:`fit_z`);
  a series with two jobs of one effective configuration is refused (``{"refused": reason}``):
  they are one measurement twice, not two points (:func:`effective_config`);
* ``tau_vs_xi.png`` — τ_int(M) vs ξ on log–log axes per series (sampler, kernel size, layers, prior) with the
  fitted line, only when some series has ≥ 2 distinct ξ;
* ``tau_vs_kernel_size.png`` — τ_int(M) and the cost vs kernel size per (sampler, L, layers, prior), only when
  some series has ≥ 2 kernel sizes.

Cost per independent sample, first in the machine-independent unit: force evaluations ``2 τ_int F``
(F per chain-trajectory; for flow samplers also flow passes, results.json ``cost``,
:func:`trivflow.summary.cost_block`), then seconds ``2 τ_int / traj_per_second``, with τ_int in
trajectories and ``traj_per_second`` the chain-trajectories per second of the whole run (all chains),
i.e. the wall time the run spends per statistically independent configuration (docs/performance.md);
errors ``2 δτ_int × …`` (timing noise neglected). Training time is listed separately and in the
amortised seconds per independent sample (training, prior ensembles and thermalisation included).
Runs written before results.json had ``cost`` get F from their config (HMC, FHMC, independence MH).

Ratios: r = τ / τ_HMC with δr = |r| √((δτ/τ)² + (δτ_HMC/τ_HMC)²) (independent chains;
:func:`trivflow.formatting.ratio`); the cost ratio likewise. The reference is the plain-HMC row
with the same (L, d, β, λ) in the same job, else the only such row in the whole tree.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import io
from .app.config import FLOW_SAMPLERS
from .formatting import paren, ratio

__all__ = ["ZFit", "add_ratios", "collect", "effective_config", "fit_z", "main", "write_report"]

COLUMNS = ["job", "experiment", "label", "L", "d", "beta", "lam", "kernel_size", "num_layers", "prior", "sampler",
           "traj_length", "acceptance",
           "tau_M", "tau_M_err", "tau_M_window", "tau_M_reliable", "xi", "xi_err", "traj_per_second",
           "force_evals_per_indep", "force_evals_per_indep_err", "flow_evals_per_indep", "flow_evals_per_indep_err",
           "cost_per_indep", "cost_per_indep_err", "tau_M_ratio_hmc", "tau_M_ratio_hmc_err", "cost_ratio_hmc",
           "cost_ratio_hmc_err",
           "training_seconds", "amortised_per_indep", "amortised_per_indep_err", "flow_mh_acceptance", "overrides",
           "duplicate_of"]


class ZFit(NamedTuple):
    """Fit of log τ = log c + z log ξ (see :func:`fit_z`)."""

    z: float
    z_err: float
    log_c: float
    log_c_err: float
    cov: np.ndarray  # 2×2 covariance of (log_c, z)
    chi2: float
    dof: int


def fit_z(xi, xi_err, tau, tau_err, *, max_iter: int = 100, tol: float = 1e-12) -> ZFit:
    """Dynamical critical exponent z from τ = c ξ^z.

    Method: weighted linear least squares of y = log τ on x = log ξ, y = log c + z x, with the
    errors propagated to the logs, σ_y = δτ/τ and σ_x = δξ/ξ, and the x errors folded into the
    weights by the effective-variance method: σ_i² = σ_{y,i}² + z² σ_{x,i}², iterated to a fixed
    point in z (first pass with σ_x ignored). Parameter errors are from the fit covariance
    (AᵀWA)⁻¹ with W = diag(1/σ_i²), NOT rescaled by χ²/dof (the input errors are taken as
    absolute); χ² = Σ_i (y_i − log c − z x_i)²/σ_i² with dof = n − 2 lets the caller judge them.

    Args:
        xi, xi_err, tau, tau_err: sequences of length n ≥ 2 with ≥ 2 distinct ξ; ξ, τ > 0,
            errors ≥ 0 and δτ > 0 (δξ may be 0).

    Returns:
        :class:`ZFit` (z, z_err, log_c, log_c_err, cov, chi2, dof).
    """
    arrays = [np.asarray(a, dtype=float).ravel() for a in (xi, xi_err, tau, tau_err)]
    names = ("xi", "xi_err", "tau", "tau_err")
    n = arrays[0].size
    for name, a in zip(names, arrays):
        if a.size != n:
            raise ValueError(f"fit_z: {name} has {a.size} values, xi has {n}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"fit_z: {name} has non-finite values: {a}")
    xi, xi_err, tau, tau_err = arrays
    if np.any(xi <= 0) or np.any(tau <= 0):
        raise ValueError(f"fit_z: xi and tau must be positive, got xi={xi}, tau={tau}")
    if np.any(xi_err < 0) or np.any(tau_err <= 0):
        raise ValueError(f"fit_z: need xi_err >= 0 and tau_err > 0, got xi_err={xi_err}, tau_err={tau_err}")
    if np.unique(xi).size < 2:
        raise ValueError(f"fit_z: need at least 2 distinct xi, got {xi}")
    x, y = np.log(xi), np.log(tau)
    sx, sy = xi_err / xi, tau_err / tau
    design = np.stack([np.ones_like(x), x], axis=1)

    def solve(z):
        w = 1.0 / (sy**2 + z**2 * sx**2)
        cov = np.linalg.inv(design.T @ (w[:, None] * design))
        beta = cov @ (design.T @ (w * y))
        return beta, cov, w

    beta, cov, w = solve(0.0)
    for _ in range(max_iter):
        new, cov, w = solve(beta[1])
        done = abs(new[1] - beta[1]) <= tol * max(1.0, abs(new[1]))
        beta = new
        if done:
            break
    resid = y - design @ beta
    return ZFit(z=float(beta[1]), z_err=float(math.sqrt(cov[1, 1])), log_c=float(beta[0]),
                log_c_err=float(math.sqrt(cov[0, 0])), cov=cov, chi2=float(np.sum(w * resid**2)), dof=n - 2)


def _pair(block, key):
    v = block.get(key) if block else None
    return (None, None) if v is None or v[0] is None else (v[0], v[1])


def effective_config(results: dict, label: str) -> str:
    """What run ``label`` of a job actually read, as a canonical JSON string: its lattice, action,
    seed, precision, analysis settings, sampler settings and run label — and the flow, prior and
    training settings only when the run samples with a flow. Two jobs with equal effective
    configurations measured the same thing (a sweep over a key no stage of their runs reads, e.g.
    ``flow.kernel_size`` with ``sampler=hmc``)."""
    cfg = results.get("config", {})
    block = results["runs"][label]
    uses_flow = results.get("flow") is not None and block["sampler"] in FLOW_SAMPLERS
    # the sampler settings (step size, its adaptation, Fourier mass, …) under their own key: the run
    # block's "sampler" (its name) must not overwrite them; the job's main sampler name is not one
    settings = {k: v for k, v in (cfg.get("sampler") or {}).items() if k != "name"}
    read = {"label": label, "lattice": block.get("lattice", results["lattice"]), "sampler_settings": settings,
            **{k: cfg.get(k) for k in ("action", "seed", "precision", "analysis")},
            **{k: block.get(k) for k in ("sampler", "num_chains", "num_traj", "num_therm", "meas_every")}}
    if uses_flow:  # the flow as trained (results.json "flow") and what it was trained with
        read.update({k: cfg.get(k) for k in ("prior", "train")}, flow=results["flow"], run_prior=block.get("prior"))
    return json.dumps(read, sort_keys=True, default=str)


def add_ratios(rows: list[dict]) -> None:
    """Fill ``tau_M_ratio_hmc``, ``cost_ratio_hmc`` and their errors of every row with the ratio
    to its plain-HMC reference (module docstring): the ``hmc`` row at the same (L, d, β, λ) in
    the same job, else the only one in ``rows``; ``None`` where there is no reference (and for
    the reference itself)."""
    def point(r):
        return (r["L"], r["d"], r["beta"], r["lam"])

    hmc = [r for r in rows if r["sampler"] == "hmc" and "@" not in r["label"] and r["tau_M"] is not None]
    for r in rows:
        same_job = [h for h in hmc if h["job"] == r["job"] and point(h) == point(r)]
        anywhere = [h for h in hmc if point(h) == point(r)]
        ref = same_job[0] if len(same_job) == 1 else anywhere[0] if len(anywhere) == 1 else None
        ok = ref is not None and ref is not r
        r["tau_M_ratio_hmc"], r["tau_M_ratio_hmc_err"] = (
            ratio(r["tau_M"], r["tau_M_err"], ref["tau_M"], ref["tau_M_err"]) if ok else (None, None))
        r["cost_ratio_hmc"], r["cost_ratio_hmc_err"] = (
            ratio(r["cost_per_indep"], r["cost_per_indep_err"], ref["cost_per_indep"], ref["cost_per_indep_err"])
            if ok else (None, None))


def collect(directory) -> list[dict]:
    """One row (dict with the keys :data:`COLUMNS`) per (job, run label) of every run below
    ``directory``; ``job`` is the run directory relative to ``directory`` ("." for itself).
    ``duplicate_of`` names the first row (``job:label``) with the same :func:`effective_config`;
    the ratio columns are :func:`add_ratios`'."""
    root = Path(directory)
    runs = io.find_runs(root)
    if not runs:
        raise FileNotFoundError(f"no results.json at or below {str(root)!r}: run python -m trivflow.run "
                                "(-m for a sweep) to write them")
    rows = []
    seen = {}
    for run_dir in runs:
        results = io.load_results(run_dir)
        overrides = " ".join(io.load_overrides(run_dir))
        flow = results.get("flow")
        for label, block in results["runs"].items():
            lattice = block.get("lattice", results["lattice"])
            uses_flow = flow is not None and block["sampler"] in FLOW_SAMPLERS
            # a "sampler@prior" baseline samples with the flow trained from that prior
            training = results.get("trainings", {}).get(block.get("prior")) or results.get("training") or {}
            tau, tau_err = _pair(block["tau_int"], "M")
            xi, xi_err = _pair(block["observables"], "xi")
            tps = block.get("traj_per_second")
            cost = _cost(block, results.get("config", {}).get("sampler", {}))
            ok = tau is not None and tps is not None and tps > 0
            job = str(run_dir.relative_to(root))
            effective = effective_config(results, label)
            duplicate_of = seen.get(effective)
            seen.setdefault(effective, f"{job}:{label}")
            rows.append({
                "job": job,
                "experiment": results.get("experiment"),
                "label": label,
                "L": lattice["L"],
                "d": lattice.get("d"),
                "beta": lattice["beta"],
                "lam": lattice.get("lam"),
                "kernel_size": flow.get("kernel_size") if uses_flow else None,
                "num_layers": flow.get("num_layers") if uses_flow else None,
                "prior": block.get("prior") if uses_flow else None,
                "sampler": block["sampler"],
                "acceptance": block.get("acceptance"),
                "tau_M": tau,
                "tau_M_err": tau_err,
                "tau_M_window": block["tau_int"]["M"][2] if block["tau_int"].get("M") else None,
                # False when the Γ-method found no automatic window (the run was too short for its τ,
                # e.g. independence MH at large V): such rows stay in the table but not in fits or plots
                "tau_M_reliable": not any(w.startswith("tau_int(M)") for w in block.get("warnings", [])),
                "xi": xi,
                "xi_err": xi_err,
                "traj_per_second": tps,
                **{f"{k}_per_indep{e}": cost["per_indep"][k][i] if cost else None
                   for k in ("force_evals", "flow_evals") for i, e in enumerate(("", "_err"))},
                "cost_per_indep": 2 * tau / tps if ok else None,
                "cost_per_indep_err": 2 * tau_err / tps if ok and tau_err is not None else None,
                "training_seconds": training.get("seconds") if uses_flow else None,
                "amortised_per_indep": (block.get("cost") or {}).get("amortised_seconds_per_indep", [None])[0],
                "amortised_per_indep_err": (block.get("cost") or {}).get("amortised_seconds_per_indep",
                                                                           [None, None])[1],
                "flow_mh_acceptance": training.get("mh_acceptance") if uses_flow else None,
                "overrides": overrides,
                "duplicate_of": duplicate_of,
                # the configured τ_MD: runs that differ in it are different samplers, never points of
                # one τ-vs-ξ series (write_report)
                "traj_length": results.get("config", {}).get("sampler", {}).get("traj_length"),
            })
    add_ratios(rows)
    return rows


def _cost(block: dict, sampler_cfg: dict) -> dict | None:
    """The run's ``cost`` block; for a run written before it existed, rebuilt from its τ_int and the
    sampler config (NUTS, whose steps per sample vary, excepted). None when it cannot be known."""
    from .summary import cost_block, evaluations_per_traj

    if "cost" in block:
        return block["cost"]
    try:
        per_traj = evaluations_per_traj(block["sampler"], num_steps=sampler_cfg.get("num_steps"),
                                        integrator=sampler_cfg.get("integrator", "leapfrog"))
        return cost_block(block, per_traj, primary="M" if "M" in block["tau_int"] else None)
    except (KeyError, TypeError, ValueError):
        return None


def _series(row, *keys) -> str:
    """Series name of a row: the sampler plus ``k=…``/``layers=…``/``L=…``/``tau_MD=…`` for the given
    keys that are set."""
    short = {"kernel_size": "k", "num_layers": "layers", "L": "L", "prior": "prior", "traj_length": "tau_MD"}
    return " ".join([row["sampler"], *(f"{short[k]}={row[k]}" for k in keys if row[k] is not None)])


def _fmt(v, err=None) -> str:
    """A table cell: ``v(err)`` in parenthesis notation, ``v`` to 4 significant digits without
    an error, ``n/a`` when missing."""
    return paren(v, err)


def markdown_table(rows: list[dict]) -> str:
    """The rows as a GitHub Markdown table, value and error columns merged in parenthesis notation."""
    head = ["job", "experiment", "label", "L", "beta", "k", "layers", "prior", "sampler", "acceptance", "tau_int(M)",
            "xi", "traj/s", "force evals per indep. sample", "flow passes per indep. sample", "s per indep. sample",
            "tau/tau_HMC", "cost/cost_HMC", "training s", "s per indep. sample, training included", "flow MH acc.",
            "overrides", "duplicate of"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["job"], r["experiment"], r["label"], r["L"], r["beta"], r["kernel_size"], r["num_layers"],
                 r["prior"], r["sampler"], _fmt(r["acceptance"]), _fmt(r["tau_M"], r["tau_M_err"]),
                 _fmt(r["xi"], r["xi_err"]), _fmt(r["traj_per_second"]),
                 _fmt(r["force_evals_per_indep"], r["force_evals_per_indep_err"]) if r["force_evals_per_indep"] else "",
                 _fmt(r["flow_evals_per_indep"], r["flow_evals_per_indep_err"]) if r["flow_evals_per_indep"] else "",
                 _fmt(r["cost_per_indep"], r["cost_per_indep_err"]),
                 _fmt(r["tau_M_ratio_hmc"], r["tau_M_ratio_hmc_err"]) if r["tau_M_ratio_hmc"] is not None else "",
                 _fmt(r["cost_ratio_hmc"], r["cost_ratio_hmc_err"]) if r["cost_ratio_hmc"] is not None else "",
                 _fmt(r["training_seconds"]), _fmt(r["amortised_per_indep"], r["amortised_per_indep_err"]),
                 _fmt(r["flow_mh_acceptance"]),
                 f"`{r['overrides']}`" if r["overrides"] else "", r["duplicate_of"]]
        lines.append("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(directory, out_dir=None) -> dict[str, Path]:
    """Collect ``directory``, write the tables, fits and plots into ``out_dir`` (default
    ``<directory>/report``); returns ``name -> path`` of what was written."""
    from .plots import plot_tau_vs_kernel_size, plot_tau_vs_xi, save

    rows = collect(directory)
    out = Path(out_dir) if out_dir is not None else Path(directory) / "report"
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    (out / "table.md").write_text(markdown_table(rows))
    written["table.md"] = out / "table.md"
    with open(out / "table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: ("" if r[k] is None else r[k]) for k in COLUMNS} for r in rows)
    written["table.csv"] = out / "table.csv"

    # τ vs ξ per (sampler, kernel size): rows with a measured ξ and τ
    points = defaultdict(lambda: {"xi": [], "xi_err": [], "tau": [], "tau_err": []})
    unreliable = [f"{r['job']}:{r['label']}" for r in rows if not r["tau_M_reliable"]]
    if unreliable:
        print(f"trivflow.report: tau_int(M) without an automatic window, left out of fits and plots: "
              f"{', '.join(unreliable)}", file=sys.stderr)
    # a τ-vs-ξ series is one sampler at one trajectory length: τ_int in trajectories depends on τ_MD,
    # so when the runs differ in it (experiments/tau_md) it names the series
    series_keys = ("kernel_size", "num_layers", "prior") + (
        ("traj_length",) if len({r["traj_length"] for r in rows}) > 1 else ())
    duplicated = {}  # series -> (row, the row it duplicates)
    for r in rows:
        if r["duplicate_of"] is not None:
            duplicated.setdefault(_series(r, *series_keys),
                                  (f"{r['job']}:{r['label']}", r["duplicate_of"]))
    for s, (dup, first) in duplicated.items():
        print(f"trivflow.report: refusing to fit {s}: {dup} ran the same effective configuration as {first} "
              "(its overrides change nothing its runs read), so they are one measurement twice, not two points",
              file=sys.stderr)
    for r in rows:
        if (r["tau_M_reliable"] and None not in (r["xi"], r["xi_err"], r["tau_M"], r["tau_M_err"])
                and _series(r, *series_keys) not in duplicated):
            p = points[_series(r, *series_keys)]
            for k, v in (("xi", r["xi"]), ("xi_err", r["xi_err"]), ("tau", r["tau_M"]), ("tau_err", r["tau_M_err"])):
                p[k].append(v)
    points = {s: p for s, p in points.items() if len(set(p["xi"])) >= 2}
    fits = {}
    for s, p in points.items():
        try:
            fits[s] = fit_z(p["xi"], p["xi_err"], p["tau"], p["tau_err"])
        except ValueError as err:
            print(f"trivflow.report: no z fit for {s}: {err}", file=sys.stderr)
    (out / "fits.json").write_text(json.dumps(
        {**{s: {"z": f.z, "z_err": f.z_err, "log_c": f.log_c, "log_c_err": f.log_c_err, "chi2": f.chi2, "dof": f.dof,
                "points": points[s], "method": "effective-variance weighted LSQ of log tau vs log xi"}
            for s, f in fits.items()},
         **{s: {"refused": f"{dup} duplicates {first}: same effective configuration"}
            for s, (dup, first) in duplicated.items()}}, indent=2))
    written["fits.json"] = out / "fits.json"
    if points:
        written["tau_vs_xi.png"] = save(plot_tau_vs_xi(points, fits), out / "tau_vs_xi.png")

    # τ and cost vs kernel size per (sampler, L, number of layers, prior)
    kpoints = defaultdict(lambda: defaultdict(list))
    for r in sorted(rows, key=lambda r: (r["kernel_size"] if isinstance(r["kernel_size"], int) else -1)):
        if (isinstance(r["kernel_size"], int) and r["tau_M_reliable"] and r["duplicate_of"] is None
                and None not in (r["tau_M"], r["tau_M_err"], r["cost_per_indep"], r["force_evals_per_indep"])):
            p = kpoints[_series(r, "L", "num_layers", "prior")]
            for k, v in (("k", r["kernel_size"]), ("tau", r["tau_M"]), ("tau_err", r["tau_M_err"]),
                         ("evals", r["force_evals_per_indep"]), ("evals_err", r["force_evals_per_indep_err"]),
                         ("cost", r["cost_per_indep"]), ("cost_err", r["cost_per_indep_err"])):
                p[k].append(v)
    kpoints = {s: dict(p) for s, p in kpoints.items() if len(set(p["k"])) >= 2}
    if kpoints:
        written["tau_vs_kernel_size.png"] = save(plot_tau_vs_kernel_size(kpoints), out / "tau_vs_kernel_size.png")
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trivflow.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", help="a run directory or a sweep directory (multirun/<exp>/<date>)")
    parser.add_argument("--out", default=None, help="output directory (default: <directory>/report)")
    args = parser.parse_args(argv)
    try:
        written = write_report(args.directory, args.out)
    except FileNotFoundError as err:
        print(f"trivflow.report: error: {err}", file=sys.stderr)
        return 1
    print(written["table.md"].read_text())
    for path in written.values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
