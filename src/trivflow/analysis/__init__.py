"""Host-side (NumPy) Monte Carlo error analysis: Wolff's Γ-method (hep-lat/0306017) and binning.

Conventions: docs/theory.md#gamma-method; formulas in :mod:`trivflow.analysis.gamma`.

* :func:`gamma_method` — mean, error, τ_int with automatic window for data of shape (R, N_r).
* :func:`derived` — the same for F = f(ā_1, …, ā_n) by linear error propagation;
  :class:`Primaries` stacks the ā_α once for many such F.
* :func:`tau_int` — shortcut returning ``(tau_int, tau_int_err, window)``.
* :func:`bin_series`, :func:`binned_error` — blocking.
"""

from .binning import bin_series, binned_error
from .gamma import (
    GammaResult,
    Primaries,
    autocovariance,
    derived,
    gamma_method,
    json_float,
    numerical_gradient,
    tau_int,
)

__all__ = [
    "GammaResult",
    "Primaries",
    "autocovariance",
    "bin_series",
    "binned_error",
    "derived",
    "gamma_method",
    "json_float",
    "numerical_gradient",
    "tau_int",
]
