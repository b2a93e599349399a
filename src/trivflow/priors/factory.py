"""Priors from the ``prior.*`` config (docs/theory.md#priors): validation, source theories, construction.

``prior.name``:

* ``gaussian`` — :class:`~trivflow.priors.GaussianPrior` on the training lattice;
* ``coarse_bigvol`` — :class:`~trivflow.priors.CoarseTheoryPrior`: an ensemble of the training
  lattice L at β_c = β(L/2);
* ``interp`` — :class:`~trivflow.priors.InterpolationPrior` (σ = ``prior.noise``) from an ensemble
  at (L/2, β(L/2));
* ``multilevel`` — a tower of N = ``prior.levels`` flows (the pipeline trains them, coarsest
  first; :func:`tower_levels`): g_j trained at L_j = L/2^(N−j) with an
  :class:`~trivflow.priors.Interleave4Prior` from an HMC ensemble at (L_j/2, β(L_j/2)),
  j = 1 … N; FHMC at L uses g_N ∘ … ∘ g_1;
* ``interp4`` — the tower with N = 1 (one flow, interp4 from (L/2, β(L/2)));
* ``interp4_x2`` — the tower with N = 2: g₁ at (L/2, β(L/2)) with interp4 from (L/4, β(L/4)),
  g₂ at L with interp4 from (L/2, β(L/2)); FHMC uses g₂ ∘ g₁.

β(L) comes from :data:`~trivflow.lattice.presets.LINE_OF_CONSTANT_PHYSICS`. Overrides, β(L/2^k)
for k = 1 … N: ``prior.betas`` (multilevel: a list of N entries, null entries from the table);
``prior.beta_coarse`` = β(L/2) and ``prior.beta_coarser`` = β(L/4) for the presets and the
one-level priors. A missing table entry is an error naming the key to set. Ensemble files, same
order: ``prior.ensembles`` (multilevel), ``prior.ensemble`` (L/2) and ``prior.ensemble_coarser``
(L/4); null generates one into ``<run>/priors/``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from ..lattice.presets import LINE_OF_CONSTANT_PHYSICS
from ..lattice.theory import Phi4Theory
from .ensemble import EnsembleSettings, ensemble_name, load_ensemble, obtain_ensemble

log = logging.getLogger("trivflow")

PRIOR_NAMES = ("gaussian", "coarse_bigvol", "interp", "interp4", "interp4_x2", "multilevel")
#: priors built from one ensemble
ENSEMBLE_PRIORS = ("coarse_bigvol", "interp", "interp4")
#: priors trained as a tower of flows by :func:`tower_levels` (interp4: N = 1, interp4_x2: N = 2)
TOWER_PRIORS = ("interp4", "interp4_x2", "multilevel")
#: priors whose density is tied to one lattice size (independence MH elsewhere is refused)
SIZED_PRIORS = ENSEMBLE_PRIORS + ("interp4_x2", "multilevel")
#: the keys of ``prior=multilevel`` (null for every other prior)
MULTILEVEL_KEYS = ("levels", "betas", "ensembles")
#: the keys of the presets' coarser level (null for every other prior)
X2_KEYS = ("beta_coarser", "ensemble_coarser")


def _get(prior_cfg, key, default=None):
    """``prior_cfg.key`` for a dict, a DictConfig or a dataclass; ``default`` when absent."""
    return prior_cfg.get(key, default) if hasattr(prior_cfg, "get") else getattr(prior_cfg, key, default)


def coarse_beta(L: int, override, key: str, fix: str | None = None) -> float:
    """β at extent L on the line ξ = L/4: ``override`` when given, else the table entry.

    ``key`` names the override in errors; ``fix`` is the override to suggest when the table has
    no entry (default ``<key>=<beta …>``)."""
    if override is not None:
        if not isinstance(override, (int, float)) or isinstance(override, bool) or not 0 <= override < 10:
            raise ValueError(f"{key}={override!r} is invalid: expected a hopping coupling beta >= 0")
        return float(override)
    try:
        return LINE_OF_CONSTANT_PHYSICS[L]
    except KeyError:
        known = ", ".join(str(k) for k in sorted(LINE_OF_CONSTANT_PHYSICS))
        fix = fix or f"{key}=<beta with xi = {L / 4:g} at L={L}>"
        raise ValueError(f"{key} is null and the line of constant physics has no beta for L={L} (known L: "
                         f"{known}): set {fix}") from None


def source_theory(name: str, L_train: int, d: int, lam: float, beta_coarse=None,
                  key: str = "prior.beta_coarse") -> Phi4Theory:
    """The theory of the ensemble behind a one-level prior ``name`` for training at extent ``L_train``:
    (L, β(L/2)) for coarse_bigvol, (L/2, β(L/2)) for interp and interp4."""
    if name not in ENSEMBLE_PRIORS:
        raise ValueError(f"prior.name={name!r} has no single source ensemble (one of {list(ENSEMBLE_PRIORS)})")
    beta = coarse_beta(L_train // 2, beta_coarse, key)
    L = L_train if name == "coarse_bigvol" else L_train // 2
    return Phi4Theory(L=L, d=d, beta=beta, lam=lam)


def ensemble_settings(prior_cfg, seed: int) -> EnsembleSettings:
    """:class:`EnsembleSettings` from ``prior.*`` (``prior.seed`` null → the run's ``seed``)."""
    own = _get(prior_cfg, "seed")
    return EnsembleSettings(size=_get(prior_cfg, "ensemble_size", 10000), spacing=_get(prior_cfg, "spacing", 10),
                            therm=_get(prior_cfg, "therm", 1000), chains=_get(prior_cfg, "chains", 64),
                            seed=seed if own is None else own, num_steps=_get(prior_cfg, "num_steps", 10),
                            traj_length=float(_get(prior_cfg, "traj_length", 1.0)))


@dataclasses.dataclass(frozen=True)
class TowerSpec:
    """The coarse levels of a tower prior (:data:`TOWER_PRIORS`), finest first: entry k − 1 is
    the lattice L/2^k, k = 1 … N.

    Attributes:
        levels: N, the number of flows.
        betas: override of β(L/2^k) per k (None: the line of constant physics).
        ensembles: ensemble file at (L/2^k, β(L/2^k)) per k (None: generate it).
        beta_keys, ensemble_keys: the config key of each entry (for messages).
    """

    levels: int
    betas: tuple
    ensembles: tuple
    beta_keys: tuple
    ensemble_keys: tuple

    def beta_fix(self, k: int, L: int) -> str | None:
        """The override that supplies a missing β(L/2^k) (extent ``L`` = L/2^k), as a user types it."""
        if not self.beta_keys[k - 1].startswith("prior.betas["):
            return None
        entries = [f"{b:g}" if b is not None else "null" for b in self.betas]
        entries[k - 1] = f"<beta with xi = {L / 4:g} at L={L}>"
        return f"prior.betas=[{','.join(entries)}]"


def _tower_list(value, n: int, key: str, what: str) -> tuple:
    """``prior.betas`` / ``prior.ensembles`` as a tuple of N entries (null: N nulls)."""
    if value is None:
        return (None,) * n
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != n:
        null = "the line of constant physics" if key == "prior.betas" else "generate it"
        raise ValueError(f"{key}={_plain(value)!r} is invalid: expected null or a list of prior.levels={n} entries "
                         f"({what} at L/2, L/4, …, L/2^{n}; a null entry: {null})")
    return tuple(value)


def _plain(value):
    """A list-like config value as a plain list (for messages)."""
    return list(value) if hasattr(value, "__len__") and not isinstance(value, (str, bytes)) else value


def tower_spec(prior_cfg) -> TowerSpec:
    """The :class:`TowerSpec` of a tower prior: interp4 (N = 1, ``beta_coarse``/``ensemble``),
    interp4_x2 (N = 2, plus ``beta_coarser``/``ensemble_coarser``) or multilevel (N =
    ``prior.levels``, ``prior.betas``/``prior.ensembles``). Raises ``ValueError`` naming the key."""
    name = _get(prior_cfg, "name")
    if name in ("interp4", "interp4_x2"):
        n = 1 if name == "interp4" else 2
        return TowerSpec(n, (_get(prior_cfg, "beta_coarse"), _get(prior_cfg, "beta_coarser"))[:n],
                         (_get(prior_cfg, "ensemble"), _get(prior_cfg, "ensemble_coarser"))[:n],
                         ("prior.beta_coarse", "prior.beta_coarser")[:n],
                         ("prior.ensemble", "prior.ensemble_coarser")[:n])
    if name != "multilevel":
        raise ValueError(f"prior.name={name!r} is not a tower prior (one of {list(TOWER_PRIORS)})")
    n = _get(prior_cfg, "levels")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"prior.levels={n!r} is invalid: expected an integer >= 1 (the number of flows of the "
                         f"multilevel tower; 1 is interp4, 2 is interp4_x2)")
    return TowerSpec(n, _tower_list(_get(prior_cfg, "betas"), n, "prior.betas", "beta"),
                     _tower_list(_get(prior_cfg, "ensembles"), n, "prior.ensembles", "the ensemble file"),
                     tuple(f"prior.betas[{k}]" for k in range(n)), tuple(f"prior.ensembles[{k}]" for k in range(n)))


