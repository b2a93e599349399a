"""Bijections of one 2D configuration as Flax NNX modules (docs/theory.md#flows).

One convention, written once: every bijection has

* ``forward_and_log_det(z) -> (φ, log|det ∂φ/∂z|)``   (the generator direction, φ = g(z)),
* ``inverse_and_log_det(φ) -> (z, log|det ∂z/∂φ|)``,

so the log-determinant is always that of the call direction and the two are negatives of
each other at corresponding points. Inputs are ONE configuration of shape ``(L0, L1)`` with
even extents; vmap at the edge for batches. Nothing here depends on L: circular convolutions
have L-independent parameters, so a flow trained at one even L runs at any other.

Each bijection also has ``forward_and_pullback(z) -> (φ, log_det, pullback)``, the forward pass
with the vector–Jacobian product with respect to z (the FHMC force); the hand-written VJPs of
the coupling layer live in :mod:`trivflow.flows.pullback`, the activation functions in
:mod:`trivflow.flows.activations` (odd activations keep g Z₂-equivariant:
:data:`~trivflow.flows.activations.ODD_ACTIVATIONS`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from ..dtypes import COMPUTE_DTYPES, canonical_compute_dtype  # noqa: F401  (COMPUTE_DTYPES: re-exported)
from .activations import ACTIVATIONS
from .checkerboard import (
    ALL_BLOCKS,
    HALF_A,
    HALF_B,
    HALO_MIN_KERNEL_SIZE,
    Block,
    block_conv,
    block_conv_padded,
    check_lattice_shape,
    circular_conv,
    from_blocks,
    fusion_stage,
    tap_halo,
    tap_table,
    to_blocks,
    used_taps_sum,
    wrap_pad,
)
from .pullback import forward_and_pullback, half_pullback, vjp_pullback


class Conditioner(nnx.Module):
    """N: field on one checkerboard half → (s, t) on the other half (docs/theory.md#flows).

    A stack of circular k×k convolutions without bias, channels 1 → h₁ → … → h_n → 2, with
    ``activation`` after each hidden convolution and ``output_activation`` (the paper: tanh)
    on both output channels; channel 0 is s, channel 1 is t. The paper's minimal conditioner
    is a single 1 → 2 convolution (``hidden_channels=()``): 2k² parameters.

    Initialisation: every kernel entry ~ U(−1/√(k² c_in), 1/√(k² c_in)), i.e. the paper's
    U(−1/k, 1/k) for the first layer (c_in = 1).

    Kernels have shape ``(k, k, c_in, c_out)`` and act in the cross-correlation convention
    ``out[x] = Σ_{ij} K[i,j] in[x + (i − k//2, j − k//2)]`` with periodic wrap-around.

    Evaluation: the minimal conditioner runs in the 2×2 block representation
    (:func:`~trivflow.flows.checkerboard.block_conv`): only the (k² − 1)/2 odd-parity taps can
    connect the two halves (the even ones, e.g. the centre, see zeros and get zero gradient,
    though they are counted in 4k² + 1), and tanh is evaluated on the target half only.
    Conditioners with hidden layers use one full-lattice ``lax.conv`` per layer.
    """

    def __init__(
        self,
        kernel_size: int,
        hidden_channels: Sequence[int] = (),
        activation: str = "tanh",
        output_activation: str = "tanh",
        *,
        rngs: nnx.Rngs,
        dtype=None,
        compute_dtype=None,
    ):
        dtype = jax.dtypes.canonicalize_dtype(jnp.float64 if dtype is None else dtype)
        k = int(kernel_size)
        channels = (1, *(int(c) for c in hidden_channels), 2)
        kernels = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            bound = 1.0 / math.sqrt(k * k * c_in)
            kernels.append(nnx.Param(jax.random.uniform(rngs.params(), (k, k, c_in, c_out), dtype, -bound, bound)))
        self.kernels = nnx.List(kernels)
        self.kernel_size = k
        self.activation = activation
        self.output_activation = output_activation
        self.compute_dtype = canonical_compute_dtype(compute_dtype)

    @property
    def is_minimal(self) -> bool:
        """A single 1 → 2 convolution (the paper's conditioner), evaluated in blocks."""
        return len(self.kernels) == 1

    def pre_activations(
        self, source: dict[Block, jnp.ndarray], targets: tuple[Block, ...]
    ) -> tuple[dict[Block, jnp.ndarray], dict[Block, jnp.ndarray]]:
        """Minimal conditioner only: the convolution outputs (before ``output_activation``) for
        s and t on the ``targets`` blocks, in the compute dtype."""
        if self.compute_dtype is not None:
            source = {b: v.astype(self.compute_dtype) for b, v in source.items()}
        x = block_conv(self._kernel(0), {b: [v] for b, v in source.items()}, targets)
        return {b: v[0] for b, v in x.items()}, {b: v[1] for b, v in x.items()}

    def coupling_factors(
        self, source: dict[Block, jnp.ndarray], z_targets: dict[Block, jnp.ndarray], *, staged: bool = False
    ) -> tuple[dict[Block, jnp.ndarray], ...]:
        """(s, t, m = e^{−|s|}) on the target blocks, in the compute dtype, and the coupling's
        output y_T = z_T·m + t in z's dtype (:func:`_affine_update`).

        ``staged``: a minimal conditioner computes them in one
        :func:`~trivflow.flows.checkerboard.fusion_stage` (taps, activations, exponential and
        update in one loop, outputs materialised on CPU). The FHMC force path uses it; the plain
        forward does not (it would slow down training's small batched configurations).
        """
        targets = tuple(z_targets)

        def with_update(s, t, m):
            return s, t, m, {b: _affine_update(z_targets[b], m[b], t[b]) for b in targets}

        if not (staged and self.is_minimal):
            s, t = self(source, targets)
            return with_update(s, t, {b: jnp.exp(-jnp.abs(v)) for b, v in s.items()})
        out_act = ACTIVATIONS[self.output_activation]
        if self.kernel_size >= HALO_MIN_KERNEL_SIZE:  # taps as slices of periodically padded inputs
            kernel = self._kernel(0)
            halo = tap_halo(tap_table(kernel.shape[0], source, targets))
            shape = next(iter(source.values())).shape[-2:]
            cdt = self.compute_dtype
            padded = {b: [wrap_pad(v if cdt is None else v.astype(cdt), halo)] for b, v in source.items()}

            def stage_p(padded, z_targets):
                x = block_conv_padded(kernel, padded, halo, shape, targets)
                s = {b: out_act(v[0]) for b, v in x.items()}
                return with_update(s, {b: out_act(v[1]) for b, v in x.items()},
                                   {b: jnp.exp(-jnp.abs(v)) for b, v in s.items()})

            return fusion_stage(stage_p, self.finite_predicate(source, targets), padded, z_targets)

        def stage(source, z_targets):
            pre_s, pre_t = self.pre_activations(source, targets)
            s = {b: out_act(v) for b, v in pre_s.items()}
            return with_update(s, {b: out_act(v) for b, v in pre_t.items()},
                               {b: jnp.exp(-jnp.abs(v)) for b, v in s.items()})

        return fusion_stage(stage, self.finite_predicate(source, targets), source, z_targets)

    def finite_predicate(self, source, targets) -> jnp.ndarray:
        """Minimal conditioner: False iff the kernel entries in use sum to NaN (then every
        output of the convolution is NaN anyway); the predicate of its fusion stages."""
        return ~jnp.isnan(used_taps_sum(self._kernel(0), source, targets))

    def _kernel(self, layer: int) -> jnp.ndarray:
        """Kernel ``layer`` cast to the compute dtype (unchanged when that is None)."""
        kernel = self.kernels[layer][...]
        return kernel if self.compute_dtype is None else kernel.astype(self.compute_dtype)

    def __call__(
        self, source: dict[Block, jnp.ndarray], targets: tuple[Block, ...]
    ) -> tuple[dict[Block, jnp.ndarray], dict[Block, jnp.ndarray]]:
        """(s, t) on the ``targets`` blocks from the field on the ``source`` blocks.

        Args:
            source: block → field ``(h, w)`` on the half the conditioner reads (the other
                half counts as zero, i.e. the input is masked).
            targets: the blocks of the other half.

        Returns:
            ``(s, t)``, each block → ``(h, w)``, in the compute dtype (the dtype of the field
            when ``compute_dtype`` is None).
        """
        out_act = ACTIVATIONS[self.output_activation]
        if self.is_minimal:
            # minimal conditioner: odd-parity taps only, evaluated on the target half only
            pre_s, pre_t = self.pre_activations(source, targets)
            return {b: out_act(v) for b, v in pre_s.items()}, {b: out_act(v) for b, v in pre_t.items()}
        # hidden layers live on the whole lattice: one lax.conv per layer (unrolled per-tap
        # arithmetic across several layers makes XLA duplicate work, and compile for minutes)
        act = ACTIVATIONS[self.activation]
        ref = next(iter(source.values()))
        zeros = jnp.zeros_like(ref)
        x = from_blocks({b: source.get(b, zeros) for b in ALL_BLOCKS})[..., None]
        if self.compute_dtype is not None:
            x = x.astype(self.compute_dtype)
        n = len(self.kernels)
        for layer in range(n):
            x = circular_conv(x, self._kernel(layer))
            x = out_act(x) if layer == n - 1 else act(x)
        s, t = to_blocks(x[..., 0]), to_blocks(x[..., 1])
        return {b: s[b] for b in targets}, {b: t[b] for b in targets}


def _half_forward(cond: Conditioner, blocks, source, targets, *, staged: bool = False):
    """Forward half-step y_T = z_T e^{−|s|} + t with (s, t) = N(z on the source half).

    Returns ``(new_blocks, log_det, residuals)``; ``residuals[b] = (s, t, m)`` for every target
    block, with m = e^{−|s|} the multiplier of z_T (all in the compute dtype). ``staged``: see
    :meth:`Conditioner.coupling_factors`.

    Precision: with ``compute_dtype`` None everything is in the field's dtype and
    log|det| = −Σ|s|. With a lower compute dtype (mixed precision) the conditioner, e^{−|s|}
    and t are computed in it and y_T = z_T·m + t in the field's dtype, where m and t are the
    rounded values; the map is then triangular with diagonal m exactly, so
    log|det| = Σ log m is evaluated in the field's dtype and is the log-determinant of the map
    actually computed (to the field's rounding), not an approximation of it, wherever m is
    computed once (``staged=True``, the FHMC path, materialises it). Note that XLA:CPU does
    not promise bitwise-equal float32 results for the same expression compiled into different
    fusions (~20% of s differ by one ulp between two places in one program), so two separately
    compiled evaluations of the mixed map can differ by ~1e-7 relative.
    """
    s, t, mult, y = cond.coupling_factors({b: blocks[b] for b in source}, {b: blocks[b] for b in targets},
                                          staged=staged)
    new = dict(blocks)
    log_det = 0.0
    residuals = {}
    for b in targets:
        m = mult[b]
        new[b] = y[b]
        if m.dtype == y[b].dtype:
            log_det = log_det - jnp.sum(jnp.abs(s[b]))
        else:
            log_det = log_det + jnp.sum(jnp.log(m.astype(y[b].dtype)))
        residuals[b] = (s[b], t[b], m)
    return new, log_det, residuals


def _affine_update(z, m, t):
    """y = z·m + t in z's dtype; m and t (computed in the compute dtype) are cast to it first."""
    if m.dtype == z.dtype:
        return z * m + t
    return z * m.astype(z.dtype) + t.astype(z.dtype)


def _half_inverse(cond: Conditioner, blocks, source, targets):
    """Inverse half-step z_T = (y_T − t) e^{|s|}; (s, t) from the unchanged source half."""
    s, t = cond({b: blocks[b] for b in source}, targets)
    new = dict(blocks)
    log_det = 0.0
    for b in targets:
        y = blocks[b]
        abs_s = jnp.abs(s[b])
        if abs_s.dtype == y.dtype:
            new[b] = (y - t[b]) * jnp.exp(abs_s)
            log_det = log_det + jnp.sum(abs_s)
        else:  # divide by the forward's rounded multiplier: the exact inverse of the computed map
            m_f = jnp.exp(-abs_s).astype(y.dtype)
            new[b] = (y - t[b].astype(y.dtype)) / m_f
            log_det = log_det - jnp.sum(jnp.log(m_f))
    return new, log_det


def _update_half(cond: Conditioner, blocks, source, targets, *, inverse: bool):
    """One half-step y_T = z_T e^{−|s|} + t (or its inverse) with (s, t) = N(z on the source half)."""
    if inverse:
        return _half_inverse(cond, blocks, source, targets)
    new, log_det, _ = _half_forward(cond, blocks, source, targets)
    return new, log_det


class AffineCoupling(nnx.Module):
    """The paper's affine coupling layer, updating both checkerboard halves (docs/theory.md#flows).

    Forward, z ↦ y (shapes ``(L0, L1)``, even extents):

    1. (s, t) = N_B(z restricted to B), read on A:  y_A = z_A e^{−|s|} + t,   y_B = z_B;
    2. (s′, t′) = N_A(y restricted to A), read on B: y_B = z_B e^{−|s′|} + t′.

    log|det ∂y/∂z| = −Σ_A |s| − Σ_B |s′|. The inverse undoes step 2, then step 1, with
    log|det ∂z/∂y| = +Σ_A |s| + Σ_B |s′|.

    ``compute_dtype`` (e.g. float32 for float64 fields: mixed precision) is the dtype the
    conditioners, e^{−|s|} and t are computed in; the field, y = z·e^{−|s|} + t and the
    log-determinant stay in the field's dtype, with log|det| = Σ log e^{−|s|} of the rounded
    multipliers, i.e. exactly that of the map computed (see :func:`_half_forward`). ``None``
    computes everything in the field's dtype.

    Attributes:
        net_b: N_B, reads half B, writes (s, t) on half A.
        net_a: N_A, reads half A, writes (s′, t′) on half B.
    """

    def __init__(
        self,
        kernel_size: int = 3,
        hidden_channels: Sequence[int] = (),
        activation: str = "tanh",
        output_activation: str = "tanh",
        *,
        rngs: nnx.Rngs,
        dtype=None,
        compute_dtype=None,
    ):
        kw = dict(hidden_channels=hidden_channels, activation=activation, output_activation=output_activation,
                  compute_dtype=compute_dtype)
        self.net_b = Conditioner(kernel_size, **kw, rngs=rngs, dtype=dtype)
        self.net_a = Conditioner(kernel_size, **kw, rngs=rngs, dtype=dtype)

    def forward_and_log_det(self, z: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """y = coupling(z) and log|det ∂y/∂z|; z and y of shape ``(L0, L1)``."""
        check_lattice_shape(z.shape, what="AffineCoupling")
        blocks = to_blocks(z)
        blocks, ld1 = _update_half(self.net_b, blocks, HALF_B, HALF_A, inverse=False)
        blocks, ld2 = _update_half(self.net_a, blocks, HALF_A, HALF_B, inverse=False)
        return from_blocks(blocks), ld1 + ld2

    def inverse_and_log_det(self, y: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """z = coupling⁻¹(y) and log|det ∂z/∂y| = +Σ_A|s| + Σ_B|s′|."""
        check_lattice_shape(y.shape, what="AffineCoupling")
        blocks = to_blocks(y)
        blocks, ld2 = _update_half(self.net_a, blocks, HALF_A, HALF_B, inverse=True)
        blocks, ld1 = _update_half(self.net_b, blocks, HALF_B, HALF_A, inverse=True)
        return from_blocks(blocks), ld1 + ld2

    def forward_and_pullback(self, z: jnp.ndarray):
        """``(y, log_det, pullback)`` with ``pullback(ȳ, ld̄) -> z̄`` the VJP with respect to z.

        Minimal conditioners: a hand-written pullback
        (:func:`~trivflow.flows.pullback.half_pullback`) that reuses
        s, t, e^{−|s|} of the forward pass, in fusion stages (forward factors, cotangents,
        transposed convolution: :func:`~trivflow.flows.checkerboard.fusion_stage`); on CPU
        the FHMC force is 2-3× faster than ``jax.vjp`` of :meth:`forward_and_log_det`, and
        equal to it to rounding. Other conditioners: ``jax.vjp``.
        """
        if not self.supports_blocks:
            return vjp_pullback(self, z)
        check_lattice_shape(z.shape, what="AffineCoupling")
        blocks, log_det, pullback_blocks = self.forward_and_pullback_blocks(to_blocks(z))

        def pullback(y_bar, log_det_bar):
            return from_blocks(pullback_blocks(to_blocks(y_bar), log_det_bar))

        return from_blocks(blocks), log_det, pullback

    @property
    def supports_blocks(self) -> bool:
        """Whether :meth:`forward_and_pullback_blocks` is available (minimal conditioners)."""
        return self.net_a.is_minimal and self.net_b.is_minimal

    def forward_and_pullback_blocks(self, blocks0: dict[Block, jnp.ndarray]):
        """:meth:`forward_and_pullback` on a field given by its 2×2 blocks (``to_blocks``), where
        the coupling computes: ``(y blocks, log_det, pullback)``, ``pullback(ȳ blocks, ld̄) -> z̄
        blocks``. FHMC's force stays in blocks through the theory's force when the theory can
        work on blocks (:func:`trivflow.hmc.fhmc_kernel`). Minimal conditioners only."""
        blocks1, ld1, res1 = _half_forward(self.net_b, blocks0, HALF_B, HALF_A, staged=True)
        blocks2, ld2, res2 = _half_forward(self.net_a, blocks1, HALF_A, HALF_B, staged=True)

        def pullback(y_bar, log_det_bar):
            g = half_pullback(self.net_a, blocks1, res2, HALF_A, HALF_B, y_bar, log_det_bar)
            return half_pullback(self.net_b, blocks0, res1, HALF_B, HALF_A, g, log_det_bar)

        return blocks2, ld1 + ld2, pullback

    __call__ = forward_and_log_det


class GlobalRescaling(nnx.Module):
    """φ = e^{a} y with one learnable scalar a (init 0); log|det| = V·a, V = number of sites.

    The coupling only contracts (e^{−|s|} ≤ 1), so this is the one place the map can expand.
    The parameter is stored as ``log_scale`` (= a).
    """

    def __init__(self, *, dtype=None):
        dtype = jax.dtypes.canonicalize_dtype(jnp.float64 if dtype is None else dtype)
        self.log_scale = nnx.Param(jnp.zeros((), dtype))

    def forward_and_log_det(self, y: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """(e^{a} y, V a) for y of any shape; V = ``y.size``."""
        a = self.log_scale[...]
        return jnp.exp(a) * y, a * y.size

    def inverse_and_log_det(self, phi: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """(e^{−a} φ, −V a)."""
        a = self.log_scale[...]
        return jnp.exp(-a) * phi, -a * phi.size

    def forward_and_pullback(self, y: jnp.ndarray):
        """``(φ, log_det, pullback)``, pullback(φ̄, ld̄) = e^{a} φ̄."""
        a = self.log_scale[...]
        scale = jnp.exp(a)
        return scale * y, a * y.size, lambda phi_bar, log_det_bar: scale * phi_bar

    supports_blocks = True

    def forward_and_pullback_blocks(self, blocks: dict[Block, jnp.ndarray]):
        """:meth:`forward_and_pullback` on a field given by its blocks (every block scaled)."""
        a = self.log_scale[...]
        scale = jnp.exp(a)
        volume = sum(b.size for b in blocks.values())

        def pullback(phi_bar, log_det_bar):
            return {b: scale * v for b, v in phi_bar.items()}

        return {b: scale * v for b, v in blocks.items()}, a * volume, pullback

    __call__ = forward_and_log_det


class Compose(nnx.Module):
    """g = g_n ∘ … ∘ g_1 of bijections given in application order ``[g_1, …, g_n]``.

    ``Compose([g1, g2])`` is g₂ ∘ g₁: forward applies g₁ first; log-dets add. The inverse
    applies g_n⁻¹ first. Any module with ``forward_and_log_det``/``inverse_and_log_det``
    (including another ``Compose``) can be a member.
    """

    def __init__(self, layers: Sequence[nnx.Module]):
        if len(layers) == 0:
            raise ValueError("Compose needs at least one bijection, got layers=[]")
        self.layers = nnx.List(list(layers))

    def forward_and_log_det(self, z: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """φ = g(z) and log|det ∂φ/∂z| = Σ_i log|det J_{g_i}|."""
        log_det = 0.0
        for layer in self.layers:
            z, ld = layer.forward_and_log_det(z)
            log_det = log_det + ld
        return z, log_det

    def inverse_and_log_det(self, phi: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """z = g⁻¹(φ) and log|det ∂z/∂φ|."""
        log_det = 0.0
        for layer in reversed(self.layers):
            phi, ld = layer.inverse_and_log_det(phi)
            log_det = log_det + ld
        return phi, log_det

    def forward_and_pullback(self, z: jnp.ndarray):
        """``(φ, log_det, pullback)``: the members' pullbacks chained in reverse order; the
        log-det cotangent reaches every member (log_det is their sum)."""
        return _chain_pullbacks(self.layers, z, forward_and_pullback)

    @property
    def supports_blocks(self) -> bool:
        """Whether every member has ``forward_and_pullback_blocks``."""
        return all(getattr(layer, "supports_blocks", False) for layer in self.layers)

    def forward_and_pullback_blocks(self, blocks: dict[Block, jnp.ndarray]):
        """:meth:`forward_and_pullback` on a field given by its 2×2 blocks, kept in blocks from
        member to member (no interleaving between them); needs :attr:`supports_blocks`."""
        return _chain_pullbacks(self.layers, blocks, lambda layer, x: layer.forward_and_pullback_blocks(x))

    __call__ = forward_and_log_det


def _chain_pullbacks(layers, x, forward_and_pullback_of):
    """``(y, log_det, pullback)`` of g_n ∘ … ∘ g_1 from ``forward_and_pullback_of(layer, x) ->
    (y, log_det, pullback)`` of each member: log-dets summed, pullbacks chained in reverse order
    with the log-det cotangent passed to every member (log_det is their sum)."""
    log_det = 0.0
    pullbacks = []
    for layer in layers:
        x, ld, pb = forward_and_pullback_of(layer, x)
        log_det = log_det + ld
        pullbacks.append(pb)

    def pullback(y_bar, log_det_bar):
        for pb in reversed(pullbacks):
            y_bar = pb(y_bar, log_det_bar)
        return y_bar

    return x, log_det, pullback
