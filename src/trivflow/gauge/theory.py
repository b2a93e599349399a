"""2D U(1) Wilson gauge theory as an implementation of :class:`trivflow.theory.Theory` (``action=u1``).

The field is the array of link angles, shape ``(2, L, L)`` (:mod:`trivflow.gauge.u1` for the
conventions); the couplings ``params = {"beta"}`` are a jit argument (:meth:`U1Theory.params`), so
a new β never recompiles. Exact plaquette, Wilson loops, ⟨Q²⟩ and χ_t at every finite L and β come
from :mod:`trivflow.gauge.exact`, so every run reports them beside the measured values (as the
free theory's exact block does for φ⁴).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp

from ..errors import must_be
from .tunnelling import change_rate, frozen_charge_warning
from .u1 import WILSON_LOOPS, u1_observables, wilson_action, wilson_force


def u1_potential(theta, params):
    """U(θ) = S(θ; β) = −β Σ_P cos θ_P for one configuration; ``params = {"beta"}``."""
    return wilson_action(theta, params["beta"])


def u1_value_and_grad(theta, params):
    """(S, ∂S/∂θ) with the analytic force (one pass, no autodiff)."""
    return u1_potential(theta, params), wilson_force(theta, params["beta"])


def u1_force_fn(theta, params):
    """∂S/∂θ for ``params = {"beta"}`` (the analytic force, FHMC's VJP seed)."""
    return wilson_force(theta, params["beta"])


def u1_measure(theta, params):
    """In-scan observables (:func:`trivflow.gauge.u1.u1_observables`); ``params`` unused."""
    del params
    return u1_observables(theta)


def validate_u1(L, d, beta) -> None:
    """Raise :class:`~trivflow.errors.ParameterError` naming the parameter and value for input the
    U(1) theory cannot take: L an integer ≥ 2, d = 2, β a finite number > 0."""
    if not isinstance(L, int) or isinstance(L, bool) or L < 2:
        raise must_be("L", L, "an integer >= 2")
    if d != 2 or isinstance(d, bool):
        raise must_be("d", d, "2 (the U(1) gauge theory is implemented in two dimensions)")
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not math.isfinite(beta):
        raise must_be("beta", beta, "a finite number")
    if not beta > 0:
        raise must_be("beta", beta, "> 0 (the Wilson action's coupling beta = 1/g^2)")


@dataclass(frozen=True)
class U1Theory:
    """Compact U(1) gauge theory with the Wilson action on a periodic L × L lattice
    (docs/theory.md#u1), a :class:`trivflow.theory.Theory`.

    Attributes:
        L: lattice extent (≥ 2); V = L² plaquettes, 2V links.
        beta: the coupling β = 1/g² > 0 of S = −β Σ_P cos θ_P.
        d: number of dimensions, 2 (the only one implemented; kept so that the geometry reads
            as φ⁴'s).
    """

    L: int
    beta: float = 2.0
    d: int = 2

    name = "u1"
    primary_observable = "Q"
    tau_observables = ("Q", "Q2", "plaquette")
    headline = ("plaquette", "Q2", "chi_t")
    observable_dims = {}

    potential_fn = staticmethod(u1_potential)
    measure_fn = staticmethod(u1_measure)
    value_and_grad_fn = staticmethod(u1_value_and_grad)
    force_fn = staticmethod(u1_force_fn)

    def __post_init__(self) -> None:
        validate_u1(self.L, self.d, self.beta)

    @property
    def flow_family(self):
        """The gauge-equivariant flows of this theory (:data:`trivflow.gauge.flows.U1_FLOWS`):
        the application builds, trains, saves and loads its flows through it."""
        from .flows import U1_FLOWS

        return U1_FLOWS

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one configuration of link angles, ``(2, L, L)`` (direction first)."""
        return (2, self.L, self.L)

    @property
    def volume(self) -> int:
        """Number of sites (= plaquettes) V = L², the normalisation of χ_t = ⟨Q²⟩/V."""
        return self.L * self.L

    def params(self, dtype=None) -> dict:
        """``{"beta"}`` as an array (a jit argument: no recompiles for a new β)."""
        return {"beta": jnp.asarray(self.beta, dtype)}

    def action(self, theta: jnp.ndarray) -> jnp.ndarray:
        """S(θ) for one configuration of shape ``self.shape``."""
        return wilson_action(theta, self.beta)

    def force(self, theta: jnp.ndarray) -> jnp.ndarray:
        """∂S/∂θ for one configuration, shape ``self.shape``."""
        return wilson_force(theta, self.beta)

    @property
    def action_fn(self):
        """S(θ) with β bound, one configuration (training's target)."""
        return partial(wilson_action, beta=self.beta)

    def random_field(self, key, num_chains: int, dtype=None) -> jnp.ndarray:
        """Hot start: links uniform (Haar) in [−π, π), shape ``(num_chains, 2, L, L)``."""
        dtype = dtype or (jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
        return jax.random.uniform(key, (num_chains, *self.shape), dtype, -math.pi, math.pi)

    def with_extent(self, L: int) -> "U1Theory":
        """The same β on an L × L lattice."""
        return type(self)(L=L, beta=self.beta, d=self.d)

    def exact(self) -> dict:
        """Exact ⟨cos θ_P⟩ (``plaquette``), ⟨Q²⟩ (``Q2``), χ_t = ⟨Q²⟩/V and the Wilson loops
        ``W_RxT`` of :data:`~trivflow.gauge.u1.WILSON_LOOPS` at this L and β
        (:mod:`trivflow.gauge.exact`). ⟨Q⟩ = 0 by the symmetry θ → −θ."""
        from . import exact

        q2 = exact.q2(self.L, self.beta)
        out = {"plaquette": exact.plaquette(self.L, self.beta), "Q": 0.0, "Q2": q2, "chi_t": q2 / self.volume}
        for R, T in WILSON_LOOPS:
            if R * T <= self.volume:
                out[f"W_{R}x{T}"] = exact.wilson_loop(self.L, self.beta, R * T)
        return out

    def analyse(self, observables, gammas, *, s_tau: float = 4.0, **options) -> dict:
        """The results.json ``observables`` block, each ``[mean, err]`` with Γ-method errors:
        ``plaquette``, ``Q``, ``Q2``, ``chi_t`` = ⟨Q²⟩/V and the Wilson loops ``W_RxT``; and
        ``Q_change_rate``, the changes of rint(Q) between consecutive measurements (per trajectory,
        or independence-MH step, at the default ``sampler.meas_every = 1``) with the error of
        :func:`trivflow.gauge.tunnelling.change_rate` (not a Γ-method error).

        Args:
            observables: measured series, ``(num_chains, num_meas)`` each.
            gammas: :class:`~trivflow.analysis.GammaResult` of Q, Q2, plaquette.
            options: analysis options of other theories (φ⁴'s ``plateau``), ignored.
        """
        from ..analysis import gamma_method, json_float

        del options
        V, q2 = self.volume, gammas["Q2"]
        out = {"plaquette": gammas["plaquette"].mean_err(), "Q": gammas["Q"].mean_err(), "Q2": q2.mean_err(),
               "chi_t": [json_float(q2.mean / V), json_float(q2.err / V)],
               "Q_change_rate": [json_float(x) for x in change_rate(observables["Q"])]}
        for R, T in WILSON_LOOPS:
            name = f"W_{R}x{T}"
            if name in observables:
                out[name] = gamma_method(observables[name], s_tau=s_tau).mean_err()
        return out

    @staticmethod
    def analysis_warnings(observables) -> list[str]:
        """A warning when some chain's integer charge changed fewer than
        :data:`~trivflow.gauge.tunnelling.MIN_CHANGES_PER_CHAIN` times
        (:func:`~trivflow.gauge.tunnelling.frozen_charge_warning`), else ``[]``."""
        return frozen_charge_warning(observables["Q"])

    def to_dict(self) -> dict:
        return {"L": self.L, "d": self.d, "beta": self.beta}
