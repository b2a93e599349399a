"""Priors from coarser or less critical lattices (docs/theory.md#priors; arXiv:2310.03381).

Each prior draws members of a stored ensemble of a source theory S_c = S_{β_c, λ} (see
:mod:`trivflow.priors.ensemble`) uniformly *with replacement* inside jit, optionally with a
random global sign (``flip_sign``, an exact symmetry of S_c, so log r is unchanged; it removes
any Z₂ imbalance left by a finite ensemble), and maps them onto the training lattice:

* :class:`CoarseTheoryPrior` (``coarse_bigvol``): the members themselves, same L, β_c = β(L/2);
* :class:`InterpolationPrior` (``interp``): one (L/2)² member, bilinearly interpolated;
* :class:`Interleave4Prior` (``interp4``): four (L/2)² members interleaved on the 2×2 sublattices.

``log_prob`` is the density the prior *would* have if its members were exact draws from
e^{−S_c}; it drops log Z_c (a z-independent constant: it shifts the training loss, not its
gradient, the ESS or the MH acceptance). With a finite ensemble the samples really come from
the empirical distribution of the members, so the training ESS / MH acceptance and an
independence-MH chain with these priors are exact only in the limit of a large ensemble; FHMC
never uses the prior and is exact regardless.

Implementation notes: the ensemble array is a field of the (immutable) prior, which is a JAX
pytree (:func:`~trivflow.priors.base.register_prior`: ``configs`` a leaf, everything else static).
The training step, :func:`trivflow.training.evaluate_flow` and independence MH take the prior as
a jit *argument*, so the ensemble is never embedded in a compiled program as a constant, and one
compilation serves every ensemble of the same shape.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from ..errors import must_be
from ..lattice.phi4 import phi4_action
from .base import _check_batch_size, register_prior

# ----------------------------------------------------------------------------------------------
# pure lattice maps (2D, ONE configuration)
# ----------------------------------------------------------------------------------------------


def interleave4(cs: jnp.ndarray) -> jnp.ndarray:
    """``φ[2i+a, 2j+b] = cs[2a+b][i, j]``: four (n0, n1) fields onto one (2n0, 2n1) field.

    An exact permutation of the 4·n0·n1 numbers (log|det| = 0); inverse :func:`deinterleave4`.

    Args:
        cs: shape ``(4, n0, n1)``.
    Returns:
        shape ``(2n0, 2n1)``.
    """
    if cs.ndim != 3 or cs.shape[0] != 4:
        raise ValueError(f"interleave4 takes four 2D configurations, shape (4, n0, n1), got shape {cs.shape}")
    _, n0, n1 = cs.shape
    # [a, b, i, j] → [i, a, j, b] → row 2i+a, column 2j+b
    return cs.reshape(2, 2, n0, n1).transpose(2, 0, 3, 1).reshape(2 * n0, 2 * n1)


def deinterleave4(phi: jnp.ndarray) -> jnp.ndarray:
    """``cs[2a+b][i, j] = φ[2i+a, 2j+b]``: the inverse of :func:`interleave4`.

    Args:
        phi: shape ``(2n0, 2n1)`` (even extents).
    Returns:
        shape ``(4, n0, n1)``.
    """
    if phi.ndim != 2 or phi.shape[0] % 2 or phi.shape[1] % 2:
        raise ValueError(f"deinterleave4 takes one 2D configuration with even extents, got shape {phi.shape}")
    n0, n1 = phi.shape[0] // 2, phi.shape[1] // 2
    return phi.reshape(n0, 2, n1, 2).transpose(1, 3, 0, 2).reshape(4, n0, n1)


def interpolate2(c: jnp.ndarray) -> jnp.ndarray:
    """Periodic bilinear interpolation of a coarse (n0, n1) field onto (2n0, 2n1).

    φ[2i, 2j] = c[i, j];  φ[2i+1, 2j] = ½(c[i, j] + c[i+1, j]);  φ[2i, 2j+1] = ½(c[i, j] + c[i, j+1]);
    φ[2i+1, 2j+1] = ¼(c[i, j] + c[i+1, j] + c[i, j+1] + c[i+1, j+1]), indices mod (n0, n1).
    """
    if c.ndim != 2:
        raise ValueError(f"interpolate2 takes one 2D configuration, got shape {c.shape}")
    c_x = jnp.roll(c, -1, axis=0)  # c[i+1, j]
    c_y = jnp.roll(c, -1, axis=1)  # c[i, j+1]
    c_xy = jnp.roll(c_x, -1, axis=1)  # c[i+1, j+1]
    # sublattice (a, b) = (row offset, column offset) at index 2a+b
    return interleave4(jnp.stack([c, 0.5 * (c + c_y), 0.5 * (c + c_x), 0.25 * (c + c_x + c_y + c_xy)]))


def even_even_mask(shape) -> jnp.ndarray:
    """Boolean mask of the sites (2i, 2j) of a 2D lattice of ``shape``."""
    i, j = jnp.meshgrid(jnp.arange(shape[0]), jnp.arange(shape[1]), indexing="ij")
    return (i % 2 == 0) & (j % 2 == 0)


# ----------------------------------------------------------------------------------------------
# priors
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class _EnsemblePrior:
    """Common part: the ensemble ``configs`` (N, *coarse shape) of S_{beta, lam}."""

    configs: jnp.ndarray
    beta: float
    lam: float
    flip_sign: bool = True

    def __post_init__(self) -> None:
        configs = jnp.asarray(self.configs)
        if configs.ndim < 2 or configs.shape[0] < 1:
            raise ValueError(f"{type(self).__name__}: configs must have shape (N, *lattice) with N >= 1, "
                             f"got shape {configs.shape}")
        if not jnp.issubdtype(configs.dtype, jnp.floating):
            raise ValueError(f"{type(self).__name__}: configs must be floating point, got {configs.dtype}")
        object.__setattr__(self, "configs", configs)
        object.__setattr__(self, "beta", float(self.beta))
        object.__setattr__(self, "lam", float(self.lam))

    @property
    def coarse_shape(self) -> tuple[int, ...]:
        return tuple(self.configs.shape[1:])

    @property
    def size(self) -> int:
        return int(self.configs.shape[0])

    def coarse_action(self, c: jnp.ndarray) -> jnp.ndarray:
        """S_c(c) = S_{β_c, λ}(c) of one source configuration."""
        return phi4_action(c, self.beta, self.lam)

    def draw(self, key: jax.Array, n: int) -> jnp.ndarray:
        """n members drawn uniformly with replacement (each with a random sign if ``flip_sign``),
        shape ``(n, *coarse_shape)``."""
        key_idx, key_sign = jax.random.split(key)
        c = self.configs[jax.random.randint(key_idx, (n,), 0, self.size)]
        if self.flip_sign:
            sign = jnp.where(jax.random.bernoulli(key_sign, 0.5, (n,)), 1.0, -1.0).astype(c.dtype)
            c = c * sign.reshape((n,) + (1,) * (c.ndim - 1))
        return c

    def _check_one(self, z) -> None:
        if tuple(jnp.shape(z)) != self.shape:
            raise ValueError(f"{type(self).__name__}.log_prob takes ONE configuration of shape {self.shape}, got "
                             f"shape {tuple(jnp.shape(z))} (vmap over a batch)")


@register_prior(data_fields=("configs",))
@dataclasses.dataclass(frozen=True, eq=False)
class CoarseTheoryPrior(_EnsemblePrior):
    """Coarse theory at bigger physical volume (``prior=coarse_bigvol``):

        z ~ e^{−S_{β_c}(z)} / Z_c  on the SAME L^d lattice,   log r(z) = −S_{β_c, λ}(z)  (log Z_c dropped),

    with β_c = β(L/2) (ξ/2, i.e. twice the physical volume in units of ξ). ``configs``:
    ``(N, L, …, L)``; ``shape`` = the training lattice = ``configs.shape[1:]``.
    """

    @property
    def shape(self) -> tuple[int, ...]:
        return self.coarse_shape

    def sample(self, key: jax.Array, batch_size: int) -> jnp.ndarray:
        """Members (with random signs), shape ``(batch_size, *shape)``."""
        return self.draw(key, _check_batch_size(batch_size))

    def log_prob(self, z: jnp.ndarray) -> jnp.ndarray:
        """−S_c(z) of ONE configuration (scalar, log Z_c dropped)."""
        self._check_one(z)
        return -self.coarse_action(z)


@register_prior(data_fields=("configs",))
@dataclasses.dataclass(frozen=True, eq=False)
class InterpolationPrior(_EnsemblePrior):
    """One coarse configuration, interpolated (``prior=interp``):

        z = I(c) + ε,   c ~ e^{−S_c(c)} on (L/2)²,   I = :func:`interpolate2`,
        ε_x ~ N(0, σ²) on the 3V/4 interpolated sites (not (even, even)), ε = 0 on (even, even),

    so c = z[::2, ::2] and, since (c, ε) → z has unit Jacobian,

        log r(z) = −S_c(c) − Σ_{x ∉ ee} (z_x − I(c)_x)²/(2σ²) − (3V/4) log(σ√(2π))   (log Z_c dropped).

    ``noise`` = σ. With σ = 0 (the paper's 1-config interpolation) r is concentrated on a
    V/4-dimensional subspace and has no density on R^V: ``log_prob`` then returns −S_c(z[::2, ::2])
    (the coarse density, ignoring the off-subspace sites), which gives the right training
    *gradient* (log r carries none) but makes the loss, ESS and MH acceptance of training not
    meaningful as overlap measures; independence MH with it is refused by the pipeline.
    """

    noise: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.coarse_shape) != 2:
            raise ValueError(f"InterpolationPrior needs 2D configurations, got coarse shape {self.coarse_shape}")
        if not isinstance(self.noise, (int, float)) or not math.isfinite(self.noise) or self.noise < 0:
            raise must_be("noise", self.noise, "a finite number >= 0")
        object.__setattr__(self, "noise", float(self.noise))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(2 * n for n in self.coarse_shape)

    def sample(self, key: jax.Array, batch_size: int) -> jnp.ndarray:
        """I(c) (+ ε), shape ``(batch_size, *shape)``."""
        key_c, key_eps = jax.random.split(key)
        z = jax.vmap(interpolate2)(self.draw(key_c, _check_batch_size(batch_size)))
        if self.noise > 0:
            mask = ~even_even_mask(self.shape)
            z = z + self.noise * jax.random.normal(key_eps, z.shape, z.dtype) * mask
        return z

    def log_prob(self, z: jnp.ndarray) -> jnp.ndarray:
        """log r(z) of ONE configuration (see the class docstring; scalar)."""
        self._check_one(z)
        c = z[::2, ::2]
        log_r = -self.coarse_action(c)
        if self.noise > 0:
            resid = jnp.where(even_even_mask(self.shape), 0.0, z - interpolate2(c))
            n = 3 * math.prod(self.shape) // 4
            log_r = log_r - jnp.sum(resid * resid) / (2.0 * self.noise**2) \
                - n * (math.log(self.noise) + 0.5 * math.log(2.0 * math.pi))
        return log_r


@register_prior(data_fields=("configs",))
@dataclasses.dataclass(frozen=True, eq=False)
class Interleave4Prior(_EnsemblePrior):
    """Four independent coarse configurations interleaved (``prior=interp4``):

        z = :func:`interleave4` (c₀, c₁, c₂, c₃),  z[2i+a, 2j+b] = c_{2a+b}[i, j],  c_k ~ e^{−S_c} i.i.d.,
        log r(z) = Σ_k −S_c(c_k),  (c₀…c₃) = :func:`deinterleave4` (z)   (permutation: log det 0; log Z_c dropped).
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.coarse_shape) != 2:
            raise ValueError(f"Interleave4Prior needs 2D configurations, got coarse shape {self.coarse_shape}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(2 * n for n in self.coarse_shape)

    def sample(self, key: jax.Array, batch_size: int) -> jnp.ndarray:
        """Four independent members per sample, interleaved; shape ``(batch_size, *shape)``."""
        batch_size = _check_batch_size(batch_size)
        c = self.draw(key, 4 * batch_size).reshape(batch_size, 4, *self.coarse_shape)
        return jax.vmap(interleave4)(c)

    def log_prob(self, z: jnp.ndarray) -> jnp.ndarray:
        """Σ_k −S_c(c_k) of ONE configuration (scalar, 4 log Z_c dropped)."""
        self._check_one(z)
        return -jnp.sum(jax.vmap(self.coarse_action)(deinterleave4(z)))
