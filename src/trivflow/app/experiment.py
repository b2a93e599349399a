"""The experiment pipeline, callable without Hydra: ``run(cfg, out_dir) -> results``.

A run composes: validate the config (before any compute) → [prior → train the flow, or load
it from ``flow.checkpoint``] → sample with ``sampler.name`` and every ``baselines`` entry
(and, for flow samplers, at every extra L in ``volumes``) → Γ-method analysis →
``results.json`` (docs/results.md) in ``out_dir``, with the flow in ``out_dir/flow``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ..formatting import paren, paren_pair, plain, ratio
from ..state import atomic_savez, atomic_write_text, config_fingerprint, read_meta, replace_dir, temporary_dir
from ..theory import THEORIES, flow_family
from . import rundir
from .config import (
    FLOW_SAMPLERS,
    SAMPLER_KEYS,
    TRAIN_KEYS,
    checkpoint_dir,
    config_keys,
    sampler_specs,
    split_samplers,
    validate,
)
from .environment import beta_source, configure_jax, cpu_device_count, cpu_devices_options, results_header

log = logging.getLogger("trivflow")


@dataclass
class TrainedFlow:
    """A flow ready for sampling (:class:`trivflow.flows.Flow`) and where it came from."""

    flow: object  # trivflow.flows.Flow
    config: dict
    training: dict | None  # the results.json "training" block, None when loaded
    prior: object = None  # the prior it was trained with (independence MH proposes from it)


def field_dtype(cfg):
    """The dtype of fields and flow parameters for ``cfg.precision`` (passed explicitly, so a
    deliberate ``precision=float32`` run gets no :class:`~trivflow.dtypes.Float32Default` warning)."""
    import jax.numpy as jnp

    return jnp.float64 if cfg.precision == "float64" else jnp.float32


def _flow_kwargs(cfg, theory=None) -> dict:
    """The flow's architecture from ``flow.*``: the keys of the theory's flow family (U(1): its
    gauge flows, :func:`trivflow.theory.flow_family`), else the φ⁴ coupling flows' FlowConfig keys."""
    family = flow_family(theory) if theory is not None else None
    if family is not None:
        return family.config(OmegaConf.to_container(cfg.flow, resolve=True)).to_dict()
    f = cfg.flow
    kernel = OmegaConf.to_object(f.kernel_size) if OmegaConf.is_config(f.kernel_size) else f.kernel_size
    return dict(kernel_size=kernel, num_layers=f.num_layers, hidden_channels=tuple(f.hidden_channels),
                activation=f.activation, output_activation=f.output_activation, seed=f.seed,
                compute_dtype=f.compute_dtype)


@dataclass(frozen=True)
class FlowTraining:
    """One flow to train: into ``directory`` (``flow/``, ``training_history.npz`` and its
    ``state/train.npz``), on the lattice (L, β) of the theory, from the prior ``prior``
    (the ``prior.*`` values for :func:`trivflow.priors.make_prior`)."""

    directory: Path
    L: int
    beta: float
    prior: dict

    @property
    def state_path(self) -> Path:
        return self.directory / "state" / "train.npz"


@dataclass(frozen=True)
class FlowPlan:
    """The flow of one prior name (``prior.name``, or the prior of a ``sampler@prior`` baseline):
    loaded from ``checkpoint``, or trained in ``levels``, coarsest first (one level; N for a
    tower prior, composed g_N ∘ … ∘ g_1: two for ``interp4_x2``, ``prior.levels`` for
    ``multilevel``)."""

    prior: str
    levels: tuple[FlowTraining, ...]
    checkpoint: Path | None = None


@dataclass(frozen=True)
class SampleJob:
    """One sampler run: its run label, sampler, the prior of its flow (flow samplers) and theory."""

    label: str
    sampler: str
    prior: str | None
    theory: object  # trivflow.theory.Theory

    @property
    def state_path(self) -> Path:
        return Path("state") / f"{self.label}.npz"


@dataclass(frozen=True)
class Plan:
    """Everything a sample task will do, decided before any compute (:func:`make_plan`)."""

    flows: dict  # prior name → FlowPlan, in the order they are prepared
    jobs: tuple[SampleJob, ...]

    def state_paths(self, out_dir: Path) -> list[Path]:
        """Every resumable state file the plan reads (training levels and sampler runs)."""
        trainings = [lv.state_path for fp in self.flows.values() for lv in fp.levels]
        return trainings + [out_dir / job.state_path for job in self.jobs]


