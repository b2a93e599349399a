"""Conversions between coupling conventions (docs/theory.md#action).

* hopping parameter: β = 2κ;
* the flow-tutorial convention of arXiv:1904.12072,
  S_A = Σ_x[−2 Σ_μ φ_x φ_{x+μ̂} + (m² + 2d) φ_x² + λ_A φ_x⁴], reached by φ = √(2/β) φ_A:
  m² = 2(1 − 2λ)/β − 2d and λ_A = 4λ/β² (the constant λV drops out).
"""

from __future__ import annotations

import math


def beta_to_kappa(beta: float) -> float:
    """κ = β/2."""
    return beta / 2.0


def kappa_to_beta(kappa: float) -> float:
    """β = 2κ."""
    return 2.0 * kappa


def hopping_to_albergo(beta: float, lam: float, d: int = 2) -> tuple[float, float]:
    """(β, λ) → (m², λ_A) of 1904.12072: m² = 2(1 − 2λ)/β − 2d, λ_A = 4λ/β²."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0 to convert conventions, got beta={beta!r}")
    return 2.0 * (1.0 - 2.0 * lam) / beta - 2.0 * d, 4.0 * lam / beta**2


def albergo_to_hopping(m2: float, lam_a: float, d: int = 2) -> tuple[float, float]:
    """Inverse of :func:`hopping_to_albergo`.

    With λ = λ_A β²/4, m² + 2d = 2/β − λ_A β, so β is the positive root of
    λ_A β² + (m² + 2d) β − 2 = 0.
    """
    b = m2 + 2.0 * d
    if lam_a == 0:
        beta = 2.0 / b
    else:
        beta = (-b + math.sqrt(b * b + 8.0 * lam_a)) / (2.0 * lam_a)
    return beta, lam_a * beta**2 / 4.0


def phi_hopping_to_albergo(phi, beta: float):
    """φ_A = √(β/2) φ."""
    return phi * math.sqrt(beta / 2.0)
