"""2D U(1) lattice gauge theory as pure JAX functions (docs/theory.md#u1): link angles of shape
``(2, L, L)``, plaquettes, the Wilson action and its force, the geometric topological charge,
Wilson loops, gauge transformations (:mod:`~trivflow.gauge.u1`), exact results at finite L and β
(:mod:`~trivflow.gauge.exact`), the rate of changes of the topological charge along chains
(:mod:`~trivflow.gauge.tunnelling`), and :class:`U1Theory`, its :class:`trivflow.theory.Theory`
(``action=u1``)."""

from . import exact, tunnelling
from .theory import U1Theory, u1_force_fn, u1_measure, u1_potential, u1_value_and_grad, validate_u1
from .u1 import (
    WILSON_LOOPS,
    gauge_transform,
    loop_angles,
    plaquette_angles,
    topological_charge,
    u1_observables,
    wilson_action,
    wilson_force,
    wilson_loop,
    wrap_angle,
)

__all__ = [
    "WILSON_LOOPS",
    "U1Theory",
    "exact",
    "tunnelling",
    "gauge_transform",
    "loop_angles",
    "plaquette_angles",
    "topological_charge",
    "u1_force_fn",
    "u1_measure",
    "u1_observables",
    "u1_potential",
    "u1_value_and_grad",
    "validate_u1",
    "wilson_action",
    "wilson_force",
    "wilson_loop",
    "wrap_angle",
]
