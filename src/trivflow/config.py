"""Dataclass schemas of the config groups, registered with Hydra's ConfigStore.

Types are checked by Hydra when the config is composed (a string where a number belongs fails
there, naming the key); :func:`validate` then checks meaning (L ≥ 2, positive step size, …)
before any compute. The keys below are the documented interface (design.md §4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from .hmc.driver import validate_run_args
from .hmc.integrators import INTEGRATORS
from .lattice.theory import Phi4Theory


@dataclass
class LatticeConfig:
    """φ⁴ on an L^d periodic lattice (physics.md §1)."""

    L: int = 8
    d: int = 2
    beta: float = 0.576
    lam: float = 0.5


@dataclass
class ActionSchema:
    """The action (physics.md §1): ``phi4`` (λ from ``lattice.lam``) or ``free`` (λ = 0, exactly
    solvable: results.json then carries the exact ⟨φ²⟩, χ and ξ beside the measured ones)."""

    name: str = "phi4"


@dataclass
class SamplerConfig:
    """Sampler settings (physics.md §7).

    hmc/fhmc: ``num_traj`` trajectories of length ``traj_length`` in ``num_steps`` steps
    (step size = traj_length / num_steps) after ``num_therm``. imh: ``num_traj`` Metropolis
    steps, ``batch_size`` proposals per compiled chunk. nuts: ``num_therm`` adaptation steps,
    ``num_traj`` samples, ``target_accept``.
    """

    name: str = "hmc"
    num_chains: int = 16
    num_traj: int = 1000
    num_therm: int = 100
    num_steps: int = 10
    traj_length: float = 1.0
    integrator: str = "leapfrog"
    meas_every: int = 1
    chunk_size: int = 1000
    batch_size: int = 1000
    target_accept: float = 0.8


@dataclass
class FlowSchema:
    """Flow architecture (physics.md §4); see :class:`trivflow.flows.FlowConfig`.

    ``checkpoint``: a flow directory (``<run>/flow``) or a run directory to sample with a
    trained flow instead of training one.
    """

    kernel_size: Any = 3  # odd int, or one odd int per layer
    num_layers: int = 1
    hidden_channels: list[int] = field(default_factory=list)
    activation: str = "tanh"
    output_activation: str = "tanh"
    seed: int = 0
    compute_dtype: Optional[str] = None  # None: exact (field dtype); "float32": faster, ~1e-7 perturbation
    checkpoint: Optional[str] = None


@dataclass
class TrainSchema:
    """Reverse-KL training (physics.md §6). ``L``/``beta``: the training lattice when it
    differs from the sampling one (None: same as ``lattice``)."""

    steps: int = 1000
    batch_size: int = 500
    lr: float = 0.01
    log_every: int = 50
    L: Optional[int] = None
    beta: Optional[float] = None


@dataclass
class PriorSchema:
    """The prior r(z) of the flow (physics.md §5)."""

    name: str = "gaussian"


@dataclass
class AnalysisConfig:
    """Γ-method settings (physics.md §8) and the effective-mass plateau (physics.md §2)."""

    s_tau: float = 4.0
    plateau: Optional[list[int]] = None  # [t_min, t_max]; None → default_plateau(L)


@dataclass
class Config:
    lattice: LatticeConfig = field(default_factory=LatticeConfig)
    action: ActionSchema = field(default_factory=ActionSchema)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    flow: FlowSchema = field(default_factory=FlowSchema)
    train: TrainSchema = field(default_factory=TrainSchema)
    prior: PriorSchema = field(default_factory=PriorSchema)
    baselines: list[str] = field(default_factory=list)  # more samplers run beside sampler.name
    volumes: list[int] = field(default_factory=list)  # more L at which the flow samplers run
    experiment: str = "default"
    seed: int = 0
    precision: str = "float64"
    platform: Optional[str] = None  # cpu | gpu | tpu; None lets JAX choose
    progress: bool = True
    quiet: bool = False  # batch jobs: no progress bars, only warnings and errors on the console
    plots: bool = True  # write PNG figures of the run into <run dir>/plots (trivflow.plots)


ACTIONS = ("phi4", "free")
SAMPLERS = ("hmc", "fhmc", "imh", "nuts")
FLOW_SAMPLERS = ("fhmc", "imh")
PRIORS = ("gaussian",)
PRECISIONS = ("float32", "float64")
PLATFORMS = (None, "cpu", "gpu", "cuda", "tpu")


def register_configs() -> None:
    """Register the schemas so that YAML options are type-checked at compose time."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="lattice", name="base_lattice", node=LatticeConfig)
    cs.store(group="action", name="base_action", node=ActionSchema)
    cs.store(group="analysis", name="base_analysis", node=AnalysisConfig)
    cs.store(group="sampler", name="base_sampler", node=SamplerConfig)
    cs.store(group="flow", name="base_flow", node=FlowSchema)
    cs.store(group="train", name="base_train", node=TrainSchema)
    cs.store(group="prior", name="base_prior", node=PriorSchema)


