"""Flowed HMC (FHMC): HMC in φ̃ on the pulled-back action (docs/theory.md#the-pulled-back-action-and-flowed-hmc).

    S̃(φ̃) = S(g(φ̃)) − log|det J_g(φ̃)|,   φ = g(φ̃),
    ∂S̃/∂φ̃ = J_g(φ̃)ᵀ ∂S/∂φ|_{φ=g(φ̃)} − ∂ log|det J_g|/∂φ̃.

This module only builds the pulled-back potential, its force and the measurement; the *same*
kernel and driver as plain HMC run it (no second HMC implementation). The flow is a
:class:`trivflow.flows.Flow` passed in ``params = {"flow": flow, "theory": theory_params}``, a jit
argument, so a new or retrained flow of the same structure never recompiles. The force is one VJP
through the flow, ``flow.forward_and_pullback`` (the hand-written pullback of trivflow's coupling
flows, ``jax.vjp`` for a flow made from a callable), seeded with the analytic ∂S/∂φ when one is
given (cheaper than differentiating S too).

Exactness: for any invertible g, HMC on S̃ samples φ̃ ~ e^{−S̃}, hence φ = g(φ̃) ~ e^{−S}. The
Metropolis step sees only the integration error of S̃, not the flow's overlap with e^{−S}.
"""

from __future__ import annotations

from typing import Callable

import jax

from .kernel import HMCKernel, build_kernel


def pulled_back_potential(potential_fn: Callable) -> Callable:
    """S̃(φ̃, params) = U(g(φ̃), params["theory"]) − log|det J_g(φ̃)|, g = ``params["flow"]``.

    Args:
        potential_fn: ``(phi, theory_params) -> U`` (the action S) of one configuration.
    """

    def potential(phi_tilde, params):
        phi, log_det = params["flow"].forward(phi_tilde)
        return potential_fn(phi, params["theory"]) - log_det

    return potential


def pulled_back_value_and_grad(potential_fn: Callable, force_fn: Callable | None = None,
                               block_value_and_grad_fn: Callable | None = None) -> Callable:
    """``(φ̃, params) -> (S̃, ∂S̃/∂φ̃)`` with one VJP through the flow ``params["flow"]``.

    Args:
        potential_fn: as in :func:`pulled_back_potential`.
        force_fn: optional analytic ``(phi, theory_params) -> ∂U/∂φ``; without it the action is
            differentiated by autodiff as well.
        block_value_and_grad_fn: optional ``(phi_blocks, theory_params) -> (U, ∂U/∂φ blocks)``
            of a 2D field given by its 2×2 blocks (:func:`trivflow.flows.checkerboard.to_blocks`;
            φ⁴: :func:`trivflow.lattice.phi4_block_value_and_grad`). Used with flows that compute
            in blocks (``flow.supports_blocks``): φ and the force then never leave the block
            layout, which saves interleaving φ, rolling it on the lattice and splitting the
            force again (the FHMC trajectory 8–33 % faster on CPU at L = 16–64,
            docs/performance.md). The same force to rounding (φ⁴ adds the same terms in the
            same order, but XLA may fuse and round them differently in the two layouts).
    """

    def value_and_grad(phi_tilde, params):
        flow = params["flow"]
        if block_value_and_grad_fn is not None and flow.supports_blocks:
            blocks, log_det, pullback = flow.forward_and_pullback_blocks(phi_tilde)
            action, force = block_value_and_grad_fn(blocks, params["theory"])
            return action - log_det, pullback(force, -1.0)
        phi, log_det, pullback = flow.forward_and_pullback(phi_tilde)
        if force_fn is None:
            action, force = jax.value_and_grad(potential_fn)(phi, params["theory"])
        else:
            action, force = potential_fn(phi, params["theory"]), force_fn(phi, params["theory"])
        grad = pullback(force, -1.0)
        return action - log_det, grad

    return value_and_grad


def pulled_back_measure(measure_fn: Callable) -> Callable:
    """Observables of φ = g(φ̃): every FHMC measurement is made on the physical field.

    φ is computed by the same forward pass as the force's (``forward_and_pullback``; its unused
    pullback is dead code), so that the measured map is the Hamiltonian's also where a flow
    computes in reduced precision (up to XLA's freedom to round float32 differently in
    separately compiled fusions: ~1e-7 relative).
    """

    def measure(phi_tilde, params):
        phi, _, _ = params["flow"].forward_and_pullback(phi_tilde)
        return measure_fn(phi, params["theory"])

    return measure


def fhmc_kernel(potential_fn: Callable, *, num_steps: int, integrator: str = "leapfrog",
                force_fn: Callable | None = None, block_value_and_grad_fn: Callable | None = None,
                metric=None, momentum_draw: str = "threefry") -> HMCKernel:
    """The HMC kernel on S̃, with ``params = {"flow": Flow, "theory": theory_params}``;
    ``force_fn`` and ``block_value_and_grad_fn`` as in :func:`pulled_back_value_and_grad` (a
    theory's ``force_fn`` and ``block_value_and_grad_fn``), ``metric`` (Fourier acceleration in
    φ̃) and ``momentum_draw`` as in :func:`trivflow.hmc.build_kernel`."""
    return build_kernel(pulled_back_potential(potential_fn), num_steps=num_steps, integrator=integrator,
                        value_and_grad_fn=pulled_back_value_and_grad(potential_fn, force_fn,
                                                                     block_value_and_grad_fn),
                        metric=metric, momentum_draw=momentum_draw)
