"""What the engine needs from a lattice theory: the :class:`Theory` interface, and the registry.

Samplers, the chain driver, the analysis, the summary, the chains files and the plots see a
theory only through this interface, so a new theory (a 2D U(1) gauge theory with link angles of
shape ``(2, L, L)``, say) is one new class and one entry in :data:`THEORIES`, with no change to
the driver. The interface is a typed :class:`typing.Protocol` (structural, as Optax types its
``GradientTransformation`` fields): an implementation need not inherit from it.

Conventions (docs/architecture.md#a-new-theory):

* A theory object is an immutable, hashable value (couplings and geometry), validated on
  construction: bad values raise ``ValueError`` naming the parameter and the value.
* The *functions* it hands to compiled code are static (module-level, so jit caches hit) and take
  the couplings as a pytree argument ``params`` (:meth:`Theory.params`), never as closed-over
  constants: a new β never recompiles.
* Everything acts on ONE configuration of shape :attr:`Theory.shape`; the driver vmaps chains.
* The potential of HMC is the action, U = S (docs/theory.md#hmc).
* Optional: ``flow_family``, the theory's own flows (:func:`flow_family`; U(1)'s gauge-equivariant
  flows); a theory without one uses the φ⁴ coupling flows of ``trivflow.flows``. And
  ``analysis_warnings(observables) -> list[str]`` (:func:`analysis_warnings`), warnings only the
  theory can give about a run's measured series (U(1): a frozen topological charge). And
  ``block_value_and_grad_fn(blocks, params) -> (S, ∂S/∂φ blocks)`` (:func:`block_value_and_grad_fn`),
  the action and force of a 2D field given by its 2×2 blocks, where the coupling flows compute:
  FHMC's force then stays in that layout (φ⁴; docs/performance.md).

Implementations: :class:`trivflow.lattice.Phi4Theory` (``action=phi4``),
:class:`trivflow.lattice.FreeTheory` (``action=free``, λ = 0 with exact results) and
:class:`trivflow.gauge.U1Theory` (``action=u1``, 2D U(1) gauge theory with exact results).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

from .gauge.theory import U1Theory
from .lattice.theory import FreeTheory, Phi4Theory


@runtime_checkable
class Theory(Protocol):
    """A lattice theory as the engine sees it (module docstring for the conventions)."""

    #: the ``action=`` name (``"phi4"``, ``"free"``)
    name: str
    #: the observable whose τ_int is the headline (``"M"`` for φ⁴) and whose R-hat decides whether
    #: the chains mix
    primary_observable: str
    #: observables whose τ_int is reported (results.json ``tau_int``), primary first
    tau_observables: tuple[str, ...]
    #: derived observables printed in the one-line summary, in order
    headline: tuple[str, ...]
    #: extra dimension names of non-scalar observables in the chains files (e.g. ``{"C": ("t",)}``)
    observable_dims: Mapping[str, tuple[str, ...]]

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one configuration (a field of reals; for a gauge theory the link angles)."""

    @property
    def volume(self) -> int:
        """Number of sites V (the normalisation of susceptibilities)."""

    def params(self, dtype=None) -> Any:
        """The couplings as a pytree of arrays: the ``params`` of every function below."""

    @staticmethod
    def potential_fn(field, params):
        """U(field) = S(field; params), a scalar."""

    @property
    def value_and_grad_fn(self) -> Callable | None:
        """``(field, params) -> (S, ∂S/∂field)`` computed analytically, or None for autodiff."""

    @property
    def force_fn(self) -> Callable | None:
        """``(field, params) -> ∂S/∂field`` computed analytically (FHMC's VJP seed), or None."""

    @staticmethod
    def measure_fn(field, params) -> dict:
        """The per-configuration observables ``{name: array}`` measured in-scan."""

    def analyse(self, observables: Mapping[str, Any], gammas: Mapping[str, Any], *, s_tau: float,
                **options) -> dict:
        """The results.json ``observables`` block ``{name: [mean, err]}`` from the measured
        series ``(num_chains, num_meas, ...)`` and the Γ-method results of :attr:`tau_observables`
        (``gammas``), derived quantities with their propagated errors."""

    def exact(self) -> dict | None:
        """Exact values of observables where known (results.json ``exact``), else None."""

    def random_field(self, key, num_chains: int, dtype=None):
        """Hot-start configurations, shape ``(num_chains, *shape)``."""

    def with_extent(self, L: int) -> "Theory":
        """The same couplings on another lattice extent (extra volumes, coarse levels)."""

    def to_dict(self) -> dict:
        """Geometry and couplings as JSON (results.json ``lattice``; the chains files' attributes)."""


def flow_family(theory):
    """The flows of ``theory`` (a theory class or object): its optional ``flow_family`` (U(1):
    :data:`trivflow.gauge.flows.U1_FLOWS`, which builds, trains from its prior, saves and loads
    gauge-equivariant flows), or None for trivflow's φ⁴ coupling flows (``trivflow.flows``)."""
    family = getattr(theory, "flow_family", None)
    return family.fget(theory) if isinstance(family, property) else family


def block_value_and_grad_fn(theory) -> Callable | None:
    """``theory``'s optional ``block_value_and_grad_fn`` (φ⁴:
    :func:`trivflow.lattice.phi4_block_value_and_grad`), for
    :func:`trivflow.hmc.fhmc_kernel`, or None for a theory without one."""
    return getattr(theory, "block_value_and_grad_fn", None)


def analysis_warnings(theory, observables: Mapping[str, Any]) -> list[str]:
    """The warnings of ``theory``'s optional ``analysis_warnings`` about the measured series
    ``{name: (num_chains, num_meas, ...)}`` of one run (U(1): the topological charge did not
    change enough to explore its sectors), or ``[]`` for a theory without one."""
    hook = getattr(theory, "analysis_warnings", None)
    return list(hook(observables)) if hook is not None else []


#: ``action=`` → the class that implements it
THEORIES: dict[str, type] = {"phi4": Phi4Theory, "free": FreeTheory, "u1": U1Theory}


def coupling_names(action: str) -> tuple[str, ...]:
    """The constructor arguments (geometry and couplings) of the theory ``action``, e.g.
    ``("L", "d", "beta", "lam")`` for φ⁴ and ``("L", "beta", "d")`` for U(1): the ``lattice.*``
    keys that theory reads."""
    if action not in THEORIES:
        raise ValueError(f"action={action!r} is invalid: expected one of {sorted(THEORIES)}")
    return tuple(f.name for f in dataclasses.fields(THEORIES[action]))


def make_theory(action: str, **couplings) -> Theory:
    """The theory ``action`` with ``couplings`` (e.g. ``L=8, d=2, beta=0.576, lam=0.5``).

    Raises ``ValueError`` naming ``action`` when no theory of that name exists."""
    if action not in THEORIES:
        raise ValueError(f"action={action!r} is invalid: expected one of {sorted(THEORIES)}")
    return THEORIES[action](**couplings)