def make_plan(cfg, theory, out_dir: Path) -> Plan:
    """Parse ``sampler.name``, ``baselines`` (``sampler@prior``), ``volumes`` and each prior's
    level tower once into a :class:`Plan`: the flows to prepare and the sampler jobs, in order.

    The main prior's flow trains into ``out_dir`` (a tower: g_{N−1} into ``out_dir/coarse``, g_{N−2}
    into ``out_dir/coarse/coarse``, …; :func:`level_directory`) or loads ``flow.checkpoint``; a
    baseline's prior trains into ``out_dir/trainings/<prior>``."""
    from ..priors.factory import MULTILEVEL_KEYS, TOWER_PRIORS, X2_KEYS, derived_prior_config, tower_levels

    t = cfg.train
    L_train = t.L or theory.L
    beta_train = t.beta if t.beta is not None else theory.beta

    def levels(prior_cfg: dict, directory: Path) -> tuple[FlowTraining, ...]:
        if prior_cfg["name"] not in TOWER_PRIORS:
            return (FlowTraining(directory, L_train, beta_train, prior_cfg),)
        base = {**prior_cfg, **dict.fromkeys(X2_KEYS + MULTILEVEL_KEYS)}
        tower = tower_levels(prior_cfg, L_train, beta_train)
        return tuple(FlowTraining(level_directory(directory, len(tower) - 1 - j), lv["L"], lv["beta"],
                                  {**base, **lv["prior"]}) for j, lv in enumerate(tower))

    specs = sampler_specs(cfg)
    main_prior = OmegaConf.to_container(cfg.prior, resolve=True)
    flows = {}
    for spec in specs:
        name = spec.prior or cfg.prior.name
        if spec.sampler not in FLOW_SAMPLERS or name in flows:
            continue
        if name == cfg.prior.name:
            checkpoint = checkpoint_dir(cfg.flow.checkpoint) if cfg.flow.checkpoint else None
            flows[name] = FlowPlan(name, () if checkpoint else levels(main_prior, out_dir), checkpoint)
        else:
            flows[name] = FlowPlan(name, levels(derived_prior_config(main_prior, name), out_dir / "trainings" / name))
    jobs = [SampleJob(spec.label, spec.sampler, spec.prior or cfg.prior.name if spec.sampler in FLOW_SAMPLERS
                      else None, theory) for spec in specs]
    main = specs[0]
    jobs += [SampleJob(f"{main.label}_L{L}", main.sampler, jobs[0].prior, theory.with_extent(L))
             for L in cfg.volumes if L != theory.L]
    return Plan(flows, tuple(jobs))


def remove_old_states(plan: Plan, out_dir: Path, resume) -> None:
    """States are always written, so that a killed run can be resumed; they are read only when
    ``resume`` is set: otherwise the states an earlier run left where this plan writes are
    removed, before anything runs."""
    if resume:
        return
    for path in plan.state_paths(out_dir):
        if path.exists():
            log.warning("resume=false: removing the old state %s", path)
            path.unlink()


def level_directory(directory: Path, depth: int) -> Path:
    """Where the level ``depth`` steps below the finest of a tower trains:
    ``directory/coarse/…/coarse`` (``depth`` times). Its ``flow/`` holds that level's flow and, in
    ``flow/coarse``, the whole tower below it, so every ``flow/`` is a checkpoint of its sub-tower."""
    return directory.joinpath(*["coarse"] * depth)


def load_checkpoint(path: Path, theory, expect: dict) -> TrainedFlow:
    """The flow saved in ``path`` (``flow.checkpoint``), composed g_N ∘ (the tower in
    ``path/coarse``) when that holds one (a tower checkpoint: interp4_x2, multilevel), recursively,
    so a checkpoint of N levels loads as g_N ∘ … ∘ g_1 on the lattice of ``theory`` (any even L)."""
    from ..flows import Flow
    from ..training import load_flow
    from ..training.checkpoint import is_complete

    family = flow_family(theory)
    if family is not None:  # e.g. U(1)'s gauge flows: no coarse level, the family's own prior
        flow, stored = family.load(path)
        log.info("flow loaded from %s (trained at %s)", path, stored.get("lattice"))
        return TrainedFlow(flow, stored, None, family.prior(stored.get("prior", family.prior_names[0]), theory.shape))
    graphdef, params, stored = load_flow(path, shape=theory.shape, expect=expect)
    log.info("flow loaded from %s (trained at %s)", path, stored.get("lattice"))
    loaded = TrainedFlow(Flow.from_module(graphdef, params), stored, None)
    if is_complete(path / "coarse"):  # the tower below g_N, itself a checkpoint
        below = load_checkpoint(path / "coarse", theory, expect)
        log.info("composed with the coarse flow from %s", path / "coarse")
        return compose_trained(below, loaded)
    return loaded


