"""HMC for the φ⁴ theory: potential U = S with the analytic force, couplings as jit arguments.

The functions themselves belong to the theory (:mod:`trivflow.lattice.theory`, where
:class:`~trivflow.lattice.Phi4Theory` hands them to the engine); they are re-exported here for
code written against ``trivflow.hmc``.
"""

from __future__ import annotations

from ..lattice.theory import (
    Phi4Theory,
    phi4_block_value_and_grad,
    phi4_force_fn,
    phi4_measure,
    phi4_potential,
    phi4_value_and_grad,
)
from .kernel import HMCKernel, build_kernel

__all__ = [
    "phi4_block_value_and_grad",
    "phi4_force_fn",
    "phi4_kernel",
    "phi4_measure",
    "phi4_params",
    "phi4_potential",
    "phi4_value_and_grad",
]


def phi4_params(theory: Phi4Theory, dtype=None) -> dict:
    """The potential's parameters ``{"beta", "lam"}`` as arrays (:meth:`Phi4Theory.params`)."""
    return theory.params(dtype)


def phi4_kernel(num_steps: int, integrator: str = "leapfrog") -> HMCKernel:
    """HMC kernel for φ⁴ with ``params = phi4_params(theory)``."""
    return build_kernel(
        phi4_potential, num_steps=num_steps, integrator=integrator, value_and_grad_fn=phi4_value_and_grad
    )
