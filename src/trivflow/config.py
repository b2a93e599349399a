"""Dataclass schemas of the config groups, registered with Hydra's ConfigStore.

Types are checked by Hydra when the config is composed (a string where a number belongs fails
there, naming the key); :func:`validate` then checks meaning (L ≥ 2, positive step size, …)
before any compute. The keys below are the documented interface (design.md §4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

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
class SamplerConfig:
    """HMC settings; the step size is traj_length / num_steps."""

    name: str = "hmc"
    num_chains: int = 16
    num_traj: int = 1000
    num_therm: int = 100
    num_steps: int = 10
    traj_length: float = 1.0
    integrator: str = "leapfrog"
    meas_every: int = 1
    chunk_size: int = 1000


@dataclass
class AnalysisConfig:
    """Γ-method settings (physics.md §8) and the effective-mass plateau (physics.md §2)."""

    s_tau: float = 4.0
    plateau: Optional[list[int]] = None  # [t_min, t_max]; None → default_plateau(L)


@dataclass
class Config:
    lattice: LatticeConfig = field(default_factory=LatticeConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    experiment: str = "default"
    seed: int = 0
    precision: str = "float64"
    platform: Optional[str] = None  # cpu | gpu | tpu; None lets JAX choose
    progress: bool = True


SAMPLERS = ("hmc",)
PRECISIONS = ("float32", "float64")
PLATFORMS = (None, "cpu", "gpu", "cuda", "tpu")


def register_configs() -> None:
    """Register the schemas so that YAML options are type-checked at compose time."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="lattice", name="base_lattice", node=LatticeConfig)
    cs.store(group="sampler", name="base_sampler", node=SamplerConfig)


def _fail(key: str, value, expected: str):
    raise ValueError(f"{key}={value!r} is invalid: expected {expected}")


def validate(cfg: DictConfig | Config) -> Phi4Theory:
    """Check every value for meaning before compute; return the validated theory.

    Raises ``ValueError`` naming the key, the value and what was expected.
    """
    c = OmegaConf.to_object(cfg) if isinstance(cfg, DictConfig) else cfg
    lat, smp, ana = c.lattice, c.sampler, c.analysis
    theory = Phi4Theory(L=lat.L, d=lat.d, beta=lat.beta, lam=lat.lam)
    if smp.name not in SAMPLERS:
        _fail("sampler.name", smp.name, f"one of {list(SAMPLERS)}")
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
    return theory
