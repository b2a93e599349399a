"""Multi-chain driver: vmap the kernel over chains, ``lax.scan`` over trajectories in chunks.

Layout of one compiled chunk::

    scan over measurements (n_meas)            ← outer lax.scan
      scan over meas_every trajectories         ← inner lax.scan
        vmap over chains: kernel.step           ← all chains advance together
      vmap over chains: measure_fn(position)    ← observables in-scan, no host round trip

The host only sees one transfer per chunk (the measured series), where it updates the
progress bar and checks for divergences.

Randomness: chain c uses ``chain_key[c] = split(key, C)[c]`` and trajectory t (counted from
0 including thermalization) uses ``fold_in(chain_key[c], t)``. Results therefore do not
depend on the chunk size, and a run can be continued from any trajectory bit for bit.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from .kernel import HMCKernel, HMCState

log = logging.getLogger(__name__)


@dataclass
class ChainResult:
    """Per-chain, per-trajectory output of :func:`run_chains`.

    Attributes:
        observables: name → array of shape ``(num_chains, num_meas, ...)``.
        delta_H, accepted, acceptance_prob, divergent: shape ``(num_chains, num_traj)``,
            the measurement phase only (thermalization excluded); ``delta_H`` and
            ``accepted`` are ``None`` for samplers without one Metropolis step (NUTS).
        final_state: the batched :class:`HMCState` after the last trajectory.
        seconds: wall time of the measurement phase (compilation excluded).
        therm_seconds, compile_seconds: wall time of thermalization and of compilation.
    """

    observables: dict[str, np.ndarray]
    delta_H: np.ndarray | None
    accepted: np.ndarray | None
    acceptance_prob: np.ndarray
    divergent: np.ndarray
    final_state: HMCState
    num_chains: int
    num_traj: int
    num_therm: int
    meas_every: int
    seconds: float
    therm_seconds: float
    compile_seconds: float
    extra: dict = field(default_factory=dict)

    @property
    def acceptance(self) -> float:
        """Fraction of accepted trajectories over all chains (measurement phase); for
        samplers without a single accept step (NUTS) the mean acceptance probability."""
        return float(np.mean(self.accepted if self.accepted is not None else self.acceptance_prob))

    @property
    def traj_per_second(self) -> float:
        """Chain-trajectories per second: num_chains · num_traj / seconds."""
        return self.num_chains * self.num_traj / self.seconds if self.seconds > 0 else float("nan")


def _check_positive_int(name: str, value, minimum: int = 1) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"sampler.{name} must be an integer >= {minimum}, got {name}={value!r}")


def validate_run_args(step_size, num_traj, num_therm, meas_every, chunk_size) -> None:
    """Raise ``ValueError`` naming the key and value for nonsensical driver arguments."""
    if not np.isscalar(step_size) or not np.isfinite(step_size) or step_size <= 0:
        raise ValueError(f"sampler.step_size must be a positive finite number, got step_size={step_size!r}")
    _check_positive_int("num_traj", num_traj)
    _check_positive_int("num_therm", num_therm, minimum=0)
    _check_positive_int("meas_every", meas_every)
    _check_positive_int("chunk_size", chunk_size)
    if num_traj % meas_every:
        raise ValueError(
            f"sampler.num_traj={num_traj} must be a multiple of sampler.meas_every={meas_every}"
        )


@functools.lru_cache(maxsize=64)
def _chunk_function(step: Callable, measure_fn: Callable | None, n_meas: int, meas_every: int):
    """jit-compiled chunk of ``n_meas × meas_every`` trajectories for all chains."""
    vstep = jax.vmap(step, in_axes=(0, 0, None, None))
    fold = jax.vmap(jax.random.fold_in, in_axes=(0, None))

    def one_trajectory(params, step_size, chain_keys, states, t):
        states, info = vstep(fold(chain_keys, t), states, params, step_size)
        return states, info

    def chunk(states, chain_keys, start, params, step_size):
        def one_measurement(states, m):
            ts = start + m * meas_every + jnp.arange(meas_every)
            states, infos = jax.lax.scan(
                functools.partial(one_trajectory, params, step_size, chain_keys), states, ts
            )
            obs = None if measure_fn is None else jax.vmap(measure_fn, (0, None))(states.position, params)
            return states, (infos, obs)

        states, (infos, obs) = jax.lax.scan(one_measurement, states, jnp.arange(n_meas))
        # infos: (n_meas, meas_every, C) → (C, n_meas·meas_every); obs: (n_meas, C, ...) → (C, n_meas, ...)
        infos = jax.tree_util.tree_map(lambda a: jnp.moveaxis(a.reshape(-1, a.shape[-1]), -1, 0), infos)
        obs = jax.tree_util.tree_map(lambda a: jnp.moveaxis(a, 0, 1), obs)
        return states, infos, obs

    return jax.jit(chunk, donate_argnums=(0,))


_COMPILED: dict = {}


def _compiled(fn, args, compile_times: list[float]):
    """Ahead-of-time compile ``fn`` for the shapes of ``args`` once, timing the compilation."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    signature = (fn, treedef, tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves))
    if signature not in _COMPILED:
        t0 = time.perf_counter()
        _COMPILED[signature] = fn.lower(*args).compile()
        compile_times.append(time.perf_counter() - t0)
    return _COMPILED[signature]


