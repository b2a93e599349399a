"""The prior interface r(z) of docs/theory.md#priors and the Gaussian prior."""

from __future__ import annotations

import dataclasses
import math
from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from ..draws import normal_draw


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


def register_prior(data_fields: tuple[str, ...] = ()):
    """Class decorator: make a frozen-dataclass prior a JAX pytree.

    The ``data_fields`` (arrays, e.g. an ensemble of configurations) become leaves and every
    other field static aux data (must be hashable). Jitted code can then take the prior as an
    *argument*: an ensemble closed over by ``jit`` would be embedded in the compiled program
    as a constant (a 200 MB ensemble: 11 s of compilation and a 400 MB program on CPU).
    Unflattening bypasses ``__init__``/``__post_init__`` (JAX may unflatten with placeholders).
    """

    def wrap(cls):
        meta_fields = tuple(f.name for f in dataclasses.fields(cls) if f.name not in data_fields)

        def flatten(prior):
            return [getattr(prior, f) for f in data_fields], tuple(getattr(prior, f) for f in meta_fields)

        def unflatten(meta, data):
            prior = object.__new__(cls)
            for name, value in (*zip(meta_fields, meta), *zip(data_fields, data)):
                object.__setattr__(prior, name, value)
            return prior

        jax.tree_util.register_pytree_node(cls, flatten, unflatten)
        return cls

    return wrap


@dataclasses.dataclass(frozen=True, eq=False)
class _StaticPrior:
    """A prior that is not a pytree, carried as static aux data (closed over by jitted code);
    it must be hashable. Delegates the :class:`Prior` interface."""

    prior: object

    @property
    def shape(self) -> tuple[int, ...]:
        return self.prior.shape

    def sample(self, key, batch_size):
        return self.prior.sample(key, batch_size)

    def log_prob(self, z):
        return self.prior.log_prob(z)


jax.tree_util.register_pytree_node(_StaticPrior, lambda p: ((), p.prior), lambda prior, _: _StaticPrior(prior))


def as_pytree(prior):
    """``prior`` itself when it is a registered pytree (:func:`register_prior`), else wrapped so
    that it can be passed to jitted functions as an argument (as static data)."""
    leaves = jax.tree_util.tree_leaves(prior)
    if len(leaves) == 1 and leaves[0] is prior:
        return _StaticPrior(prior)
    return prior


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


@register_prior()
@dataclasses.dataclass(frozen=True)
class GaussianPrior:
    """r(z) = Π_x N(z_x; 0, 1):  log r(z) = −½ Σ_x z_x² − (V/2) log 2π,  V = prod(shape).

    Args:
        shape: shape of one configuration, e.g. ``(L, L)``.
        dtype: sample dtype; ``None`` is the default float of the JAX config (float64 when
            ``jax_enable_x64`` is on).
        draw: the random stream of :meth:`sample`, one of :data:`trivflow.draws.NORMAL_DRAWS`
            (``prior.draw``): ``"threefry"`` (default, ``jax.random.normal``), ``"rbg"`` or
            ``"float32"`` (float32 normals cast up: training at L = 8, batch 500 in float64
            ≈ 1.2× the steps per second; N(0, 1) rounded to 24 bits, so z is a draw from r to
            ≈ 6·10⁻⁸ relative and log r(z) is exact for the z drawn). See :mod:`trivflow.draws`.
    """

    shape: tuple[int, ...]
    dtype: object = None
    draw: str = "threefry"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _check_shape(self.shape))
        normal_draw(self.draw, key_name="draw")  # a bad name fails here, not at the first sample

    @property
    def volume(self) -> int:
        return math.prod(self.shape)

    def _dtype(self):
        return jax.dtypes.canonicalize_dtype(jnp.float64 if self.dtype is None else self.dtype)

    def sample(self, key: jax.Array, batch_size: int) -> jnp.ndarray:
        """z ~ N(0, 1) per site, shape ``(batch_size,) + shape``, from the stream ``draw``."""
        return normal_draw(self.draw)(key, (_check_batch_size(batch_size),) + self.shape, self._dtype())

    def log_prob(self, z: jnp.ndarray) -> jnp.ndarray:
        """Normalised log r(z) of ONE configuration (scalar); vmap for batches."""
        if tuple(jnp.shape(z)) != self.shape:
            raise ValueError(
                f"GaussianPrior.log_prob takes ONE configuration of shape {self.shape}, got shape "
                f"{tuple(jnp.shape(z))} (vmap over a batch)"
            )
        return -0.5 * jnp.sum(z * z) - 0.5 * self.volume * math.log(2.0 * math.pi)
