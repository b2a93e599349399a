"""The activation functions of the coupling conditioners, by name (docs/theory.md#flows).

Z₂ equivariance g(−z) = −g(z) of a coupling flow holds when every activation is odd (tanh,
softsign, hard_tanh, identity): the convolutions have no bias, so s(−z) = −s(z), t(−z) = −t(z),
and the coupling uses |s|. Non-odd activations (relu, leaky_relu, silu, gelu) break it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

#: name → activation. Only the odd ones (:data:`ODD_ACTIVATIONS`) keep g Z₂-equivariant.
#: Written with lax/jnp primitives (``jax.nn`` wraps each in its own ``jit``, which costs a
#: compilation per shape when flows run eagerly).
ACTIVATIONS = {
    "tanh": jnp.tanh,
    "softsign": lambda x: x / (1.0 + jnp.abs(x)),
    "hard_tanh": lambda x: jnp.clip(x, -1.0, 1.0),
    "identity": lambda x: x,
    "relu": lambda x: jnp.maximum(x, 0.0),
    "leaky_relu": lambda x: jnp.where(x >= 0, x, 0.01 * x),
    "silu": lambda x: x * jax.lax.logistic(x),
    "gelu": lambda x: 0.5 * x * (1.0 + jnp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3))),  # tanh approx.
}
#: The odd activations, act(−x) = −act(x).
ODD_ACTIVATIONS = frozenset({"tanh", "softsign", "hard_tanh", "identity"})
