"""Hamiltonian Monte Carlo: integrators, the kernel as pure functions, and the multi-chain driver
:func:`run_chains` that runs every kernel (HMC, FHMC, independence MH); options: Fourier
acceleration and the momentum draw (:mod:`.fourier`), step-size adaptation (:mod:`.adaptation`)."""

from .adaptation import DualAveraging
from .driver import ChainResult, FrozenChainsError, Kernel, random_positions, run_chains, validate_run_args
from .flowed import fhmc_kernel, pulled_back_measure, pulled_back_potential, pulled_back_value_and_grad
from .fourier import MOMENTUM_DRAWS, FourierMetric, lattice_mass, momentum_draw
from .integrators import INTEGRATORS, OMELYAN_LAMBDA, get_integrator, kinetic_energy, leapfrog, omelyan
from .kernel import DIVERGENCE_THRESHOLD, HMCInfo, HMCKernel, HMCState, build_kernel
from .phi4 import (
    phi4_block_value_and_grad,
    phi4_force_fn,
    phi4_kernel,
    phi4_measure,
    phi4_params,
    phi4_potential,
    phi4_value_and_grad,
)

__all__ = [
    "DIVERGENCE_THRESHOLD",
    "DualAveraging",
    "FourierMetric",
    "MOMENTUM_DRAWS",
    "lattice_mass",
    "momentum_draw",
    "INTEGRATORS",
    "Kernel",
    "OMELYAN_LAMBDA",
    "ChainResult",
    "FrozenChainsError",
    "HMCInfo",
    "HMCKernel",
    "HMCState",
    "build_kernel",
    "fhmc_kernel",
    "phi4_block_value_and_grad",
    "phi4_force_fn",
    "pulled_back_measure",
    "pulled_back_potential",
    "pulled_back_value_and_grad",
    "get_integrator",
    "kinetic_energy",
    "leapfrog",
    "omelyan",
    "phi4_kernel",
    "phi4_measure",
    "phi4_params",
    "phi4_potential",
    "phi4_value_and_grad",
    "random_positions",
    "run_chains",
    "validate_run_args",
]
