"""A validated φ⁴ theory: lattice geometry plus couplings, and the potential it defines.

``Phi4Theory`` is the one place where the physics parameters are checked (docs/theory.md#action):
bad values raise ``ValueError`` naming the key and the value, before anything is compiled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax.numpy as jnp

from .phi4 import phi4_action, phi4_force


@dataclass(frozen=True)
class Phi4Theory:
    """φ⁴ on a periodic hypercubic lattice of extent ``L`` in ``d`` dimensions.

    Attributes:
        L: lattice extent (≥ 2).
        d: number of dimensions (≥ 1; the paper uses 2).
        beta: hopping coupling β (> 0 here; β = 2κ).
        lam: quartic coupling λ ≥ 0. With λ = 0 the theory is Gaussian and only
            stable for β < 1/d.
    """

    L: int
    d: int = 2
    beta: float = 0.576
    lam: float = 0.5

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
    def potential_fn(self):
        """The HMC potential U(φ) = S(φ) as a pure function of one configuration."""
        return partial(phi4_action, beta=self.beta, lam=self.lam)

    def to_dict(self) -> dict:
        return {"L": self.L, "d": self.d, "beta": self.beta, "lam": self.lam}


def validate_theory(L, d, beta, lam) -> None:
    """Raise ``ValueError`` naming the offending key and value for unphysical input."""
    if not isinstance(L, (int,)) or isinstance(L, bool) or L < 2:
        raise ValueError(f"lattice.L must be an integer >= 2, got L={L!r}")
    if not isinstance(d, int) or isinstance(d, bool) or d < 1:
        raise ValueError(f"lattice.d must be an integer >= 1, got d={d!r}")
    for key, value in (("beta", beta), ("lam", lam)):
        # math, not jnp: jnp.isfinite(1e300) is False while JAX is still in float32
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(f"lattice.{key} must be a finite number, got {key}={value!r}")
    if lam < 0:
        raise ValueError(f"lattice.lam must be >= 0 (the action is unbounded below otherwise), got lam={lam!r}")
    if beta < 0:
        raise ValueError(f"lattice.beta must be >= 0, got beta={beta!r}")
    if lam == 0 and beta >= 1.0 / d:
        raise ValueError(
            f"lattice.beta={beta!r} with lam=0 is unstable: the free theory needs beta < 1/d = {1.0 / d:.6g}"
        )
