"""Priors from the ``prior.*`` config (docs/theory.md#priors): validation, source theories, construction.

``prior.name``:

* ``gaussian`` — :class:`~trivflow.priors.GaussianPrior` on the training lattice;
* ``coarse_bigvol`` — :class:`~trivflow.priors.CoarseTheoryPrior`: an ensemble of the training
  lattice L at β_c = β(L/2);
* ``interp`` — :class:`~trivflow.priors.InterpolationPrior` (σ = ``prior.noise``) from an ensemble
  at (L/2, β(L/2));
* ``interp4`` — :class:`~trivflow.priors.Interleave4Prior` from an ensemble at (L/2, β(L/2));
* ``interp4_x2`` — two levels (the pipeline trains both): g₁ at (L/2, β(L/2)) with interp4 from
  (L/4, β(L/4)), g₂ at L with interp4 from (L/2, β(L/2)); FHMC uses g₂ ∘ g₁.

β(L) comes from :data:`~trivflow.lattice.presets.LINE_OF_CONSTANT_PHYSICS`; ``prior.beta_coarse``
overrides β(L/2) and ``prior.beta_coarser`` β(L/4) (x2 only). A missing table entry is an
error naming the key to set. ``prior.ensemble`` (``prior.ensemble_coarser`` for the L/4 level)
points at an existing ensemble file; null generates one into ``<run>/priors/``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..lattice.presets import LINE_OF_CONSTANT_PHYSICS
from ..lattice.theory import Phi4Theory
from .ensemble import EnsembleSettings, ensemble_name, load_ensemble, obtain_ensemble

log = logging.getLogger("trivflow")

PRIOR_NAMES = ("gaussian", "coarse_bigvol", "interp", "interp4", "interp4_x2")
#: priors built from one ensemble
ENSEMBLE_PRIORS = ("coarse_bigvol", "interp", "interp4")
#: priors whose density is tied to one lattice size (independence MH elsewhere is refused)
SIZED_PRIORS = ENSEMBLE_PRIORS + ("interp4_x2",)


def _get(prior_cfg, key, default=None):
    """``prior_cfg.key`` for a dict, a DictConfig or a dataclass; ``default`` when absent."""
    return prior_cfg.get(key, default) if hasattr(prior_cfg, "get") else getattr(prior_cfg, key, default)


def coarse_beta(L: int, override, key: str) -> float:
    """β at extent L on the line ξ = L/4: ``override`` when given, else the table entry."""
    if override is not None:
        if not isinstance(override, (int, float)) or isinstance(override, bool) or not 0 <= override < 10:
            raise ValueError(f"{key}={override!r} is invalid: expected a hopping coupling beta >= 0")
        return float(override)
    try:
        return LINE_OF_CONSTANT_PHYSICS[L]
    except KeyError:
        known = ", ".join(str(k) for k in sorted(LINE_OF_CONSTANT_PHYSICS))
        raise ValueError(f"{key} is null and the line of constant physics has no beta for L={L} (known L: "
                         f"{known}): set {key}=<beta with xi = {L / 4:g} at L={L}>") from None


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


def x2_levels(prior_cfg, L_train: int, beta_train: float) -> list[dict]:
    """The two trainings of ``interp4_x2`` at extent ``L_train`` (coarsest first): for each,
    ``{"L", "beta", "prior": {name, beta_coarse, ensemble}}``, i.e. g₁ at (L/2, β(L/2)) with an
    interp4 prior at β(L/4), then g₂ at (L, beta_train) with an interp4 prior at β(L/2)."""
    beta_half = coarse_beta(L_train // 2, _get(prior_cfg, "beta_coarse"), "prior.beta_coarse")
    beta_quarter = coarse_beta(L_train // 4, _get(prior_cfg, "beta_coarser"), "prior.beta_coarser")
    return [
        {"L": L_train // 2, "beta": beta_half,
         "prior": {"name": "interp4", "beta_coarse": beta_quarter, "ensemble": _get(prior_cfg, "ensemble_coarser")}},
        {"L": L_train, "beta": beta_train,
         "prior": {"name": "interp4", "beta_coarse": beta_half, "ensemble": _get(prior_cfg, "ensemble")}},
    ]


def derived_prior_config(prior_cfg, name: str) -> dict:
    """The ``prior.*`` values for training with prior ``name``: ``prior_cfg`` itself when it is
    ``prior.name``; for another prior (a ``sampler@name`` baseline) the same generation settings
    and ``beta_coarse``, but no ensemble files (generated into the run's cache instead),
    no x2 keys, and the noise only for interp."""
    out = dict(prior_cfg.items()) if hasattr(prior_cfg, "items") else dict(vars(prior_cfg))
    if name == out.get("name"):
        return out
    out.update(name=name, ensemble=None, beta_coarser=None, ensemble_coarser=None)
    if name != "interp":
        out["noise"] = 0.0
    return out


def check_prior_config(prior_cfg, *, L_train: int, beta_train: float, d: int, lam: float, seed: int,
                       L_key: str = "lattice.L") -> None:
    """Validate ``prior.*`` for training at extent ``L_train`` before any compute; raises
    ``ValueError`` naming the key (``L_key`` for the lattice extent) and the value."""
    name = _get(prior_cfg, "name")
    if name not in PRIOR_NAMES:
        raise ValueError(f"prior.name={name!r} is invalid: expected one of {list(PRIOR_NAMES)}")
    if name == "gaussian":
        return
    if d != 2 and name != "coarse_bigvol":
        raise ValueError(f"lattice.d={d!r} is invalid: expected 2 for prior.name={name!r} (2D interpolation)")
    factor = 4 if name == "interp4_x2" else 2
    if L_train % factor or L_train // factor < 2 or (name == "interp4_x2" and (L_train // 2) % 2):
        need = ("a multiple of 4 with L/4 >= 2 (g1 is trained at L/2 with a checkerboard and an L/4 ensemble)"
                if factor == 4 else "an even extent with L/2 >= 2 (the coarse level is L/2)")
        raise ValueError(f"{L_key}={L_train!r} is invalid for prior.name={name!r}: expected {need}")
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
    if name == "interp4_x2":
        levels = [(lv["prior"]["ensemble"], source_theory("interp4", lv["L"], d, lam, lv["prior"]["beta_coarse"]),
                   key) for lv, key in zip(x2_levels(prior_cfg, L_train, beta_train),
                                           ("prior.ensemble_coarser", "prior.ensemble"))]
    else:
        if _get(prior_cfg, "beta_coarser") is not None or _get(prior_cfg, "ensemble_coarser") is not None:
            raise ValueError(f"prior.beta_coarser/prior.ensemble_coarser are set but prior.name={name!r}: they "
                             f"belong to interp4_x2 only")
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


def build_prior(name: str, *, shape, ensemble=None, noise: float = 0.0, flip_sign: bool = True):
    """The prior ``name`` on the training lattice ``shape`` from ``ensemble``
    (:class:`~trivflow.priors.ensemble.Ensemble`, unused for gaussian)."""
    from .base import GaussianPrior
    from .coarse import CoarseTheoryPrior, Interleave4Prior, InterpolationPrior

    if name == "gaussian":
        return GaussianPrior(tuple(shape))
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
        return build_prior(name, shape=(L_train,) * d), {"name": name}
    if name == "interp4_x2":
        raise ValueError("prior.name='interp4_x2' is built level by level by the pipeline (two trainings)")
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
