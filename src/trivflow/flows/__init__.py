"""Normalizing flows for 2D lattice fields (docs/theory.md#flows).

Convention: the generator g maps the trivial variable z to the field, φ = g(z) ("forward");
``log_det`` is always log|det ∂out/∂in| of the call direction. Everything acts on ONE
configuration of shape ``(L0, L1)`` with even extents; vmap at the edge.

Modules: :mod:`~trivflow.flows.flow` (the :class:`Flow` object), :mod:`~trivflow.flows.api`
(:class:`FlowConfig`, builder, registry, pure functions of split flows),
:mod:`~trivflow.flows.layers` (the bijections), :mod:`~trivflow.flows.pullback` (their
hand-written vector–Jacobian products), :mod:`~trivflow.flows.activations`,
:mod:`~trivflow.flows.checkerboard` (block geometry, convolutions, fusion stages).
"""

from .activations import ACTIVATIONS, ODD_ACTIVATIONS
from .api import (
    FLOW_REGISTRY,
    FlowConfig,
    build_flow,
    compose,
    flow_forward,
    flow_forward_and_pullback,
    flow_inverse,
    num_params,
    registry_flow,
    split_flow,
    with_compute_dtype,
)
from .checkerboard import check_lattice_shape
from .flow import Flow, compose_flows
from .layers import AffineCoupling, Compose, Conditioner, GlobalRescaling

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
    "flow_inverse",
    "num_params",
    "registry_flow",
    "split_flow",
    "with_compute_dtype",
]
