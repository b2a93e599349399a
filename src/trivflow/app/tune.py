"""The ``task: tune_beta`` of the application: validate the ``tune`` keys, run the search of
:mod:`trivflow.tuning` with an HMC measurement of ξ, write ``results.json`` and the plot.

The search algorithm itself (bracketing, secant on log ξ, the final local fit) is library code in
:mod:`trivflow.tuning`; its figure is :func:`trivflow.plots.plot_tuning`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

from ..state import atomic_write_text
from ..tuning import TunePoint, hmc_xi_measure, initial_bracket, tune_beta
from .config import resolve_target_xi, validate

log = logging.getLogger("trivflow")


def run_tune_beta(cfg, out_dir) -> dict:
    """The ``task: tune_beta`` experiment: tune β at (lattice.L, lattice.lam) to ``target_xi``.

    Writes ``results.json`` with ``experiment``, ``lattice`` (beta = β*), ``seed``,
    ``versions``, ``command``, ``config``, a ``tune_beta`` block {L, d, lam, target_xi, beta,
    beta_err, converged, message, plateau, points: [{beta, xi, xi_err, tau_int, seconds, …}]}
    and ``runs.point<i>``, the full run block of every measurement; and ``plots/tune_beta.png``.
    """
    from ..plots import plot_tuning
    from .environment import configure_jax, cpu_devices_options, results_header

    theory = validate(cfg)  # includes validate_tune: every check before compute
    device = configure_jax(cfg.precision, cfg.platform, cfg.get("compile_cache"),
                           cache_max_gb=cfg.get("compile_cache_max_gb"),
                           **cpu_devices_options(cfg, math.prod(theory.shape), {"hmc"}))  # its HMC chains are split
    import jax

    from ..lattice.observables import default_plateau

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    t, s = cfg.tune, cfg.sampler
    target = resolve_target_xi(cfg)
    plateau = tuple(cfg.analysis.plateau) if cfg.analysis.plateau is not None else default_plateau(theory.L)
    if t.beta_lo is not None:
        lo, hi = float(t.beta_lo), float(t.beta_hi)
    else:
        lo, hi = initial_bracket(theory.d, theory.lam, target, t.bracket_width)
    beta_max = 1.0 / theory.d if theory.lam == 0 else math.inf
    measure = hmc_xi_measure(jax.random.key(cfg.seed), theory.L, theory.d, theory.lam,
                             num_chains=s.num_chains, num_traj=s.num_traj, num_therm=s.num_therm,
                             num_steps=s.num_steps, traj_length=s.traj_length, integrator=s.integrator,
                             meas_every=s.meas_every, chunk_size=s.chunk_size, plateau=plateau,
                             s_tau=cfg.analysis.s_tau, warm_dbeta=t.warm_dbeta, warm_therm=t.warm_therm,
                             progress=cfg.progress and not cfg.get("quiet", False))
    log.info("tune_beta: L=%d d=%d lam=%g target xi=%g, bracket [%.6g, %.6g], plateau %s, %d chains x %d",
             theory.L, theory.d, theory.lam, target, lo, hi, plateau, s.num_chains, s.num_traj)

    def report(p: TunePoint):
        xi = "undefined" if p.xi is None else f"{p.xi:.5g} ± {p.xi_err:.2g}"
        log.info("  beta=%.6f  xi=%s  tau_int(|M|)=%s  (%.1f s)", p.beta, xi,
                 p.extra.get("tau_int", {}).get("absM"), p.extra.get("seconds", float("nan")))

    result = tune_beta(measure, target, lo, hi, max_iter=t.max_iter, tol_sigma=t.tol_sigma, xi_rtol=t.xi_rtol,
                       fit_points=t.fit_points, fit_degree=t.fit_degree, fit_window=t.fit_window,
                       max_step=t.max_step, beta_min=0.0, beta_max=beta_max,
                       callback=report)
    block = result.to_dict()
    runs = {}
    for i, p in enumerate(block["points"]):
        runs[f"point{i}"] = p.pop("run")
    block = {"L": theory.L, "d": theory.d, "lam": theory.lam, "plateau": list(plateau),
             "bracket": [lo, hi], **block}
    results = {**results_header(cfg, device), "task": "tune_beta", "lattice": {**theory.to_dict(), "beta": result.beta},
               "tune_beta": block, "runs": runs, "wall_seconds": time.time() - started}
    atomic_write_text(out_dir / "results.json", json.dumps(results, indent=2))
    try:
        if cfg.get("plots", True):
            plot_tuning(result, out_dir / "plots" / "tune_beta.png",
                        title=f"L={theory.L}, λ={theory.lam}: ξ(β) → {target:g}")
    except Exception as err:  # a figure must never lose the results
        log.warning("tune_beta plot not written: %s", err)
    beta = "n/a" if result.beta is None else f"{result.beta:.6f} ± {result.beta_err:.6f}"
    log.info("tune_beta: beta* = %s for xi = %g at L=%d (%s); %d measurements, %.0f s", beta, target,
             theory.L, result.message, len(result.points), results["wall_seconds"])
    log.info("results written to %s", out_dir / "results.json")
    return results
