"""Fourier acceleration and the momentum draw of the HMC kernel (docs/theory.md#fourier-accelerated-hmc).

Fourier-accelerated HMC replaces the unit mass matrix by a translation-invariant (circulant) one,
M = F† diag(M̂) F, so that

    K(π) = ½ πᵀ M⁻¹ π = ½ Σ_p |π̂(p)|² / M̂(p),   π ~ N(0, M),   dx/dt = ∂K/∂π = M⁻¹ π,

with the kernel :func:`lattice_mass` M̂(p) = β Σ_μ 4 sin²(p_μ/2) + m² > 0. Only the kinetic
energy changes, so the chain is exact for any positive M̂; with M̂ = Â, the free theory's
dispersion Â(p) = β Σ_μ 4 sin²(p_μ/2) + (2 − 2dβ) (m² = 2 − 2dβ), every mode of the free field
oscillates with the same frequency 1 and decorrelates in O(1) trajectories.

FFT conventions: ``rfftn``/``irfftn`` over all lattice axes with ``norm="ortho"`` (unitary),
π̂(p) = V^{−1/2} Σ_x e^{−ip·x} π_x, p_μ = 2πn_μ/L; the real FFT keeps n_last = 0 … L_last/2 (the
other half is the complex conjugate, π̂(−p) = π̂(p)*). M̂ is even, M̂(−p) = M̂(p), so for a real
π the products M̂^{±1/2}π̂ and π̂/M̂ are again transforms of real fields: multiplying the half
spectrum and transforming back with ``irfftn`` is the exact (real, symmetric) operator M^{±1/2},
M⁻¹. The draw π = M^{1/2} ξ with ξ ~ N(0, 1) on every site gives cov(π) = M. The kinetic energy
is computed as ½ Σ_x π_x (M⁻¹π)_x in position space (the same number as the sum over the full
spectrum, without counting the real-FFT half twice).

The momentum draw ξ ~ N(0, 1) itself (:func:`momentum_draw`) is one of
:data:`trivflow.draws.NORMAL_DRAWS`: JAX's threefry normal by default, ``"rbg"`` or ``"float32"``
(another random stream, the same distribution; :mod:`trivflow.draws`).
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import numpy as np

from ..draws import NORMAL_DRAWS, normal_draw
from ..errors import must_be

#: ``sampler.momentum_draw`` values (:func:`momentum_draw`)
MOMENTUM_DRAWS = NORMAL_DRAWS


def lattice_mass(shape: tuple[int, ...], beta: float, mass2: float) -> np.ndarray:
    """M̂(p) = β Σ_μ 4 sin²(p_μ/2) + m² on the real-FFT grid, shape ``(*shape[:-1], shape[-1]//2 + 1)``.

    ``mass2`` = m² must be positive (M̂(0) = m²); m² = 2 − 2dβ gives the free theory's Â(p).
    """
    if not mass2 > 0:
        raise must_be("fourier_mass", mass2, "a positive number (M(0) = m^2)")
    if not beta >= 0:
        raise ValueError(f"the Fourier mass kernel needs beta >= 0, got beta={beta!r}")
    axes = [2.0 * np.pi * np.arange(n) / n for n in shape[:-1]]
    axes.append(2.0 * np.pi * np.arange(shape[-1] // 2 + 1) / shape[-1])
    grids = np.meshgrid(*axes, indexing="ij")
    return beta * sum(4.0 * np.sin(0.5 * g) ** 2 for g in grids) + mass2


class FourierMetric:
    """The mass matrix M = F† diag(M̂) F of one configuration (module docstring).

    Args:
        mass_hat: M̂ on the real-FFT grid (:func:`lattice_mass`), all entries positive.
        shape: the configuration's (lattice's) shape.
    """

    def __init__(self, mass_hat, shape: tuple[int, ...]):
        mass_hat = np.asarray(mass_hat, dtype=np.float64)
        expected = (*shape[:-1], shape[-1] // 2 + 1)
        if mass_hat.shape != expected or not np.all(mass_hat > 0):
            raise ValueError(f"Fourier mass kernel: expected positive values of shape {expected}, got "
                             f"shape {mass_hat.shape}, min {mass_hat.min() if mass_hat.size else None}")
        self.shape = tuple(shape)
        self.mass_hat = mass_hat

    def _apply(self, x, factor):
        axes = tuple(range(-len(self.shape), 0))
        xh = jnp.fft.rfftn(x, axes=axes, norm="ortho")
        return jnp.fft.irfftn(xh * factor.astype(x.dtype), s=self.shape, axes=axes, norm="ortho")

    def sample(self, xi):
        """π = M^{1/2} ξ (ξ ~ N(0, 1) per site gives π ~ N(0, M))."""
        return self._apply(xi, jnp.asarray(np.sqrt(self.mass_hat)))

    def velocity(self, momentum):
        """dx/dt = M⁻¹ π."""
        return self._apply(momentum, jnp.asarray(1.0 / self.mass_hat))

    def kinetic_energy(self, momentum):
        """K = ½ πᵀ M⁻¹ π = ½ Σ_p |π̂(p)|²/M̂(p)."""
        return 0.5 * jnp.sum(momentum * self.velocity(momentum))


def momentum_draw(name: str = "threefry") -> Callable:
    """``draw(key, shape, dtype) -> ξ ~ N(0, 1)`` of the momenta: :func:`trivflow.draws.normal_draw`
    (``"threefry"``, the reference stream, ``"rbg"`` or ``"float32"``), errors naming
    ``momentum_draw``."""
    return normal_draw(name, key_name="momentum_draw")