def prepare_flow(plan: FlowPlan, cfg, theory, out_dir: Path, *, progress: bool) -> TrainedFlow:
    """Load or train the flow of ``plan``; the levels of a tower are trained coarsest first and
    composed, g_N ∘ … ∘ g_1. Each level's ``flow/`` gets the tower below it copied into
    ``flow/coarse``, so that the finest ``flow/`` is one checkpoint of the whole tower; the training
    block gains the tower's cost (:func:`tower_cost`)."""
    from ..priors.factory import TOWER_PRIORS

    kwargs = _flow_kwargs(cfg, theory)
    if plan.checkpoint is not None:
        return load_checkpoint(plan.checkpoint, theory, {k: kwargs[k] for k in ("kernel_size", "num_layers")})
    with config_keys(TRAIN_KEYS):  # a diverged training names train.lr and train.steps
        trained = [train_level(level, cfg, theory, out_dir, progress=progress) for level in plan.levels]
    cost = tower_cost([flow.training for flow in trained]) if plan.prior in TOWER_PRIORS else None
    if len(trained) == 1:
        if cost is not None:
            trained[0].training["tower"] = cost
        return trained[0]
    for flow in trained:
        flow.config["prior"] = plan.prior
    from ..training.checkpoint import is_complete  # (Flax) after the first level's prior ensemble
    # g_{j-1} ∘ … ∘ g_1 beside g_j, coarsest first, so that every flow/ loads as its sub-tower;
    # copied whole or not at all (a kill mid-copy leaves no flow/coarse, the resumed run copies it again)
    for below, above in zip(plan.levels, plan.levels[1:]):
        target = above.directory / "flow" / "coarse"
        if not is_complete(target):
            tmp = temporary_dir(target)
            shutil.copytree(below.directory / "flow", tmp, dirs_exist_ok=True)
            replace_dir(tmp, target)
    composed = trained[0]
    for flow in trained[1:]:
        composed = compose_trained(composed, flow)
    composed.training["tower"] = cost
    return composed


def tower_cost(trainings: list[dict]) -> dict:
    """The training cost of a tower of flows from their training blocks (coarsest first), in seconds.

    ``train_seconds`` = Σ_j wall seconds of training g_j (compilation included;
    ``compile_seconds`` = Σ_j of that part); ``ensemble_seconds`` = Σ_j seconds the HMC ensemble
    of level j's prior took to generate (``ensemble_seconds_per_level``; as recorded in the file:
    a cached or given ensemble counts with what it cost to make); ``total_seconds`` =
    train_seconds + ensemble_seconds; ``levels`` N and ``lattices`` [L_1, …, L_N].
    """
    ens = [float(tr["prior"].get("ensemble_meta", {}).get("seconds", 0.0)) for tr in trainings]
    train = sum(float(tr["seconds"]) for tr in trainings)
    return {"levels": len(trainings), "lattices": [int(tr["lattice"]["L"]) for tr in trainings],
            "train_seconds": train, "compile_seconds": sum(float(tr["compile_seconds"]) for tr in trainings),
            "ensemble_seconds": sum(ens), "ensemble_seconds_per_level": ens, "total_seconds": train + sum(ens)}