def _run_phase(kernel, measure_fn, states, chain_keys, params, step_size, start, n_traj,
               meas_every, chunk_meas, bar, compile_times):
    """Run ``n_traj`` trajectories from trajectory index ``start``; returns collected series."""
    infos_all, obs_all = [], []
    done = 0
    while done < n_traj:
        n_meas = min(chunk_meas, (n_traj - done) // meas_every)
        fn = _chunk_function(kernel.step, measure_fn, n_meas, meas_every)
        args = (states, chain_keys, jnp.asarray(start + done), params, step_size)
        compiled = _compiled(fn, args, compile_times)
        states, infos, obs = compiled(*args)
        infos = jax.tree_util.tree_map(np.asarray, infos)
        infos_all.append(infos)
        if obs is not None:
            obs_all.append(jax.tree_util.tree_map(np.asarray, obs))
        n_div = int(np.sum(infos.divergent))
        if n_div:
            log.warning("%d divergent trajectories in trajectories %d..%d (rejected); consider a smaller step size",
                        n_div, start + done, start + done + n_meas * meas_every)
        done += n_meas * meas_every
        if bar is not None:
            bar.update(n_meas * meas_every)
            bar.set_postfix(acc=f"{float(np.mean(infos.accepted)):.3f}")
    return states, infos_all, obs_all


def run_chains(
    key,
    kernel: HMCKernel,
    positions,
    params=None,
    *,
    step_size: float,
    num_traj: int,
    num_therm: int = 0,
    meas_every: int = 1,
    measure_fn: Callable | None = None,
    chunk_size: int = 1000,
    progress: bool = True,
    desc: str = "HMC",
    chain_keys=None,
) -> ChainResult:
    """Run ``num_chains`` independent HMC chains, vmapped, for ``num_therm + num_traj`` trajectories.

    Args:
        key: PRNG key; chain c and trajectory t use ``fold_in(split(key, C)[c], t)``.
        kernel: from :func:`trivflow.hmc.build_kernel`.
        positions: initial configurations, shape ``(num_chains, *lattice)``; their dtype is the
            working precision (use float64).
        params: pytree passed to the potential and to ``measure_fn`` (a jit argument).
        step_size: ε; trajectory length is ε · num_steps.
        num_traj: trajectories per chain after thermalization (a multiple of ``meas_every``).
        num_therm: thermalization trajectories per chain, not recorded.
        meas_every: measure after every ``meas_every``-th trajectory.
        measure_fn: ``(position, params) -> pytree of arrays`` measured in-scan on one
            configuration, e.g. φ⁴ observables.
        chunk_size: trajectories per compiled chunk (rounded down to a multiple of
            ``meas_every``); the host is visited once per chunk.
        progress: show a progress bar per phase.
        chain_keys: optional per-chain keys, shape ``(num_chains,)``, replacing
            ``split(key, C)`` (to reproduce a subset of chains, or to continue a run).

    Returns:
        :class:`ChainResult` with NumPy series of shape ``(num_chains, num_meas, ...)``.
    """
    validate_run_args(step_size, num_traj, num_therm, meas_every, chunk_size)
    positions = jnp.array(positions, copy=True)  # the driver donates its buffers: never the caller's
    num_chains = positions.shape[0]
    if chain_keys is None:
        chain_keys = jax.random.split(key, num_chains)
    elif len(chain_keys) != num_chains:
        raise ValueError(f"chain_keys has {len(chain_keys)} keys for {num_chains} chains")
    step_size = jnp.asarray(step_size, dtype=positions.dtype)
    chunk_meas = max(1, chunk_size // meas_every)
    states = jax.vmap(kernel.init, in_axes=(0, None))(positions, params)
    compile_times: list[float] = []

    therm_seconds = 0.0
    if num_therm:
        bar = tqdm(total=num_therm, desc=f"{desc} therm", disable=not progress, leave=False)
        t0 = time.perf_counter()
        states, _, _ = _run_phase(kernel, None, states, chain_keys, params, step_size, 0, num_therm,
                                  1, max(1, chunk_size), bar, compile_times)
        therm_seconds = time.perf_counter() - t0 - sum(compile_times)
        bar.close()

    n_compile_before = len(compile_times)
    bar = tqdm(total=num_traj, desc=desc, disable=not progress)
    t0 = time.perf_counter()
    states, infos, obs = _run_phase(kernel, measure_fn, states, chain_keys, params, step_size,
                                    num_therm, num_traj, meas_every, chunk_meas, bar, compile_times)
    seconds = time.perf_counter() - t0 - sum(compile_times[n_compile_before:])
    bar.close()

    infos = jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=1), *infos)
    observables = {}
    if obs:
        observables = jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=1), *obs)
    return ChainResult(
        observables=observables,
        delta_H=infos.delta_H,
        accepted=infos.accepted,
        acceptance_prob=infos.acceptance_prob,
        divergent=infos.divergent,
        final_state=states,
        num_chains=num_chains,
        num_traj=num_traj,
        num_therm=num_therm,
        meas_every=meas_every,
        seconds=seconds,
        therm_seconds=therm_seconds,
        compile_seconds=sum(compile_times),
    )


def random_positions(key, num_chains: int, shape: tuple[int, ...], dtype=None) -> jnp.ndarray:
    """Hot start: independent N(0, 1) configurations, shape ``(num_chains, *shape)``."""
    dtype = dtype or (jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    return jax.random.normal(key, (num_chains, *shape), dtype)
