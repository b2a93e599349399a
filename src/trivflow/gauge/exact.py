"""Exact results of 2D U(1) Wilson gauge theory on a periodic L × L lattice (docs/theory.md#u1).

On the torus the V = L² plaquette angles are independent up to one global constraint,
Σ_P θ_P ≡ 0 (mod 2π), which the sum over n ∈ ℤ below imposes (δ(x) = (1/2π) Σ_n e^{inx}); the
two holonomies (Polyakov loops) decouple. With I_n the modified Bessel functions,

    Z = Σ_n I_n(β)^V,
    ⟨cos θ_P⟩ = Σ_n I_n^{V−1} (I_{n−1} + I_{n+1})/2 / Z,
    W(A) = Σ_n I_n^{V−A} I_{n+1}^A / Z            (a Wilson loop enclosing A plaquettes),

and, with g(ν) = (1/2π) ∫_{−π}^{π} e^{β cos p} cos(νp) dp (g(n) = I_n(β)) and the θ-vacuum
partition function Z(θ) = Σ_n g(n + θ/2π)^V = Z ⟨e^{iθQ}⟩,

    ⟨Q²⟩ = −Z''(0)/Z(0) = −V/(2π)² Σ_n g_n^{V−2} [(V−1) g'_n² + g_n g''_n] / Σ_n g_n^V,

g'_n, g''_n the ν-derivatives at ν = n (Gauss–Legendre quadrature). Every g is scaled by e^{−β}
(``scipy.special.ive``) and every sum by g_0^V, so nothing overflows or underflows at any L, β.
Infinite volume: ⟨cos θ_P⟩ → I₁/I₀ and ⟨Q²⟩/V → ⟨[θ]²⟩/(4π²) under the one-plaquette weight
e^{β cos θ}. All functions are host-side NumPy/SciPy.
"""

from __future__ import annotations

import math

import numpy as np

#: terms of the sums over n are dropped once (I_n/I_0)^{V−2} falls below this
_TAIL = 1e-18


def _check(L: int, beta: float) -> None:
    if not isinstance(L, int) or L < 2:
        raise ValueError(f"L must be an integer >= 2, got L={L!r}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got beta={beta!r}")


def _ratios(beta: float, V: int) -> np.ndarray:
    """r_n = I_n(β)/I_0(β) for n = 0 … n_max, n_max where r_n^{max(V−2, 1)} < _TAIL (≥ 2 terms
    beyond, so that r_{n+1} exists for every kept n)."""
    from scipy.special import ive

    n_max = 2
    while n_max < 10_000 and (ive(n_max, beta) / ive(0, beta)) ** max(V - 2, 1) > _TAIL:
        n_max += 1
    n = np.arange(n_max + 2)
    return ive(n, beta) / ive(0, beta)


def _symmetric(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, r_n) for n = −N … N from r_n, n ≥ 0 (I_{−n} = I_n)."""
    n = np.arange(-(len(r) - 1), len(r))
    return n, r[np.abs(n)]


def partition_ratio_terms(L: int, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """(n, (I_n/I_0)^V) for the terms of Z/I_0^V kept (module docstring)."""
    _check(L, beta)
    V = L * L
    n, r = _symmetric(_ratios(beta, V))
    return n, r**V


def plaquette(L: int, beta: float) -> float:
    """⟨cos θ_P⟩ = Σ_n I_n^{V−1} (I_{n−1} + I_{n+1})/2 / Σ_n I_n^V."""
    return wilson_loop(L, beta, 1)


def wilson_loop(L: int, beta: float, area: int) -> float:
    """⟨W⟩ of a contractible Wilson loop enclosing ``area`` = A plaquettes (R × T: A = RT),
    W(A) = Σ_n I_n^{V−A} I_{n+1}^A / Σ_n I_n^V (the loop inserts e^{iθ_P} into A plaquettes)."""
    _check(L, beta)
    V = L * L
    if not 0 <= area <= V:
        raise ValueError(f"area must be in [0, V={V}], got area={area!r}")
    r = _ratios(beta, V)
    n, rn = _symmetric(r)
    n = n[1:-1]  # keep n ± 1 inside the table
    rn, rn1 = rn[1:-1], r[np.abs(n + 1)]
    return float(np.sum(rn ** (V - area) * rn1**area) / np.sum(rn**V))


def g_and_derivatives(nu, beta: float, nodes: int = 400) -> np.ndarray:
    """e^{−β} (g(ν), g'(ν), g''(ν)) for each ν of ``nu``, shape ``(3, len(nu))``, with
    g(ν) = (1/2π) ∫_{−π}^{π} e^{β cos p} cos(νp) dp,

    g' = −(1/2π) ∫ p sin(νp) e^{β cos p} dp,   g'' = −(1/2π) ∫ p² cos(νp) e^{β cos p} dp

    (even integrands: (1/π) ∫_0^π), by Gauss–Legendre quadrature with ``nodes`` nodes on [0, π]:
    the integrands are entire, so the rule converges exponentially (400 nodes: to rounding for
    |ν| and β up to a few hundred)."""
    x, w = np.polynomial.legendre.leggauss(nodes)
    p = 0.5 * math.pi * (x + 1.0)
    w = 0.5 * w  # (1/π) ∫_0^π f dp = Σ_i (w_i/2) f(p_i)
    nu = np.atleast_1d(np.asarray(nu, dtype=float))[:, None]
    weight = w * np.exp(beta * (np.cos(p) - 1.0))
    cos, sin = np.cos(nu * p), np.sin(nu * p)
    return np.stack([np.sum(weight * cos, axis=1), -np.sum(weight * p * sin, axis=1),
                     -np.sum(weight * p * p * cos, axis=1)])


def q2(L: int, beta: float) -> float:
    """⟨Q²⟩ = −Z''(0)/Z(0) of the geometric charge at finite L and β (module docstring)."""
    _check(L, beta)
    V = L * L
    N = len(_ratios(beta, V)) - 2
    g, g1, g2 = g_and_derivatives(np.arange(-N, N + 1), beta) / g_and_derivatives(0.0, beta)[0]
    num = np.sum(g ** (V - 2) * ((V - 1) * g1 * g1 + g * g2))
    return float(-V * num / np.sum(g**V) / (2.0 * math.pi) ** 2)


def chi_t(L: int, beta: float) -> float:
    """χ_t = ⟨Q²⟩/V."""
    return q2(L, beta) / (L * L)


def chi_t_infinite_volume(beta: float) -> float:
    """lim_{V→∞} ⟨Q²⟩/V = ⟨θ²⟩/(4π²) with θ ∈ (−π, π] of weight e^{β cos θ} (independent plaquettes)."""
    g, _, g2 = g_and_derivatives(0.0, beta)[:, 0]
    return float(-g2 / g / (4.0 * math.pi**2))


def plaquette_infinite_volume(beta: float) -> float:
    """lim_{V→∞} ⟨cos θ_P⟩ = I₁(β)/I₀(β)."""
    from scipy.special import ive

    return float(ive(1, beta) / ive(0, beta))
