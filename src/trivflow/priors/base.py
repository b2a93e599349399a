"""The prior interface r(z) of physics.md §5 and the Gaussian prior."""

from __future__ import annotations

import dataclasses
import math
from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp


@runtime_checkable
class Prior(Protocol):
    """A distribution r(z) of the trivial variable z, one configuration of shape ``shape``.

    Implementations are immutable, hold no keys, and are closed over by jitted code
    (array-valued state, e.g. a coarse ensemble, must be a pytree or a constant).

    * ``sample(key, batch_size)`` → z of shape ``(batch_size,) + shape``;
    * ``log_prob(z)`` → scalar log r(z) for ONE configuration ``z.shape == shape``; vmap it
      for batches. Normalised where the density is known in closed form (Gaussian); priors
      defined through an action (coarse theory) may drop a z-independent constant, which
      shifts the training loss but not its gradient, the ESS or the MH acceptance.
    """

    shape: tuple[int, ...]

    def sample(self, key: jax.Array, batch_size: int) -> jnp.ndarray: ...

    def log_prob(self, z: jnp.ndarray) -> jnp.ndarray: ...


def _check_shape(shape) -> tuple[int, ...]:
    try:
        shape = tuple(shape)
    except TypeError:
        raise ValueError(f"prior shape must be a sequence of positive integers, got shape={shape!r}") from None
    if not shape or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape):
        raise ValueError(f"prior shape must be a non-empty sequence of positive integers, got shape={shape!r}")
    return shape


def _check_batch_size(batch_size) -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got batch_size={batch_size!r}")
    return batch_size


@dataclasses.dataclass(frozen=True)
class GaussianPrior:
    """r(z) = Π_x N(z_x; 0, 1):  log r(z) = −½ Σ_x z_x² − (V/2) log 2π,  V = prod(shape).

    Args:
        shape: shape of one configuration, e.g. ``(L, L)``.
        dtype: sample dtype; ``None`` is the default float of the JAX config (float64 when
            ``jax_enable_x64`` is on).
    """

    shape: tuple[int, ...]
    dtype: object = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _check_shape(self.shape))

    @property
    def volume(self) -> int:
        return math.prod(self.shape)

    def _dtype(self):
        return jax.dtypes.canonicalize_dtype(jnp.float64 if self.dtype is None else self.dtype)

    def sample(self, key: jax.Array, batch_size: int) -> jnp.ndarray:
        """z ~ N(0, 1) per site, shape ``(batch_size,) + shape``."""
        return jax.random.normal(key, (_check_batch_size(batch_size),) + self.shape, self._dtype())

    def log_prob(self, z: jnp.ndarray) -> jnp.ndarray:
        """Normalised log r(z) of ONE configuration (scalar); vmap for batches."""
        if tuple(jnp.shape(z)) != self.shape:
            raise ValueError(
                f"GaussianPrior.log_prob takes ONE configuration of shape {self.shape}, got shape "
                f"{tuple(jnp.shape(z))} (vmap over a batch)"
            )
        return -0.5 * jnp.sum(z * z) - 0.5 * self.volume * math.log(2.0 * math.pi)
