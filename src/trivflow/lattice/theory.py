"""φ⁴ and the free theory as implementations of :class:`trivflow.theory.Theory`.

``Phi4Theory`` is the one place where the φ⁴ physics parameters are checked
(docs/theory.md#action): bad values raise ``ValueError`` naming the parameter and the value, before
anything is compiled. The functions handed to compiled code (:func:`phi4_potential`,
:func:`phi4_value_and_grad`, :func:`phi4_force_fn`, :func:`phi4_measure`) are module-level and take
the couplings as ``params = {"beta", "lam"}`` (:meth:`Phi4Theory.params`), jit arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..dtypes import default_float
from ..errors import ParameterError, must_be
from .observables import default_plateau, effective_mass, phi4_observables
from .phi4 import block_phi4_value_and_grad, phi4_action, phi4_force


def phi4_potential(phi, params):
    """U(φ) = S(φ; β, λ) for one configuration; ``params = {"beta", "lam"}``."""
    return phi4_action(phi, params["beta"], params["lam"])


def phi4_value_and_grad(phi, params):
    """(S, ∂S/∂φ) with the analytic force (one pass, no autodiff)."""
    return phi4_potential(phi, params), phi4_force(phi, params["beta"], params["lam"])


def phi4_force_fn(phi, params):
    """∂S/∂φ for ``params = {"beta", "lam"}`` (the analytic force, for FHMC's VJP seed)."""
    return phi4_force(phi, params["beta"], params["lam"])


def phi4_block_value_and_grad(blocks, params):
    """(S, ∂S/∂φ as blocks) of a 2D field given by its 2×2 blocks (FHMC's force inside the
    coupling flows' block layout, :func:`trivflow.lattice.phi4.block_phi4_value_and_grad`)."""
    return block_phi4_value_and_grad(blocks, params["beta"], params["lam"])


def phi4_measure(phi, params):
    """In-scan observables of docs/theory.md#observables (``params`` unused, kept for the driver signature)."""
    del params
    return phi4_observables(phi)


def xi_from_means(means: np.ndarray, plateau: tuple[int, int]) -> float:
    """ξ = 1/m̄ from the vector of means ``[c(0), …, c(L/2), M]``.

    C(t) = ⟨c(t)⟩ − ⟨M⟩² is the connected correlator; m̄ the mean of m_eff(t) over the
    plateau. Returns NaN when the effective mass is undefined (noise-dominated C).
    """
    c = means[:-1] - means[-1] ** 2
    t_min, t_max = plateau
    m = effective_mass(c)[t_min - 1 : t_max]
    m_bar = np.mean(m)
    return float(1.0 / m_bar) if np.isfinite(m_bar) and m_bar > 0 else float("nan")


def correlation_length(correlator: np.ndarray, magnetization: np.ndarray, L: int,
                       plateau: tuple[int, int] | None = None, s_tau: float = 4.0):
    """ξ with its Γ-method error from per-chain series ``c(t)`` (R, N, L/2+1) and ``M`` (R, N).

    Returns None where ξ is undefined: L < 4 (no effective mass), or a correlator whose
    plateau is noise (arccosh argument < 1), as in very short runs.
    """
    from ..analysis import derived

    if L < 4:
        return None
    plateau = plateau or default_plateau(L)
    data = [correlator[..., t] for t in range(correlator.shape[-1])] + [magnetization]
    means = np.array([np.mean(a) for a in data])
    if not np.isfinite(xi_from_means(means, plateau)):
        return None
    try:
        return derived(lambda m: xi_from_means(np.asarray(m), plateau), data, s_tau=s_tau)
    except ValueError:  # f non-finite within a finite-difference step: ξ at the edge of definition
        return None


@dataclass(frozen=True)
class Phi4Theory:
    """φ⁴ on a periodic hypercubic lattice of extent ``L`` in ``d`` dimensions
    (docs/theory.md#action), a :class:`trivflow.theory.Theory`.

    Attributes:
        L: lattice extent (≥ 2).
        d: number of dimensions (≥ 1; the paper uses 2).
        beta: hopping coupling β (≥ 0 here; β = 2κ).
        lam: quartic coupling λ ≥ 0. With λ = 0 the theory is Gaussian and only
            stable for β < 1/d; it then reports the exact free-theory values too.
    """

    L: int
    d: int = 2
    beta: float = 0.576
    lam: float = 0.5

    name = "phi4"
    primary_observable = "M"
    tau_observables = ("M", "absM", "M2")
    headline = ("chi", "absM", "G0", "xi")
    observable_dims = {"C": ("t",)}

    potential_fn = staticmethod(phi4_potential)
    measure_fn = staticmethod(phi4_measure)
    value_and_grad_fn = staticmethod(phi4_value_and_grad)
    force_fn = staticmethod(phi4_force_fn)
    #: (S, ∂S/∂φ) of a 2D field given by its blocks: FHMC with a coupling flow uses it
    #: (:func:`trivflow.hmc.fhmc_kernel`); flows act on d = 2 only
    block_value_and_grad_fn = staticmethod(phi4_block_value_and_grad)

    def __post_init__(self) -> None:
        validate_theory(self.L, self.d, self.beta, self.lam)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one configuration, ``(L,) * d``."""
        return (self.L,) * self.d

    @property
    def volume(self) -> int:
        """Number of sites V = L^d."""
        return self.L**self.d

    def params(self, dtype=None) -> dict:
        """The potential's parameters ``{"beta", "lam"}`` as arrays (jit arguments, no recompiles)."""
        return {"beta": jnp.asarray(self.beta, dtype), "lam": jnp.asarray(self.lam, dtype)}

    def action(self, phi: jnp.ndarray) -> jnp.ndarray:
        """S(φ) for one configuration of shape ``self.shape``."""
        return phi4_action(phi, self.beta, self.lam)

    def force(self, phi: jnp.ndarray) -> jnp.ndarray:
        """∂S/∂φ for one configuration, shape ``self.shape``."""
        return phi4_force(phi, self.beta, self.lam)

    def action_and_force(self, phi: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """(S(φ), ∂S/∂φ) from the analytic force (cheaper than autodiff)."""
        return self.action(phi), self.force(phi)

    @property
    def action_fn(self):
        """S(φ) with the couplings bound, one configuration (training's target)."""
        return partial(phi4_action, beta=self.beta, lam=self.lam)

    def random_field(self, key, num_chains: int, dtype=None) -> jnp.ndarray:
        """Hot start: independent N(0, 1) configurations, shape ``(num_chains, *shape)``; ``dtype``
        None: float64 (float32 with a :class:`~trivflow.dtypes.Float32Default` warning when x64 is off)."""
        dtype = dtype or default_float(f"{type(self).__name__}.random_field")
        return jax.random.normal(key, (num_chains, *self.shape), dtype)

    def with_extent(self, L: int) -> "Phi4Theory":
        """The same couplings on an L^d lattice."""
        return type(self)(**{**self.to_dict(), "L": L})

    def exact(self) -> dict | None:
        """Exact G0 = ⟨φ²⟩, chi = V⟨M²⟩ = 1/Â(0) and ξ = 1/m of the free theory (λ = 0,
        docs/theory.md#action) on this lattice; None for λ ≠ 0. ξ is the effective-mass value,
        which for the free field equals 1/m on any plateau (one pole), so it is comparable to
        the measured ξ for L ≥ 4."""
        if self.lam != 0:
            return None
        from . import free

        L, d, beta = self.L, self.d, self.beta
        return {"G0": free.phi2(L, d, beta), "chi": free.chi(L, d, beta),
                "xi": 1.0 / free.mass(d, beta) if L >= 4 else None}

    def analyse(self, observables, gammas, *, s_tau: float = 4.0, plateau: tuple[int, int] | None = None) -> dict:
        """The results.json ``observables`` block, each ``[mean, err]``: M, M2, absM,
        chi = V⟨M²⟩, chi_connected = V(⟨M²⟩ − ⟨M⟩²), G0 and xi (effective mass over ``plateau``,
        default :func:`~trivflow.lattice.observables.default_plateau`), with Γ-method errors and
        Wolff's linearised propagation for the derived ones.

        Args:
            observables: measured series, ``(num_chains, num_meas[, L/2+1])``.
            gammas: :class:`~trivflow.analysis.GammaResult` of M, absM, M2.
        """
        from ..analysis import derived, gamma_method, json_float

        V, obs = self.volume, observables
        m, abs_m, m2 = gammas["M"], gammas["absM"], gammas["M2"]
        g0 = gamma_method(obs["G0"], s_tau=s_tau)
        chi_conn = derived(lambda a: V * (a[1] - a[0] ** 2), [obs["M"], obs["M2"]], s_tau=s_tau)
        xi = correlation_length(obs["C"], obs["M"], self.L, plateau, s_tau)
        return {
            "M": m.mean_err(),
            "M2": m2.mean_err(),
            "absM": abs_m.mean_err(),
            "chi": [json_float(V * m2.mean), json_float(V * m2.err)],
            "chi_connected": chi_conn.mean_err(),
            "G0": g0.mean_err(),
            "xi": xi.mean_err() if xi is not None else [None, None],
        }

    def to_dict(self) -> dict:
        return {"L": self.L, "d": self.d, "beta": self.beta, "lam": self.lam}


@dataclass(frozen=True)
class FreeTheory(Phi4Theory):
    """The free theory (``action=free``): φ⁴ at λ = 0, Gaussian and exactly solvable
    (docs/theory.md#action); stable for β < 1/d. Its results carry the exact ⟨φ²⟩, χ and ξ."""

    lam: float = 0.0
    name = "free"

    def __post_init__(self) -> None:
        if self.lam != 0:
            raise must_be("lam", self.lam, "0 in the free theory (it has no quartic term)")
        super().__post_init__()


def validate_theory(L, d, beta, lam) -> None:
    """Raise :class:`~trivflow.errors.ParameterError` naming the parameter and value for unphysical input."""
    if not isinstance(L, (int,)) or isinstance(L, bool) or L < 2:
        raise must_be("L", L, "an integer >= 2")
    if not isinstance(d, int) or isinstance(d, bool) or d < 1:
        raise must_be("d", d, "an integer >= 1")
    for key, value in (("beta", beta), ("lam", lam)):
        # math, not jnp: jnp.isfinite(1e300) is False while JAX is still in float32
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise must_be(key, value, "a finite number")
    if lam < 0:
        raise must_be("lam", lam, ">= 0 (the action is unbounded below otherwise)")
    if beta < 0:
        raise must_be("beta", beta, ">= 0")
    if lam == 0 and beta >= 1.0 / d:
        raise ParameterError(f"{{beta}}={beta!r} with lam=0 is unstable: the free theory needs beta < 1/d = "
                             f"{1.0 / d:.6g}", "beta")
