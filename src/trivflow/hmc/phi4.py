"""HMC for the φ⁴ theory: potential U = S with the analytic force, couplings as jit arguments."""

from __future__ import annotations

import jax.numpy as jnp

from ..lattice.observables import phi4_observables
from ..lattice.phi4 import phi4_action, phi4_force
from ..lattice.theory import Phi4Theory
from .kernel import HMCKernel, build_kernel


def phi4_params(theory: Phi4Theory, dtype=None) -> dict:
    """The potential's parameters ``{"beta", "lam"}`` as arrays (jit arguments, no recompiles)."""
    return {"beta": jnp.asarray(theory.beta, dtype), "lam": jnp.asarray(theory.lam, dtype)}


def phi4_potential(phi, params):
    """U(φ) = S(φ; β, λ) for one configuration; ``params = {"beta", "lam"}``."""
    return phi4_action(phi, params["beta"], params["lam"])


def phi4_value_and_grad(phi, params):
    """(S, ∂S/∂φ) with the analytic force (one pass, no autodiff)."""
    return phi4_potential(phi, params), phi4_force(phi, params["beta"], params["lam"])


def phi4_measure(phi, params):
    """In-scan observables of docs/theory.md#observables (``params`` unused, kept for the driver signature)."""
    del params
    return phi4_observables(phi)


def phi4_kernel(num_steps: int, integrator: str = "leapfrog") -> HMCKernel:
    """HMC kernel for φ⁴ with ``params = phi4_params(theory)``."""
    return build_kernel(
        phi4_potential, num_steps=num_steps, integrator=integrator, value_and_grad_fn=phi4_value_and_grad
    )


def phi4_force_fn(phi, params):
    """∂S/∂φ for ``params = {"beta", "lam"}`` (the analytic force, for FHMC's VJP seed)."""
    return phi4_force(phi, params["beta"], params["lam"])
