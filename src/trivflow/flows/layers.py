"""Bijections of one 2D configuration as Flax NNX modules (physics.md §4).

One convention, written once: every bijection has

* ``forward_and_log_det(z) -> (φ, log|det ∂φ/∂z|)``   (the generator direction, φ = g(z)),
* ``inverse_and_log_det(φ) -> (z, log|det ∂z/∂φ|)``,

so the log-determinant is always that of the call direction and the two are negatives of
each other at corresponding points. Inputs are ONE configuration of shape ``(L0, L1)`` with
even extents; vmap at the edge for batches. Nothing here depends on L: circular convolutions
have L-independent parameters, so a flow trained at one even L runs at any other.

Z₂ equivariance g(−z) = −g(z) holds when every activation is odd (tanh, softsign, hard_tanh,
identity): convolutions have no bias, so s(−z) = −s(z), t(−z) = −t(z), and the coupling uses
|s|. Non-odd activations (relu, leaky_relu, silu, gelu) break it; see :data:`ODD_ACTIVATIONS`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from .checkerboard import (
    ALL_BLOCKS,
    HALF_A,
    HALF_B,
    Block,
    block_conv,
    check_lattice_shape,
    circular_conv,
    from_blocks,
    to_blocks,
)

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

#: name → activation. Only the odd ones (:data:`ODD_ACTIVATIONS`) keep g Z₂-equivariant.
#: Written with lax/jnp primitives (``jax.nn`` wraps each in its own ``jit``, which costs a
#: compilation per shape when flows run eagerly).
ACTIVATIONS = {
    "tanh": jnp.tanh,
    "softsign": lambda x: x / (1.0 + jnp.abs(x)),
    "hard_tanh": lambda x: jnp.clip(x, -1.0, 1.0),
    "identity": lambda x: x,
    "relu": lambda x: jnp.maximum(x, 0.0),
    "leaky_relu": lambda x: jnp.where(x >= 0, x, 0.01 * x),
    "silu": lambda x: x * jax.lax.logistic(x),
    "gelu": lambda x: 0.5 * x * (1.0 + jnp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3))),  # tanh approx.
}
ODD_ACTIVATIONS = frozenset({"tanh", "softsign", "hard_tanh", "identity"})


class Conditioner(nnx.Module):
    """N: field on one checkerboard half → (s, t) on the other half (physics.md §4).

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

    def __call__(
        self, source: dict[Block, jnp.ndarray], targets: tuple[Block, ...]
    ) -> tuple[dict[Block, jnp.ndarray], dict[Block, jnp.ndarray]]:
        """(s, t) on the ``targets`` blocks from the field on the ``source`` blocks.

        Args:
            source: block → field ``(h, w)`` on the half the conditioner reads (the other
                half counts as zero, i.e. the input is masked).
            targets: the blocks of the other half.

        Returns:
            ``(s, t)``, each block → ``(h, w)``.
        """
        out_act = ACTIVATIONS[self.output_activation]
        if len(self.kernels) == 1:
            # minimal conditioner: odd-parity taps only, evaluated on the target half only
            x = block_conv(self.kernels[0][...], {b: [v] for b, v in source.items()}, targets)
            return {b: out_act(v[0]) for b, v in x.items()}, {b: out_act(v[1]) for b, v in x.items()}
        # hidden layers live on the whole lattice: one lax.conv per layer (unrolled per-tap
        # arithmetic across several layers makes XLA duplicate work, and compile for minutes)
        act = ACTIVATIONS[self.activation]
        ref = next(iter(source.values()))
        zeros = jnp.zeros_like(ref)
        x = from_blocks({b: source.get(b, zeros) for b in ALL_BLOCKS})[..., None]
        n = len(self.kernels)
        for layer, kernel in enumerate(self.kernels):
            x = circular_conv(x, kernel[...])
            x = out_act(x) if layer == n - 1 else act(x)
        s, t = to_blocks(x[..., 0]), to_blocks(x[..., 1])
        return {b: s[b] for b in targets}, {b: t[b] for b in targets}


def _update_half(cond: Conditioner, blocks, source, targets, *, inverse: bool):
    """One half-step y_T = z_T e^{−|s|} + t (or its inverse) with (s, t) = N(z on the source half)."""
    s, t = cond({b: blocks[b] for b in source}, targets)
    new = dict(blocks)
    log_det = 0.0
    for b in targets:
        abs_s = jnp.abs(s[b])
        if inverse:
            new[b] = (blocks[b] - t[b]) * jnp.exp(abs_s)
            log_det = log_det + jnp.sum(abs_s)
        else:
            new[b] = blocks[b] * jnp.exp(-abs_s) + t[b]
            log_det = log_det - jnp.sum(abs_s)
    return new, log_det


class AffineCoupling(nnx.Module):
    """The paper's affine coupling layer, updating both checkerboard halves (physics.md §4).

    Forward, z ↦ y (shapes ``(L0, L1)``, even extents):

    1. (s, t) = N_B(z restricted to B), read on A:  y_A = z_A e^{−|s|} + t,   y_B = z_B;
    2. (s′, t′) = N_A(y restricted to A), read on B: y_B = z_B e^{−|s′|} + t′.

    log|det ∂y/∂z| = −Σ_A |s| − Σ_B |s′|. The inverse undoes step 2, then step 1, with
    log|det ∂z/∂y| = +Σ_A |s| + Σ_B |s′|.

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
    ):
        kw = dict(hidden_channels=hidden_channels, activation=activation, output_activation=output_activation)
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

    __call__ = forward_and_log_det
