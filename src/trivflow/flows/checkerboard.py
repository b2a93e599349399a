"""Checkerboard geometry for the coupling layers, in the 2×2 block ("polyphase") representation.

A 2D field ``z`` of shape ``(L0, L1)`` (both even) is split into four blocks of shape
``(L0/2, L1/2)``::

    block[(a, b)][u, v] = z[2u + a, 2v + b],   a, b ∈ {0, 1}.

The checkerboard halves of docs/theory.md#flows are unions of blocks:
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

#: From this kernel size on, the FHMC force path reads the convolution taps as slices of
#: periodically padded (materialised) blocks (:func:`block_conv_padded`,
#: :func:`block_conv_transpose_padded`) instead of rolls: at k = 7, 64 chains, the FHMC
#: trajectory is 2-3× faster (20 → 7× HMC at L = 64), at k = 5 ~15 %, at k = 3 ~5-10 % slower.
HALO_MIN_KERNEL_SIZE = 5


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
    """Split ``z`` of shape ``(L0, L1)`` into its four ``(L0/2, L1/2)`` blocks (a permutation).

    Four strided slices rather than one reshape: the same numbers, and XLA:CPU fuses each
    slice into its consumer (the FHMC trajectory at L = 32, 64 chains: ≈ 10 % faster)."""
    return {(a, b): z[..., a::2, b::2] for a, b in ALL_BLOCKS}


def from_blocks(blocks: dict[Block, jnp.ndarray]) -> jnp.ndarray:
    """Inverse of :func:`to_blocks`: reassemble the ``(L0, L1)`` field."""
    h, w = blocks[(0, 0)].shape[-2:]
    rows = [jnp.stack([blocks[(a, 0)], blocks[(a, 1)]], axis=-1) for a in range(2)]  # (h, w, 2)
    q = jnp.stack(rows, axis=-3)  # (h, 2, w, 2)
    return q.reshape(2 * h, 2 * w)


Tap = tuple[int, int, Block, tuple[int, int]]


def tap_table(k: int, sources: Iterable[Block], targets: Iterable[Block]) -> dict[Block, list[Tap]]:
    """The taps of a k×k circular convolution from the ``sources`` blocks to each target block.

    Returns:
        target block → list of ``(i, j, src, (s0, s1))``: kernel entry ``K[i, j]`` multiplies
        block ``src`` rolled so that ``out[u, v] += K[i, j] · src[u + s0, v + s1]`` (periodic).
        Taps whose source block is not in ``sources`` (a masked, zero input) are left out.
    """
    p = k // 2
    sources = set(sources)
    table = {}
    for a, b in targets:
        taps = []
        for i in range(k):
            for j in range(k):
                r0, r1 = a + i - p, b + j - p
                src = (r0 % 2, r1 % 2)
                if src in sources:
                    taps.append((i, j, src, (r0 // 2, r1 // 2)))
        table[(a, b)] = taps
    return table


def shift_block(x: jnp.ndarray, shift: tuple[int, int]) -> jnp.ndarray:
    """``out[..., u, v] = x[..., u + s0, v + s1]`` with periodic wrap-around."""
    if shift == (0, 0):
        return x
    return jnp.roll(x, (-shift[0], -shift[1]), axis=(-2, -1))


def used_taps_sum(kernel: jnp.ndarray, sources: Iterable[Block], targets: Iterable[Block]) -> jnp.ndarray:
    """Sum of the kernel entries that :func:`block_conv` uses (NaN iff one of them is NaN or
    they hold infinities of both signs); the predicate of :func:`fusion_stage`."""
    table = tap_table(kernel.shape[0], sources, targets)
    used = sorted({(i, j) for taps in table.values() for i, j, _, _ in taps})
    if not used:
        return jnp.sum(kernel)
    return sum(jnp.sum(kernel[i, j]) for i, j in used)


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
    table = tap_table(k, inputs, targets)
    rolled: dict[tuple[Block, tuple[int, int]], list[jnp.ndarray]] = {}
    out = {}
    for target, tap_list in table.items():
        taps = []  # (i, j, rolled input maps)
        for i, j, src, shift in tap_list:
            key = (src, shift)
            if key not in rolled:
                rolled[key] = [shift_block(x, shift) for x in inputs[src]]
            taps.append((i, j, rolled[key]))
        if not taps:  # k = 1 reading the other half: nothing reaches this block
            ref = next(iter(inputs.values()))[0]
            zero = jnp.zeros(ref.shape, jnp.result_type(ref, kernel))
            out[target] = [zero] * c_out
        elif c_in * c_out <= max_unrolled:
            out[target] = [
                sum(kernel[i, j, c, d] * maps[c] for i, j, maps in taps for c in range(c_in)) for d in range(c_out)
            ]
        else:
            x = jnp.stack([jnp.stack(maps) for _, _, maps in taps])  # (T, c_in, h, w)
            w = jnp.stack([kernel[i, j] for i, j, _ in taps])  # (T, c_in, c_out)
            y = jnp.einsum("tchw,tcd->dhw", x, w)
            out[target] = [y[d] for d in range(c_out)]
    return out


def block_conv_transpose(
    kernel: jnp.ndarray,
    cotangents: dict[Block, list[jnp.ndarray]],
    sources: Iterable[Block],
) -> dict[Block, list[jnp.ndarray]]:
    """The transpose (VJP with respect to the input) of :func:`block_conv`.

    Args:
        kernel: ``(k, k, c_in, c_out)``, as given to :func:`block_conv`.
        cotangents: target block → list of ``c_out`` cotangent maps ``(h, w)`` of its output.
        sources: the input blocks of the forward convolution.

    Returns:
        source block → list of ``c_in`` cotangent maps of the input:
        ``in_bar[src][c][u + s0, v + s1] += K[i, j, c, d] · out_bar[target][d][u, v]``,
        i.e. every tap rolled back the other way. Written, like the forward, as scalar × map
        products (meant for the few channels of the minimal conditioner).
    """
    k, c_in, c_out = kernel.shape[0], kernel.shape[2], kernel.shape[3]
    sources = tuple(sources)
    table = tap_table(k, sources, cotangents)
    acc: dict[Block, list] = {src: [0.0] * c_in for src in sources}
    for target, tap_list in table.items():
        ct = cotangents[target]
        for i, j, src, (s0, s1) in tap_list:
            for c in range(c_in):
                term = sum(kernel[i, j, c, d] * ct[d] for d in range(c_out))
                acc[src][c] = acc[src][c] + shift_block(term, (-s0, -s1))
    ref = next(iter(cotangents.values()))[0]
    zero = jnp.zeros(ref.shape, jnp.result_type(ref, kernel))
    return {src: [zero if isinstance(m, float) else m for m in maps] for src, maps in acc.items()}


Halo = tuple[int, int, int, int]


def tap_halo(table: dict[Block, list[Tap]], *, transpose: bool = False) -> Halo:
    """Periodic padding ``(lo0, hi0, lo1, hi1)`` of the input blocks that makes every tap of
    ``table`` (from :func:`tap_table`) a plain slice (see :func:`halo_slice`); ``transpose``:
    for :func:`block_conv_transpose_padded`, whose taps read the other way."""
    sign = -1 if transpose else 1
    s0 = [sign * sh[0] for taps in table.values() for *_, sh in taps] or [0]
    s1 = [sign * sh[1] for taps in table.values() for *_, sh in taps] or [0]
    return max(0, -min(s0)), max(0, max(s0)), max(0, -min(s1)), max(0, max(s1))


def wrap_pad(x: jnp.ndarray, halo: Halo) -> jnp.ndarray:
    """``x`` (..., h, w) periodically extended by ``halo`` = (lo0, hi0, lo1, hi1)."""
    lo0, hi0, lo1, hi1 = halo
    return jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(lo0, hi0), (lo1, hi1)], mode="wrap")


def halo_slice(xp: jnp.ndarray, halo: Halo, shift: tuple[int, int], shape: tuple[int, int]) -> jnp.ndarray:
    """``shift_block(x, shift)`` read from ``xp = wrap_pad(x, halo)``: a slice, no wrap-around."""
    r0, r1 = halo[0] + shift[0], halo[2] + shift[1]
    return xp[..., r0:r0 + shape[0], r1:r1 + shape[1]]


def block_conv_padded(kernel, padded, halo: Halo, shape, targets) -> dict[Block, list[jnp.ndarray]]:
    """:func:`block_conv` (unrolled, few channels) with inputs given as ``padded[src]`` = list of
    ``wrap_pad(map, halo)``: every tap is a slice of a materialised array, which XLA:CPU
    vectorises, instead of a roll (slice + concatenate, a select per element)."""
    k, c_in, c_out = kernel.shape[0], kernel.shape[2], kernel.shape[3]
    out = {}
    for target, taps in tap_table(k, padded, targets).items():
        if not taps:
            ref = next(iter(padded.values()))[0]
            out[target] = [jnp.zeros(ref.shape[:-2] + tuple(shape), jnp.result_type(ref, kernel))] * c_out
            continue
        maps = {(src, sh): [halo_slice(x, halo, sh, shape) for x in padded[src]] for _, _, src, sh in taps}
        out[target] = [sum(kernel[i, j, c, d] * maps[(src, sh)][c] for i, j, src, sh in taps for c in range(c_in))
                       for d in range(c_out)]
    return out


def block_conv_transpose_padded(kernel, padded, halo: Halo, shape, sources) -> dict[Block, list[jnp.ndarray]]:
    """:func:`block_conv_transpose` with the cotangents given as ``padded[target]`` = list of
    ``wrap_pad(map, halo)``, ``halo = tap_halo(table, transpose=True)``: slices instead of rolls."""
    k, c_in, c_out = kernel.shape[0], kernel.shape[2], kernel.shape[3]
    sources = tuple(sources)
    acc: dict[Block, list] = {src: [0.0] * c_in for src in sources}
    for target, taps in tap_table(k, sources, padded).items():
        for i, j, src, (s0, s1) in taps:
            ct = [halo_slice(x, halo, (-s0, -s1), shape) for x in padded[target]]
            for c in range(c_in):
                acc[src][c] = acc[src][c] + sum(kernel[i, j, c, d] * ct[d] for d in range(c_out))
    ref = next(iter(padded.values()))[0]
    zero = jnp.zeros(ref.shape[:-2] + tuple(shape), jnp.result_type(ref, kernel))
    return {src: [zero if isinstance(m, float) else m for m in maps] for src, maps in acc.items()}


def fusion_stage(fn, pred, *args):
    """``fn(*args)``, evaluated on CPU as a separate stage that XLA's fusion cannot merge with
    its producers or consumers: its inputs and outputs are materialised in memory.

    Without such boundaries XLA:CPU fuses chains of circular rolls (slice + concatenate) of
    elementwise expressions into their consumers and re-evaluates each producer once per
    roll, nested over the coupling's half-steps and their transposes; the resulting loop
    fusions do several times the arithmetic and do not vectorise (the FHMC force of the k = 3
    flow was 2-4× slower than with materialised stages). ``lax.optimization_barrier`` is
    removed before fusion on CPU, so the boundary is a ``lax.cond`` on a runtime predicate
    that XLA cannot fold: ``pred`` (an unbatched boolean, True whenever the values matter)
    selects ``fn``; otherwise every output is NaN. Differentiable (JVP, VJP) like any cond.

    On other platforms (GPU, TPU) this is just ``fn(*args)``: a conditional there costs a
    device → host transfer of the predicate, and their fusion heuristics differ.

    Args:
        fn: function of ``args`` returning a pytree of arrays.
        pred: scalar boolean, not batched under ``vmap`` (e.g. derived from parameters):
            a batched predicate turns the ``cond`` into a ``select``, which fuses.
    """

    def nan_like_fn(*a):
        return jax.tree_util.tree_map(lambda sd: jnp.full(sd.shape, jnp.nan, sd.dtype), jax.eval_shape(fn, *a))

    def on_cpu(*a):
        return jax.lax.cond(pred, fn, nan_like_fn, *a)

    return jax.lax.platform_dependent(*args, cpu=on_cpu, default=fn)


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