def train_level(level: FlowTraining, cfg, theory, out_dir: Path, *, progress: bool) -> TrainedFlow:
    """Train one flow by reverse KL (docs/theory.md#training-reverse-kl) on (level.L, level.beta)
    from ``level.prior`` (ensembles cached in ``out_dir/priors``); write ``flow/`` and
    ``training_history.npz`` into ``level.directory``. A training that ends worse than it started
    stops the run (:func:`trivflow.training.check_training`)."""
    import jax

    from ..priors import make_prior

    t, where = cfg.train, level.directory
    where.mkdir(parents=True, exist_ok=True)
    kwargs = _flow_kwargs(cfg, theory)
    train_theory = dataclasses.replace(theory, L=level.L, beta=level.beta)
    family = flow_family(theory)
    if family is None:  # φ⁴'s coupling flows and priors
        # the prior first: a coarse prior's HMC ensemble is the job's first sampling, and it does not
        # wait for Flax and Optax to import (docs/performance.md, seconds to the first sample)
        prior, prior_info = make_prior(level.prior, L_train=level.L, d=theory.d, lam=theory.lam, seed=cfg.seed,
                                       directory=out_dir / "priors", progress=progress)
        from ..flows import Flow, build_flow, split_flow

        flow = Flow.from_module(*split_flow(build_flow(**kwargs, dtype=field_dtype(cfg))))
    else:  # the theory's own flows (U(1): gauge-equivariant couplings from the Haar measure)
        flow = family.build(family.config(kwargs))
        prior, prior_info = family.prior(level.prior["name"], train_theory.shape), {"name": level.prior["name"]}
    from ..training import check_training, evaluate_flow, save_flow, train_flow
    from ..training.checkpoint import is_complete

    action_fn = train_theory.action_fn
    key = jax.random.fold_in(jax.random.key(cfg.seed), 1)
    key_before, key_train, key_after = jax.random.split(key, 3)
    before = evaluate_flow(key_before, flow, prior, action_fn, batch_size=t.batch_size)
    state_path = level.state_path
    trained = state_path.exists() and read_meta(state_path).get("complete", False)
    log.info("training the flow at %s: %d steps, batch %d, lr %g", train_theory.to_dict(), t.steps, t.batch_size,
             t.lr)
    # the state is this level's: the run's settings with the level's lattice and prior
    fingerprint = {**config_fingerprint(cfg), "train.L": level.L, "train.beta": level.beta,
                   **{f"prior.{k}": v for k, v in level.prior.items()}}
    flow, history = train_flow(key_train, flow, prior, action_fn, steps=t.steps, batch_size=t.batch_size,
                               lr=t.lr, log_every=t.log_every, progress=progress, state_path=state_path,
                               save_every=t.checkpoint_every, fingerprint=fingerprint)
    flow_config = {**({"family": family.name} if family is not None else {}), **kwargs,
                   "lattice": train_theory.to_dict(), "prior": level.prior["name"],
                   "train": {"steps": t.steps, "batch_size": t.batch_size, "lr": t.lr}}
    after = evaluate_flow(key_after, flow, prior, action_fn, batch_size=t.batch_size)
    check_training(before, after, lr=t.lr, steps=t.steps)  # a diverged flow never reaches a sampler
    if trained and is_complete(where / "flow"):  # resumed after training: flow/ was written then
        log.info("training had completed: the flow in %s is reused", where / "flow")
    elif family is not None:  # also rebuilds a flow/ whose writing was killed
        family.save(where / "flow", flow, family.config(kwargs),
                    {k: v for k, v in flow_config.items() if k not in kwargs})
    else:  # also rebuilds a flow/ whose writing was killed (params from state/train.npz)
        save_flow(where / "flow", flow.params, flow_config, overwrite=True)
    atomic_savez(where / "training_history.npz", {k: np.asarray(v) for k, v in history.items()})
    training = {
        "steps": int(history["step"][-1]) if len(history["step"]) else 0,
        "seconds": float(history["seconds"]),
        "compile_seconds": float(history["compile_seconds"]),
        "lattice": train_theory.to_dict(),
        "loss": after["loss"], "ess": after["ess"], "mh_acceptance": after["mh_acceptance"],
        "untrained": before,
        "prior": prior_info,
    }
    log.info("trained: loss %.4g -> %.4g, ESS %.3f -> %.3f, MH acceptance %.3f -> %.3f (%.1f s)",
             before["loss"], after["loss"], before["ess"], after["ess"], before["mh_acceptance"],
             after["mh_acceptance"], training["seconds"])
    return TrainedFlow(flow, flow_config, training, prior)


def compose_trained(g1: TrainedFlow, g2: TrainedFlow) -> TrainedFlow:
    """g = g₂ ∘ g₁ (:func:`trivflow.flows.compose_flows`: one Compose module, so FHMC keeps the
    hand-written pullback); the config and training blocks are g₂'s with g₁'s under
    ``"coarse"``; no prior (it is neither one's). g₁ may itself be a composed tower (nested
    ``"coarse"`` blocks, one per level)."""
    from ..flows import compose_flows

    training = None if g2.training is None else {**g2.training, "coarse": g1.training}
    return TrainedFlow(compose_flows(g1.flow, g2.flow), {**g2.config, "coarse": g1.config}, training)


def _chain_devices(cfg, volume: int, split, platform: str):
    """The devices the hmc/fhmc chains are split over: all of them (None), or under
    ``cpu_devices=auto`` on CPU the first :func:`~trivflow.app.environment.cpu_device_count` of
    those JAX has, so that a process that started JAX with more devices than this job wants (a
    multirun sweep, a library caller) uses fewer instead of refusing ``sampler.num_chains``."""
    import jax

    if not split or platform != "cpu" or cfg.get("cpu_devices", "auto") != "auto":
        return None
    devices = jax.devices()
    return devices[:cpu_device_count("auto", cfg.sampler.num_chains, volume, split, cores=len(devices))]


