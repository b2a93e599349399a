"""Flowed HMC (FHMC): HMC in φ̃ on the pulled-back action (physics.md §7).

    S̃(φ̃) = S(g(φ̃)) − log|det J_g(φ̃)|,   φ = g(φ̃).

This module only builds the pulled-back potential and the measurement; the *same* kernel and
driver as plain HMC run it (no second HMC implementation). The force ∂S̃/∂φ̃ comes from
automatic differentiation through the flow. ``params = {"flow": flow_params, "theory": ...}``
is a jit argument, so a new flow (or a retrained one) never recompiles.

Exactness: for any invertible g, HMC on S̃ samples φ̃ ~ e^{−S̃}, hence φ = g(φ̃) ~ e^{−S}. The
Metropolis step sees only the integration error of S̃, not the flow's overlap with e^{−S}.
"""

from __future__ import annotations

from typing import Callable

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


def pulled_back_measure(flow_fn: Callable, measure_fn: Callable) -> Callable:
    """Observables of φ = g(φ̃): every FHMC measurement is made on the physical field."""

    def measure(phi_tilde, params):
        phi, _ = flow_fn(params["flow"], phi_tilde)
        return measure_fn(phi, params["theory"])

    return measure


def fhmc_kernel(flow_fn: Callable, potential_fn: Callable, *, num_steps: int,
                integrator: str = "leapfrog") -> HMCKernel:
    """The HMC kernel on S̃, with ``params = {"flow": ..., "theory": ...}``."""
    return build_kernel(pulled_back_potential(flow_fn, potential_fn), num_steps=num_steps,
                        integrator=integrator)
