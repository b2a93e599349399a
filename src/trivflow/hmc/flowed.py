"""Flowed HMC (FHMC): HMC in φ̃ on the pulled-back action (physics.md §7).

    S̃(φ̃) = S(g(φ̃)) − log|det J_g(φ̃)|,   φ = g(φ̃),
    ∂S̃/∂φ̃ = J_g(φ̃)ᵀ ∂S/∂φ|_{φ=g(φ̃)} − ∂ log|det J_g|/∂φ̃.

This module only builds the pulled-back potential, its force and the measurement; the *same*
kernel and driver as plain HMC run it (no second HMC implementation). The force is one VJP
through the flow, seeded with the analytic ∂S/∂φ when one is given (cheaper than
differentiating S too). ``params = {"flow": flow_params, "theory": theory_params}`` is a jit
argument, so a new or retrained flow never recompiles.

Exactness: for any invertible g, HMC on S̃ samples φ̃ ~ e^{−S̃}, hence φ = g(φ̃) ~ e^{−S}. The
Metropolis step sees only the integration error of S̃, not the flow's overlap with e^{−S}.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from .kernel import HMCKernel, build_kernel


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
                               force_fn: Callable | None = None) -> Callable:
    """``(φ̃, params) -> (S̃, ∂S̃/∂φ̃)`` with one VJP through the flow.

    Args:
        flow_fn, potential_fn: as in :func:`pulled_back_potential`.
        force_fn: optional analytic ``(phi, theory_params) -> ∂U/∂φ``; without it the action is
            differentiated by autodiff as well.
    """

    def value_and_grad(phi_tilde, params):
        (phi, log_det), pullback = jax.vjp(lambda z: flow_fn(params["flow"], z), phi_tilde)
        if force_fn is None:
            action, force = jax.value_and_grad(potential_fn)(phi, params["theory"])
        else:
            action, force = potential_fn(phi, params["theory"]), force_fn(phi, params["theory"])
        (grad,) = pullback((force, -jnp.ones_like(log_det)))
        return action - log_det, grad

    return value_and_grad


def pulled_back_measure(flow_fn: Callable, measure_fn: Callable) -> Callable:
    """Observables of φ = g(φ̃): every FHMC measurement is made on the physical field."""

    def measure(phi_tilde, params):
        phi, _ = flow_fn(params["flow"], phi_tilde)
        return measure_fn(phi, params["theory"])

    return measure


def fhmc_kernel(flow_fn: Callable, potential_fn: Callable, *, num_steps: int, integrator: str = "leapfrog",
                force_fn: Callable | None = None) -> HMCKernel:
    """The HMC kernel on S̃, with ``params = {"flow": ..., "theory": ...}``."""
    return build_kernel(pulled_back_potential(flow_fn, potential_fn), num_steps=num_steps, integrator=integrator,
                        value_and_grad_fn=pulled_back_value_and_grad(flow_fn, potential_fn, force_fn))
