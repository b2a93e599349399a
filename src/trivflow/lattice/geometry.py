"""Lattice geometry helpers: checkerboard masks and site parities."""

from __future__ import annotations

import jax.numpy as jnp


def checkerboard_mask(shape: tuple[int, ...], parity: int = 0) -> jnp.ndarray:
    """Boolean mask of the sites with Σ_μ x_μ ≡ parity (mod 2).

    Parity 0 is the "A" (even) sublattice of docs/theory.md#flows, parity 1 the "B" (odd) one.
    Every extent must be even for the checkerboard to be consistent with periodicity.
    """
    for axis, extent in enumerate(shape):
        if extent % 2:
            raise ValueError(f"a checkerboard needs even extents, got L={extent} on axis {axis}")
    coords = jnp.indices(shape).sum(axis=0)
    return (coords % 2) == parity
