"""The experiment pipeline, callable without Hydra: ``run(cfg, out_dir) -> results``.

A run composes: validate the config (before any compute) → [prior → train the flow, or load
it from ``flow.checkpoint``] → sample with ``sampler.name`` and every ``baselines`` entry
(and, for flow samplers, at every extra L in ``volumes``) → Γ-method analysis →
``results.json`` (design.md §5) in ``out_dir``, with the flow in ``out_dir/flow``.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from .config import needs_flow, validate

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
    for pkg in ("trivflow", "jax", "jaxlib", "numpy", "flax", "optax", "numpyro"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


@dataclass
class TrainedFlow:
    """A flow ready for sampling: structure, parameters, and where it came from."""

    graphdef: object
    params: object
    config: dict
    training: dict | None  # the results.json "training" block, None when loaded

    @property
    def forward(self):
        """``(params, z) -> (phi, log_det)`` as ``partial(flow_forward, graphdef)``, the form
        for which FHMC uses the flows' hand-written pullback (a bound method would fall back
        to the slower jax.vjp)."""
        from .flows import flow_forward

        return partial(flow_forward, self.graphdef)


def _flow_kwargs(cfg) -> dict:
    f = cfg.flow
    kernel = OmegaConf.to_object(f.kernel_size) if OmegaConf.is_config(f.kernel_size) else f.kernel_size
    return dict(kernel_size=kernel, num_layers=f.num_layers, hidden_channels=tuple(f.hidden_channels),
                activation=f.activation, output_activation=f.output_activation, seed=f.seed,
                compute_dtype=f.compute_dtype)


def _checkpoint_dir(path: str) -> Path:
    """Accept a flow directory or a run directory holding ``flow/``."""
    p = Path(path)
    return p / "flow" if (p / "flow").is_dir() and not (p / "flow_config.json").exists() else p


def obtain_flow(cfg, theory, out_dir: Path, *, progress: bool) -> TrainedFlow:
    """Train the flow on the training lattice (physics.md §6), or load ``flow.checkpoint``."""
    import jax

    from .flows import build_flow, split_flow
    from .lattice.phi4 import phi4_action
    from .priors import GaussianPrior
    from .training import evaluate_flow, load_flow, save_flow, train_flow

    kwargs = _flow_kwargs(cfg)
    if cfg.flow.checkpoint:
        path = _checkpoint_dir(cfg.flow.checkpoint)
        expect = {k: kwargs[k] for k in ("kernel_size", "num_layers")}
        graphdef, params, stored = load_flow(path, shape=theory.shape, expect=expect)
        log.info("flow loaded from %s (trained at %s)", path, stored.get("lattice"))
        return TrainedFlow(graphdef, params, stored, None)

    t = cfg.train
    L_train = t.L or theory.L
    beta_train = t.beta if t.beta is not None else theory.beta
    train_theory = {"L": L_train, "d": theory.d, "beta": beta_train, "lam": theory.lam}
    graphdef, params = split_flow(build_flow(**kwargs))
    prior = GaussianPrior((L_train,) * theory.d)
    action_fn = partial(phi4_action, beta=beta_train, lam=theory.lam)
    key = jax.random.fold_in(jax.random.key(cfg.seed), 1)
    key_before, key_train, key_after = jax.random.split(key, 3)
    before = evaluate_flow(key_before, graphdef, params, prior, action_fn, batch_size=t.batch_size)
    log.info("training the flow at %s: %d steps, batch %d, lr %g", train_theory, t.steps, t.batch_size, t.lr)
    params, history = train_flow(key_train, graphdef, params, prior, action_fn, steps=t.steps,
                                 batch_size=t.batch_size, lr=t.lr, log_every=t.log_every, progress=progress)
    after = evaluate_flow(key_after, graphdef, params, prior, action_fn, batch_size=t.batch_size)
    flow_config = {**kwargs, "lattice": train_theory, "prior": cfg.prior.name,
                   "train": {"steps": t.steps, "batch_size": t.batch_size, "lr": t.lr}}
    save_flow(out_dir / "flow", params, flow_config, overwrite=True)
    np.savez(out_dir / "training_history.npz", **{k: np.asarray(v) for k, v in history.items()})
    training = {
        "steps": int(history["step"][-1]) if len(history["step"]) else 0,
        "seconds": float(history["seconds"]),
        "compile_seconds": float(history["compile_seconds"]),
        "lattice": train_theory,
        "loss": after["loss"], "ess": after["ess"], "mh_acceptance": after["mh_acceptance"],
        "untrained": before,
    }
    log.info("trained: loss %.4g -> %.4g, ESS %.3f -> %.3f, MH acceptance %.3f -> %.3f (%.1f s)",
             before["loss"], after["loss"], before["ess"], after["ess"], before["mh_acceptance"],
             after["mh_acceptance"], training["seconds"])
    return TrainedFlow(graphdef, params, flow_config, training)


def run_sampler(name: str, cfg, theory, flow: TrainedFlow | None, *, progress: bool):
    """Run one sampler on ``theory``; returns the driver's ChainResult."""
    import jax

    from . import hmc
    from .hmc.flowed import fhmc_kernel, pulled_back_measure
    from .priors import GaussianPrior
    from .samplers import flow_proposal, run_imh, run_nuts

    s = cfg.sampler
    key_init, key_run = jax.random.split(jax.random.key(cfg.seed))
    positions = hmc.random_positions(key_init, s.num_chains, theory.shape)
    theory_params = hmc.phi4_params(theory, positions.dtype)
    desc = f"{name.upper()} L={theory.L}"
    hmc_args = dict(step_size=s.traj_length / s.num_steps, num_traj=s.num_traj, num_therm=s.num_therm,
                    meas_every=s.meas_every, chunk_size=s.chunk_size, progress=progress, desc=desc)
    if name == "hmc":
        kernel = hmc.phi4_kernel(s.num_steps, s.integrator)
        return hmc.run_chains(key_run, kernel, positions, theory_params, measure_fn=hmc.phi4_measure, **hmc_args)
    if name == "nuts":
        return run_nuts(key_run, hmc.phi4_potential, positions, theory_params, num_warmup=s.num_therm,
                        num_samples=s.num_traj, measure_fn=hmc.phi4_measure,
                        target_accept_prob=s.target_accept, progress=progress)
    params = {"flow": flow.params, "theory": theory_params}
    if name == "fhmc":
        kernel = fhmc_kernel(flow.forward, hmc.phi4_potential, num_steps=s.num_steps, integrator=s.integrator,
                             force_fn=hmc.phi4_force_fn)
        measure = pulled_back_measure(flow.forward, hmc.phi4_measure)
        return hmc.run_chains(key_run, kernel, positions, params, measure_fn=measure, **hmc_args)
    if name == "imh":
        propose = flow_proposal(flow.forward, GaussianPrior(theory.shape), hmc.phi4_potential)
        return run_imh(key_run, propose, params, num_chains=s.num_chains, num_steps=s.num_traj,
                       measure_fn=hmc.phi4_measure, batch_size=s.batch_size, progress=progress, desc=desc)
    raise ValueError(f"sampler.name={name!r} is invalid")  # unreachable after validate()


