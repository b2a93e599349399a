"""Checkerboard geometry for the coupling layers, in the 2×2 block ("polyphase") representation.

A 2D field ``z`` of shape ``(L0, L1)`` (both even) is split into four blocks of shape
``(L0/2, L1/2)``::

    block[(a, b)][u, v] = z[2u + a, 2v + b],   a, b ∈ {0, 1}.

The checkerboard halves of physics.md §4 are unions of blocks:
A (Σ_μ x_μ even) = blocks (0, 0) and (1, 1); B (odd) = blocks (0, 1) and (1, 0).

Why blocks: a circular k×k convolution of a field supported on one half, read on the other
half, only involves the (k² − 1)/2 taps of odd parity, and its output is needed on half the
sites only. In the block representation each of these taps is one circular roll of one
block, and every transcendental (tanh, exp) is evaluated on the target half only. Same
numbers as a full-lattice masked convolution; on CPU (L = 8, batch 500) the training step is
1.1–2× faster than full-lattice roll/``lax.conv`` variants in float64 and ≫ faster than
``lax.conv`` in float32.

A circular convolution on the full lattice (cross-correlation, the ``lax.conv`` / ``nnx.Conv``
convention)::

    out[x] = Σ_{i,j} K[i, j] · in[x + (i − p, j − p)],   p = k // 2,

becomes, for the output block (a, b) and tap δ = (i − p, j − p) with r = (a + δ₀, b + δ₁)::

    out_(a,b)[u, v] += K[i, j] · in_(r₀ mod 2, r₁ mod 2)[u + ⌊r₀/2⌋, v + ⌊r₁/2⌋]   (periodic).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp

Block = tuple[int, int]

#: Blocks of the even half A (Σ_μ x_μ even) and of the odd half B.
HALF_A: tuple[Block, Block] = ((0, 0), (1, 1))
HALF_B: tuple[Block, Block] = ((0, 1), (1, 0))
ALL_BLOCKS: tuple[Block, ...] = ((0, 0), (0, 1), (1, 0), (1, 1))


def check_lattice_shape(shape: Sequence[int], *, what: str = "flow input") -> tuple[int, int]:
    """Validate the shape of ONE 2D configuration for a checkerboard flow.

    Raises ``ValueError`` naming the shape unless it has exactly two even extents ≥ 2.
    A batch ``(B, L, L)`` is rejected too: flows act on one configuration; vmap at the edge.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 2:
        raise ValueError(
            f"{what}: checkerboard coupling flows act on ONE 2D configuration of shape (L0, L1); "
            f"got shape={shape} (d={len(shape)}). Use jax.vmap for batches; other d are not supported."
        )
    for axis, extent in enumerate(shape):
        if extent < 2 or extent % 2:
            raise ValueError(
                f"{what}: a checkerboard needs even extents >= 2, got L={extent} on axis {axis} "
                f"(shape={shape})"
            )
    return shape


def to_blocks(z: jnp.ndarray) -> dict[Block, jnp.ndarray]:
    """Split ``z`` of shape ``(L0, L1)`` into its four ``(L0/2, L1/2)`` blocks (a permutation)."""
    L0, L1 = z.shape
    q = z.reshape(L0 // 2, 2, L1 // 2, 2)
    return {(a, b): q[:, a, :, b] for a, b in ALL_BLOCKS}


def from_blocks(blocks: dict[Block, jnp.ndarray]) -> jnp.ndarray:
    """Inverse of :func:`to_blocks`: reassemble the ``(L0, L1)`` field."""
    h, w = blocks[(0, 0)].shape[-2:]
    rows = [jnp.stack([blocks[(a, 0)], blocks[(a, 1)]], axis=-1) for a in range(2)]  # (h, w, 2)
    q = jnp.stack(rows, axis=-3)  # (h, 2, w, 2)
    return q.reshape(2 * h, 2 * w)


def block_conv(
    kernel: jnp.ndarray,
    inputs: dict[Block, list[jnp.ndarray]],
    targets: Iterable[Block],
    *,
    max_unrolled: int = 16,
) -> dict[Block, list[jnp.ndarray]]:
    """Circular k×k convolution (no bias) of a field given by some of its blocks.

    Args:
        kernel: ``(k, k, c_in, c_out)``, k odd; cross-correlation convention (module docstring).
        inputs: block → list of ``c_in`` feature maps ``(h, w)``. Missing blocks count as zero
            (a masked input).
        targets: the output blocks to compute.
        max_unrolled: layers with c_in·c_out up to this use scalar × map products, wider
            ones one einsum per block (same result).

    Returns:
        block → list of ``c_out`` feature maps ``(h, w)`` for every target. Taps that only see
        missing (zero) blocks are skipped, so a conditioner reading half B and written on
        half A costs (k² − 1)/2 taps instead of k².

    Implementation note: with few channels every product is written as scalar weight × map.
    XLA fuses these into one loop per output map and the weight gradients become plain
    reductions; a broadcast-and-sum over channel axes materialises (B, c_in, c_out, h, w)
    temporaries and is several times slower on CPU. Wide layers use one einsum per block.
    """
    k, c_in, c_out = kernel.shape[0], kernel.shape[2], kernel.shape[3]
    p = k // 2
    rolled: dict[tuple[Block, int, int], list[jnp.ndarray]] = {}
    out = {}
    for a, b in targets:
        taps = []  # (i, j, rolled input maps)
        for i in range(k):
            for j in range(k):
                r0, r1 = a + i - p, b + j - p
                src = (r0 % 2, r1 % 2)
                if src not in inputs:
                    continue
                s0, s1 = r0 // 2, r1 // 2
                key = (src, s0, s1)
                if key not in rolled:
                    maps = inputs[src]
                    if (s0, s1) != (0, 0):
                        maps = [jnp.roll(x, (-s0, -s1), axis=(-2, -1)) for x in maps]
                    rolled[key] = maps
                taps.append((i, j, rolled[key]))
        if not taps:  # k = 1 reading the other half: nothing reaches this block
            ref = next(iter(inputs.values()))[0]
            zero = jnp.zeros(ref.shape, jnp.result_type(ref, kernel))
            out[(a, b)] = [zero] * c_out
        elif c_in * c_out <= max_unrolled:
            out[(a, b)] = [
                sum(kernel[i, j, c, d] * maps[c] for i, j, maps in taps for c in range(c_in)) for d in range(c_out)
            ]
        else:
            x = jnp.stack([jnp.stack(maps) for _, _, maps in taps])  # (T, c_in, h, w)
            w = jnp.stack([kernel[i, j] for i, j, _ in taps])  # (T, c_in, c_out)
            y = jnp.einsum("tchw,tcd->dhw", x, w)
            out[(a, b)] = [y[d] for d in range(c_out)]
    return out


def circular_conv(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    """Full-lattice circular convolution (no bias), same convention as :func:`block_conv`.

    Args:
        x: ``(L0, L1, c_in)``, one configuration, channels last.
        kernel: ``(k, k, c_in, c_out)``, k odd.

    Returns:
        ``(L0, L1, c_out)``: out[x] = Σ_{ij} K[i, j] · in[x + (i − p, j − p)] (periodic).
        Computed at full precision (no TF32 on GPUs: log-dets must be exact to rounding).
    """
    p = kernel.shape[0] // 2
    xp = jnp.pad(x, ((p, p), (p, p), (0, 0)), mode="wrap")
    out = jax.lax.conv_general_dilated(
        xp[None],
        kernel.astype(jnp.result_type(x, kernel)),
        window_strides=(1, 1),
        padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )
    return out[0]