def run_sampler(name: str, cfg, theory, flow: TrainedFlow | None, *, progress: bool,
                state_path: Path | None = None, devices=None):
    """Run one sampler on ``theory``; returns the driver's ChainResult.

    ``state_path``: resumable state of hmc, fhmc and imh (written every
    ``sampler.checkpoint_every`` chunks, continued from when it exists, checked against the
    config's fingerprint). NUTS is one NumPyro call and is not resumable (it reruns, with the
    same result). ``sampler.shard``: split the hmc/fhmc chains over ``devices`` (None: all).

    Raises ``ValueError`` when the chains do not move (``sampler.min_acceptance``), naming the
    keys to change."""
    from ..hmc.driver import FrozenChainsError

    try:
        return _run_sampler(name, cfg, theory, flow, progress=progress, state_path=state_path, devices=devices)
    except FrozenChainsError as err:
        raise ValueError(f"{err}; {_frozen_advice(name, cfg.sampler)}") from None


def _frozen_advice(name: str, s) -> str:
    """What to change when the chains of sampler ``name`` do not move."""
    if name == "imh":
        return ("no proposal of the flow was accepted: train it better (train.steps, train.lr, the prior) or "
                "sample with sampler=fhmc")
    step = f"step size = sampler.traj_length/sampler.num_steps = {s.traj_length:g}/{s.num_steps}"
    flow = ", or the flow (train.*)" if name == "fhmc" else ""
    return (f"lower the {step} (e.g. sampler.num_steps={4 * s.num_steps} or sampler.traj_length="
            f"{s.traj_length / 4:g}), or check the couplings (lattice.beta, lattice.lam){flow}; "
            f"sampler.min_acceptance={s.min_acceptance:g} sets this limit")


def _kernel_options(s, theory) -> dict:
    """The hmc/fhmc kernel's options from ``sampler.fourier_mass`` and ``sampler.momentum_draw``
    (both off by default): the Fourier mass matrix M̂(p) = β Σ_μ 4 sin²(p_μ/2) + m² on the
    theory's lattice (for FHMC it acts on φ̃, same shape) and the momentum stream."""
    from ..hmc.fourier import FourierMetric, lattice_mass

    metric = None
    if s.fourier_mass is not None:
        metric = FourierMetric(lattice_mass(theory.shape, theory.beta, s.fourier_mass), theory.shape)
    return {"metric": metric, "momentum_draw": s.momentum_draw}


