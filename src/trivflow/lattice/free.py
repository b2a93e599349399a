"""Exact results of the free theory (λ = 0), docs/theory.md#action.

S = ½ φᵀAφ with lattice dispersion Â(p) = 2 − 2β Σ_μ cos p_μ, p_μ = 2πn_μ/L, stable for
β < 1/d. All functions are host-side NumPy and exact up to rounding.
"""

from __future__ import annotations

import numpy as np


def _check_stable(d: int, beta: float) -> None:
    if not beta < 1.0 / d:
        raise ValueError(f"free theory needs beta < 1/d = {1.0 / d:.6g}, got beta={beta!r}")


def dispersion(L: int, d: int, beta: float) -> np.ndarray:
    """Â(p) = 2 − 2β Σ_μ cos p_μ on the momentum grid, shape ``(L,) * d``."""
    _check_stable(d, beta)
    p = 2.0 * np.pi * np.arange(L) / L
    grids = np.meshgrid(*([p] * d), indexing="ij")
    return 2.0 - 2.0 * beta * sum(np.cos(g) for g in grids)


def phi2(L: int, d: int, beta: float) -> float:
    """⟨φ_x²⟩ = (1/V) Σ_p 1/Â(p)."""
    return float(np.mean(1.0 / dispersion(L, d, beta)))


def chi(L: int, d: int, beta: float) -> float:
    """χ = V⟨M²⟩ = 1/Â(0) = 1/(2 − 2dβ)."""
    _check_stable(d, beta)
    return 1.0 / (2.0 - 2.0 * d * beta)


def two_point(L: int, d: int, beta: float) -> np.ndarray:
    """⟨φ_0 φ_x⟩ = (1/V) Σ_p e^{ipx}/Â(p) for every separation x, shape ``(L,) * d``."""
    return np.real(np.fft.ifftn(1.0 / dispersion(L, d, beta)))


def log_z(L: int, d: int, beta: float) -> float:
    """log Z = (V/2) log 2π − ½ Σ_p log Â(p) for Z = ∫dφ e^{−S}."""
    a_hat = dispersion(L, d, beta)
    return 0.5 * a_hat.size * np.log(2.0 * np.pi) - 0.5 * float(np.sum(np.log(a_hat)))


def zero_momentum_correlator(L: int, d: int, beta: float) -> np.ndarray:
    """Exact ⟨s(x₀) s(x₀+t)⟩ for t = 0 … L/2, s the slice average (docs/theory.md#observables).

    ⟨s(0)s(t)⟩ = (1/L^d) Σ_{p₀} e^{ip₀t} / Â(p₀, 0, …, 0).
    """
    _check_stable(d, beta)
    p0 = 2.0 * np.pi * np.arange(L) / L
    a_hat = 2.0 - 2.0 * beta * (d - 1) - 2.0 * beta * np.cos(p0)
    c = np.real(np.fft.ifft(1.0 / a_hat)) / L ** (d - 1)
    return c[: L // 2 + 1]


def mass(d: int, beta: float) -> float:
    """Exact lattice mass m of the free propagator: cosh m = (1 − β(d−1)) / β."""
    _check_stable(d, beta)
    return float(np.arccosh((1.0 - beta * (d - 1)) / beta))
