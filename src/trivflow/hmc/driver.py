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

Resume: with ``state_path`` the driver saves (atomically, :mod:`trivflow.state`) the batched
state, keys, trajectory counter and phase every ``save_every`` chunks, and continues from such a
file at its trajectory; chunk boundaries stay those of an uninterrupted run, so the result is
the same bit for bit. The measured series go to append-only part files beside it
(``<state>.series/part00000.npz`` …, each holding the chunks since the previous save; the state
names how many parts are valid), so a run of N chunks writes O(N) bytes, not O(N²). Each part
carries the run's fingerprint, its label (the state file's stem), its index and the range of
measured trajectories it holds, so a part that is missing, damaged, swapped with another or
copied from another sampler's series is refused (:class:`trivflow.state.DamagedFileError`).

Frozen chains: with ``min_acceptance`` the driver stops with :class:`FrozenChainsError` as soon
as a phase's acceptance over at least :data:`MIN_JUDGED` trajectories per chain (or the whole
phase, if shorter) is below it — e.g. every trajectory divergent — instead of returning the
starting configuration with error bars.

Sharding: with several devices the chain axis is split over a 1-D mesh ``("chains",)``; the
vmapped step needs no communication between chains, and each device runs the same
per-chain program, so the numbers equal a one-device run's.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from ..state import DamagedFileError, StateMismatchError, load_state, save_state
from .kernel import HMCKernel, HMCState

log = logging.getLogger(__name__)

#: Trajectories per chain after which a phase's acceptance is judged (``min_acceptance``).
MIN_JUDGED = 100


class FrozenChainsError(ValueError):
    """The chains (almost) never accept a trajectory: the run cannot sample the target.

    Attributes: ``acceptance`` (fraction accepted so far in the phase), ``num_traj``
    (trajectories per chain judged), ``num_divergent`` (in all chains), ``phase``."""

    def __init__(self, desc: str, phase: str, acceptance: float, num_traj: int, num_chains: int,
                 num_divergent: int, step_size: float | None):
        self.acceptance, self.num_traj, self.num_divergent, self.phase = acceptance, num_traj, num_divergent, phase
        self.step_size = step_size
        at = "" if step_size is None else f" at step size {step_size:g}"
        unit = "steps" if step_size is None else "trajectories"  # independence MH has no trajectories
        super().__init__(
            f"{desc}: acceptance {acceptance:.3g} in the first {num_traj} {phase} {unit} of each of "
            f"{num_chains} chains ({num_divergent} of {num_traj * num_chains} divergent){at}: the chains do "
            "not move, so no estimate of this run could be trusted")