def _run_sampler(name: str, cfg, theory, flow: TrainedFlow | None, *, progress: bool, state_path: Path | None,
                 devices=None):
    import jax

    from .. import hmc
    from ..hmc.adaptation import DualAveraging
    from ..hmc.flowed import fhmc_kernel, pulled_back_measure
    from ..priors import GaussianPrior
    from ..priors.base import as_pytree
    from ..theory import block_value_and_grad_fn

    s = cfg.sampler
    key_init, key_run = jax.random.split(jax.random.key(cfg.seed))
    positions = theory.random_field(key_init, s.num_chains, field_dtype(cfg))
    theory_params = theory.params(positions.dtype)
    desc = f"{name.upper()} L={theory.L}"
    resumable = dict(state_path=state_path, save_every=s.checkpoint_every,
                     fingerprint=None if state_path is None else config_fingerprint(cfg))
    hmc_args = dict(step_size=s.traj_length / s.num_steps, num_traj=s.num_traj, num_therm=s.num_therm,
                    meas_every=s.meas_every, chunk_size=s.chunk_size, progress=progress, desc=desc,
                    devices=devices if s.shard else jax.devices()[:1], min_acceptance=s.min_acceptance or None,
                    adapt=DualAveraging(target=s.target_accept) if s.adapt_step_size else None, **resumable)
    options = _kernel_options(s, theory)
    if name == "hmc":
        kernel = hmc.build_kernel(theory.potential_fn, num_steps=s.num_steps, integrator=s.integrator,
                                  value_and_grad_fn=theory.value_and_grad_fn, **options)
        return hmc.run_chains(key_run, kernel, positions, theory_params, measure_fn=theory.measure_fn, **hmc_args)
    if name == "nuts":
        from ..samplers import run_nuts  # imports NumPyro: only for NUTS

        return run_nuts(key_run, theory.potential_fn, positions, theory_params, num_warmup=s.num_therm,
                        num_samples=s.num_traj, measure_fn=theory.measure_fn,
                        target_accept_prob=s.target_accept, progress=progress)
    params = {"flow": flow.flow, "theory": theory_params}
    if name == "fhmc":
        kernel = fhmc_kernel(theory.potential_fn, num_steps=s.num_steps, integrator=s.integrator,
                             force_fn=theory.force_fn,
                             block_value_and_grad_fn=block_value_and_grad_fn(theory), **options)
        measure = pulled_back_measure(theory.measure_fn)
        return hmc.run_chains(key_run, kernel, positions, params, measure_fn=measure, **hmc_args)
    if name == "imh":
        from ..samplers import flow_proposal, run_imh

        family = flow_family(theory)
        if family is not None:  # the family's prior has no lattice-bound state: build it at this L
            prior = family.prior(family.prior_names[0], theory.shape)
        else:
            prior = flow.prior if flow.prior is not None else GaussianPrior(theory.shape)
        if tuple(prior.shape) != tuple(theory.shape):
            if not isinstance(prior, GaussianPrior):  # refused by validate(); a library caller may get here
                raise ValueError(f"imh at L={theory.L}: the flow's prior lives on shape {prior.shape}")
            prior = GaussianPrior(theory.shape)
        propose = flow_proposal(None, theory.potential_fn)  # the prior is a jit argument
        params = {**params, "prior": as_pytree(prior)}
        # independence MH stops only when no proposal at all is accepted: a tiny acceptance is the
        # flow's honest figure of merit (experiments/mh_vs_fhmc), not a broken run
        return run_imh(key_run, propose, params, num_chains=s.num_chains, num_steps=s.num_traj,
                       num_therm=s.num_therm, meas_every=s.meas_every, measure_fn=theory.measure_fn,
                       batch_size=s.batch_size, progress=progress, desc=desc, devices=jax.devices()[:1],
                       min_acceptance=1e-12 if s.min_acceptance else None, **resumable)
    raise ValueError(f"sampler.name={name!r} is invalid")  # unreachable after validate()


def run(cfg: DictConfig, out_dir: str | Path) -> dict:
    """Run the experiment described by ``cfg`` and write ``results.json`` into ``out_dir``.

    The job holds ``out_dir`` (:func:`trivflow.app.rundir.locked`: a second job there is refused) and
    never writes into a finished run (results.json present): an identical resume returns its
    results, anything else is refused (:func:`trivflow.app.rundir.check_unfinished`)."""
    tune = cfg.get("task", "sample") == "tune_beta"  # β tuning on the line of constant physics
    theory = None if tune else validate(cfg)  # every check happens here, before any compute
    out_dir = Path(out_dir)
    if isinstance(cfg.resume, str):  # resume=<run dir>: results go there (run.py resolves resume=true)
        out_dir = Path(cfg.resume)
        if not out_dir.is_dir():
            raise ValueError(f"resume={cfg.resume!r} is invalid: expected an existing run directory")
    try:
        with rundir.locked(out_dir):  # the whole job; re-entrant when the CLI holds it already
            rundir.check_unfinished(out_dir, cfg, resuming=bool(cfg.get("resume", False)))
            if tune:
                from .tune import run_tune_beta

                return run_tune_beta(cfg, out_dir)
            return _run(cfg, theory, out_dir)
    except rundir.RunAlreadyFinished as done:
        log.info("%s", done)
        return done.results


