"""Config-driven flow builder, registry, and the pure functional interface.

Typical use::

    flow = build_flow(kernel_size=3, num_layers=1)          # nnx.Module, the paper's flow
    graphdef, params = split_flow(flow)                      # split once
    phi, log_det = flow_forward(graphdef, params, z)         # pure in params, ONE config
    z, log_det_inv = flow_inverse(graphdef, params, phi)

``flow_forward``/``flow_inverse`` are pure functions of ``params`` (an ``nnx.State`` pytree of
arrays): pass ``params`` as a jit argument (never close over it), close over ``graphdef``
(static, hashable) and vmap over configurations at the edge::

    @jax.jit
    def push(params, z_batch):
        return jax.vmap(lambda z: flow_forward(graphdef, params, z))(z_batch)
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ..dtypes import canonical_compute_dtype
from .checkerboard import check_lattice_shape, from_blocks, to_blocks
from .config import FlowConfig
from .layers import Compose, Conditioner
from .pullback import forward_and_pullback


def build_flow(*args, dtype=None, **fields) -> Compose:
    """Build g = e^{a}·(coupling_n ∘ … ∘ coupling_1), validated before anything is computed.

    The defaults give the paper's minimal flow: one affine coupling layer with single-conv
    k = 3 conditioners and tanh outputs, then the global rescaling; 4k² + 1 = 37 parameters.

    Args:
        *args: the fields of :class:`FlowConfig` by position, in its order.
        **fields: the fields of :class:`FlowConfig` by name (``kernel_size``, ``num_layers``,
            ``hidden_channels``, ``activation``, ``output_activation``, ``seed``,
            ``compute_dtype``: ``None`` for the exact path, ``jnp.float32``/``"float32"`` for
            mixed precision); the signature is derived from it.
        dtype: parameter dtype; ``None`` is float64 (float32 with a
            :class:`~trivflow.dtypes.Float32Default` warning when x64 is off). Use the dtype of
            the fields the flow will act on.

    Returns:
        An ``nnx.Module`` with ``forward_and_log_det``/``inverse_and_log_det`` on ONE
        configuration of shape ``(L0, L1)`` (even extents); split it with :func:`split_flow`.

    Raises:
        ValueError: naming the key and value, for an even or < 1 kernel size, a per-layer
            kernel list of the wrong length, ``num_layers < 1``, bad hidden channels, an unknown
            activation or compute dtype.
    """
    return FlowConfig(*args, **fields).build(dtype=dtype)


build_flow.__signature__ = inspect.Signature(
    [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=f.default, annotation=f.type)
     for f in dataclasses.fields(FlowConfig)]
    + [inspect.Parameter("dtype", inspect.Parameter.KEYWORD_ONLY, default=None)],
    return_annotation="Compose",
)


def compose(*flows: nnx.Module) -> Compose:
    """g = g_n ∘ … ∘ g_1 from modules in application order (``compose(g1, g2)`` = g₂ ∘ g₁).

    For split flows, merge first: ``compose(nnx.merge(gd1, p1), nnx.merge(gd2, p2))``.
    """
    return Compose(list(flows))


def split_flow(flow: nnx.Module) -> tuple[nnx.GraphDef, nnx.State]:
    """Split a flow module once into ``(graphdef, params)``.

    ``graphdef`` is static (hashable structure), ``params`` an ``nnx.State`` pytree holding
    every ``nnx.Param``; a flow with non-parameter state is rejected by NNX.
    """
    graphdef, params = nnx.split(flow, nnx.Param)
    return graphdef, params


def flow_forward(graphdef: nnx.GraphDef, params: nnx.State, z: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """φ = g(z) and log|det ∂g/∂z|, a pure function of ``params``.

    Args:
        graphdef, params: from :func:`split_flow`.
        z: ONE configuration, shape ``(L0, L1)`` with even extents (any even L, independent
            of the L the flow was trained at).

    Returns:
        ``(phi, log_det)`` with ``phi.shape == z.shape`` and scalar ``log_det``.

    Raises:
        ValueError: at trace time, for a non-2D input (e.g. a batch: vmap instead) or odd
            extents.
    """
    check_lattice_shape(jnp.shape(z), what="flow_forward")
    return nnx.merge(graphdef, params).forward_and_log_det(z)


def flow_inverse(graphdef: nnx.GraphDef, params: nnx.State, phi: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """z = g⁻¹(φ) and log|det ∂g⁻¹/∂φ| (= −log|det ∂g/∂z| at z = g⁻¹(φ)); ONE configuration."""
    check_lattice_shape(jnp.shape(phi), what="flow_inverse")
    return nnx.merge(graphdef, params).inverse_and_log_det(phi)


def flow_forward_and_pullback(graphdef: nnx.GraphDef, params: nnx.State, z: jnp.ndarray):
    """``(φ, log_det, pullback)`` with φ, log_det as in :func:`flow_forward` and
    ``pullback(φ̄, ld̄) -> z̄`` the VJP with respect to z (not the parameters).

    Equals ``jax.vjp(lambda z: flow_forward(graphdef, params, z), z)`` to rounding, but
    coupling layers with minimal conditioners use hand-written pullbacks that reuse the
    forward's intermediates; this is the FHMC force's path (:mod:`trivflow.hmc.flowed`).
    Differentiate :func:`flow_forward` instead for anything else (parameter gradients,
    higher derivatives).
    """
    check_lattice_shape(jnp.shape(z), what="flow_forward_and_pullback")
    return forward_and_pullback(nnx.merge(graphdef, params), z)


def flow_supports_blocks(graphdef: nnx.GraphDef, params: nnx.State) -> bool:
    """Whether the flow has :func:`flow_forward_and_pullback_blocks` (coupling layers with
    minimal conditioners and the global rescaling; decided by the structure alone)."""
    return bool(getattr(nnx.merge(graphdef, params), "supports_blocks", False))


def flow_forward_and_pullback_blocks(graphdef: nnx.GraphDef, params: nnx.State, z: jnp.ndarray):
    """:func:`flow_forward_and_pullback` with φ and φ̄ as 2×2 blocks
    (:func:`~trivflow.flows.checkerboard.to_blocks`), the layout the coupling layers compute in:
    ``(φ blocks, log_det, pullback)`` with ``pullback(φ̄ blocks, ld̄) -> z̄`` of z's shape. The
    FHMC force uses it with a theory whose action and force work on blocks (φ⁴), which saves
    interleaving φ and splitting the force again. Needs :func:`flow_supports_blocks`."""
    check_lattice_shape(jnp.shape(z), what="flow_forward_and_pullback_blocks")
    module = nnx.merge(graphdef, params)
    if not getattr(module, "supports_blocks", False):
        raise TypeError(f"{type(module).__name__} has no block pullback (flow_supports_blocks is False): "
                        "use flow_forward_and_pullback")
    blocks, log_det, pullback = module.forward_and_pullback_blocks(to_blocks(z))
    return blocks, log_det, lambda phi_bar, log_det_bar: from_blocks(pullback(phi_bar, log_det_bar))


def with_compute_dtype(graphdef: nnx.GraphDef, params: nnx.State, compute_dtype) -> nnx.GraphDef:
    """The graphdef of the same flow with every conditioner computing in ``compute_dtype``
    (``None``: the exact path); ``params`` stay valid. E.g. train in float64, then sample
    with ``with_compute_dtype(graphdef, params, "float32")``."""
    name = canonical_compute_dtype(compute_dtype)
    flow = nnx.merge(graphdef, params)
    for _, module in nnx.iter_modules(flow):
        if isinstance(module, Conditioner):
            module.compute_dtype = name
    return split_flow(flow)[0]


def num_params(params) -> int:
    """Total number of scalar parameters in a params pytree (37 for the paper's k = 3 flow)."""
    return int(sum(jnp.size(x) for x in jax.tree_util.tree_leaves(params)))


#: Named flow variants (name → :func:`build_flow` kwargs), exercised by the test suite.
FLOW_REGISTRY: dict[str, dict[str, Any]] = {
    "minimal_k3": dict(kernel_size=3),  # the paper's flow, 37 parameters
    "minimal_k5": dict(kernel_size=5),
    "layers2_k3_k5": dict(kernel_size=(3, 5), num_layers=2, seed=2),  # per-layer kernel sizes
    "hidden2x2_softsign": dict(kernel_size=3, hidden_channels=(2, 2), activation="softsign", seed=4),  # 2 hidden layers
    "hidden4_silu": dict(kernel_size=3, hidden_channels=(4,), activation="silu", seed=5),  # not Z₂-odd
}


def registry_flow(name: str, *, dtype=None, compute_dtype=None) -> Compose:
    """Build the registered variant ``name`` (see :data:`FLOW_REGISTRY`)."""
    try:
        kwargs = FLOW_REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown flow variant name={name!r}; known: {sorted(FLOW_REGISTRY)}") from None
    return build_flow(**kwargs, dtype=dtype, compute_dtype=compute_dtype)
