"""Observables of one configuration (measured on device) and the correlation length.

Conventions (docs/theory.md#observables): M = (1/V) Σ_x φ_x, G(0) = (1/V) Σ_x φ_x², slice averages
s_μ(x₀) = mean of φ over the hyperplane x_μ = x₀, and the per-configuration zero-momentum
correlator

    c(t) = (1/(d L)) Σ_μ Σ_{x₀} s_μ(x₀) s_μ(x₀ + t),   symmetrised c(t) → ½[c(t) + c(L − t)],

stored for t = 0 … L/2. The connected correlator is C(t) = ⟨c(t)⟩ − ⟨M⟩².
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def magnetization(phi: jnp.ndarray) -> jnp.ndarray:
    """M = (1/V) Σ_x φ_x (signed, per site)."""
    return jnp.mean(phi)


def g0(phi: jnp.ndarray) -> jnp.ndarray:
    """G(0) = (1/V) Σ_x φ_x²."""
    return jnp.mean(phi * phi)


def slice_averages(phi: jnp.ndarray) -> jnp.ndarray:
    """s_μ(x₀) for every direction μ, shape ``(d, L)`` (requires equal extents)."""
    d = phi.ndim
    return jnp.stack([jnp.mean(phi, axis=tuple(a for a in range(d) if a != mu)) for mu in range(d)])


def zero_momentum_correlator(phi: jnp.ndarray) -> jnp.ndarray:
    """Symmetrised per-configuration c(t), t = 0 … L/2 (shape ``(L//2 + 1,)``).

    Computed as the circular autocorrelation of each slice average via FFT,
    averaged over the d directions.
    """
    s = slice_averages(phi)
    L = phi.shape[0]
    s_hat = jnp.fft.rfft(s, axis=-1)
    autocorr = jnp.fft.irfft(s_hat * jnp.conj(s_hat), n=L, axis=-1) / L  # (d, L)
    c = jnp.mean(autocorr, axis=0)
    c_sym = 0.5 * (c + jnp.roll(c[::-1], 1))  # c(L − t) at index t
    return c_sym[: L // 2 + 1]


def phi4_observables(phi: jnp.ndarray) -> dict[str, jnp.ndarray]:
    """All per-configuration observables of docs/theory.md#observables for one configuration.

    Returns a dict of scalars ``M, absM, M2, G0`` and the array ``C`` of shape (L//2 + 1,).
    """
    m = magnetization(phi)
    return {
        "M": m,
        "absM": jnp.abs(m),
        "M2": m * m,
        "G0": g0(phi),
        "C": zero_momentum_correlator(phi),
    }


def effective_mass(correlator) -> np.ndarray:
    """m_eff(t) = arccosh{[C(t−1) + C(t+1)] / [2 C(t)]} for t = 1 … len(C) − 2.

    Exact for a single cosh, C(t) ∝ cosh(m(t − L/2)), so it is flat for the free
    theory on a finite periodic lattice. Returns NaN where the argument is < 1.
    Works on NumPy arrays (host-side analysis); the last axis is t.
    """
    c = np.asarray(correlator, dtype=float)
    ratio = (c[..., :-2] + c[..., 2:]) / (2.0 * c[..., 1:-1])
    with np.errstate(invalid="ignore"):
        return np.where(ratio >= 1.0, np.arccosh(np.maximum(ratio, 1.0)), np.nan)


def default_plateau(L: int) -> tuple[int, int]:
    """Default effective-mass plateau [t_min, t_max] (inclusive): t from ⌈L/4⌉ to L/2 − 1.

    On the line of constant physics ξ = L/4, so t ≥ ξ suppresses excited states by e^{-2}
    or more while t ≤ L/2 − 1 stays inside the range where m_eff is defined.
    """
    t_max = L // 2 - 1
    t_min = min(max(1, -(-L // 4)), t_max)
    return t_min, t_max


def correlation_length(correlator, plateau: tuple[int, int]) -> float:
    """ξ = 1/m̄ with m̄ the mean of m_eff(t) over the plateau t ∈ [t_min, t_max]."""
    t_min, t_max = plateau
    m = effective_mass(correlator)[..., t_min - 1 : t_max]
    return float(1.0 / np.mean(m))
