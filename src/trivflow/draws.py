"""Standard normal draws ξ ~ N(0, 1): one choice of random stream for the HMC momenta
(``sampler.momentum_draw``) and for the Gaussian prior's batches (``prior.draw``).

* ``"threefry"`` (default): ``jax.random.normal`` from the threefry key, the reference stream;
* ``"rbg"``: the same N(0, 1) transform of XLA's RngBitGenerator bits, seeded by four threefry
  words of the key (a different stream, the same distribution);
* ``"float32"``: JAX's float32 normal cast up, i.e. N(0, 1) rounded to float32's 24-bit mantissa
  (a different stream, and a relative change ≲ 6·10⁻⁸ of each number, invisible next to
  statistical errors). It skips most of the float64 erfinv and half of threefry's bits: float64
  flow training at L = 8, batch 500 runs ≈ 1.2× the steps per second with it (docs/performance.md).

Each option changes the stream only, never what is computed from it: the same key gives
other numbers, every expectation value is the same (``rbg`` exactly, ``float32`` up to that
rounding).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from .errors import must_be

#: The ``sampler.momentum_draw`` / ``prior.draw`` values (:func:`normal_draw`).
NORMAL_DRAWS = ("threefry", "rbg", "float32")


def normal_draw(name: str = "threefry", *, key_name: str = "draw") -> Callable:
    """``draw(key, shape, dtype) -> ξ ~ N(0, 1)`` for ``name`` in :data:`NORMAL_DRAWS` (module
    docstring); another name raises a ``ValueError`` naming ``key_name`` and the value."""
    if name == "threefry":
        return jax.random.normal
    if name == "rbg":
        def draw_rbg(key, shape, dtype):
            # 4 threefry words seed XLA's RngBitGenerator; the bulk draw is RBG's
            seed = jax.random.bits(key, (4,), jnp.uint32)
            return jax.random.normal(jax.random.wrap_key_data(seed, impl="rbg"), shape, dtype)
        return draw_rbg
    if name == "float32":
        def draw_float32(key, shape, dtype):
            return jax.random.normal(key, shape, jnp.float32).astype(dtype)
        return draw_float32
    raise must_be(key_name, name, f"one of {list(NORMAL_DRAWS)}")