def _run(cfg: DictConfig, theory, out_dir: Path) -> dict:
    import jax

    from .resources import check_memory

    split = split_samplers(cfg)
    device = configure_jax(cfg.precision, cfg.platform, cfg.get("compile_cache"),
                           cache_max_gb=cfg.get("compile_cache_max_gb"),
                           **cpu_devices_options(cfg, math.prod(theory.shape), split))
    device["memory_estimate"] = check_memory(cfg, theory, jax.devices()[0],
                                             float_bytes=8 if cfg.precision == "float64" else 4)
    from ..lattice.observables import default_plateau
    from ..summary import cost_block, evaluations_per_traj, setup_seconds, summarize_run

    beta_note = beta_source(theory, cfg.action.name)
    log.info("lattice %s: beta %s", theory, beta_note)
    if "off the line" in beta_note:
        log.warning("beta=%g at L=%d: %s", theory.beta, theory.L, beta_note)
    chain_devices = _chain_devices(cfg, math.prod(theory.shape), split, device["platform"])
    if split:
        # before any compute: the chains must divide over the devices
        from ..hmc.driver import chain_shardings

        with config_keys(SAMPLER_KEYS):
            chain_shardings(chain_devices, cfg.sampler.num_chains)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    # ξ does not change with the volume at fixed β, so extra volumes use the main lattice's plateau
    plateau = tuple(cfg.analysis.plateau) if cfg.analysis.plateau is not None else default_plateau(theory.L)
    plan = make_plan(cfg, theory, out_dir)
    remove_old_states(plan, out_dir, cfg.get("resume", False))
    # every flow first (a diverged training stops the run before any sampler), then the samplers
    flows = {name: prepare_flow(fp, cfg, theory, out_dir, progress=cfg.progress) for name, fp in plan.flows.items()}
    runs, chains = {}, {}
    for job in plan.jobs:
        th = job.theory
        log.info("%s: %s, %s, %d chains x %d", cfg.experiment, job.label, th, cfg.sampler.num_chains,
                 cfg.sampler.num_traj)
        result = run_sampler(job.sampler, cfg, th, flows.get(job.prior), progress=cfg.progress, devices=chain_devices,
                             state_path=out_dir / job.state_path)
        runs[job.label] = summarize_run(result, th, sampler=job.sampler, s_tau=cfg.analysis.s_tau, plateau=plateau)
        runs[job.label]["lattice"] = th.to_dict()
        if "step_size" in result.extra:  # sampler.adapt_step_size: the frozen ε of the measurement
            runs[job.label]["step_size"] = {"adapted": result.extra["step_size"],
                                            "target_accept": result.extra["adapt_target"],
                                            "initial": cfg.sampler.traj_length / cfg.sampler.num_steps}
        if job.prior is not None:
            runs[job.label]["prior"] = job.prior
        used_flow = flows.get(job.prior) if job.sampler in ("fhmc", "imh") else None
        per_traj = evaluations_per_traj(job.sampler, num_steps=cfg.sampler.num_steps,
                                        integrator=cfg.sampler.integrator, nuts_steps=result.extra.get("num_steps"))
        runs[job.label]["cost"] = cost_block(runs[job.label], per_traj, primary=th.primary_observable,
                                             setup=setup_seconds(used_flow.training if used_flow else None))
        chains[job.label] = (result, job.sampler, th)
    flow = flows.get(cfg.prior.name)

    results = {**results_header(cfg, device), "lattice": theory.to_dict(), "beta_source": beta_note,
               "runs": runs, "wall_seconds": time.time() - started}
    if flow is not None and flow.training is not None:
        results["training"] = flow.training
    if any(p != cfg.prior.name for p in flows):  # flows of sampler@prior baselines
        results["trainings"] = {p: f.training for p, f in flows.items() if p != cfg.prior.name}
    if flow is not None:
        results["flow"] = {k: v for k, v in flow.config.items() if k != "train"}
    # after sampling: these import xarray/ArviZ and Matplotlib (≈ 1 s), which the samplers do not need
    from ..io import write_chains
    from ..plots import PLOTS_DIR, plot_run

    # chains first: results.json is the run's completion marker (trivflow.io documents the layout)
    results["chains"] = {label: path.name for label, path in write_chains(out_dir, chains, cfg.sampler.name).items()}
    if cfg.plots:
        results["plots"] = PLOTS_DIR
    atomic_write_text(out_dir / "results.json", json.dumps(results, indent=2))
    log.info("results written to %s", out_dir / "results.json")
    if not cfg.get("keep_state", False):  # the run is complete: its resumable states only duplicate the chains
        shutil.rmtree(out_dir / "state", ignore_errors=True)
    if cfg.plots:
        try:
            plot_run(out_dir)
        except Exception:  # the results are on disk; a figure must not fail a sweep job
            log.exception("plots of %s failed", out_dir)
    log.info("\n%s", format_summary(results))
    return results


#: how the printed summary writes observable names
_LABELS = {"absM": "<|M|>"}
_TAU_LABELS = {"absM": "|M|"}


def _diagnostics_line(diag: dict) -> str:
    """``R-hat (ESS bulk, tail): M 1.002 (3712, 4010)   |M| …`` from a ``diagnostics`` block."""
    def ess(v):
        return "n/a" if v is None else f"{v:.0f}"

    parts = [f"{_TAU_LABELS.get(k, k)} {plain(rhat, 4)} ({ess(diag.get('ess_bulk', {}).get(k))}, "
             f"{ess(diag.get('ess_tail', {}).get(k))})" for k, rhat in diag["rhat"].items()]
    return "  R-hat (ESS bulk, tail): " + "   ".join(parts)


