"""Normalizing flows for 2D lattice fields (docs/theory.md#flows).

Convention: the generator g maps the trivial variable z to the field, φ = g(z) ("forward");
``log_det`` is always log|det ∂out/∂in| of the call direction. Everything acts on ONE
configuration of shape ``(L0, L1)`` with even extents; vmap at the edge.

Modules: :mod:`~trivflow.flows.flow` (the :class:`Flow` object), :mod:`~trivflow.flows.config`
(:class:`FlowConfig`, plain Python), :mod:`~trivflow.flows.api` (builder, registry, pure functions
of split flows),
:mod:`~trivflow.flows.layers` (the bijections), :mod:`~trivflow.flows.pullback` (their
hand-written vector–Jacobian products), :mod:`~trivflow.flows.activations`,
:mod:`~trivflow.flows.checkerboard` (block geometry, convolutions, fusion stages).

The names below are imported on first access (PEP 562), so that validating a job's flow keys
with :class:`FlowConfig` does not import Flax before the first sample (docs/performance.md).
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the same names, for type checkers and the API docs
    from .activations import ACTIVATIONS, ODD_ACTIVATIONS
    from .api import (
        FLOW_REGISTRY,
        build_flow,
        compose,
        flow_forward,
        flow_forward_and_pullback,
        flow_forward_and_pullback_blocks,
        flow_inverse,
        flow_supports_blocks,
        num_params,
        registry_flow,
        split_flow,
        with_compute_dtype,
    )
    from .checkerboard import check_lattice_shape
    from .config import FlowConfig
    from .flow import Flow, compose_flows
    from .layers import AffineCoupling, Compose, Conditioner, GlobalRescaling

#: public name → the submodule that defines it
_EXPORTS = {
    "ACTIVATIONS": "activations",
    "ODD_ACTIVATIONS": "activations",
    "FLOW_REGISTRY": "api",
    "FlowConfig": "config",
    "build_flow": "api",
    "compose": "api",
    "flow_forward": "api",
    "flow_forward_and_pullback": "api",
    "flow_forward_and_pullback_blocks": "api",
    "flow_inverse": "api",
    "flow_supports_blocks": "api",
    "num_params": "api",
    "registry_flow": "api",
    "split_flow": "api",
    "with_compute_dtype": "api",
    "check_lattice_shape": "checkerboard",
    "Flow": "flow",
    "compose_flows": "flow",
    "AffineCoupling": "layers",
    "Compose": "layers",
    "Conditioner": "layers",
    "GlobalRescaling": "layers",
}

__all__ = [
    "ACTIVATIONS",
    "FLOW_REGISTRY",
    "ODD_ACTIVATIONS",
    "AffineCoupling",
    "Compose",
    "Conditioner",
    "Flow",
    "FlowConfig",
    "GlobalRescaling",
    "build_flow",
    "check_lattice_shape",
    "compose",
    "compose_flows",
    "flow_forward",
    "flow_forward_and_pullback",
    "flow_forward_and_pullback_blocks",
    "flow_inverse",
    "flow_supports_blocks",
    "num_params",
    "registry_flow",
    "split_flow",
    "with_compute_dtype",
]


def __getattr__(name: str):
    """PEP 562: import the submodule defining ``name`` on first access (or the submodule ``name``)."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
