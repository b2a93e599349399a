"""The φ⁴ lattice action in hopping form, for one field of shape ``(*lattice)``.

Convention (docs/theory.md#action), periodic hypercubic lattice, every bond counted once::

    S(φ) = Σ_x [ −β Σ_μ φ_{x+μ̂} φ_x + φ_x² + λ (φ_x² − 1)² ]

All functions act on a single configuration; vmap at the edge for batches. The number of
lattice dimensions is ``phi.ndim`` (any d ≥ 1).
"""

from __future__ import annotations

import jax.numpy as jnp


def hopping_sum(phi: jnp.ndarray) -> jnp.ndarray:
    """Σ_μ (φ_{x+μ̂} + φ_{x−μ̂}) at every site, shape ``phi.shape``."""
    total = jnp.zeros_like(phi)
    for mu in range(phi.ndim):
        total = total + jnp.roll(phi, -1, axis=mu) + jnp.roll(phi, 1, axis=mu)
    return total


def forward_bond_sum(phi: jnp.ndarray) -> jnp.ndarray:
    """Σ_x Σ_μ φ_{x+μ̂} φ_x, each nearest-neighbour bond once (scalar)."""
    forward = sum(jnp.roll(phi, -1, axis=mu) for mu in range(phi.ndim))
    return jnp.sum(forward * phi)


def phi4_action(phi: jnp.ndarray, beta, lam) -> jnp.ndarray:
    """S(φ) = Σ_x [−β Σ_μ φ_{x+μ̂}φ_x + φ_x² + λ(φ_x² − 1)²] (scalar).

    Args:
        phi: one field configuration, shape ``(L,) * d``.
        beta: hopping coupling β (β = 2κ).
        lam: quartic coupling λ ≥ 0.
    """
    phi2 = phi * phi
    local = phi2 + lam * (phi2 - 1.0) ** 2
    return jnp.sum(local) - beta * forward_bond_sum(phi)


def phi4_force(phi: jnp.ndarray, beta, lam) -> jnp.ndarray:
    """∂S/∂φ_x = −β Σ_μ(φ_{x+μ̂} + φ_{x−μ̂}) + 2φ_x + 4λφ_x(φ_x² − 1), shape ``phi.shape``."""
    return -beta * hopping_sum(phi) + 2.0 * phi + 4.0 * lam * phi * (phi * phi - 1.0)


def free_action(phi: jnp.ndarray, beta) -> jnp.ndarray:
    """The free (λ = 0) action S = ½ φᵀAφ = Σ_x[φ_x² − β Σ_μ φ_{x+μ̂}φ_x] (scalar)."""
    return phi4_action(phi, beta, 0.0)
