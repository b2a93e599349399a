"""Binning (blocking) of Monte Carlo series along the time (last) axis."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["bin_series", "binned_error"]


def _check_bin_size(bin_size: Any) -> int:
    if isinstance(bin_size, bool) or int(bin_size) != bin_size or int(bin_size) < 1:
        raise ValueError(f"bin_size must be a positive integer, got {bin_size!r}")
    return int(bin_size)


def bin_series(data: Any, bin_size: int) -> np.ndarray:
    """Means of consecutive blocks of ``bin_size`` along the last axis.

    ``data`` of shape (..., N) → array of shape (..., N // bin_size) (float64); the incomplete tail
    (the last N mod bin_size points) is dropped. Raises ValueError if no complete bin fits.
    """
    arr = np.asarray(data, dtype=np.float64)
    b = _check_bin_size(bin_size)
    if arr.ndim == 0:
        raise ValueError("data must have at least one (time) axis")
    n = arr.shape[-1]
    n_bins = n // b
    if n_bins < 1:
        raise ValueError(f"bin_size = {b} exceeds the series length {n}: no complete bin")
    return arr[..., : n_bins * b].reshape(*arr.shape[:-1], n_bins, b).mean(axis=-1)


def binned_error(data: Any, bin_size: int) -> float:
    """Naive error of the mean from bins: √(Var(bins) / n_bins), Var with ddof = 1.

    ``data``: shape (N,) or (R, N_r) (replicas are binned separately and all R·(N_r // bin_size)
    bins are pooled, deviations taken from their common mean). Needs ≥ 2 bins in all and finite
    data. For bin_size ≫ τ_int this approaches the Γ-method error √(2τ_int Γ(0)/N).
    """
    arr = np.asarray(data, dtype=np.float64)
    if arr.ndim not in (1, 2):
        raise ValueError(f"data must be 1-D or 2-D (R, N_r), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("data is empty")
    n_bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    if n_bad:
        raise ValueError(f"data contains {n_bad} non-finite value(s) (NaN/inf) out of {arr.size}")
    bins = bin_series(arr, bin_size).reshape(-1)
    if bins.size < 2:
        raise ValueError(f"need at least 2 bins, got {bins.size} (bin_size = {bin_size})")
    return math.sqrt(float(np.var(bins, ddof=1)) / bins.size)
