"""The experiment pipeline, callable without Hydra: ``run(cfg, out_dir) -> results``.

A run composes: validate the config (before any compute) → build the theory and the
sampler → sample all chains → Γ-method analysis → ``results.json`` in ``out_dir``.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .config import validate

log = logging.getLogger("trivflow")


def configure_jax(precision: str = "float64", platform_name: str | None = None) -> None:
    """Apply precision and platform before any JAX array exists (design.md §4)."""
    import jax

    jax.config.update("jax_enable_x64", precision == "float64")
    if platform_name:
        jax.config.update("jax_platforms", platform_name)


def versions() -> dict:
    """Versions of Python and the libraries that determine the numbers."""
    out = {"python": platform.python_version()}
    for pkg in ("trivflow", "jax", "jaxlib", "numpy", "flax", "optax"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def run_hmc(cfg: DictConfig, theory, *, progress: bool):
    """Plain HMC on S for ``cfg.sampler``; returns the driver's ChainResult."""
    import jax

    from . import hmc

    s = cfg.sampler
    key_init, key_run = jax.random.split(jax.random.key(cfg.seed))
    positions = hmc.random_positions(key_init, s.num_chains, theory.shape)
    kernel = hmc.phi4_kernel(s.num_steps, s.integrator)
    return hmc.run_chains(
        key_run, kernel, positions, hmc.phi4_params(theory, positions.dtype),
        step_size=s.traj_length / s.num_steps, num_traj=s.num_traj, num_therm=s.num_therm,
        meas_every=s.meas_every, measure_fn=hmc.phi4_measure, chunk_size=s.chunk_size,
        progress=progress, desc=s.name.upper(),
    )


def run(cfg: DictConfig, out_dir: str | Path) -> dict:
    """Run the experiment described by ``cfg`` and write ``results.json`` into ``out_dir``."""
    theory = validate(cfg)  # every check happens here, before any compute
    configure_jax(cfg.precision, cfg.platform)
    from .summary import summarize_phi4_run

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    log.info("%s: %s, sampler %s, %d chains x %d trajectories", cfg.experiment, theory,
             cfg.sampler.name, cfg.sampler.num_chains, cfg.sampler.num_traj)
    result = run_hmc(cfg, theory, progress=cfg.progress)
    plateau = tuple(cfg.analysis.plateau) if cfg.analysis.plateau is not None else None
    summary = summarize_phi4_run(result, theory, sampler=cfg.sampler.name, s_tau=cfg.analysis.s_tau,
                                 plateau=plateau)
    results = {
        "experiment": cfg.experiment,
        "lattice": theory.to_dict(),
        "seed": cfg.seed,
        "precision": cfg.precision,
        "versions": versions(),
        "command": " ".join(sys.argv),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "runs": {cfg.sampler.name: summary},
        "wall_seconds": time.time() - started,
    }
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    log.info("results written to %s", out_dir / "results.json")
    log.info("\n%s", format_summary(results))
    return results


def format_summary(results: dict) -> str:
    """A short human-readable table of every run in ``results``."""
    lat = results["lattice"]
    lines = [f"L={lat['L']} d={lat['d']} beta={lat['beta']} lam={lat['lam']}"]
    for name, r in results["runs"].items():
        o, t = r["observables"], r["tau_int"]

        def fmt(pair):
            return "n/a" if pair[0] is None else f"{pair[0]:.5g} ± {pair[1]:.2g}"

        lines += [
            f"[{name}] acceptance {r['acceptance']:.3f}   <exp(-dH)> {fmt(r['exp_minus_dH'])}",
            f"  chi {fmt(o['chi'])}   <|M|> {fmt(o['absM'])}   G0 {fmt(o['G0'])}   xi {fmt(o['xi'])}",
            f"  tau_int(M) {fmt(t['M'])} (W={t['M'][2]})   tau_int(|M|) {fmt(t['absM'])}",
            f"  {r['traj_per_second']:.4g} chain-trajectories/s ({r['seconds']:.1f} s sampling, "
            f"{r['compile_seconds']:.1f} s compile)",
        ]
    return "\n".join(lines)
