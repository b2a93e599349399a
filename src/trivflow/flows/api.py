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
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ..dtypes import default_float
from ..errors import ParameterError, must_be
from .activations import ACTIVATIONS, ODD_ACTIVATIONS
from .checkerboard import check_lattice_shape
from .layers import AffineCoupling, Compose, Conditioner, GlobalRescaling, canonical_compute_dtype
from .pullback import forward_and_pullback


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _as_sequence(x):
    """A list/tuple/ListConfig → tuple; anything else unchanged."""
    if isinstance(x, (str, bytes, Mapping)):
        return x
    if isinstance(x, Sequence) or (hasattr(x, "__iter__") and not hasattr(x, "shape")):
        return tuple(x)
    return x


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    """Architecture of a flow g = (rescaling) ∘ (coupling_n) ∘ … ∘ (coupling_1).

    Its fields are THE list of a flow's configuration keys: :meth:`field_names`, :meth:`to_dict`
    and :meth:`from_dict` (``flow_config.json``), :func:`build_flow`'s parameters and the
    checkpoint checks are derived from them.

    Attributes (the ``flow.*`` config keys):
        kernel_size: odd k ≥ 1 for every coupling layer, or one odd k per layer
            (a sequence of length ``num_layers``). The paper: 3. (k = 1 is valid but cannot
            connect the two halves: such a coupling is the identity.)
        num_layers: number of affine coupling layers (≥ 1). The paper: 1.
        hidden_channels: channels of the hidden conv layers of each conditioner; ``()``
            (the paper) is a single 1 → 2 convolution.
        activation: activation after each hidden conv layer.
        output_activation: activation on both output channels (s, t). The paper: tanh.
        seed: seed of the parameter initialisation.
        compute_dtype: ``None`` (default: the exact path, everything in the field's dtype)
            or ``"float32"``: mixed precision, the conditioners, e^{−|s|} and t in float32 while
            the field, the coupling update, the log-determinant (of the map actually computed)
            and everything downstream (action, Hamiltonian) stay float64. See
            :class:`~trivflow.flows.layers.AffineCoupling` and benchmarks/README.md for its
            speed and accuracy. Not a parameter: changing it keeps the trained params valid.

    Validation happens at construction (``ValueError`` naming key and value). Only odd
    activations (:data:`~trivflow.flows.activations.ODD_ACTIVATIONS`) keep g Z₂-equivariant.
    """

    kernel_size: int | tuple[int, ...] = 3
    num_layers: int = 1
    hidden_channels: tuple[int, ...] = ()
    activation: str = "tanh"
    output_activation: str = "tanh"
    seed: int = 0
    compute_dtype: str | None = None

    def __post_init__(self) -> None:
        ks = _as_sequence(self.kernel_size)
        object.__setattr__(self, "kernel_size", ks)
        object.__setattr__(self, "hidden_channels", _as_sequence(self.hidden_channels))
        if not _is_int(self.num_layers) or self.num_layers < 1:
            raise must_be("num_layers", self.num_layers, "an integer >= 1")
        if isinstance(ks, tuple):
            if len(ks) != self.num_layers:
                raise ParameterError(f"{{kernel_size}} given per layer must have num_layers={self.num_layers} "
                                     f"entries, got kernel_size={list(ks)!r}", "kernel_size")
            values = ks
        else:
            values = (ks,)
        for k in values:
            if not _is_int(k) or k < 1 or k % 2 == 0:
                raise must_be("kernel_size", self.kernel_size, "an odd integer >= 1 (centred circular kernel)")
        hc = self.hidden_channels
        if not isinstance(hc, tuple) or not all(_is_int(c) and c >= 1 for c in hc):
            raise must_be("hidden_channels", hc, "a sequence of integers >= 1")
        for key in ("activation", "output_activation"):
            value = getattr(self, key)
            if value not in ACTIVATIONS:
                raise must_be(key, value, f"one of {sorted(ACTIVATIONS)}")
        if not _is_int(self.seed):
            raise must_be("seed", self.seed, "an integer")
        object.__setattr__(self, "compute_dtype", canonical_compute_dtype(self.compute_dtype))

    @property
    def kernel_sizes(self) -> tuple[int, ...]:
        """Kernel size of each coupling layer."""
        ks = self.kernel_size
        return ks if isinstance(ks, tuple) else (ks,) * self.num_layers

    @property
    def z2_equivariant(self) -> bool:
        """True if g(−z) = −g(z) holds by construction (odd activations, no biases)."""
        odd_out = self.output_activation in ODD_ACTIVATIONS
        odd_hidden = self.activation in ODD_ACTIVATIONS or not self.hidden_channels
        return odd_out and odd_hidden

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The ``flow.*`` keys of a flow's configuration, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict of every field (tuples → lists) that :meth:`from_dict` accepts."""
        values = {name: getattr(self, name) for name in self.field_names()}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], *, ignore: Sequence[str] = ()) -> "FlowConfig":
        """Build from a mapping of ``flow.*`` keys; unknown keys raise unless listed in ``ignore``."""
        fields = cls.field_names()
        unknown = sorted(set(config) - set(fields) - set(ignore))
        if unknown:
            raise ValueError(f"unknown flow config key(s) {unknown}; known keys: {sorted(fields)}")
        return cls(**{k: config[k] for k in config if k in fields})

    def build(self, *, dtype=None) -> Compose:
        """The flow module of this config (see :func:`build_flow`)."""
        dtype = dtype if dtype is not None else default_float("build_flow")
        rngs = nnx.Rngs(self.seed)
        couplings = [
            AffineCoupling(
                k,
                hidden_channels=self.hidden_channels,
                activation=self.activation,
                output_activation=self.output_activation,
                rngs=rngs,
                dtype=dtype,
                compute_dtype=self.compute_dtype,
            )
            for k in self.kernel_sizes
        ]
        return Compose([*couplings, GlobalRescaling(dtype=dtype)])


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