def _fail(key: str, value, expected: str):
    raise ValueError(f"{key}={value!r} is invalid: expected {expected}")


def needs_flow(c) -> bool:
    """Whether any sampler of the run uses a flow."""
    return any(name in FLOW_SAMPLERS for name in [c.sampler.name, *c.baselines])


def _validate_flow(c, theory: Phi4Theory) -> None:
    from .flows.api import FlowConfig

    f, t = c.flow, c.train
    FlowConfig(kernel_size=f.kernel_size, num_layers=f.num_layers, hidden_channels=tuple(f.hidden_channels),
               activation=f.activation, output_activation=f.output_activation, seed=f.seed,
               compute_dtype=f.compute_dtype)
    if theory.d != 2:
        _fail("lattice.d", theory.d, "2: the checkerboard coupling flows act on 2D lattices")
    for key, L in [("lattice.L", theory.L), ("train.L", t.L), *[("volumes", v) for v in c.volumes]]:
        if L is not None and (L < 2 or L % 2):
            _fail(key, L, "an even lattice extent >= 2 (the flow's checkerboard needs even L)")
    if c.prior.name not in PRIORS:
        _fail("prior.name", c.prior.name, f"one of {list(PRIORS)}")
    if f.checkpoint is None:
        for key, value, minimum in (("train.steps", t.steps, 1), ("train.batch_size", t.batch_size, 2),
                                    ("train.log_every", t.log_every, 1)):
            if value < minimum:
                _fail(key, value, f"an integer >= {minimum}")
        if not t.lr > 0:
            _fail("train.lr", t.lr, "a positive learning rate")
        if t.beta is not None:
            Phi4Theory(L=t.L or theory.L, d=theory.d, beta=t.beta, lam=theory.lam)


def validate(cfg: DictConfig | Config) -> Phi4Theory:
    """Check every value for meaning before compute; return the validated theory.

    Raises ``ValueError`` naming the key, the value and what was expected.
    """
    c = OmegaConf.to_object(cfg) if isinstance(cfg, DictConfig) else cfg
    lat, smp, ana = c.lattice, c.sampler, c.analysis
    if c.action.name not in ACTIONS:
        _fail("action.name", c.action.name, f"one of {list(ACTIONS)}")
    if c.action.name == "free" and lat.lam != 0:
        _fail("lattice.lam", lat.lam, "0 with action=free (the free theory has no quartic term)")
    theory = Phi4Theory(L=lat.L, d=lat.d, beta=lat.beta, lam=lat.lam)
    for key, name in [("sampler.name", smp.name), *[("baselines", b) for b in c.baselines]]:
        if name not in SAMPLERS:
            _fail(key, name, f"one of {list(SAMPLERS)}")
    if c.volumes and smp.name not in FLOW_SAMPLERS:
        _fail("volumes", list(c.volumes), f"empty unless sampler.name is a flow sampler {list(FLOW_SAMPLERS)}")
    if smp.name == "imh" or "imh" in c.baselines:
        if smp.batch_size < 1:
            _fail("sampler.batch_size", smp.batch_size, "an integer >= 1")
    if smp.name == "nuts" or "nuts" in c.baselines:
        if not 0 < smp.target_accept < 1:
            _fail("sampler.target_accept", smp.target_accept, "a number in (0, 1)")
    if smp.integrator not in INTEGRATORS:
        _fail("sampler.integrator", smp.integrator, f"one of {sorted(INTEGRATORS)}")
    if smp.num_chains < 1:
        _fail("sampler.num_chains", smp.num_chains, "an integer >= 1")
    if smp.num_steps < 1:
        _fail("sampler.num_steps", smp.num_steps, "an integer >= 1")
    if not smp.traj_length > 0:
        _fail("sampler.traj_length", smp.traj_length, "a positive number (step size = traj_length/num_steps)")
    validate_run_args(smp.traj_length / smp.num_steps, smp.num_traj, smp.num_therm, smp.meas_every,
                      smp.chunk_size)
    if c.precision not in PRECISIONS:
        _fail("precision", c.precision, f"one of {list(PRECISIONS)}")
    if c.platform not in PLATFORMS:
        _fail("platform", c.platform, f"one of {list(PLATFORMS)}")
    if not ana.s_tau > 0:
        _fail("analysis.s_tau", ana.s_tau, "a positive number (ADerrors default 4, Wolff 1.5)")
    if ana.plateau is not None:
        t = list(ana.plateau)
        if len(t) != 2 or not 1 <= t[0] <= t[1] <= lat.L // 2 - 1:
            _fail("analysis.plateau", t, f"[t_min, t_max] with 1 <= t_min <= t_max <= L/2 - 1 = {lat.L // 2 - 1}")
    if needs_flow(c):
        _validate_flow(c, theory)
    return theory
