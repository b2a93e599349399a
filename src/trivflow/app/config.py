"""Dataclass schemas of the config groups, registered with Hydra's ConfigStore.

Types are checked by Hydra when the config is composed (a string where a number belongs fails
there, naming the key); :func:`validate` then checks meaning (L ≥ 2, positive step size, …)
before any compute. The keys below are the documented interface (docs/reference/configuration.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from ..errors import ParameterError
from ..hmc.driver import validate_run_args
from ..hmc.integrators import INTEGRATORS
from ..lattice.theory import Phi4Theory
from ..priors.factory import PRIOR_NAMES
from ..theory import THEORIES, Theory, coupling_names, flow_family, make_theory
from ..tuning import automatic_bracket_available


@dataclass
class LatticeConfig:
    """The lattice and the couplings: φ⁴ on an L^d periodic lattice (docs/theory.md#action) reads
    all four; U(1) gauge theory (``action=u1``, docs/theory.md#u1) reads L, d (= 2) and beta."""

    L: int = 8
    d: int = 2
    beta: float = 0.576
    lam: float = 0.5


@dataclass
class ActionSchema:
    """The action (docs/theory.md#action): ``phi4`` (λ from ``lattice.lam``), ``free`` (λ = 0, exactly
    solvable: results.json then carries the exact ⟨φ²⟩, χ and ξ beside the measured ones) or ``u1``
    (2D U(1) gauge theory, docs/theory.md#u1, with the exact plaquette and ⟨Q²⟩)."""

    name: str = "phi4"


@dataclass
class SamplerConfig:
    """Sampler settings (docs/theory.md#hmc).

    hmc/fhmc: ``num_traj`` trajectories of length ``traj_length`` in ``num_steps`` steps
    (step size = traj_length / num_steps) after ``num_therm``. imh: ``num_traj`` Metropolis
    steps after ``num_therm``, ``batch_size`` steps per compiled chunk. nuts: ``num_therm`` adaptation steps,
    ``num_traj`` samples, ``target_accept``.

    hmc/fhmc options, all off by default (docs/theory.md#step-size-adaptation,
    docs/theory.md#fourier-accelerated-hmc): ``adapt_step_size`` tunes ε = traj_length/num_steps
    during the ``num_therm`` thermalization trajectories to the acceptance ``target_accept`` by
    dual averaging and freezes it for the measurement (num_steps fixed, so τ_MD changes);
    ``fourier_mass`` = m² > 0 turns on Fourier acceleration with M̂(p) = β Σ_μ 4 sin²(p_μ/2) + m²
    (m² = 2 − 2dβ: the free theory's exact Â); ``momentum_draw`` = threefry | rbg | float32 picks
    the random stream of the momenta (the distribution stays N(0, M)).
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
    checkpoint_every: int = 1  # chunks between saves of <run>/state/<label>.npz (resume)
    shard: bool = True  # split hmc/fhmc chains over all devices (num_chains a multiple of their number)
    batch_size: int = 1000
    target_accept: float = 0.8  # nuts, and hmc/fhmc with adapt_step_size
    adapt_step_size: bool = False
    fourier_mass: Optional[float] = None  # m^2 of the Fourier-acceleration kernel; null: unit mass
    momentum_draw: str = "threefry"  # threefry | rbg | float32
    # hmc/fhmc stop when the acceptance (after 100 trajectories per chain) is below this; imh only
    # when no proposal at all is accepted; 0 disables the check
    min_acceptance: float = 0.01


@dataclass
class FlowSchema:
    """Flow architecture (docs/theory.md#flows); see :class:`trivflow.flows.FlowConfig`.

    ``checkpoint``: a flow directory (``<run>/flow``) or a run directory to sample with a
    trained flow instead of training one.

    ``action=u1`` builds gauge-equivariant flows instead (:mod:`trivflow.gauge.flows`,
    ``flow=u1_equivariant``): they read num_layers, kernel_size, hidden_channels, components,
    activation, ncp_alpha_min, ncp_alpha_max, ncp_shift_max, seed and checkpoint.
    """

    kernel_size: Any = 3  # odd int, or one odd int per layer
    num_layers: int = 1
    hidden_channels: list[int] = field(default_factory=list)
    activation: str = "tanh"
    output_activation: str = "tanh"
    seed: int = 0
    compute_dtype: Optional[str] = None  # None: exact (field dtype); "float32": faster, ~1e-7 perturbation
    components: int = 4  # action=u1's gauge flows: components of the circle maps (mixtures of NCPs)
    # action=u1's gauge flows: bounds of the NCP parameters, alpha in [min, max], |beta| <= shift_max
    # (null: unbounded), so |log h'| <= log lambda* (trivflow.gauge.flows, docs/theory.md#u1-flows)
    ncp_alpha_min: float = 0.5
    ncp_alpha_max: Optional[float] = 2.0
    ncp_shift_max: Optional[float] = 0.5
    checkpoint: Optional[str] = None


@dataclass
class TrainSchema:
    """Reverse-KL training (docs/theory.md#training-reverse-kl). ``L``/``beta``: the training lattice when it
    differs from the sampling one (None: same as ``lattice``)."""

    steps: int = 1000
    batch_size: int = 500
    lr: float = 0.01
    log_every: int = 50
    checkpoint_every: int = 4  # log intervals between saves of <run>/state/train.npz (resume)
    L: Optional[int] = None
    beta: Optional[float] = None


@dataclass
class PriorSchema:
    """The prior r(z) of the flow (docs/theory.md#priors); see :mod:`trivflow.priors.factory`.

    ``name``: gaussian | coarse_bigvol | interp | interp4 | interp4_x2 | multilevel. The others draw
    from an HMC ensemble of the source theory: ``ensemble`` (a .npz path; null: generate
    ``ensemble_size`` configurations with ``chains`` chains, ``therm`` + one kept every ``spacing``
    trajectories of ``num_steps`` leapfrog steps, into ``<run>/priors/``). ``beta_coarse``: β(L/2)
    (null: the line-of-constant-physics table); ``beta_coarser``/``ensemble_coarser``: the L/4 level of
    interp4_x2. ``levels``: N, the flows of a multilevel tower (g_j trained at L/2^(N−j) from interp4 of
    an ensemble at L/2^(N−j+1); 1 = interp4, 2 = interp4_x2); ``betas``/``ensembles``: its β(L/2^k) and
    ensemble files for k = 1 … N (lists of N entries, null entries: the table / generate).
    ``noise``: σ of interp. ``flip_sign``: random global sign of each member. ``draw``: the
    random stream of the gaussian prior's draws (:mod:`trivflow.draws`: threefry | rbg | float32;
    float32 trains ≈ 1.2× faster in float64 at L = 8): training batches and independence MH's
    proposals, gaussian only.
    """

    name: str = "gaussian"
    ensemble: Optional[str] = None
    ensemble_size: int = 10000
    spacing: int = 10
    therm: int = 1000
    chains: int = 64
    num_steps: int = 10
    traj_length: float = 1.0
    seed: Optional[int] = None  # null: the run's seed
    noise: float = 0.0  # sigma of prior=interp (its option file sets 0.5; 0 is refused for training)
    draw: str = "threefry"  # prior=gaussian: threefry | rbg | float32, the random stream of z (training, imh)
    beta_coarse: Optional[float] = None
    beta_coarser: Optional[float] = None
    ensemble_coarser: Optional[str] = None
    levels: Optional[int] = None  # prior=multilevel: the number of flows N (its option file sets 2)
    betas: Optional[list[Optional[float]]] = None  # multilevel: [beta(L/2), ..., beta(L/2^N)]; null: the table
    ensembles: Optional[list[Optional[str]]] = None  # multilevel: ensemble files at L/2, ..., L/2^N; null: generate
    flip_sign: bool = True


@dataclass
class AnalysisConfig:
    """Γ-method settings (docs/theory.md#gamma-method) and the effective-mass plateau (docs/theory.md#observables)."""

    s_tau: float = 4.0
    plateau: Optional[list[int]] = None  # [t_min, t_max]; None → default_plateau(L)


@dataclass
class TuneSchema:
    """β tuning (``task: tune_beta``, :mod:`trivflow.tuning`): bracket, stopping rule, local fit.

    ``beta_lo``/``beta_hi``: initial bracket (both or neither; None: from the LCP table at
    λ = 0.5 in 2D, exact for λ = 0, of total width ``bracket_width``, None → 0.12/target_xi).
    Stop once |ξ − target| ≤ max(tol_sigma·δξ, xi_rtol·target) or after ``max_iter``
    measurements; β* from a weighted fit of log ξ vs β (quadratic once ≥ 4 points when
    ``fit_degree`` = 2) through ``fit_points`` points nearest the root (None: all).
    Warm start from the nearest earlier β within ``warm_dbeta`` with ``warm_therm``
    thermalization trajectories (None: sampler.num_therm).
    """

    beta_lo: Optional[float] = None
    beta_hi: Optional[float] = None
    bracket_width: Optional[float] = None
    max_iter: int = 8
    tol_sigma: float = 1.0
    xi_rtol: float = 0.0
    fit_points: Optional[int] = None
    fit_degree: int = 2
    fit_window: float = 0.3  # final fit: points with |log(ξ/target_xi)| <= fit_window
    max_step: Optional[float] = None
    warm_dbeta: float = 0.01
    warm_therm: Optional[int] = None


@dataclass
class Config:
    lattice: LatticeConfig = field(default_factory=LatticeConfig)
    action: ActionSchema = field(default_factory=ActionSchema)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    flow: FlowSchema = field(default_factory=FlowSchema)
    train: TrainSchema = field(default_factory=TrainSchema)
    prior: PriorSchema = field(default_factory=PriorSchema)
    tune: TuneSchema = field(default_factory=TuneSchema)
    task: str = "sample"  # sample | tune_beta
    target_xi: Optional[float] = None  # task=tune_beta: the ξ to reach (None: L/4, the LCP)
    baselines: list[str] = field(default_factory=list)  # more samplers run beside sampler.name
    volumes: list[int] = field(default_factory=list)  # more L at which the flow samplers run
    experiment: str = "default"
    seed: int = 0
    precision: str = "float64"
    platform: Optional[str] = None  # cpu | gpu | tpu; None lets JAX choose
    cpu_devices: Any = "auto"  # CPU devices (one per core: hmc/fhmc chains split over them); auto | a positive int
    progress: bool = True
    resume: Any = False  # false | true (latest unfinished run with the same overrides) | a run directory
    keep_state: bool = False  # keep state/ once results.json is written (it is needed only to resume)
    quiet: bool = False  # batch jobs: no progress bars, only warnings and errors on the console
    plots: bool = True  # write PNG figures of the run into <run dir>/plots (trivflow.plots)
    compile_cache: Optional[str] = "default"  # JAX's persistent compile cache: a directory, default, or null (off)
    compile_cache_max_gb: float = 2.0  # the cache's size bound in GiB (least recently used evicted)


ACTIONS = tuple(THEORIES)  # the library's registry (trivflow.theory.THEORIES)
SAMPLERS = ("hmc", "fhmc", "imh", "nuts")
FLOW_SAMPLERS = ("fhmc", "imh")
PRIORS = PRIOR_NAMES  # one list, the library's (trivflow.priors.factory)
PRECISIONS = ("float32", "float64")
TASKS = ("sample", "tune_beta")
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


#: the config keys of the library's parameters, by the place they come from
LATTICE_KEYS = {"L": "lattice.L", "d": "lattice.d", "beta": "lattice.beta", "lam": "lattice.lam"}
SAMPLER_KEYS = {"step_size": "sampler.step_size", "num_traj": "sampler.num_traj", "num_therm": "sampler.num_therm",
                "meas_every": "sampler.meas_every", "chunk_size": "sampler.chunk_size",
                "num_steps": "sampler.num_steps", "integrator": "sampler.integrator",
                "num_chains": "sampler.num_chains", "devices": "sampler.shard=false",
                "save_every": "sampler.checkpoint_every", "target_accept": "sampler.target_accept",
                "fourier_mass": "sampler.fourier_mass", "momentum_draw": "sampler.momentum_draw"}
FLOW_KEYS = {name: f"flow.{name}" for name in ("kernel_size", "num_layers", "hidden_channels", "activation",
                                                "output_activation", "seed", "compute_dtype", "components",
                                                "ncp_alpha_min", "ncp_alpha_max", "ncp_shift_max")}
#: the flow.* keys only action=u1's gauge flows read (φ⁴'s coupling flows ignore them)
GAUGE_ONLY_FLOW_KEYS = ("components", "ncp_alpha_min", "ncp_alpha_max", "ncp_shift_max")
TRAIN_KEYS = {"steps": "train.steps", "batch_size": "train.batch_size", "lr": "train.lr",
              "log_every": "train.log_every", "save_every": "train.checkpoint_every", "L": "train.L",
              "beta": "train.beta"}
PRIOR_KEYS = {"noise": "prior.noise", "traj_length": "prior.traj_length", "draw": "prior.draw"}


@contextlib.contextmanager
def config_keys(keys: dict):
    """Name config keys in the library's errors: a :class:`~trivflow.errors.ParameterError` raised
    inside gets the message with each library parameter ``p`` renamed ``keys[p]``
    (``num_steps must be …`` → ``sampler.num_steps must be …``); same exception, same type."""
    try:
        yield
    except ParameterError as err:
        err.args = (err.renamed(keys),)
        raise


def _fail(key: str, value, expected: str):
    raise ValueError(f"{key}={value!r} is invalid: expected {expected}")


#: Keys that users reach for but that trivflow spells otherwise.
_SPELLED_OTHERWISE = {
    "sampler.step_size": "the step size is sampler.traj_length / sampler.num_steps",
    "sampler.num_samples": "use sampler.num_traj",
    "lattice.kappa": "trivflow uses beta = 2 kappa: set lattice.beta",
}


def unknown_keys(cfg) -> list[str]:
    """Keys of ``cfg`` (a DictConfig) that no schema of :class:`Config` has: added with ``+``
    they would be silently ignored, so :func:`validate` refuses them."""
    from ..state import flatten_config

    known = flatten_config(OmegaConf.structured(Config))
    return [k for k in flatten_config(cfg) if k not in known]


def _refuse_unknown_keys(cfg) -> None:
    import difflib

    from ..state import flatten_config

    bad = unknown_keys(cfg)
    if not bad:
        return
    known = list(flatten_config(OmegaConf.structured(Config)))
    key = bad[0]
    hint = _SPELLED_OTHERWISE.get(key)
    if hint is None:
        close = difflib.get_close_matches(key, known, n=2)
        hint = f"did you mean {' or '.join(close)}?" if close else "python -m trivflow.run --help lists the keys"
    more = f" (and {len(bad) - 1} more: {bad[1:]})" if len(bad) > 1 else ""
    raise ValueError(f"{key} is not a trivflow setting: it would be ignored, so it is refused{more}; {hint}")


def checkpoint_dir(path) -> Path:
    """A ``flow.checkpoint`` value as the flow directory: a flow directory itself, or a run
    directory holding ``flow/``."""
    p = Path(str(path)).expanduser()
    return p / "flow" if (p / "flow").is_dir() and not (p / "flow_config.json").exists() else p


def _validate_checkpoint(c) -> None:
    """``flow.checkpoint`` must be a complete checkpoint whose kernel_size and num_layers are the
    run's, checked here and not after the first sampler has run."""
    from ..training.checkpoint import read_flow_config

    f = c.flow
    path = checkpoint_dir(f.checkpoint)
    family = _stored_family(path)
    if family is not None:  # a flow of another theory's family (a U(1) gauge flow)
        _fail("flow.checkpoint", f.checkpoint, f"a phi4 coupling flow for action={c.action.name} (the checkpoint "
              f"{str(path)!r} holds a {family} flow)")
    try:
        stored = read_flow_config(path)
    except FileNotFoundError as err:
        _fail("flow.checkpoint", f.checkpoint, f"a flow directory (flow_config.json and params/) or a run directory "
              f"holding flow/; {err}")
    kernel = OmegaConf.to_object(f.kernel_size) if OmegaConf.is_config(f.kernel_size) else f.kernel_size
    for key, value in (("kernel_size", kernel), ("num_layers", f.num_layers)):
        if key in stored and stored[key] != (list(value) if isinstance(value, (list, tuple)) else value):
            _fail(f"flow.{key}", value, f"{stored[key]!r}, the value of the checkpoint {str(path)!r} "
                  f"(or drop the override)")


class SamplerSpec(NamedTuple):
    """One entry of ``sampler.name`` or ``baselines``: ``"fhmc"`` or ``"fhmc@interp4"``.

    ``label`` is the entry as written (the run label), ``sampler`` the sampler, ``prior`` the
    prior after ``@`` (None: none given, i.e. ``prior.name`` for a flow sampler)."""

    label: str
    sampler: str
    prior: str | None


def parse_sampler(name: str) -> SamplerSpec:
    """``"sampler[@prior]"`` as a :class:`SamplerSpec` (the one place that parses the ``@``)."""
    sampler, at, prior = str(name).partition("@")
    return SamplerSpec(str(name), sampler, prior if at else None)


def sampler_specs(c) -> list[SamplerSpec]:
    """``sampler.name`` and every ``baselines`` entry, parsed, in run order."""
    return [parse_sampler(n) for n in [c.sampler.name, *c.baselines]]


def split_samplers(c) -> set[str]:
    """The samplers of the run whose chains are split over the devices (hmc and fhmc, with
    ``sampler.shard``): what ``cpu_devices`` is about."""
    return {spec.sampler for spec in sampler_specs(c) if spec.sampler in ("hmc", "fhmc") and c.sampler.shard}


def needs_flow(c) -> bool:
    """Whether any sampler of the run uses a flow."""
    return any(spec.sampler in FLOW_SAMPLERS for spec in sampler_specs(c))


def baseline_priors(c) -> list[str]:
    """Distinct priors named by ``sampler@prior`` baselines, other than ``prior.name``."""
    out = [spec.prior for spec in sampler_specs(c)[1:] if spec.prior is not None]
    return [p for i, p in enumerate(out) if p != c.prior.name and p not in out[:i]]


def _prior_names(theory) -> tuple[str, ...]:
    """The ``prior.name`` values a flow of ``theory`` trains from."""
    family = flow_family(theory)
    return PRIORS if family is None else family.prior_names


def _check_train_keys(c, theory) -> None:
    """``train.*`` of a flow that is trained in this run."""
    t = c.train
    for key, value, minimum in (("train.steps", t.steps, 1), ("train.batch_size", t.batch_size, 2),
                                ("train.log_every", t.log_every, 1)):
        if value < minimum:
            _fail(key, value, f"an integer >= {minimum}")
    if not t.lr > 0:
        _fail("train.lr", t.lr, "a positive learning rate")
    if t.beta is not None:
        with config_keys(TRAIN_KEYS):  # the training couplings
            dataclasses.replace(theory, L=t.L or theory.L, beta=t.beta)


def _validate_family_flow(c, theory, family) -> None:
    """The flows of a theory with its own flow family (U(1): gauge-equivariant couplings): the
    family's ``flow.*`` keys, extents it can act on, its priors, a checkpoint of that family."""
    f, t = c.flow, c.train
    with config_keys(FLOW_KEYS):
        family.config(vars(f))
    m = family.extent_multiple
    for key, L in [("lattice.L", theory.L), ("train.L", t.L), *[("volumes", v) for v in c.volumes]]:
        if L is not None and L % m:
            _fail(key, L, f"a multiple of {m} for action={theory.name} with a flow sampler (the {family.name} "
                  f"flow's masks have period {m})")
    if c.prior.name not in family.prior_names:
        _fail("prior.name", c.prior.name, f"one of {list(family.prior_names)} for action={theory.name} "
              f"(prior={family.prior_names[0]})")
    for i, spec in enumerate(sampler_specs(c)):
        if spec.prior is not None and spec.prior not in family.prior_names:
            _fail("baselines", spec.label, f"a sampler without @prior or with a prior in {list(family.prior_names)} "
                  f"for action={theory.name}")
    if f.checkpoint is not None:
        path = checkpoint_dir(f.checkpoint)
        stored = _read_stored_flow(f.checkpoint, path)
        if stored.get("family") != family.name:
            _fail("flow.checkpoint", f.checkpoint, f"a {family.name} flow for action={theory.name} (the checkpoint "
                  f"{str(path)!r} holds a {stored.get('family', 'phi4 coupling')} flow)")
    else:
        _check_train_keys(c, theory)


def _read_stored_flow(value, path: Path) -> dict:
    """The ``flow_config.json`` of the checkpoint ``flow.checkpoint=value`` (at ``path``), refused
    naming the key when there is none or it is not JSON."""
    import json

    from ..training.checkpoint import is_complete

    if not is_complete(path):
        _fail("flow.checkpoint", value, f"a flow directory (flow_config.json and params/) or a run directory "
              f"holding flow/; no flow checkpoint at {str(path)!r}")
    try:
        stored = json.loads((path / "flow_config.json").read_text())
    except (ValueError, UnicodeDecodeError) as err:
        _fail("flow.checkpoint", value, f"a readable flow checkpoint ({path / 'flow_config.json'}: {err})")
    return stored if isinstance(stored, dict) else {}


def _stored_family(path: Path) -> str | None:
    """The ``family`` of the flow checkpoint at ``path`` (a theory's own flows, e.g.
    ``u1_equivariant``), or None: a φ⁴ coupling flow, or no readable flow_config.json (whose
    refusal is :func:`trivflow.training.checkpoint.read_flow_config`'s)."""
    import json

    try:
        stored = json.loads((path / "flow_config.json").read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return stored.get("family") if isinstance(stored, dict) else None


def _validate_flow(c, theory: Phi4Theory) -> None:
    from ..flows.config import FlowConfig

    family = flow_family(theory)
    if family is not None:
        _validate_family_flow(c, theory, family)
        return
    f, t = c.flow, c.train
    with config_keys(FLOW_KEYS):
        FlowConfig.from_dict(vars(f), ignore=("checkpoint", *GAUGE_ONLY_FLOW_KEYS))
    if theory.d != 2:
        _fail("lattice.d", theory.d, "2: the checkerboard coupling flows act on 2D lattices")
    for key, L in [("lattice.L", theory.L), ("train.L", t.L), *[("volumes", v) for v in c.volumes]]:
        if L is not None and (L < 2 or L % 2):
            _fail(key, L, "an even lattice extent >= 2 (the flow's checkerboard needs even L)")
    if c.prior.name not in PRIORS:
        _fail("prior.name", c.prior.name, f"one of {list(PRIORS)}")
    if f.checkpoint is not None:
        _validate_checkpoint(c)
    _validate_priors(c, theory)
    if f.checkpoint is None or baseline_priors(c):
        _check_train_keys(c, theory)


def _validate_priors(c, theory: Phi4Theory) -> None:
    """Every prior a flow is trained with (``prior.name`` unless ``flow.checkpoint``, and each
    ``sampler@prior`` baseline), and independence MH only where its prior fits (docs/theory.md#priors)."""
    from ..priors.factory import MULTILEVEL_KEYS, SIZED_PRIORS, check_prior_config, derived_prior_config

    t = c.train
    L_train, L_key = (t.L, "train.L") if t.L is not None else (theory.L, "lattice.L")
    beta_train = t.beta if t.beta is not None else theory.beta
    names = ([] if c.flow.checkpoint else [c.prior.name]) + baseline_priors(c)
    kernel = c.flow.kernel_size
    kernel = max(kernel) if isinstance(kernel, (list, tuple)) else kernel
    for name in names:
        prior_cfg = derived_prior_config(vars(c.prior), name)
        if name != "multilevel" and "multilevel" in names:  # the multilevel keys are a baseline's
            prior_cfg.update(dict.fromkeys(MULTILEVEL_KEYS))
        with config_keys(PRIOR_KEYS):
            check_prior_config(prior_cfg, L_train=L_train, beta_train=beta_train, d=theory.d, lam=theory.lam,
                               seed=c.seed, L_key=L_key, kernel_size=kernel)
    imh = [spec.prior or c.prior.name for spec in sampler_specs(c) if spec.sampler == "imh"]
    for name in imh:
        if name not in SIZED_PRIORS:
            continue
        where = "sampler.name" if c.sampler.name == "imh" else "baselines"
        if name == "interp4_x2" or (name == "multilevel" and (c.prior.levels or 2) > 1):
            _fail(where, "imh", f"fhmc with prior {name} (the composed flow g_N∘…∘g_1 has no prior of its own)")
        if name == "interp" and not c.prior.noise:
            _fail("prior.noise", c.prior.noise, "> 0 for imh with prior interp (sigma = 0 has no density)")
        if c.flow.checkpoint and name == c.prior.name:
            _fail("flow.checkpoint", c.flow.checkpoint, f"null for imh with prior {name!r} (a loaded flow's "
                  f"ensemble prior is not rebuilt; use prior=gaussian or train the flow in this run)")
        if L_train != theory.L:
            _fail("train.L", L_train, f"null (= lattice.L) for imh with prior {name!r}: its density lives on the "
                  f"training lattice")
        if c.volumes and c.sampler.name == "imh":
            _fail("volumes", list(c.volumes), f"empty for imh with prior {name!r}: its density lives on "
                  f"L={L_train} only")


def _check_cpu_devices(c) -> None:
    """``cpu_devices``: ``auto`` or a positive integer that divides ``sampler.num_chains`` where
    hmc/fhmc chains are split over the CPU devices."""
    value = getattr(c, "cpu_devices", "auto")
    if value == "auto":
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        _fail("cpu_devices", value, "auto (one device per core where the chains divide over them) or an integer >= 1")
    if value > 1 and c.platform in (None, "cpu") and c.sampler.num_chains % value and split_samplers(c):
        _fail("cpu_devices", value, f"a divisor of sampler.num_chains={c.sampler.num_chains} (the chains are split "
              "over the devices), auto, or sampler.shard=false")


def _check_representable(lat, precision: str) -> None:
    """Couplings must be finite numbers that the working precision can hold (1e300 is finite in
    float64 but infinite in float32)."""
    import math

    import numpy as np

    top = float(np.finfo(np.float32 if precision == "float32" else np.float64).max)
    for key in ("beta", "lam"):
        value = getattr(lat, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            _fail(f"lattice.{key}", value, "a finite number")
        if abs(value) > top:
            _fail(f"lattice.{key}", value, f"a number that {precision} can hold (|x| <= {top:.3g}); "
                  "use precision=float64")


def _check_enough_measurements(smp) -> None:
    """The Γ-method needs ≥ MIN_PER_REPLICA measurements per chain and ≥ MIN_TOTAL in all."""
    from ..analysis.gamma import MIN_PER_REPLICA, MIN_TOTAL

    n_meas = smp.num_traj // smp.meas_every
    need = max(MIN_PER_REPLICA, -(-MIN_TOTAL // smp.num_chains))
    if n_meas < need:
        _fail("sampler.num_traj", smp.num_traj, f"at least {need * smp.meas_every} (= {need} measurements per "
              f"chain x sampler.meas_every={smp.meas_every}; the error analysis needs {MIN_PER_REPLICA} per chain "
              f"and {MIN_TOTAL} in all over sampler.num_chains={smp.num_chains})")


def _validate_hmc_options(c, smp, theory) -> None:
    """The hmc/fhmc options ``adapt_step_size``, ``fourier_mass`` and ``momentum_draw``: valid, and
    set only where an hmc or fhmc run uses them (anywhere else they would be silently ignored)."""
    from ..hmc.fourier import MOMENTUM_DRAWS

    used = c.task == "sample" and any(spec.sampler in ("hmc", "fhmc") for spec in sampler_specs(c))
    for key, value, default in (("adapt_step_size", smp.adapt_step_size, False),
                                ("fourier_mass", smp.fourier_mass, None),
                                ("momentum_draw", smp.momentum_draw, "threefry")):
        if value != default and not used:
            _fail(f"sampler.{key}", value, f"{default!r} (the default) unless an hmc or fhmc sampler runs "
                  f"(sampler.name or baselines, task=sample): it would be ignored")

    if not isinstance(smp.adapt_step_size, bool):
        _fail("sampler.adapt_step_size", smp.adapt_step_size, "true or false")
    if smp.adapt_step_size and smp.num_therm < 1:
        _fail("sampler.num_therm", smp.num_therm, ">= 1 with sampler.adapt_step_size=true (the step size is "
              "adapted during thermalization)")
    if smp.fourier_mass is not None and tuple(theory.shape) != (theory.L,) * theory.d:
        _fail("sampler.fourier_mass", smp.fourier_mass, f"null for action={theory.name} (the Fourier kernel "
              f"M(p) acts on a scalar field of shape (L,)*d, not on shape {tuple(theory.shape)})")
    if smp.fourier_mass is not None:
        m2 = smp.fourier_mass
        if isinstance(m2, bool) or not isinstance(m2, (int, float)) or not 0 < m2 < float("inf"):
            exact = (f"; m^2 = 2 - 2 d beta = {2 - 2 * theory.d * theory.beta:g} is the free theory's exact kernel"
                     if getattr(theory, "lam", None) == 0 else "")
            _fail("sampler.fourier_mass", m2, "a positive number m^2 (M(p) = beta sum_mu 4 sin^2(p_mu/2) + m^2) or "
                  f"null{exact}")
        if theory.beta < 0:
            _fail("lattice.beta", theory.beta, ">= 0 with sampler.fourier_mass (a positive kernel M(p))")
    if smp.momentum_draw not in MOMENTUM_DRAWS:
        _fail("sampler.momentum_draw", smp.momentum_draw, f"one of {list(MOMENTUM_DRAWS)}")


def validate(cfg: DictConfig | Config) -> Theory:
    """Check every value for meaning before compute; return the validated theory.

    Raises ``ValueError`` naming the key, the value and what was expected.
    """
    if isinstance(cfg, DictConfig):
        _refuse_unknown_keys(cfg)
    c = OmegaConf.to_object(cfg) if isinstance(cfg, DictConfig) else cfg
    lat, smp, ana = c.lattice, c.sampler, c.analysis
    if c.precision not in PRECISIONS:
        _fail("precision", c.precision, f"one of {list(PRECISIONS)}")
    _check_representable(lat, c.precision)
    if c.action.name not in ACTIONS:
        _fail("action.name", c.action.name, f"one of {list(ACTIONS)}")
    if c.action.name == "free" and lat.lam != 0:
        _fail("lattice.lam", lat.lam, "0 with action=free (the free theory has no quartic term)")
    with config_keys(LATTICE_KEYS):  # each theory takes its own lattice.* keys (φ⁴: L, d, beta, lam; u1: L, d, beta)
        theory = make_theory(c.action.name, **{k: getattr(lat, k) for k in coupling_names(c.action.name)})
    for i, spec in enumerate(sampler_specs(c)):
        key = "sampler.name" if i == 0 else "baselines"
        if spec.sampler not in SAMPLERS or (i == 0 and spec.prior is not None):
            _fail(key, spec.label, f"one of {list(SAMPLERS)}" + (", or sampler@prior" if i else ""))
        priors = _prior_names(theory)
        if spec.prior is not None and (spec.sampler not in FLOW_SAMPLERS or spec.prior not in priors):
            _fail(key, spec.label,
                  f"sampler@prior with a flow sampler {list(FLOW_SAMPLERS)} and a prior {list(priors)}")
    if c.volumes and smp.name not in FLOW_SAMPLERS:
        _fail("volumes", list(c.volumes), f"empty unless sampler.name is a flow sampler {list(FLOW_SAMPLERS)}")
    if "imh" in [spec.sampler for spec in sampler_specs(c)]:
        if smp.batch_size < 1:
            _fail("sampler.batch_size", smp.batch_size, "an integer >= 1")
    if smp.name == "nuts" or "nuts" in c.baselines or smp.adapt_step_size:
        if not 0 < smp.target_accept < 1:
            _fail("sampler.target_accept", smp.target_accept, "a number in (0, 1)")
    _validate_hmc_options(c, smp, theory)
    if smp.integrator not in INTEGRATORS:
        _fail("sampler.integrator", smp.integrator, f"one of {sorted(INTEGRATORS)}")
    if smp.num_chains < 1:
        _fail("sampler.num_chains", smp.num_chains, "an integer >= 1")
    if smp.num_steps < 1:
        _fail("sampler.num_steps", smp.num_steps, "an integer >= 1")
    if not smp.traj_length > 0:
        _fail("sampler.traj_length", smp.traj_length, "a positive number (step size = traj_length/num_steps)")
    if not isinstance(c.resume, (bool, str)) or c.resume == "":
        _fail("resume", c.resume, "false, true or a run directory")
    for key, value in (("sampler.checkpoint_every", smp.checkpoint_every),
                       ("train.checkpoint_every", c.train.checkpoint_every)):
        if value < 1:
            _fail(key, value, "an integer >= 1")
    with config_keys(SAMPLER_KEYS):
        validate_run_args(smp.traj_length / smp.num_steps, smp.num_traj, smp.num_therm, smp.meas_every,
                          smp.chunk_size)
    _check_enough_measurements(smp)
    if not 0 <= smp.min_acceptance < 1:
        _fail("sampler.min_acceptance", smp.min_acceptance, "a number in [0, 1) (0 disables the frozen-chain check)")
    if c.platform not in PLATFORMS:
        _fail("platform", c.platform, f"one of {list(PLATFORMS)}")
    _check_cpu_devices(c)
    if c.compile_cache is not None and not str(c.compile_cache).strip():
        _fail("compile_cache", c.compile_cache, "a directory, 'default' (the user cache directory) or null (off)")
    # always bounded: an unbounded process writes entries without the access-time files that a
    # bounded one sharing the directory needs (trivflow.app.environment._stamp_unbounded_entries)
    max_gb = getattr(c, "compile_cache_max_gb", 2.0)
    if not (isinstance(max_gb, (int, float)) and max_gb > 0):
        _fail("compile_cache_max_gb", max_gb, "a positive number of GiB (a large one for practically no bound)")
    if not ana.s_tau > 0:
        _fail("analysis.s_tau", ana.s_tau, "a positive number (ADerrors default 4, Wolff 1.5)")
    if ana.plateau is not None:
        t = list(ana.plateau)
        if len(t) != 2 or not 1 <= t[0] <= t[1] <= lat.L // 2 - 1:
            _fail("analysis.plateau", t, f"[t_min, t_max] with 1 <= t_min <= t_max <= L/2 - 1 = {lat.L // 2 - 1}")
    if c.task not in TASKS:
        _fail("task", c.task, f"one of {list(TASKS)}")
    if c.task == "tune_beta" and "xi" not in theory.headline:
        _fail("task", c.task, f"'sample' for action={c.action.name} (task=tune_beta tunes beta to a correlation "
              "length xi, which this theory does not measure)")
    _validate_prior_draw(c)
    if c.task == "tune_beta":
        validate_tune(c, theory)
    elif needs_flow(c):
        _validate_flow(c, theory)
    return theory


def _validate_prior_draw(c) -> None:
    """``prior.draw``: one of the normal draws, and other than the default only where a flow is
    trained from the gaussian prior (anywhere else it would be silently ignored)."""
    from ..draws import NORMAL_DRAWS

    draw = c.prior.draw
    if draw not in NORMAL_DRAWS:
        _fail("prior.draw", draw, f"one of {list(NORMAL_DRAWS)}")
    trains_gaussian = (c.task == "sample" and needs_flow(c) and c.prior.name == "gaussian"
                       and c.flow.checkpoint is None)
    if draw != "threefry" and not trains_gaussian:
        _fail("prior.draw", draw, "'threefry' (the default) unless a flow is trained from prior=gaussian in this "
              "run (a flow sampler, no flow.checkpoint): it would be ignored")


def _override_key(override: str) -> str:
    """The key of a command-line override: ``flow.kernel_size=5`` → ``flow.kernel_size``,
    ``+x=1``/``++x=1``/``~x`` → ``x``, a group choice ``prior=interp4`` → ``prior``."""
    return str(override).split("=", 1)[0].lstrip("+~")


def _unread_reason(key: str, c) -> str | None:
    """Why no stage of the run described by ``c`` reads ``key`` and what would make it count,
    or None when some stage reads it. The rules follow the pipeline (docs/architecture.md): a
    ``lattice.*`` key is read only by a theory that has that coupling (``lattice.lam`` is φ⁴'s, not
    U(1)'s: :func:`trivflow.theory.coupling_names`); the
    flow, its training and its prior exist only for flow samplers; ``tune.*`` and ``target_xi``
    only for ``task=tune_beta``; ``sampler.batch_size`` only for independence MH and
    ``sampler.target_accept`` only for NUTS and for hmc/fhmc with ``sampler.adapt_step_size``."""
    group = key.split(".", 1)[0]
    if group == "lattice" and key != "lattice" and c.action.name in THEORIES:
        coupling = key.split(".", 1)[1]
        if coupling not in coupling_names(c.action.name):
            return (f"action={c.action.name} has no coupling {coupling} (it reads lattice."
                    + ", lattice.".join(coupling_names(c.action.name)) + ")")
    samplers = [spec.sampler for spec in sampler_specs(c)]
    running = f"sampler={c.sampler.name}" + (f", baselines={list(c.baselines)}" if c.baselines else "")
    if group in ("flow", "train", "prior") and c.task != "tune_beta" and not needs_flow(c):
        return (f"no sampler of this run uses a flow ({running}); it counts with a flow sampler, e.g. "
                f"sampler=fhmc or baselines=[fhmc]")
    family = flow_family(THEORIES[c.action.name]) if c.action.name in THEORIES else None
    if family is not None and group in ("flow", "prior") and key not in ("flow", "prior"):
        leaf = key.split(".", 1)[1]
        read = (*family.config_keys(), "checkpoint") if group == "flow" else ("name",)
        if leaf not in read:
            return (f"the {family.name} flows of action={c.action.name} do not read it (they read "
                    + ", ".join(f"{group}.{k}" for k in read) + ")")
    elif family is None and key.removeprefix("flow.") in GAUGE_ONLY_FLOW_KEYS:
        return (f"only the gauge flows of action=u1 read it (this run: action={c.action.name}, whose coupling "
                "flows read flow.kernel_size, flow.num_layers, flow.hidden_channels, ...)")
    if (group == "tune" or key == "target_xi") and c.task != "tune_beta":
        return f"only task=tune_beta reads it (this run: task={c.task})"
    if key == "sampler.batch_size" and "imh" not in samplers:
        return f"only independence MH reads it ({running}); it counts with sampler=imh or baselines=[imh]"
    adapting = c.sampler.adapt_step_size and {"hmc", "fhmc"} & set(samplers)
    if key == "sampler.target_accept" and "nuts" not in samplers and not adapting:
        return (f"only NUTS and step-size adaptation read it ({running}); it counts with sampler=nuts or "
                "sampler.adapt_step_size=true")
    return None


def refuse_unread_overrides(cfg: DictConfig | Config, overrides) -> None:
    """Refuse, before compute, a command-line override that no stage of the run reads (a sweep
    ``-m flow.kernel_size=3,5`` with the default ``sampler=hmc`` would run the same job twice):
    ``ValueError`` with one line naming the first such override and what would make it count
    (:func:`_unread_reason`). ``overrides`` are Hydra's task overrides (``key=value`` strings)."""
    for override in overrides:  # cfg as composed: an unknown key (+x=1) is validate()'s to refuse
        reason = _unread_reason(_override_key(override), cfg)
        if reason is not None:
            raise ValueError(f"{override} is read by no stage of this run, so it is refused: {reason}")


def resolve_target_xi(c) -> float:
    """``target_xi``, default L/4 (the line of constant physics)."""
    return float(c.target_xi) if c.target_xi is not None else c.lattice.L / 4.0


def validate_tune(c, theory) -> None:
    """Check the ``task: tune_beta`` keys for meaning before compute (``c``: the config object).

    Raises ``ValueError`` naming the key, the value and what was expected.
    """
    t, L = c.tune, theory.L
    if L < 4:
        _fail("lattice.L", L, ">= 4 for task=tune_beta (the effective mass needs C(t) up to t = 2)")
    if c.sampler.name != "hmc":
        _fail("sampler.name", c.sampler.name, "'hmc' for task=tune_beta (xi is measured by HMC)")
    if c.baselines:
        _fail("baselines", list(c.baselines), "empty for task=tune_beta")
    if c.volumes:
        _fail("volumes", list(c.volumes), "empty for task=tune_beta")
    if getattr(c, "resume", False):
        _fail("resume", c.resume, "false for task=tune_beta (a tuning run is not resumable; rerun it)")
    if c.target_xi is not None and not 0 < c.target_xi < L / 2:
        _fail("target_xi", c.target_xi, f"0 < target_xi < L/2 = {L / 2:g} (a correlation length the "
              f"effective mass resolves on the L={L} lattice)")
    if t.max_iter < 2:
        _fail("tune.max_iter", t.max_iter, "an integer >= 2")
    if t.fit_points is not None and t.fit_points < 2:
        _fail("tune.fit_points", t.fit_points, "an integer >= 2 or null (every point)")
    if t.fit_degree not in (1, 2):
        _fail("tune.fit_degree", t.fit_degree, "1 (linear) or 2 (quadratic once >= 4 points)")
    if t.warm_therm is not None and t.warm_therm < 0:
        _fail("tune.warm_therm", t.warm_therm, "an integer >= 0 or null (then sampler.num_therm)")
    for key, value in (("tune.tol_sigma", t.tol_sigma), ("tune.fit_window", t.fit_window),
                       ("tune.bracket_width", t.bracket_width),
                       ("tune.max_step", t.max_step)):
        if value is not None and not value > 0:
            nullable = key in ("tune.bracket_width", "tune.max_step")
            _fail(key, value, "a positive number" + (" or null" if nullable else ""))
    for key, value in (("tune.xi_rtol", t.xi_rtol), ("tune.warm_dbeta", t.warm_dbeta)):
        if not value >= 0:
            _fail(key, value, "a number >= 0")
    lo, hi = t.beta_lo, t.beta_hi
    if (lo is None) != (hi is None):
        missing, given = ("tune.beta_hi", lo) if hi is None else ("tune.beta_lo", hi)
        _fail(missing, None, f"a number as well (give both tune.beta_lo and tune.beta_hi or neither; got {given})")
    if lo is None and not automatic_bracket_available(theory.d, theory.lam):
        _fail("tune.beta_lo", None, f"a number with tune.beta_hi: no automatic bracket for lattice.d={theory.d}, "
              f"lattice.lam={theory.lam} (known for lam=0, and for lam=0.5 in 2D from the LCP table)")
    if lo is not None:
        if not 0 <= lo < hi:
            _fail("tune.beta_lo", lo, f"0 <= tune.beta_lo < tune.beta_hi={hi}")
        if theory.lam == 0 and not hi < 1.0 / theory.d:
            _fail("tune.beta_hi", hi, f"< 1/d = {1.0 / theory.d:g} for lam=0 (the free theory is unstable beyond)")
