"""The compiled chunk of :func:`trivflow.hmc.run_chains`: vmap the kernel over chains, ``lax.scan``
over steps, measure in the scan.

Layout of one compiled chunk::

    scan over measurements (n_meas)            ← outer lax.scan
      scan over meas_every steps                ← inner lax.scan
        vmap over chains: kernel.step           ← all chains advance together
      vmap over chains: measure_fn(position)    ← observables in-scan, no host round trip

Randomness: chain c uses ``chain_key[c]`` and step t (counted from 0 including thermalization)
uses ``fold_in(chain_key[c], t)``, so the numbers do not depend on how the steps are cut into
chunks.

Compile caches (both ``functools.lru_cache`` with a ``maxsize``, like the training-step cache):
:func:`chunk_function` holds the jitted chunk per (step, measure_fn, n_meas, meas_every);
:func:`compiled` holds its ahead-of-time compilation per argument signature (shapes, dtypes,
shardings), so the driver can time compilation apart from running.
"""

from __future__ import annotations

import functools
import time
from typing import Callable

import jax
import jax.numpy as jnp


@functools.lru_cache(maxsize=64)
def chunk_function(step: Callable, measure_fn: Callable | None, n_meas: int, meas_every: int):
    """jit-compiled chunk of ``n_meas × meas_every`` steps for all chains.

    The returned ``chunk(states, chain_keys, start, params, kernel_args)`` advances the batched
    ``states`` (leading axis C, donated) by steps ``start … start + n_meas·meas_every − 1`` with
    ``step(key, state, params, *kernel_args)`` and returns ``(states, infos, observables)``: infos
    of shape (C, n_meas·meas_every), observables ``measure_fn(state.position, params)`` after
    every ``meas_every``-th step, shape (C, n_meas, ...) (``None`` without a measure_fn).
    """
    vstep = jax.vmap(lambda k, s, p, a: step(k, s, p, *a), in_axes=(0, 0, None, None))
    fold = jax.vmap(jax.random.fold_in, in_axes=(0, None))

    def chunk(states, chain_keys, start, params, kernel_args):
        def one_step(states, t):
            return vstep(fold(chain_keys, t), states, params, kernel_args)

        def one_measurement(states, m):
            ts = start + m * meas_every + jnp.arange(meas_every)
            states, infos = jax.lax.scan(one_step, states, ts)
            obs = None if measure_fn is None else jax.vmap(measure_fn, (0, None))(states.position, params)
            return states, (infos, obs)

        states, (infos, obs) = jax.lax.scan(one_measurement, states, jnp.arange(n_meas))
        # infos: (n_meas, meas_every, C) → (C, n_meas·meas_every); obs: (n_meas, C, ...) → (C, n_meas, ...)
        infos = jax.tree_util.tree_map(lambda a: jnp.moveaxis(a.reshape(-1, a.shape[-1]), -1, 0), infos)
        obs = jax.tree_util.tree_map(lambda a: jnp.moveaxis(a, 0, 1), obs)
        return states, infos, obs

    return jax.jit(chunk, donate_argnums=(0,))


def _abstract(x):
    """Shape, dtype, weak type and sharding of one argument leaf: what a compilation depends on."""
    return (jnp.shape(x), jnp.result_type(x), bool(getattr(x, "weak_type", False)), getattr(x, "sharding", None))


@functools.lru_cache(maxsize=64)
def _compile(fn, treedef, leaves: tuple):
    """``(compiled fn, seconds)`` for arguments of this signature (lowered from abstract values)."""
    structs = [jax.ShapeDtypeStruct(shape, dtype, weak_type=weak, sharding=sharding)
               for shape, dtype, weak, sharding in leaves]
    t0 = time.perf_counter()
    out = fn.lower(*jax.tree_util.tree_unflatten(treedef, structs)).compile()
    return out, time.perf_counter() - t0


def compiled(fn, args, compile_times: list[float]):
    """Ahead-of-time compile the jitted ``fn`` for the shapes (and shardings) of ``args`` once;
    the seconds of a new compilation are appended to ``compile_times``."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    misses = _compile.cache_info().misses
    out, seconds = _compile(fn, treedef, tuple(_abstract(x) for x in leaves))
    if _compile.cache_info().misses > misses:
        compile_times.append(seconds)
    return out