def check_acceptance(accepted: int, total: int, divergent: int, *, num_chains: int, phase_length: int,
                     min_acceptance: float | None, desc: str, phase: str, step_size: float | None) -> None:
    """Raise :class:`FrozenChainsError` when ``accepted/total`` < ``min_acceptance`` once
    ``total/num_chains`` ≥ min(:data:`MIN_JUDGED`, ``phase_length``) trajectories per chain."""
    if not min_acceptance or total == 0:
        return
    per_chain = total // num_chains
    if per_chain >= min(MIN_JUDGED, phase_length) and accepted / total < min_acceptance:
        raise FrozenChainsError(desc, phase, accepted / total, per_chain, num_chains, divergent, step_size)


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
    """Ahead-of-time compile ``fn`` for the shapes (and shardings) of ``args`` once, timing it."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    signature = (fn, treedef, tuple((jnp.shape(x), jnp.result_type(x), getattr(x, "sharding", None))
                                    for x in leaves))
    if signature not in _COMPILED:
        t0 = time.perf_counter()
        _COMPILED[signature] = fn.lower(*args).compile()
        compile_times.append(time.perf_counter() - t0)
    return _COMPILED[signature]


def running_tau_int(series, meas_every: int = 1) -> float | None:
    """τ_int (in trajectories) of a ``(num_chains, n)`` series by the Γ-method (S_τ = 4), or
    ``None`` while there are too few data. Cheap (one FFT); for progress displays only."""
    from ..analysis import gamma_method

    series = np.asarray(series)
    if series.ndim != 2 or series.shape[1] < 8:
        return None
    try:
        return float(gamma_method(series).tau_int) * meas_every
    except ValueError:
        return None


def _postfix(bar, accepted, observables, meas_every) -> None:
    """Progress-bar postfix: acceptance so far and a running τ_int(M) when M is measured."""
    if bar is None or bar.disable:
        return
    post = {"acc": f"{float(np.mean(accepted)):.3f}"}
    if observables and "M" in observables:
        tau = running_tau_int(observables["M"], meas_every)
        if tau is not None:
            post["tau_M"] = f"{tau:.3g}"
    bar.set_postfix(post)


class _Series:
    """Per-chunk series collected on the host; concatenated along the trajectory axis."""

    def __init__(self):
        self.infos, self.obs = [], []
        self.pending = []  # (infos, obs) added since the last take_pending(): not yet in a part file

    def add(self, infos, obs, *, pending: bool = True):
        infos = jax.tree_util.tree_map(np.asarray, infos)
        obs = None if obs is None else jax.tree_util.tree_map(np.asarray, obs)
        self.infos.append(infos)
        if obs is not None:
            self.obs.append(obs)
        if pending:
            self.pending.append((infos, obs))

    def take_pending(self):
        """``(infos, observables)`` of the chunks added since the last call (concatenated, the
        observables ``{}`` without a measure_fn), or ``None`` if there are none."""
        if not self.pending:
            return None
        cat = lambda *a: np.concatenate(a, axis=1)  # noqa: E731
        infos = jax.tree_util.tree_map(cat, *(i for i, _ in self.pending))
        obs = [o for _, o in self.pending if o is not None]
        self.pending = []
        return infos, (jax.tree_util.tree_map(cat, *obs) if obs else {})

    def concat(self):
        """``(infos, observables)``: an :class:`HMCInfo` of (C, n) arrays (None if empty) and a
        dict of (C, n_meas, ...) arrays."""
        cat = lambda *a: np.concatenate(a, axis=1)  # noqa: E731
        infos = jax.tree_util.tree_map(cat, *self.infos) if self.infos else None
        obs = jax.tree_util.tree_map(cat, *self.obs) if self.obs else {}
        if len(self.infos) > 1:  # keep one concatenated block: cheaper next time
            self.infos, self.obs = [infos], ([obs] if self.obs else [])
        return infos, obs


def _run_phase(kernel, measure_fn, states, chain_keys, params, step_size, start, n_traj,
               meas_every, chunk_meas, bar, compile_times, series: _Series | None = None,
               scalar_sharding=None, on_chunk: Callable | None = None):
    """Run ``n_traj`` trajectories from trajectory index ``start`` in chunks of at most
    ``chunk_meas`` measurements; collected series go to ``series``. ``on_chunk(states, t, infos)``
    is called after every chunk with the next trajectory index t and the chunk's HMCInfo."""
    done = 0
    while done < n_traj:
        n_meas = min(chunk_meas, (n_traj - done) // meas_every)
        fn = _chunk_function(kernel.step, measure_fn, n_meas, meas_every)
        args = (states, chain_keys, _put(jnp.asarray(start + done), scalar_sharding), params, step_size)
        compiled = _compiled(fn, args, compile_times)
        states, infos, obs = compiled(*args)
        infos = jax.tree_util.tree_map(np.asarray, infos)
        n_div = int(np.sum(infos.divergent))
        if n_div:
            log.warning("%d divergent trajectories in trajectories %d..%d (rejected); consider a smaller step size",
                        n_div, start + done, start + done + n_meas * meas_every)
        done += n_meas * meas_every
        if series is not None:
            series.add(infos, obs)
        if bar is not None:
            bar.update(n_meas * meas_every)
            if series is not None and not bar.disable:
                all_infos, all_obs = series.concat()
                _postfix(bar, all_infos.accepted, all_obs, meas_every)
            else:
                _postfix(bar, infos.accepted, None, meas_every)
        if on_chunk is not None:
            on_chunk(states, start + done, infos)
    return states


def _hash_tree(tree) -> str:
    """Short SHA-1 of a pytree's leaves (values, shapes, dtypes): identifies initial positions,
    chain keys and params in a state's fingerprint without storing them there."""
    h = hashlib.sha1()
    for leaf in jax.tree_util.tree_leaves(tree):
        if hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def chain_shardings(devices, num_chains: int, what: str = "sampler.num_chains"):
    """``(chain_sharding, replicated)`` NamedShardings over a 1-D mesh ``("chains",)`` of
    ``devices`` (default: ``jax.devices()``), or ``(None, None)`` for a single device.

    Raises ``ValueError`` naming ``what`` when ``num_chains`` is not a multiple of the device count.
    """
    devs = list(jax.devices() if devices is None else devices)
    if len(devs) <= 1:
        return None, None
    if num_chains % len(devs):
        raise ValueError(
            f"{what}={num_chains} must be a multiple of the number of devices ({len(devs)}) to shard "
            f"the chains across them; change it or set sampler.shard=false (one device)"
        )
    mesh = Mesh(np.asarray(devs), ("chains",))
    return NamedSharding(mesh, P("chains")), NamedSharding(mesh, P())


def _put(tree, sharding):
    return tree if sharding is None else jax.device_put(tree, sharding)


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
    state_path: str | Path | None = None,
    save_every: int = 1,
    fingerprint: dict | None = None,
    devices=None,
    min_acceptance: float | None = None,
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
            ``meas_every``); the host is visited once per chunk. The numbers do not depend on it.
        progress: show a progress bar per phase (with the acceptance so far and, when
            ``measure_fn`` gives ``"M"``, a running Γ-method τ_int(M) in trajectories).
        chain_keys: optional per-chain keys, shape ``(num_chains,)``, replacing
            ``split(key, C)`` (to reproduce a subset of chains, or to continue a run).
        state_path: resumable state file (:mod:`trivflow.state`). Written atomically every
            ``save_every`` chunks, at the end of thermalization and at the end: batched state,
            chain keys, trajectory counter, phase, the series so far, elapsed seconds. If it
            exists at the start, the run continues from it (bit for bit equal to an
            uninterrupted run); a completed state returns its result without compute.
        save_every: chunks between state saves (``sampler.checkpoint_every``).
        fingerprint: settings the state depends on (e.g. :func:`trivflow.state.config_fingerprint`),
            stored and checked on resume together with the driver's own arguments and hashes
            of the initial positions, chain keys and params. A mismatch raises
            :class:`trivflow.state.StateMismatchError` (a ``ValueError``).
        devices: devices to shard the chain axis over (default ``jax.devices()``); with more
            than one, positions, states, keys and series are split along chains with a
            ``NamedSharding`` over a 1-D mesh and params are replicated. ``num_chains`` must
            be a multiple of their number. The numbers equal a one-device run's.
        min_acceptance: stop with :class:`FrozenChainsError` when the acceptance of the
            thermalization or the measurement phase, judged after min(:data:`MIN_JUDGED`,
            phase length) trajectories per chain and after every chunk from then on, is below
            it (None: never). The state saved so far stays on disk.

    Returns:
        :class:`ChainResult` with NumPy series of shape ``(num_chains, num_meas, ...)``;
        ``extra["resumed_at"]`` is the trajectory a resumed run continued from.
    """
    validate_run_args(step_size, num_traj, num_therm, meas_every, chunk_size)
    _check_positive_int("checkpoint_every", save_every)
    positions = jnp.array(positions, copy=True)  # the driver donates its buffers: never the caller's
    num_chains = positions.shape[0]
    chain_sh, replicated = chain_shardings(devices, num_chains)
    if chain_keys is None:
        chain_keys = jax.random.split(key, num_chains)
    elif len(chain_keys) != num_chains:
        raise ValueError(f"chain_keys has {len(chain_keys)} keys for {num_chains} chains")
    step_size = jnp.asarray(step_size, dtype=positions.dtype)
    chunk_meas = max(1, chunk_size // meas_every)
    total = num_therm + num_traj
    state_path = None if state_path is None else Path(state_path)
    fp = None
    if state_path is not None:
        fp = {"run_chains.num_chains": num_chains, "run_chains.num_traj": num_traj,
              "run_chains.num_therm": num_therm, "run_chains.meas_every": meas_every,
              "run_chains.step_size": float(step_size), "run_chains.shape": list(positions.shape[1:]),
              "run_chains.dtype": str(positions.dtype), "run_chains.positions": _hash_tree(positions),
              "run_chains.chain_keys": _hash_tree(chain_keys), "run_chains.params": _hash_tree(params),
              **(fingerprint or {})}
    states = jax.vmap(kernel.init, in_axes=(0, None))(positions, params)
    compile_times: list[float] = []
    timing = {"therm_seconds": 0.0, "seconds": 0.0, "compile_seconds": 0.0, "checkpoint_seconds": 0.0}
    t, series, phase, n_parts = 0, _Series(), "therm", 0
    parts_dir = None if state_path is None else state_path.with_suffix(".series")

    if state_path is not None and state_path.exists():
        like = {"states": states, "chain_keys": chain_keys}
        tree, meta = load_state(state_path, like=like, fingerprint=fp)
        states = jax.tree_util.tree_map(jnp.asarray, tree["states"])
        chain_keys = tree["chain_keys"]
        t, phase, n_parts = int(meta["t"]), meta["phase"], int(meta.get("series_parts", 0))
        timing.update({k: float(meta[k]) for k in timing})
        part_like = _series_structure(kernel, measure_fn, states, chain_keys, params, step_size)
        measured = _load_parts(state_path, parts_dir, n_parts, part_like, fp, series)
        if measured != max(0, t - num_therm):
            raise DamagedFileError(state_path, f"is at trajectory {t} but its {n_parts} series parts hold "
                                   f"{measured} measured trajectories (expected {max(0, t - num_therm)})",
                                   _parts_remedy(state_path, parts_dir))
        log.info("%s: resuming from %s at trajectory %d of %d", desc, state_path, t, total)
    elif parts_dir is not None and parts_dir.exists():
        shutil.rmtree(parts_dir)  # parts of an earlier run whose state is gone
    resumed_at = t

    states, chain_keys = _put(states, chain_sh), _put(chain_keys, chain_sh)
    params, step_size = _put(params, replicated), _put(step_size, replicated)
    clock = {}  # the running phase: its timing key, start time, compile and checkpoint counts

    def elapsed() -> float:
        """Seconds of the running phase so far, compilation and state saving excluded."""
        return (time.perf_counter() - clock["t0"] - sum(compile_times[clock["c0"]:])
                - (timing["checkpoint_seconds"] - clock["s0"]))

    def start_clock(key):
        clock.update(key=key, t0=time.perf_counter(), c0=len(compile_times), s0=timing["checkpoint_seconds"])

    n_chunks = 0
    saved = {"measured": max(0, t - num_therm)}  # measured trajectories held by the part files

    def checkpoint(states, t_next, phase, force=False):
        nonlocal n_chunks, n_parts
        n_chunks += 1
        if state_path is None or not (force or n_chunks % save_every == 0):
            return
        t0 = time.perf_counter()
        tree = {"states": states, "chain_keys": chain_keys}
        new = series.take_pending()
        if new is not None:  # first the part, then the state that makes it valid
            count = int(new[0].accepted.shape[1])
            part_meta = {"label": state_path.stem, "index": n_parts, "first": saved["measured"], "count": count}
            save_state(parts_dir / f"part{n_parts:05d}.npz", {"infos": new[0], "observables": new[1]},
                       fingerprint=fp, meta=part_meta)
            n_parts += 1
            saved["measured"] += count
        now = dict(timing)
        if clock:
            now[clock["key"]] += elapsed()
        now["compile_seconds"] += sum(compile_times)
        meta = {"phase": phase, "t": t_next, "num_therm": num_therm, "num_traj": num_traj,
                "series_parts": n_parts, **now}
        save_state(state_path, tree, fingerprint=fp, meta=meta)
        timing["checkpoint_seconds"] += time.perf_counter() - t0

    judged = {"accepted": 0, "total": 0, "divergent": 0}  # the running phase's acceptance so far

    def judge(infos, phase, length):
        judged["accepted"] += int(np.sum(infos.accepted))
        judged["total"] += int(np.size(infos.accepted))
        judged["divergent"] += int(np.sum(infos.divergent))
        check_acceptance(judged["accepted"], judged["total"], judged["divergent"], num_chains=num_chains,
                         phase_length=length, min_acceptance=min_acceptance, desc=desc, phase=phase,
                         step_size=float(step_size))

    if t < num_therm:
        bar = tqdm(total=num_therm, initial=t, desc=f"{desc} therm", disable=not progress, leave=False)
        start_clock("therm_seconds")

        def after_therm_chunk(st, tn, infos):
            checkpoint(st, tn, "therm", force=tn == num_therm)
            judge(infos, "thermalization", num_therm)

        states = _run_phase(kernel, None, states, chain_keys, params, step_size, t, num_therm - t, 1,
                            max(1, chunk_size), bar, compile_times, None, replicated, after_therm_chunk)
        bar.close()
        timing["therm_seconds"] += elapsed()
        clock.clear()
        t = num_therm
    if t < total:
        bar = tqdm(total=num_traj, initial=t - num_therm, desc=desc, disable=not progress)
        start_clock("seconds")
        judged.update(accepted=0, total=0, divergent=0)
        if series.infos:  # resumed mid-measurement: judge the whole phase
            judged.update(accepted=int(sum(np.sum(i.accepted) for i in series.infos)),
                          total=int(sum(np.size(i.accepted) for i in series.infos)),
                          divergent=int(sum(np.sum(i.divergent) for i in series.infos)))

        def after_measure_chunk(st, tn, infos):
            if tn < total:
                checkpoint(st, tn, "measure")
            judge(infos, "measurement", num_traj)

        states = _run_phase(kernel, measure_fn, states, chain_keys, params, step_size, t, total - t,
                            meas_every, chunk_meas, bar, compile_times, series, replicated, after_measure_chunk)
        bar.close()
        timing["seconds"] += elapsed()
        clock.clear()
    if phase != "done":
        checkpoint(states, total, "done", force=True)  # with the final timings
    timing["compile_seconds"] += sum(compile_times)

    infos, observables = series.concat()
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
        seconds=timing["seconds"],
        therm_seconds=timing["therm_seconds"],
        compile_seconds=timing["compile_seconds"],
        extra={"resumed_at": resumed_at, "checkpoint_seconds": timing["checkpoint_seconds"]},
    )


def _parts_remedy(state_path: Path, parts_dir: Path) -> str:
    return f"delete {state_path} and {parts_dir}/ to rerun this sampler from the start"


def _load_parts(state_path: Path, parts_dir: Path, n_parts: int, part_like, fp, series: _Series) -> int:
    """Read the ``n_parts`` series parts a state counts into ``series``; each must be this run's
    (fingerprint), of this label, at its index, and continue the previous one. Returns the
    number of measured trajectories they hold. Parts beyond ``n_parts`` (written after the last
    state) are ignored and later overwritten."""
    remedy = _parts_remedy(state_path, parts_dir)
    measured = 0
    for i in range(n_parts):
        path = parts_dir / f"part{i:05d}.npz"
        try:
            part, meta = load_state(path, like=part_like, fingerprint=fp, remedy=remedy)
        except FileNotFoundError:
            raise DamagedFileError(path, f"is missing ({state_path.name} counts {n_parts} series parts)",
                                   remedy) from None
        except StateMismatchError as err:
            why = getattr(err, "differences", None) or str(err)
            raise DamagedFileError(path, f"belongs to another run or sampler ({why})", remedy) from None
        where = (meta.get("label"), meta.get("index"), meta.get("first"))
        if where != (state_path.stem, i, measured):
            raise DamagedFileError(
                path, f"holds part {where[1]} of the {where[0]!r} series from measured trajectory {where[2]}, "
                f"expected part {i} of {state_path.stem!r} from trajectory {measured} (moved or swapped)", remedy)
        series.add(part["infos"], part["observables"] or None, pending=False)
        measured += int(meta["count"])
    return measured


def _series_structure(kernel, measure_fn, states, chain_keys, params, step_size) -> dict:
    """Shape-only pytrees of the collected series (``infos`` of one trajectory, ``observables``
    of one measurement) for :func:`trivflow.state.load_state`'s structure check."""
    vstep = jax.vmap(kernel.step, in_axes=(0, 0, None, None))
    _, infos = jax.eval_shape(vstep, chain_keys, states, params, step_size)
    obs = {} if measure_fn is None else jax.eval_shape(
        jax.vmap(measure_fn, (0, None)), states.position, params)
    return {"infos": infos, "observables": obs}


def random_positions(key, num_chains: int, shape: tuple[int, ...], dtype=None) -> jnp.ndarray:
    """Hot start: independent N(0, 1) configurations, shape ``(num_chains, *shape)``."""
    dtype = dtype or (jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    return jax.random.normal(key, (num_chains, *shape), dtype)
