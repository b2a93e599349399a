"""Priors r(z) of the trivial variable (docs/theory.md#priors).

All implement the :class:`Prior` protocol (``sample(key, B)``, ``log_prob(one config)``):

* :class:`GaussianPrior` — z ~ N(0, 1) per site;
* :class:`CoarseTheoryPrior` — the same lattice at β_c = β(L/2) (coarse theory at bigger volume);
* :class:`InterpolationPrior` — one (L/2)² configuration, bilinearly interpolated (+ noise σ);
* :class:`Interleave4Prior` — four (L/2)² configurations on the 2×2 sublattices.

The ensembles behind the last three are made with HMC and cached (:mod:`.ensemble`); the
``prior.*`` config is turned into priors by :mod:`.factory`.
"""

from .base import GaussianPrior, Prior
from .coarse import (
    CoarseTheoryPrior,
    Interleave4Prior,
    InterpolationPrior,
    deinterleave4,
    even_even_mask,
    interleave4,
    interpolate2,
)
from .ensemble import (
    Ensemble,
    EnsembleSettings,
    ensemble_name,
    generate_ensemble,
    load_ensemble,
    obtain_ensemble,
    save_ensemble,
)
from .factory import ENSEMBLE_PRIORS, PRIOR_NAMES, SIZED_PRIORS, build_prior, coarse_beta, make_prior

__all__ = [
    "ENSEMBLE_PRIORS",
    "PRIOR_NAMES",
    "SIZED_PRIORS",
    "CoarseTheoryPrior",
    "Ensemble",
    "EnsembleSettings",
    "GaussianPrior",
    "Interleave4Prior",
    "InterpolationPrior",
    "Prior",
    "build_prior",
    "coarse_beta",
    "deinterleave4",
    "ensemble_name",
    "even_even_mask",
    "generate_ensemble",
    "interleave4",
    "interpolate2",
    "load_ensemble",
    "make_prior",
    "obtain_ensemble",
    "save_ensemble",
]
