"""The default float of trivflow's library calls, and the warning when it is not float64.

JAX computes in float32 unless its x64 mode is on (``jax.config.update("jax_enable_x64", True)``,
which the application does for ``precision=float64``). trivflow's physics wants float64: ΔH of an
HMC trajectory is a difference of two actions of size O(V), so in float32 it carries an error of
O(V · 1e−7), enough to bias the accept/reject step at large L (docs/troubleshooting.md#float64). A library
call that is given no dtype and would silently fall back to float32 warns (:class:`Float32Default`)
once per call site; passing ``dtype=jnp.float32`` chooses float32 deliberately and does not warn.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from .errors import must_be

__all__ = ["Float32Default", "default_float"]


class Float32Default(UserWarning):
    """A trivflow call given no dtype computes in float32 because JAX's x64 mode is off."""


def default_float(what: str):
    """The float dtype ``what`` uses when given none: float64 under x64, else float32 with a
    :class:`Float32Default` warning naming ``what`` and the two ways out."""
    if jax.config.jax_enable_x64:
        return jnp.float64
    warnings.warn(
        f"trivflow: {what} uses float32 because JAX's x64 mode is off; HMC's ΔH and the action lose "
        "precision at large volume. Call jax.config.update('jax_enable_x64', True) before any JAX "
        "computation, or pass dtype=jnp.float32 to choose float32 deliberately.",
        Float32Default, stacklevel=3)
    return jnp.float32


#: Accepted values of ``compute_dtype`` (None: compute in the dtype of the field).
COMPUTE_DTYPES = (None, "float32", "float64")


def canonical_compute_dtype(compute_dtype) -> str | None:
    """``None``, or the name in :data:`COMPUTE_DTYPES` of ``compute_dtype`` given as that name
    (``"float32"``) or as the dtype itself (``jnp.float32``, ``np.dtype("float32")``);
    ``ValueError`` naming the value otherwise."""
    if compute_dtype is None or isinstance(compute_dtype, str):
        name = compute_dtype
    elif isinstance(compute_dtype, (type, np.dtype)):  # a scalar type or dtype (any other type: 'object')
        name = np.dtype(compute_dtype).name
    else:
        name = ""
    if name not in COMPUTE_DTYPES:
        raise must_be("compute_dtype", compute_dtype, f"one of {list(COMPUTE_DTYPES)}")
    return name