def _cost_line(cost: dict) -> str:
    """``cost per independent sample: 360(50) force evals (each a flow pass), 0.00084(11) s; …``
    (:func:`trivflow.summary.cost_block`)."""
    per = cost["per_indep"]
    force, flow = per["force_evals"], per["flow_evals"]
    if force[0]:
        parts = [f"{paren_pair(force)} force evals" + (" (each a flow pass)" if flow[0] else "")]
    else:
        parts = [f"{paren_pair(flow)} flow passes"] if flow[0] else []
    parts.append(f"{paren_pair(per['seconds'])} s")
    line = "  cost per independent sample: " + ", ".join(parts)
    if cost.get("setup_seconds"):
        line += (f"; {paren_pair(cost['amortised_seconds_per_indep'])} s with the "
                 f"{cost['setup_seconds']:.1f} s of training and prior ensembles")
    return line


def _reference_run(runs: dict) -> str | None:
    """The plain-HMC run that τ_int ratios are quoted against, if the job has one."""
    return next((name for name, r in runs.items() if r.get("sampler") == "hmc" and "@" not in name), None)


def format_summary(results: dict) -> str:
    """A short human-readable table of every run in ``results``: values in parenthesis notation
    (:mod:`trivflow.formatting`), the multi-chain diagnostics, and each run's τ_int of the primary
    observable as a ratio to plain HMC's (propagated error) when the job ran HMC beside it."""
    lat = results["lattice"]
    lines = [" ".join(f"{k}={v}" for k, v in lat.items())  # the theory's geometry and couplings (to_dict)
             + (f"   (beta {results['beta_source']})" if "beta_source" in results else "")]
    if "training" in results:
        tr = results["training"]
        lines.append(f"[training] {tr['steps']} steps in {tr['seconds']:.1f} s: loss {tr['loss']:.5g}, "
                     f"ESS {tr['ess']:.3g}, MH acceptance {tr['mh_acceptance']:.3g} (at L={tr['lattice']['L']})")
    action = results.get("config", {}).get("action", {}).get("name", "phi4")
    headline = THEORIES[action].headline if action in THEORIES else None
    reference = _reference_run(results["runs"])
    for name, r in results["runs"].items():
        o, t = r["observables"], r["tau_int"]
        shown = [k for k in (headline or o) if k in o]
        (primary, tau_p), *others = t.items()
        diag = r.get("diagnostics", r.get("mixing", {}))  # "mixing": results.json before diagnostics
        lines += [
            f"[{name}] acceptance {r['acceptance']:.3f}   <exp(-dH)> {paren_pair(r['exp_minus_dH'])}",
            "  " + "   ".join(f"{_LABELS.get(k, k)} {paren_pair(o[k])}" for k in shown)
            + (f"   ({', '.join(_LABELS.get(k, k) for k in shown)} NOT reliable: the chains do not mix)"
               if not diag.get("reliable", True) else ""),
            f"  tau_int({primary}) {paren_pair(tau_p)} (W={tau_p[2]})"
            + "".join(f"   tau_int({_TAU_LABELS.get(k, k)}) {paren_pair(v)}" for k, v in others[:1]),
        ]
        if diag.get("rhat"):
            lines.append(_diagnostics_line(diag))
        if reference is not None and name != reference and primary in results["runs"][reference]["tau_int"]:
            ref = results["runs"][reference]["tau_int"][primary]
            lines.append(f"  tau_int({primary}) / {reference}'s: {paren(*ratio(tau_p[0], tau_p[1], ref[0], ref[1]))}")
        lines.append(f"  {r['traj_per_second']:.4g} chain-trajectories/s ({r['seconds']:.1f} s sampling, "
                     f"{r['compile_seconds']:.1f} s compile)")
        if "cost" in r:
            lines.append(_cost_line(r["cost"]))
        if "exact" in r:  # the theory's exact values, those of the headline first
            ex = r["exact"]
            keys = [k for k in (headline or ()) if ex.get(k) is not None]
            keys += [k for k, v in ex.items() if v is not None and k not in keys]
            lines.append(f"  exact ({'free theory' if action in ('free', 'phi4') else action}): "
                         + "   ".join(f"{_LABELS.get(k, k)} {ex[k]:.5g}" for k in keys))
        lines += [f"  WARNING {w}" for w in r.get("warnings", [])]
    if results.get("chains"):
        lines.append("chains (ArviZ netCDF, trivflow.io.load_chains): " + ", ".join(results["chains"].values()))
    if results.get("plots"):
        lines.append(f"plots: {results['plots']}/ (trivflow.plots)")
    return "\n".join(lines)
