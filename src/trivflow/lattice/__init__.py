"""2D (any-d) φ⁴ lattice theory as pure JAX functions: action, force, observables, free theory,
and :class:`Phi4Theory`/:class:`FreeTheory`, its implementations of :class:`trivflow.theory.Theory`."""

from . import conventions, free
from .geometry import checkerboard_mask
from .observables import (
    correlation_length,
    default_plateau,
    effective_mass,
    g0,
    magnetization,
    phi4_observables,
    slice_averages,
    zero_momentum_correlator,
)
from .phi4 import free_action, hopping_sum, phi4_action, phi4_force
from .presets import LINE_OF_CONSTANT_PHYSICS, preset
from .theory import (
    FreeTheory,
    Phi4Theory,
    phi4_block_value_and_grad,
    phi4_force_fn,
    phi4_measure,
    phi4_potential,
    phi4_value_and_grad,
    validate_theory,
)

__all__ = [
    "LINE_OF_CONSTANT_PHYSICS",
    "FreeTheory",
    "Phi4Theory",
    "checkerboard_mask",
    "conventions",
    "correlation_length",
    "default_plateau",
    "effective_mass",
    "free",
    "free_action",
    "g0",
    "hopping_sum",
    "magnetization",
    "phi4_action",
    "phi4_force",
    "phi4_block_value_and_grad",
    "phi4_force_fn",
    "phi4_measure",
    "phi4_observables",
    "phi4_potential",
    "phi4_value_and_grad",
    "preset",
    "slice_averages",
    "validate_theory",
    "zero_momentum_correlator",
]
