"""The multi-chain driver: one :func:`run_chains` for every Markov kernel.

A kernel is a pair of pure functions on ONE chain (BlackJAX style)::

    init(position, params) -> state                       # state.position: the configuration
    step(key, state, params, *kernel_args) -> (state, info)

``info`` carries ``accepted`` and ``divergent`` (bool), ``acceptance_prob`` and ``delta_H``
(the Metropolis exponent: the step is accepted with probability min{1, e^{−ΔH}}). HMC and FHMC
(:func:`trivflow.hmc.build_kernel`) take the step size ε as their one ``kernel_args`` entry
(``run_chains(step_size=ε)``, a jit argument); independence MH
(:func:`trivflow.samplers.imh_kernel`) takes none. ``params`` (couplings, a flow) is a jit
argument too, so changing it never recompiles.

The driver vmaps the kernel over chains and scans over steps in compiled chunks
(:mod:`trivflow.hmc.chunks`); the host sees one transfer per chunk (the measured series), where
it updates the progress bar, logs divergences and judges the acceptance
(:mod:`trivflow.hmc.monitor`). Chain c uses ``chain_key[c] = split(key, C)[c]`` and step t
(counted from 0 including thermalization) ``fold_in(chain_key[c], t)``, so results do not
depend on the chunk size and a run can be continued from any step bit for bit: with
``state_path`` the state and the series are saved as in :mod:`trivflow.hmc.series`. With several
devices the chain axis is sharded (:mod:`trivflow.hmc.sharding`), with the same numbers.

Step-size adaptation: with ``adapt`` (:class:`trivflow.hmc.adaptation.DualAveraging`) the
thermalization phase tunes HMC's ε to a target acceptance by dual averaging, starting from
``step_size``; ε is then frozen for the measurement (exact chain), returned in
``ChainResult.extra["step_size"]`` and saved with the state, so a resumed run measures with it.

Frozen chains: with ``min_acceptance`` the driver stops with :class:`FrozenChainsError` as soon
as a phase's acceptance over at least :data:`MIN_JUDGED` steps per chain (or the whole phase, if
shorter) is below it — e.g. every trajectory divergent — instead of returning the starting
configuration with error bars.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..dtypes import default_float
from ..errors import ParameterError, must_be
from . import adaptation
from .chunks import chunk_function, compiled
from .monitor import (
    MIN_JUDGED,
    AcceptanceJudge,
    FrozenChainsError,
    PhaseClock,
    check_acceptance,
    progress_bar,
    running_tau_int,
    set_postfix,
)
from .series import RunFiles, Series, hash_tree
from .sharding import chain_shardings, put

# re-exported: the names callers import from here (FrozenChainsError, chain_shardings, _hash_tree …)
_hash_tree = hash_tree
__all__ = ["MIN_JUDGED", "ChainResult", "FrozenChainsError", "Kernel", "chain_shardings", "check_acceptance",
           "random_positions", "run_chains", "running_tau_int", "validate_run_args"]

log = logging.getLogger(__name__)


class Kernel(NamedTuple):
    """A Markov kernel for :func:`run_chains` (module docstring): ``init(position, params) ->
    state`` and ``step(key, state, params, *kernel_args) -> (state, info)`` on one chain."""

    init: Callable
    step: Callable


@dataclass
class ChainResult:
    """Per-chain, per-step output of :func:`run_chains` (and of :func:`trivflow.samplers.nuts.run_nuts`).

    Attributes:
        observables: name → array of shape ``(num_chains, num_meas, ...)``.
        delta_H, accepted, acceptance_prob, divergent: shape ``(num_chains, num_traj)``,
            the measurement phase only (thermalization excluded). ``delta_H`` is the exponent
            of the Metropolis test (HMC: H(end) − H(start); independence MH: w(φ′) − w(φ)), so
            ⟨e^{−ΔH}⟩ = 1 in equilibrium. NUTS has neither one Metropolis test nor one accept
            decision: there ``delta_H`` and ``accepted`` are ``None`` and ``acceptance_prob``
            is NumPyro's mean acceptance probability of the tree.
        final_state: the batched kernel state after the last step (HMC: :class:`HMCState`,
            independence MH: :class:`trivflow.samplers.IMHState`, NUTS: NumPyro's ``HMCState``).
        seconds: wall time of the measurement phase (compilation excluded; NUTS: the whole
            NumPyro run, warmup and compilation included).
        therm_seconds, compile_seconds: wall time of thermalization and of compilation
            (0 for NUTS, where they are part of ``seconds``).
        extra: ``resumed_at``, ``checkpoint_seconds`` (:func:`run_chains`); ``num_steps``,
            ``samples`` (NUTS).
    """

    observables: dict[str, np.ndarray]
    delta_H: np.ndarray | None
    accepted: np.ndarray | None
    acceptance_prob: np.ndarray
    divergent: np.ndarray
    final_state: Any
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
        """Fraction of accepted steps over all chains (measurement phase); for samplers
        without a single accept step (NUTS) the mean acceptance probability."""
        return float(np.mean(self.accepted if self.accepted is not None else self.acceptance_prob))

    @property
    def traj_per_second(self) -> float:
        """Chain-steps (trajectories) per second: num_chains · num_traj / seconds."""
        return self.num_chains * self.num_traj / self.seconds if self.seconds > 0 else float("nan")


def _check_positive_int(name: str, value, minimum: int = 1) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise must_be(name, value, f"an integer >= {minimum}")


def validate_run_args(step_size, num_traj, num_therm, meas_every, chunk_size) -> None:
    """Raise :class:`~trivflow.errors.ParameterError` naming the parameter and value for
    nonsensical driver arguments (``step_size=None``: a kernel without one)."""
    if step_size is not None and (not np.isscalar(step_size) or not np.isfinite(step_size) or step_size <= 0):
        raise must_be("step_size", step_size, "a positive finite number")
    _check_positive_int("num_traj", num_traj)
    _check_positive_int("num_therm", num_therm, minimum=0)
    _check_positive_int("meas_every", meas_every)
    _check_positive_int("chunk_size", chunk_size)
    if num_traj % meas_every:
        raise ParameterError(f"{{num_traj}}={num_traj} must be a multiple of {{meas_every}}={meas_every}",
                             "num_traj", "meas_every")


def _run_phase(kernel, measure_fn, states, chain_keys, params, kernel_args, start, n_traj,
               meas_every, chunk_meas, bar, compile_times, series: Series | None = None,
               scalar_sharding=None, on_chunk: Callable | None = None, unit: str = "trajectories",
               adapt: "adaptation.DualAveraging | None" = None, da=None):
    """Run ``n_traj`` steps from step index ``start`` in chunks of at most ``chunk_meas``
    measurements; collected series go to ``series``. ``on_chunk(states, da, t, infos)`` is called
    after every chunk with the next step index t and the chunk's info. Returns ``(states, da)``.

    With ``adapt`` (thermalization only: no measurements, ``meas_every`` 1) each chunk also adapts
    the step size by dual averaging from its state ``da`` (:mod:`trivflow.hmc.adaptation`), which
    replaces ``kernel_args``."""
    done = 0
    while done < n_traj:
        n_meas = min(chunk_meas, (n_traj - done) // meas_every)
        t = put(jnp.asarray(start + done), scalar_sharding)
        if adapt is None:
            fn = chunk_function(kernel.step, measure_fn, n_meas, meas_every)
            args = (states, chain_keys, t, params, kernel_args)
            states, infos, obs = compiled(fn, args, compile_times)(*args)
        else:
            fn = adaptation.adaptation_chunk(kernel.step, n_meas, adapt, scalar_sharding)
            args = (states, da, chain_keys, t, params)
            (states, da, infos), obs = compiled(fn, args, compile_times)(*args), None
        infos = jax.tree_util.tree_map(np.asarray, infos)
        n_div = int(np.sum(infos.divergent))
        if n_div:
            log.warning("%d divergent %s in steps %d..%d%s (rejected)%s", n_div, unit, start + done,
                        start + done + n_meas * meas_every, "" if adapt is None else " while adapting the step size",
                        "; consider a smaller step size" if unit == "trajectories" and adapt is None else "")
        done += n_meas * meas_every
        if series is not None:
            series.add(infos, obs)
        if bar is not None:
            bar.update(n_meas * meas_every)
            if series is not None and not bar.disable:
                all_infos, all_obs = series.concat()
                set_postfix(bar, all_infos.accepted, all_obs, meas_every)
            else:
                set_postfix(bar, infos.accepted, None, meas_every)
        if on_chunk is not None:
            on_chunk(states, da, start + done, infos)
    return states, da


def _series_structure(kernel, measure_fn, states, chain_keys, params, kernel_args) -> dict:
    """Shape-only pytrees of the collected series (``infos`` of one step, ``observables``
    of one measurement) for :func:`trivflow.state.load_state`'s structure check."""
    vstep = jax.vmap(lambda k, s, p, a: kernel.step(k, s, p, *a), in_axes=(0, 0, None, None))
    _, infos = jax.eval_shape(vstep, chain_keys, states, params, kernel_args)
    obs = {} if measure_fn is None else jax.eval_shape(
        jax.vmap(measure_fn, (0, None)), states.position, params)
    return {"infos": infos, "observables": obs}


def run_chains(
    key,
    kernel: Kernel,
    positions,
    params=None,
    *,
    step_size: float | None = None,
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
    adapt: "adaptation.DualAveraging | None" = None,
) -> ChainResult:
    """Run ``num_chains`` independent chains of ``kernel``, vmapped, for ``num_therm + num_traj`` steps.

    Args:
        key: PRNG key; chain c and step t use ``fold_in(split(key, C)[c], t)``.
        kernel: ``(init, step)`` (module docstring), e.g. from :func:`trivflow.hmc.build_kernel`,
            :func:`trivflow.hmc.fhmc_kernel` or :func:`trivflow.samplers.imh_kernel`.
        positions: initial configurations, shape ``(num_chains, *lattice)``; their dtype is the
            working precision (use float64).
        params: pytree passed to ``kernel.init``, ``kernel.step`` and ``measure_fn`` (a jit argument).
        step_size: HMC's ε (trajectory length ε · num_steps), passed to ``kernel.step`` as its
            fourth argument in the positions' dtype; ``None`` for a kernel whose step takes
            ``(key, state, params)`` only (independence MH).
        num_traj: steps (trajectories) per chain after thermalization (a multiple of ``meas_every``).
        num_therm: thermalization steps per chain, not recorded.
        meas_every: measure after every ``meas_every``-th step.
        measure_fn: ``(position, params) -> pytree of arrays`` measured in-scan on one
            configuration, e.g. φ⁴ observables.
        chunk_size: steps per compiled chunk (rounded down to a multiple of ``meas_every``);
            the host is visited once per chunk. The numbers do not depend on it.
        progress: show a progress bar per phase (with the acceptance so far and, when
            ``measure_fn`` gives ``"M"``, a running Γ-method τ_int(M) in steps).
        desc: the progress bar's and messages' name of the run.
        chain_keys: optional per-chain keys, shape ``(num_chains,)``, replacing
            ``split(key, C)`` (to reproduce a subset of chains, or to continue a run).
        state_path: resumable state file (:mod:`trivflow.hmc.series`). Written atomically every
            ``save_every`` chunks, at the end of thermalization and at the end: batched state,
            chain keys, step counter, phase, elapsed seconds, and the series so far in part
            files. If it exists at the start, the run continues from it (bit for bit equal to an
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
            phase length) steps per chain and after every chunk from then on, is below
            it (None: never). The state saved so far stays on disk.
        adapt: dual-averaging settings (:class:`trivflow.hmc.adaptation.DualAveraging`) to adapt
            ε during the ``num_therm`` thermalization steps (≥ 1), starting from ``step_size``;
            None (default): ε = ``step_size`` throughout.

    Returns:
        :class:`ChainResult` with NumPy series of shape ``(num_chains, num_meas, ...)``;
        ``extra["resumed_at"]`` is the step a resumed run continued from; with ``adapt``,
        ``extra["step_size"]`` is the frozen ε of the measurement.
    """
    validate_run_args(step_size, num_traj, num_therm, meas_every, chunk_size)
    if adapt is not None and (step_size is None or num_therm < 1):
        raise ParameterError(f"step-size adaptation needs a kernel with a {{step_size}} and {{num_therm}} >= 1, got "
                             f"step_size={step_size!r}, num_therm={num_therm!r}", "step_size", "num_therm")
    _check_positive_int("checkpoint_every", save_every)
    positions = jnp.array(positions, copy=True)  # the driver donates its buffers: never the caller's
    num_chains = positions.shape[0]
    chain_sh, replicated = chain_shardings(devices, num_chains)
    if chain_keys is None:
        chain_keys = jax.random.split(key, num_chains)
    elif len(chain_keys) != num_chains:
        raise ValueError(f"chain_keys has {len(chain_keys)} keys for {num_chains} chains")
    kernel_args = () if step_size is None else (jnp.asarray(step_size, dtype=positions.dtype),)
    unit = "steps" if step_size is None else "trajectories"
    chunk_meas = max(1, chunk_size // meas_every)
    total = num_therm + num_traj
    files = None
    if state_path is not None:
        fp = {"run_chains.num_chains": num_chains, "run_chains.num_traj": num_traj,
              "run_chains.num_therm": num_therm, "run_chains.meas_every": meas_every,
              **({} if step_size is None else {"run_chains.step_size": float(kernel_args[0])}),
              "run_chains.shape": list(positions.shape[1:]),
              "run_chains.dtype": str(positions.dtype), "run_chains.positions": hash_tree(positions),
              "run_chains.chain_keys": hash_tree(chain_keys), "run_chains.params": hash_tree(params),
              **({} if adapt is None else {"run_chains.adapt": repr(adapt)}),
              **(fingerprint or {})}
        files = RunFiles(state_path, fp)
    # one compiled program: op-by-op dispatch of a vmapped flow (FHMC) costs seconds per call
    states = jax.jit(jax.vmap(kernel.init, in_axes=(0, None)))(positions, params)
    da = None if adapt is None else adaptation.init(step_size, positions.dtype)
    clock = PhaseClock()
    t, series, phase = 0, Series(), "therm"

    if files is not None and files.exists():
        part_like = _series_structure(kernel, measure_fn, states, chain_keys, params, kernel_args)
        like = {"states": states, "chain_keys": chain_keys, **({} if da is None else {"adapt": da})}
        tree, meta = files.read(like, part_like, series, lambda meta: max(0, int(meta["t"]) - num_therm))
        states = jax.tree_util.tree_map(jnp.asarray, tree["states"])
        if da is not None:
            da = adaptation.DualAveragingState(*(jnp.asarray(x) for x in tree["adapt"]))
        chain_keys = tree["chain_keys"]
        t, phase = int(meta["t"]), meta["phase"]
        clock = PhaseClock({k: float(meta[k]) for k in clock.timing})
        # counted per phase, as the progress bars count
        where = (f"thermalization step {t} of {num_therm}" if t < num_therm
                 else f"measurement step {t - num_therm} of {num_traj}")
        log.info("%s: resuming from %s at %s", desc, files.state_path, where)
    resumed_at = t

    states, chain_keys = put(states, chain_sh), put(chain_keys, chain_sh)
    params, kernel_args = put(params, replicated), put(kernel_args, replicated)
    n_chunks = 0

    def checkpoint(states, t_next, phase, force=False):
        nonlocal n_chunks
        n_chunks += 1
        if files is None or not (force or n_chunks % save_every == 0):
            return
        meta = {"phase": phase, "t": t_next, "num_therm": num_therm, "num_traj": num_traj, **clock.now()}
        before = files.seconds
        files.write({"states": states, "chain_keys": chain_keys, **({} if da is None else {"adapt": da})},
                    series, meta)
        clock.timing["checkpoint_seconds"] += files.seconds - before

    judge = AcceptanceJudge(num_chains=num_chains, min_acceptance=min_acceptance, desc=desc,
                            step_size=None if step_size is None else float(kernel_args[0]))

    if t < num_therm:
        bar = progress_bar(num_therm, t, f"{desc} therm", progress, leave=False)
        clock.start("therm_seconds")

        def after_therm_chunk(st, new_da, tn, infos):
            nonlocal da
            da = new_da  # the checkpoint saves the adaptation state with the chains'
            checkpoint(st, tn, "therm", force=tn == num_therm)
            judge(infos, "thermalization", num_therm)

        states, da = _run_phase(kernel, None, states, chain_keys, params, kernel_args, t, num_therm - t, 1,
                                max(1, chunk_size), bar, clock.compile_times, None, replicated, after_therm_chunk,
                                unit, adapt=adapt, da=None if da is None else put(da, replicated))
        bar.close()
        clock.stop()
        t = num_therm
    if da is not None:  # frozen from here on: the measured chain is plain HMC with this ε
        kernel_args = put((adaptation.final_step_size(da).astype(positions.dtype),), replicated)
        judge.step_size = float(kernel_args[0])
        log.info("%s: step size adapted to %.6g (target acceptance %g)", desc, judge.step_size, adapt.target)
    if t < total:
        bar = progress_bar(num_traj, t - num_therm, desc, progress)
        clock.start("seconds")
        judge.reset(series.infos)  # resumed mid-measurement: judge the whole phase

        def after_measure_chunk(st, _, tn, infos):
            if tn < total:
                checkpoint(st, tn, "measure")
            judge(infos, "measurement", num_traj)

        states, _ = _run_phase(kernel, measure_fn, states, chain_keys, params, kernel_args, t, total - t,
                               meas_every, chunk_meas, bar, clock.compile_times, series, replicated,
                               after_measure_chunk, unit)
        bar.close()
        clock.stop()
    if phase != "done":
        checkpoint(states, total, "done", force=True)  # with the final timings
    timing = clock.finish()

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
        extra={"resumed_at": resumed_at, "checkpoint_seconds": timing["checkpoint_seconds"],
               **({} if da is None else {"step_size": float(kernel_args[0]), "adapt_target": adapt.target})},
    )


def random_positions(key, num_chains: int, shape: tuple[int, ...], dtype=None) -> jnp.ndarray:
    """Hot start: independent N(0, 1) configurations, shape ``(num_chains, *shape)``; ``dtype``
    None: float64 (float32 with a :class:`~trivflow.dtypes.Float32Default` warning when x64 is off)."""
    dtype = dtype or default_float("hmc.random_positions")
    return jax.random.normal(key, (num_chains, *shape), dtype)