def run(cfg: DictConfig, out_dir: str | Path) -> dict:
    """Run the experiment described by ``cfg`` and write ``results.json`` into ``out_dir``."""
    theory = validate(cfg)  # every check happens here, before any compute
    configure_jax(cfg.precision, cfg.platform)
    from .lattice.observables import default_plateau
    from .lattice.theory import Phi4Theory
    from .summary import summarize_phi4_run

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    # ξ does not change with the volume at fixed β, so extra volumes use the main lattice's plateau
    plateau = tuple(cfg.analysis.plateau) if cfg.analysis.plateau is not None else default_plateau(theory.L)
    flow = obtain_flow(cfg, theory, out_dir, progress=cfg.progress) if needs_flow(cfg) else None

    jobs = [(name, theory) for name in [cfg.sampler.name, *cfg.baselines]]
    jobs += [(cfg.sampler.name, Phi4Theory(L=L, d=theory.d, beta=theory.beta, lam=theory.lam))
             for L in cfg.volumes if L != theory.L]
    runs = {}
    for name, th in jobs:
        label = name if th.L == theory.L else f"{name}_L{th.L}"
        log.info("%s: %s, %s, %d chains x %d", cfg.experiment, label, th, cfg.sampler.num_chains,
                 cfg.sampler.num_traj)
        result = run_sampler(name, cfg, th, flow, progress=cfg.progress)
        runs[label] = summarize_phi4_run(result, th, sampler=name, s_tau=cfg.analysis.s_tau, plateau=plateau)
        runs[label]["lattice"] = th.to_dict()

    results = {
        "experiment": cfg.experiment,
        "lattice": theory.to_dict(),
        "seed": cfg.seed,
        "precision": cfg.precision,
        "versions": versions(),
        "command": " ".join(sys.argv),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "runs": runs,
        "wall_seconds": time.time() - started,
    }
    if flow is not None and flow.training is not None:
        results["training"] = flow.training
    if flow is not None:
        results["flow"] = {k: v for k, v in flow.config.items() if k != "train"}
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    log.info("results written to %s", out_dir / "results.json")
    log.info("\n%s", format_summary(results))
    return results


def _fmt(pair) -> str:
    return "n/a" if pair is None or pair[0] is None else f"{pair[0]:.5g} ± {pair[1]:.2g}"


def format_summary(results: dict) -> str:
    """A short human-readable table of every run in ``results``."""
    lat = results["lattice"]
    lines = [f"L={lat['L']} d={lat['d']} beta={lat['beta']} lam={lat['lam']}"]
    if "training" in results:
        tr = results["training"]
        lines.append(f"[training] {tr['steps']} steps in {tr['seconds']:.1f} s: loss {tr['loss']:.5g}, "
                     f"ESS {tr['ess']:.3f}, MH acceptance {tr['mh_acceptance']:.3f} (at L={tr['lattice']['L']})")
    for name, r in results["runs"].items():
        o, t = r["observables"], r["tau_int"]
        lines += [
            f"[{name}] acceptance {r['acceptance']:.3f}   <exp(-dH)> {_fmt(r['exp_minus_dH'])}",
            f"  chi {_fmt(o['chi'])}   <|M|> {_fmt(o['absM'])}   G0 {_fmt(o['G0'])}   xi {_fmt(o['xi'])}",
            f"  tau_int(M) {_fmt(t['M'])} (W={t['M'][2]})   tau_int(|M|) {_fmt(t['absM'])}",
            f"  {r['traj_per_second']:.4g} chain-trajectories/s ({r['seconds']:.1f} s sampling, "
            f"{r['compile_seconds']:.1f} s compile)",
        ]
        lines += [f"  WARNING {w}" for w in r.get("warnings", [])]
    return "\n".join(lines)
