"""Flowed HMC (FHMC): HMC in φ̃ on the pulled-back action (docs/theory.md#the-pulled-back-action-and-flowed-hmc).

    S̃(φ̃) = S(g(φ̃)) − log|det J_g(φ̃)|,   φ = g(φ̃),
    ∂S̃/∂φ̃ = J_g(φ̃)ᵀ ∂S/∂φ|_{φ=g(φ̃)} − ∂ log|det J_g|/∂φ̃.

This module only builds the pulled-back potential, its force and the measurement; the *same*
kernel and driver as plain HMC run it (no second HMC implementation). The force is one VJP
through the flow, seeded with the analytic ∂S/∂φ when one is given (cheaper than
differentiating S too). For the library's flows (``functools.partial(flow_forward, graphdef)``,
or any ``flow_fn`` with a ``forward_and_pullback`` attribute) the VJP is the flows' hand-written
pullback (:func:`trivflow.flows.flow_forward_and_pullback`), equal to ``jax.vjp`` to rounding
and 2-3× faster on CPU; other ``flow_fn`` use ``jax.vjp``.
``params = {"flow": flow_params, "theory": theory_params}`` is a jit argument, so a new or
retrained flow never recompiles.

Exactness: for any invertible g, HMC on S̃ samples φ̃ ~ e^{−S̃}, hence φ = g(φ̃) ~ e^{−S}. The
Metropolis step sees only the integration error of S̃, not the flow's overlap with e^{−S}.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from .kernel import HMCKernel, build_kernel


def flow_pullback_fn(flow_fn: Callable) -> Callable:
    """``(flow_params, z) -> (phi, log_det, pullback)`` for ``flow_fn``, with
    ``pullback(phi_bar, log_det_bar) -> z_bar``.

    ``functools.partial(flow_forward, graphdef)`` and objects with a ``forward_and_pullback``
    method get the flows' hand-written pullback; anything else ``jax.vjp`` of ``flow_fn``.
    """
    from ..flows.api import flow_forward, flow_forward_and_pullback

    method = getattr(flow_fn, "forward_and_pullback", None)
    if method is not None:
        return method
    if (isinstance(flow_fn, functools.partial) and flow_fn.func is flow_forward and len(flow_fn.args) == 1
            and not flow_fn.keywords):
        return functools.partial(flow_forward_and_pullback, flow_fn.args[0])

    def generic(flow_params, z):
        (phi, log_det), vjp = jax.vjp(lambda x: flow_fn(flow_params, x), z)

        def pullback(phi_bar, log_det_bar):
            return vjp((phi_bar, jnp.asarray(log_det_bar, jnp.result_type(log_det)) * jnp.ones_like(log_det)))[0]

        return phi, log_det, pullback

    return generic


def pulled_back_potential(flow_fn: Callable, potential_fn: Callable) -> Callable:
    """S̃(φ̃, params) = U(g(φ̃), params["theory"]) − log|det J_g(φ̃)|.

    Args:
        flow_fn: ``(flow_params, z) -> (phi, log_det)``, the generator g on one configuration
            with log_det = log|det ∂g/∂z|.
        potential_fn: ``(phi, theory_params) -> U`` (the action S).
    """

    def potential(phi_tilde, params):
        phi, log_det = flow_fn(params["flow"], phi_tilde)
        return potential_fn(phi, params["theory"]) - log_det

    return potential


def pulled_back_value_and_grad(flow_fn: Callable, potential_fn: Callable,
                               force_fn: Callable | None = None, *,
                               flow_pullback: Callable | None = None) -> Callable:
    """``(φ̃, params) -> (S̃, ∂S̃/∂φ̃)`` with one VJP through the flow.

    Args:
        flow_fn, potential_fn: as in :func:`pulled_back_potential`.
        force_fn: optional analytic ``(phi, theory_params) -> ∂U/∂φ``; without it the action is
            differentiated by autodiff as well.
        flow_pullback: optional ``(flow_params, z) -> (phi, log_det, pullback)`` computing the
            same map as ``flow_fn``; default :func:`flow_pullback_fn` ``(flow_fn)``.
    """
    forward_and_pullback = flow_pullback if flow_pullback is not None else flow_pullback_fn(flow_fn)

    def value_and_grad(phi_tilde, params):
        phi, log_det, pullback = forward_and_pullback(params["flow"], phi_tilde)
        if force_fn is None:
            action, force = jax.value_and_grad(potential_fn)(phi, params["theory"])
        else:
            action, force = potential_fn(phi, params["theory"]), force_fn(phi, params["theory"])
        grad = pullback(force, -1.0)
        return action - log_det, grad

    return value_and_grad


def pulled_back_measure(flow_fn: Callable, measure_fn: Callable, *,
                        flow_pullback: Callable | None = None) -> Callable:
    """Observables of φ = g(φ̃): every FHMC measurement is made on the physical field.

    φ is computed by the same forward pass as the force's (``flow_pullback``, default
    :func:`flow_pullback_fn` ``(flow_fn)``; its unused pullback is dead code), so that the
    measured map is the Hamiltonian's also where a flow computes in reduced precision (up to
    XLA's freedom to round float32 differently in separately compiled fusions: ~1e-7 relative).
    """
    forward_and_pullback = flow_pullback if flow_pullback is not None else flow_pullback_fn(flow_fn)

    def measure(phi_tilde, params):
        phi, _, _ = forward_and_pullback(params["flow"], phi_tilde)
        return measure_fn(phi, params["theory"])

    return measure


def fhmc_kernel(flow_fn: Callable, potential_fn: Callable, *, num_steps: int, integrator: str = "leapfrog",
                force_fn: Callable | None = None, flow_pullback: Callable | None = None) -> HMCKernel:
    """The HMC kernel on S̃, with ``params = {"flow": ..., "theory": ...}``.

    ``flow_pullback``: see :func:`pulled_back_value_and_grad` (found automatically for
    ``functools.partial(flow_forward, graphdef)``).
    """
    return build_kernel(pulled_back_potential(flow_fn, potential_fn), num_steps=num_steps, integrator=integrator,
                        value_and_grad_fn=pulled_back_value_and_grad(flow_fn, potential_fn, force_fn,
                                                                     flow_pullback=flow_pullback))
