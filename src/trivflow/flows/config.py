"""A flow's configuration, :class:`FlowConfig`: the ``flow.*`` keys, validated (docs/theory.md#flows).

Plain Python with no Flax import, so the application validates a job's flow keys before
anything is compiled without importing Flax (≈ 0.45 s, docs/performance.md: seconds to the
first sample); :meth:`FlowConfig.build` imports the layers when a flow is built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..dtypes import canonical_compute_dtype, default_float
from ..errors import ParameterError, must_be
from .activations import ACTIVATIONS, ODD_ACTIVATIONS

if TYPE_CHECKING:
    from .layers import Compose

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
        """The flow module of this config (see :func:`~trivflow.flows.api.build_flow`)."""
        from flax import nnx

        from .layers import AffineCoupling, Compose, GlobalRescaling

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
