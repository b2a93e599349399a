"""Hand-written pullbacks (vector–Jacobian products with respect to the field) of the flows.

The FHMC force needs, for φ = g(z), the pullback (φ̄, ld̄) ↦ z̄ = φ̄ ∂g/∂z + ld̄ ∂log|det J_g|/∂z
(docs/theory.md#the-pulled-back-action-and-flowed-hmc). Every bijection of
:mod:`trivflow.flows.layers` has ``forward_and_pullback(z) -> (φ, log_det, pullback)``; this
module holds what they are built from:

* :func:`half_pullback`: the VJP of one half-step of an affine coupling with a minimal
  conditioner, reusing the forward's s, t, e^{−|s|} and evaluated in fusion stages
  (:func:`~trivflow.flows.checkerboard.fusion_stage`); on CPU the FHMC force is 2-3× faster
  than ``jax.vjp``, and equal to it to rounding;
* :func:`activation_vjp`: cotangent · act′ of an output activation;
* :func:`vjp_of`, :func:`vjp_pullback`: the ``jax.vjp`` pullback of any forward map (the
  fallback for conditioners with hidden layers, for other modules and for callable flows);
* :func:`forward_and_pullback`: a module's own pullback if it has one, else ``jax.vjp``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

from .activations import ACTIVATIONS
from .checkerboard import (
    HALO_MIN_KERNEL_SIZE,
    block_conv_transpose,
    block_conv_transpose_padded,
    fusion_stage,
    tap_halo,
    tap_table,
    wrap_pad,
)

if TYPE_CHECKING:
    from flax import nnx

    from .layers import Conditioner


def activation_vjp(name: str, pre, out, cotangent):
    """cotangent · act'(pre) for the elementwise output activation ``name``."""
    if name == "tanh":
        return cotangent * (1.0 - out * out)
    if name == "identity":
        return cotangent
    _, pullback = jax.vjp(ACTIVATIONS[name], pre)
    return pullback(cotangent)[0]


def half_pullback(cond: Conditioner, blocks_in, residuals, source, targets, g, g_log_det):
    """VJP of :func:`~trivflow.flows.layers._half_forward` with respect to the field (not the kernel), reusing its
    residuals: cotangents ``g`` (block → map) of the outputs and ``g_log_det`` (scalar) of its
    log-determinant → cotangents of the inputs.

    y_T = z_T m + t, m = e^{−|s|}, log det = −Σ|s| (Σ log m), (s, t) = act(conv(x_source)):
        z̄_T = ȳ_T m,   s̄ = −sign(s)(ȳ_T z_T m + ld̄),   t̄ = ȳ_T,
        x̄_source += convᵀ(act'·s̄, act'·t̄),   ȳ_source passes through.
    In mixed precision s̄, t̄ and the transposed convolution are evaluated in the compute dtype
    (a force needs no more: FHMC stays exact for any deterministic force,
    docs/theory.md#the-pulled-back-action-and-flowed-hmc).
    """
    kernel = cond._kernel(0)
    cdt = residuals[targets[0]][0].dtype  # the dtype s, t were computed in
    # recompute the pre-activations only if the activation's derivative needs them
    pre = None
    if cond.output_activation not in ("tanh", "identity"):
        pre = cond.pre_activations({b: blocks_in[b] for b in source}, targets)
    pred = cond.finite_predicate(source, targets)

    def cotangents(gy_t, z_t, res, g_log_det):  # z̄_T and the pre-activation cotangents
        z_bar, pre_bar = {}, {}
        for b in targets:
            s, t, m = res[b]
            gy = gy_t[b]
            z_bar[b] = gy * m.astype(gy.dtype)
            gy_c = gy.astype(cdt)
            gs = -jnp.sign(s) * (gy_c * z_t[b].astype(cdt) * m + g_log_det)
            pre_bar[b] = [activation_vjp(cond.output_activation, None if pre is None else pre[0][b], s, gs),
                          activation_vjp(cond.output_activation, None if pre is None else pre[1][b], t, gy_c)]
        return z_bar, pre_bar

    def transposed_conv(pre_bar, g_src):  # x̄_source += convᵀ(pre_bar)
        x_bar = block_conv_transpose(kernel, pre_bar, source)
        return {b: g_src[b] + x_bar[b][0].astype(g_src[b].dtype) for b in source}

    # two stages: the cotangents are materialised before the rolls of the transposed
    # convolution read them, and the incoming ȳ before the cotangents read it
    g = dict(g)
    z_bar, pre_bar = fusion_stage(cotangents, pred, {b: g[b] for b in targets}, {b: blocks_in[b] for b in targets},
                                  {b: residuals[b] for b in targets}, jnp.asarray(g_log_det, cdt))
    if cond.kernel_size >= HALO_MIN_KERNEL_SIZE:  # taps as slices of periodically padded cotangents
        halo = tap_halo(tap_table(kernel.shape[0], source, targets), transpose=True)
        shape = g[targets[0]].shape[-2:]
        padded = {b: [wrap_pad(v, halo) for v in maps] for b, maps in pre_bar.items()}

        def transposed_p(padded, g_src):
            x_bar = block_conv_transpose_padded(kernel, padded, halo, shape, source)
            return {b: g_src[b] + x_bar[b][0].astype(g_src[b].dtype) for b in source}

        g_src = fusion_stage(transposed_p, pred, padded, {b: g[b] for b in source})
    else:
        g_src = fusion_stage(transposed_conv, pred, pre_bar, {b: g[b] for b in source})
    g.update(z_bar)
    g.update(g_src)
    return g


def vjp_of(forward: Callable, z: jnp.ndarray):
    """``(y, log_det, pullback)`` of ``forward(z) -> (y, log_det)``, the pullback
    ``pullback(ȳ, ld̄) -> z̄`` from ``jax.vjp`` (ld̄ a scalar, broadcast to log_det's shape)."""
    (y, log_det), vjp = jax.vjp(forward, z)

    def pullback(y_bar, log_det_bar):
        return vjp((y_bar, jnp.asarray(log_det_bar, jnp.result_type(log_det)) * jnp.ones_like(log_det)))[0]

    return y, log_det, pullback


def vjp_pullback(module: nnx.Module, z: jnp.ndarray):
    """``(y, log_det, pullback)`` of any bijection, the pullback from ``jax.vjp`` of its
    ``forward_and_log_det`` (with respect to z only)."""
    return vjp_of(module.forward_and_log_det, z)


def forward_and_pullback(module: nnx.Module, z: jnp.ndarray):
    """``(y, log_det, pullback)`` for ``module``: its own ``forward_and_pullback`` if it has one
    (the hand-written VJPs of this module), else :func:`vjp_pullback`."""
    method = getattr(module, "forward_and_pullback", None)
    return method(z) if method is not None else vjp_pullback(module, z)
