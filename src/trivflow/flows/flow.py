"""One flow object: a bijection φ = g(z) of ONE configuration, pure in its parameters.

A :class:`Flow` is a pytree. Its leaves are the parameters; its static part — the structure of a
flax NNX flow (``graphdef``) or the user's functions — lives in the tree structure. So a Flow is
passed to compiled code as an *argument* (``params = {"flow": flow, "theory": ...}`` for flowed
HMC and independence MH): a retrained flow of the same structure never recompiles, and nothing
inspects what kind of callable it was given.

Two ways to make one:

* :meth:`Flow.from_module` — ``(graphdef, params)`` of trivflow's coupling flows
  (:func:`trivflow.flows.split_flow`). ``forward_and_pullback`` is then the hand-written pullback
  of the coupling layers (:func:`trivflow.flows.flow_forward_and_pullback`), equal to ``jax.vjp``
  to rounding and 2-3× faster on CPU.
* :meth:`Flow.from_callable` — any ``forward(params, z) -> (phi, log_det)`` (and optionally its
  inverse); the pullback is ``jax.vjp`` of ``forward``.

Convention (docs/theory.md#flows): ``log_det`` is log|det ∂out/∂in| of the call direction, so
``forward`` returns log|det ∂g/∂z| and ``inverse`` log|det ∂g⁻¹/∂φ|. :func:`compose` makes g₂ ∘ g₁
a Flow too (:func:`compose_flows`; for module flows ONE ``Compose`` module, which keeps the
hand-written pullback).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Flow:
    """A bijection g of one configuration with its parameters (a pytree; see the module docstring).

    Attributes:
        params: the parameters (pytree leaves).
        graphdef: the NNX structure of a module flow (static), or None.
        forward_fn, inverse_fn: ``(params, x) -> (y, log_det)`` of a callable flow (static), or None.
    """

    params: Any
    graphdef: Any = dataclasses.field(default=None, metadata={"static": True})
    forward_fn: Callable | None = dataclasses.field(default=None, metadata={"static": True})
    inverse_fn: Callable | None = dataclasses.field(default=None, metadata={"static": True})

    @classmethod
    def from_module(cls, graphdef: nnx.GraphDef, params) -> Flow:
        """The flow of a split NNX module (``split_flow(build_flow(...))``)."""
        return cls(params=params, graphdef=graphdef)

    @classmethod
    def from_callable(cls, forward: Callable, params=None, inverse: Callable | None = None) -> Flow:
        """A flow from ``forward(params, z) -> (phi, log_det)`` (and ``inverse(params, phi)``);
        ``params`` may be any pytree, or None for a map without parameters."""
        return cls(params=params, forward_fn=forward, inverse_fn=inverse)

    def forward(self, z: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """``(φ, log|det ∂g/∂z|)`` for ONE configuration ``z``."""
        if self.graphdef is not None:
            from .api import flow_forward

            return flow_forward(self.graphdef, self.params, z)
        return self.forward_fn(self.params, z)

    def inverse(self, phi: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """``(z, log|det ∂g⁻¹/∂φ|)`` for ONE configuration ``phi``."""
        if self.graphdef is not None:
            from .api import flow_inverse

            return flow_inverse(self.graphdef, self.params, phi)
        if self.inverse_fn is None:
            raise NotImplementedError("this flow was made from a forward function only (Flow.from_callable "
                                      "without inverse=)")
        return self.inverse_fn(self.params, phi)

    def forward_and_pullback(self, z: jnp.ndarray):
        """``(φ, log_det, pullback)`` with ``pullback(φ̄, ld̄) -> z̄`` the vector–Jacobian product
        of (φ, log_det) with respect to z (not the parameters): the FHMC force's path."""
        if self.graphdef is not None:
            from .api import flow_forward_and_pullback

            return flow_forward_and_pullback(self.graphdef, self.params, z)
        from .pullback import vjp_of

        return vjp_of(lambda x: self.forward_fn(self.params, x), z)

    @property
    def supports_blocks(self) -> bool:
        """Whether :meth:`forward_and_pullback_blocks` is available: a module flow of coupling
        layers with minimal conditioners (and the global rescaling); never a callable flow."""
        if self.graphdef is None:
            return False
        from .api import flow_supports_blocks

        return flow_supports_blocks(self.graphdef, self.params)

    def forward_and_pullback_blocks(self, z: jnp.ndarray):
        """:meth:`forward_and_pullback` with φ and φ̄ as 2×2 blocks
        (:func:`trivflow.flows.flow_forward_and_pullback_blocks`); needs :attr:`supports_blocks`."""
        from .api import flow_forward_and_pullback_blocks

        return flow_forward_and_pullback_blocks(self.graphdef, self.params, z)

    def module(self) -> nnx.Module:
        """The NNX module of a module flow (merged; for composing and inspection)."""
        if self.graphdef is None:
            raise TypeError("a callable flow has no NNX module")
        return nnx.merge(self.graphdef, self.params)


def _composed_forward(params, z):
    (f1, f2) = params
    y, ld1 = f1.forward(z)
    phi, ld2 = f2.forward(y)
    return phi, ld1 + ld2


def _composed_inverse(params, phi):
    (f1, f2) = params
    y, ld2 = f2.inverse(phi)
    z, ld1 = f1.inverse(y)
    return z, ld1 + ld2


def compose_flows(first: Flow, second: Flow) -> Flow:
    """g = g₂ ∘ g₁ (``first`` = g₁ applied first). Two module flows become one module flow
    (one ``Compose``: the hand-written pullback is kept); otherwise a callable flow whose
    parameters are ``(g₁, g₂)`` and whose pullback is ``jax.vjp``."""
    if first.graphdef is not None and second.graphdef is not None:
        from .api import compose as compose_modules
        from .api import split_flow

        return Flow.from_module(*split_flow(compose_modules(first.module(), second.module())))
    return Flow.from_callable(_composed_forward, (first, second), _composed_inverse)