def tower_lattice_problem(L: int, levels: int, kernel_size: int | None = None) -> str | None:
    """Why a tower of ``levels`` flows cannot be built at extent ``L`` (None: it can).

    Every lattice but the coarsest is halved, so L/2^k must be an integer for k = 1 … N; the
    flows g_1 … g_{N−1} are trained at L/2^k, k = 1 … N − 1, which must be even (checkerboard)
    and, given ``kernel_size`` (the largest k×k kernel of the flow), at least k (a smaller
    periodic lattice folds the k×k stencil onto itself: two taps on one site); the coarsest
    ensemble lives at L/2^N >= 2."""
    for k in range(1, levels + 1):
        if L % 2**k:
            extent = L // 2 ** (k - 1)
            where = f"L={extent}" if k == 1 else f"the coarse lattice L/{2 ** (k - 1)} = {extent}"
            return f"{where} is odd and cannot be halved (L must be a multiple of 2^{levels} = {2 ** levels})"
    for k in range(1, levels):
        if kernel_size is not None and L // 2**k < kernel_size:
            return (f"the flow g{levels - k} would be trained at L/{2 ** k} = {L // 2 ** k}, smaller than the "
                    f"flow's kernel_size={kernel_size} (the stencil would wrap around the lattice onto itself)")
    if L // 2**levels < 2:
        return f"the coarsest ensemble lattice L/{2 ** levels} = {L // 2 ** levels} is smaller than 2"
    return None


