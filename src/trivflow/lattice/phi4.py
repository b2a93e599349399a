"""The φ⁴ lattice action in hopping form, for one field of shape ``(*lattice)``.

Convention (docs/theory.md#action), periodic hypercubic lattice, every bond counted once::

    S(φ) = Σ_x [ −β Σ_μ φ_{x+μ̂} φ_x + φ_x² + λ (φ_x² − 1)² ]

All functions act on a single configuration; vmap at the edge for batches. The number of
lattice dimensions is ``phi.ndim`` (any d ≥ 1).
"""

from __future__ import annotations

import jax.numpy as jnp

#: A 2D field given by its 2×2 blocks ``{(a, b): φ[..., a::2, b::2]}`` (the layout of
#: :func:`trivflow.flows.checkerboard.to_blocks`, where the coupling flows compute).
Blocks = dict[tuple[int, int], jnp.ndarray]


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


def block_neighbour(blocks: Blocks, block: tuple[int, int], mu: int, sign: int) -> jnp.ndarray:
    """φ_{x + sign·μ̂} on the sites of ``block`` (2D, periodic), from the blocks of φ.

    Site x = 2u + a along μ (block parity a): x + s = 2(u + ⌊(a+s)/2⌋) + (a+s) mod 2, so the
    neighbour is block ``block`` with its μ-parity replaced by (a+s) mod 2, rolled by
    ⌊(a+s)/2⌋ ∈ {−1, 0, 1} along μ: half of the neighbours are an unshifted block.
    """
    r = block[mu] + sign
    source = tuple(r % 2 if nu == mu else block[nu] for nu in range(2))
    x = blocks[source]
    offset = r // 2
    return x if offset == 0 else jnp.roll(x, -offset, axis=x.ndim - 2 + mu)


def block_hopping_sum(blocks: Blocks) -> Blocks:
    """:func:`hopping_sum` of a 2D field given by its blocks, block by block (the same terms
    added in the same order, so the same numbers)."""
    out = {}
    for b, x in blocks.items():
        total = jnp.zeros_like(x)
        for mu in range(2):
            total = total + block_neighbour(blocks, b, mu, +1) + block_neighbour(blocks, b, mu, -1)
        out[b] = total
    return out


def block_phi4_value_and_grad(blocks: Blocks, beta, lam) -> tuple[jnp.ndarray, Blocks]:
    """(S, ∂S/∂φ) of :func:`phi4_action` and :func:`phi4_force` for a 2D field given by its
    2×2 blocks, the force as blocks.

    Why: FHMC's coupling flows compute φ = g(φ̃) in blocks and pull the force back in blocks,
    so the force is needed there; interleaving φ into the lattice, rolling it and splitting the
    force again cost ≈ a third of the flowed force on CPU. The force is the same expression
    as :func:`phi4_force`, site by site, so it has the same bits; the action sums the same
    terms in another order (equal to rounding).
    """
    hop = block_hopping_sum(blocks)
    force = {b: -beta * hop[b] + 2.0 * x + 4.0 * lam * x * (x * x - 1.0) for b, x in blocks.items()}
    local = 0.0
    bonds = 0.0
    for b, x in blocks.items():
        x2 = x * x
        local = local + jnp.sum(x2 + lam * (x2 - 1.0) ** 2)
        bonds = bonds + jnp.sum((block_neighbour(blocks, b, 0, +1) + block_neighbour(blocks, b, 1, +1)) * x)
    return local - beta * bonds, force


def free_action(phi: jnp.ndarray, beta) -> jnp.ndarray:
    """The free (λ = 0) action S = ½ φᵀAφ = Σ_x[φ_x² − β Σ_μ φ_{x+μ̂}φ_x] (scalar)."""
    return phi4_action(phi, beta, 0.0)