def max_tower_levels(L: int, kernel_size: int | None = None) -> int:
    """The deepest tower :func:`tower_lattice_problem` accepts at extent L (0: none)."""
    n = 0
    while n < 64 and tower_lattice_problem(L, n + 1, kernel_size) is None:
        n += 1
    return n


def tower_levels(prior_cfg, L_train: int, beta_train: float) -> list[dict]:
    """The N trainings of a tower prior at extent ``L_train``, coarsest first.

    Level j = 1 … N trains g_j on (L_j, β_j), L_j = L/2^(N−j), β_j = β(L_j) (β_N = ``beta_train``),
    from an interp4 prior of an HMC ensemble at (L_j/2, β(L_j/2)); FHMC at L uses g_N ∘ … ∘ g_1.
    Returns ``[{"L", "beta", "prior": {"name": "interp4", "beta_coarse", "ensemble"}}, …]``
    (N = 2 is exactly interp4_x2's two levels; N = 1 is interp4)."""
    spec = tower_spec(prior_cfg)
    n = spec.levels
    betas = [coarse_beta(L_train // 2**k, spec.betas[k - 1], spec.beta_keys[k - 1],
                         spec.beta_fix(k, L_train // 2**k)) for k in range(1, n + 1)]
    return [{"L": L_train // 2 ** (k - 1), "beta": beta_train if k == 1 else betas[k - 2],
             "prior": {"name": "interp4", "beta_coarse": betas[k - 1], "ensemble": spec.ensembles[k - 1]}}
            for k in range(n, 0, -1)]


def derived_prior_config(prior_cfg, name: str) -> dict:
    """The ``prior.*`` values for training with prior ``name``: ``prior_cfg`` itself when it is
    ``prior.name``; for another prior (a ``sampler@name`` baseline) the same generation settings
    and β(L/2) (``beta_coarse``, or ``betas[0]`` of a multilevel ``prior_cfg``), but no ensemble
    files (generated into the run's cache instead), no coarser-level keys (the multilevel keys
    stay for a multilevel baseline), and the noise only for interp."""
    out = dict(prior_cfg.items()) if hasattr(prior_cfg, "items") else dict(vars(prior_cfg))
    if name == out.get("name"):
        return out
    betas = out.get("betas")
    if out.get("name") == "multilevel" and betas is not None and len(betas):
        out["beta_coarse"] = betas[0]
    out.update(name=name, ensemble=None, beta_coarser=None, ensemble_coarser=None)
    if name == "multilevel":
        out["ensembles"] = None
    else:
        out.update(dict.fromkeys(MULTILEVEL_KEYS))
    if name != "interp":
        out["noise"] = 0.0
    if name != "gaussian":
        out["draw"] = "threefry"
    return out


def _refuse_stray_keys(prior_cfg, name: str) -> None:
    """Keys of one prior set for another are refused (they would be ignored)."""
    if name == "multilevel":
        stray = [k for k in ("beta_coarse", "ensemble", *X2_KEYS) if _get(prior_cfg, k) is not None]
        if stray:
            raise ValueError(f"prior.{stray[0]}={_get(prior_cfg, stray[0])!r} is set but prior.name='multilevel' "
                             f"reads prior.betas and prior.ensembles (entry k-1: the lattice L/2^k) instead")
        return
    for k in MULTILEVEL_KEYS:
        if _get(prior_cfg, k) is not None:
            raise ValueError(f"prior.{k}={_plain(_get(prior_cfg, k))!r} is set but prior.name={name!r}: it belongs to "
                             f"prior=multilevel only")
    if name != "interp4_x2" and (_get(prior_cfg, "beta_coarser") is not None
                                 or _get(prior_cfg, "ensemble_coarser") is not None):
        raise ValueError(f"prior.beta_coarser/prior.ensemble_coarser are set but prior.name={name!r}: they "
                         f"belong to interp4_x2 only")


def check_prior_config(prior_cfg, *, L_train: int, beta_train: float, d: int, lam: float, seed: int,
                       L_key: str = "lattice.L", kernel_size: int | None = None) -> None:
    """Validate ``prior.*`` for training at extent ``L_train`` before any compute; raises
    ``ValueError`` naming the key (``L_key`` for the lattice extent) and the value.
    ``kernel_size``: the flow's largest kernel (a tower's coarse lattices must hold it)."""
    name = _get(prior_cfg, "name")
    if name not in PRIOR_NAMES:
        raise ValueError(f"prior.name={name!r} is invalid: expected one of {list(PRIOR_NAMES)}")
    from ..draws import NORMAL_DRAWS

    draw = _get(prior_cfg, "draw", "threefry")
    if draw not in NORMAL_DRAWS:
        raise ValueError(f"prior.draw={draw!r} is invalid: expected one of {list(NORMAL_DRAWS)}")
    if name == "gaussian":
        return
    if draw != "threefry":
        raise ValueError(f"prior.draw={draw!r} is invalid for prior.name={name!r}: expected 'threefry' (the default; "
                         f"only prior=gaussian draws its batches from a chosen stream, it would be ignored)")
    if d != 2 and name != "coarse_bigvol":
        raise ValueError(f"lattice.d={d!r} is invalid: expected 2 for prior.name={name!r} (2D interpolation)")
    _refuse_stray_keys(prior_cfg, name)
    spec = tower_spec(prior_cfg) if name in TOWER_PRIORS else None
    problem = tower_lattice_problem(L_train, spec.levels if spec else 1, kernel_size if spec else None)
    if problem is not None:
        if name == "multilevel":
            most = max_tower_levels(L_train, kernel_size)
            raise ValueError(f"prior.levels={spec.levels!r} is invalid for {L_key}={L_train!r}: {problem}; "
                             + (f"at most prior.levels={most} fits" if most else "no tower fits this lattice"))
        raise ValueError(f"{L_key}={L_train!r} is invalid for prior.name={name!r}: {problem}")
    noise = _get(prior_cfg, "noise", 0.0)
    if not isinstance(noise, (int, float)) or isinstance(noise, bool) or not noise >= 0:
        raise ValueError(f"prior.noise={noise!r} is invalid: expected a number >= 0 (sigma of the interp noise)")
    if name == "interp" and noise == 0:
        # measured: an L = 16 run trained with sigma = 0 reached loss -155 (vs ~ -8 for a proper
        # prior) and every FHMC trajectory with that flow diverged
        raise ValueError(
            "prior.noise=0.0 is invalid for training with prior interp: expected sigma > 0 (e.g. 0.5). With "
            "sigma = 0 the interpolated configurations fill a V/4-dimensional subspace, r has no density, the "
            "reverse KL is unbounded below and the trained flow is useless for FHMC")
    if noise and name != "interp":
        raise ValueError(f"prior.noise={noise!r} is invalid for prior.name={name!r}: only interp adds noise")
    ensemble_settings(prior_cfg, seed)
    if spec is not None:
        levels = [(lv["prior"]["ensemble"], source_theory("interp4", lv["L"], d, lam, lv["prior"]["beta_coarse"]),
                   key) for lv, key in zip(tower_levels(prior_cfg, L_train, beta_train), reversed(spec.ensemble_keys))]
    else:
        levels = [(_get(prior_cfg, "ensemble"), source_theory(name, L_train, d, lam, _get(prior_cfg, "beta_coarse")),
                   "prior.ensemble")]
    for path, theory, key in levels:
        if path is not None:
            try:  # the whole file: a truncated or NaN-holding ensemble is refused before any compute
                load_ensemble(path, theory)
            except FileNotFoundError as err:
                raise ValueError(str(err).replace("prior.ensemble", key)) from None
            except ValueError as err:
                raise ValueError(str(err).replace("prior.ensemble", key)) from None


def build_prior(name: str, *, shape, ensemble=None, noise: float = 0.0, flip_sign: bool = True,
                draw: str = "threefry"):
    """The prior ``name`` on the training lattice ``shape`` from ``ensemble``
    (:class:`~trivflow.priors.ensemble.Ensemble`, unused for gaussian); ``draw``: the Gaussian
    prior's random stream (:class:`~trivflow.priors.GaussianPrior`; gaussian only)."""
    from .base import GaussianPrior
    from .coarse import CoarseTheoryPrior, Interleave4Prior, InterpolationPrior

    if name == "gaussian":
        return GaussianPrior(tuple(shape), draw=draw)
    if draw != "threefry":
        raise ValueError(f"prior.draw={draw!r} is invalid for prior.name={name!r}: expected 'threefry' (only the "
                         f"gaussian prior draws its batches from a chosen stream)")
    if name not in ENSEMBLE_PRIORS:
        raise ValueError(f"prior.name={name!r} is not a one-level prior (one of {['gaussian', *ENSEMBLE_PRIORS]})")
    th = ensemble.theory
    kwargs = dict(configs=ensemble.configs, beta=th.beta, lam=th.lam, flip_sign=flip_sign)
    prior = {"coarse_bigvol": lambda: CoarseTheoryPrior(**kwargs),
             "interp": lambda: InterpolationPrior(**kwargs, noise=noise),
             "interp4": lambda: Interleave4Prior(**kwargs)}[name]()
    if tuple(prior.shape) != tuple(shape):
        raise ValueError(f"prior {name!r} from an ensemble at L={th.L} has shape {prior.shape}, the training "
                         f"lattice is {tuple(shape)}")
    return prior


def make_prior(prior_cfg, *, L_train: int, d: int, lam: float, seed: int, directory, progress: bool = False):
    """``(prior, info)`` for training at extent ``L_train``: the ensemble is read from
    ``prior.ensemble`` or the cache in ``directory`` (generated there when missing); ``info`` is a
    JSON-friendly description for results.json (name, source theory, ensemble file and size)."""
    name = _get(prior_cfg, "name")
    if name == "gaussian":
        draw = _get(prior_cfg, "draw", "threefry")
        info = {"name": name} if draw == "threefry" else {"name": name, "draw": draw}  # the stream when not default
        return build_prior(name, shape=(L_train,) * d, draw=draw), info
    if name in ("interp4_x2", "multilevel"):
        raise ValueError(f"prior.name={name!r} is built level by level by the pipeline (one training per level)")
    theory = source_theory(name, L_train, d, lam, _get(prior_cfg, "beta_coarse"))
    settings = ensemble_settings(prior_cfg, seed)
    path = _get(prior_cfg, "ensemble")
    ensemble = obtain_ensemble(theory, settings, Path(directory), path=path, progress=progress)
    prior = build_prior(name, shape=(L_train,) * d, ensemble=ensemble, noise=float(_get(prior_cfg, "noise", 0.0)),
                        flip_sign=bool(_get(prior_cfg, "flip_sign", True)))
    info = {"name": name, "source": theory.to_dict(), "ensemble_size": ensemble.size,
            "ensemble": str(path if path is not None else Path(directory) / f"{ensemble_name(theory, settings)}.npz"),
            "ensemble_meta": {k: v for k, v in ensemble.meta.items() if k not in theory.to_dict()}}
    if name == "interp":
        info["noise"] = float(_get(prior_cfg, "noise", 0.0))
    return prior, info
