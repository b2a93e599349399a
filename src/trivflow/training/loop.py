"""Reverse-KL training loop (docs/theory.md#training-reverse-kl): optax Adam with cosine decay, jitted step.

The step is one compiled function of a :class:`TrainState` (flow params, optimizer state, key,
prior batch: arguments, donated, never closed-over constants); :func:`train_flow` runs up to
:data:`TRAIN_CHUNK` steps per compiled call (:func:`make_train_chunk`), the metrics stay on
device and are fetched once per log interval, where the host checks them and updates the
progress bar.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..errors import ParameterError, must_be
from .cache import Static
from .objectives import flow_metrics, reverse_kl_loss

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError, ParameterError):
    """Training produced a non-finite loss; ``step`` (1-based) and ``value`` say where. The
    message names the learning rate ``lr`` (:class:`~trivflow.errors.ParameterError`)."""

    def __init__(self, step: int, value: float, lr: float | None = None):
        self.step = step
        self.value = value
        rate = "" if lr is None else f"{{lr}}={lr:g} may be too large; "
        ParameterError.__init__(
            self, f"non-finite training loss {value!r} at step {step}: stopping ({rate}check the action, the "
            f"learning rate and the prior; the parameters after this step are not usable)", "lr")


class TrainingDivergedError(ParameterError):
    """A finished training left the flow worse than it started, or useless (see :func:`check_training`);
    the message names ``lr`` and ``steps`` (:class:`~trivflow.errors.ParameterError`)."""


def check_training(before: dict, after: dict, *, lr: float, steps: int, z: float = 3.0) -> None:
    """Refuse a diverged training: raise :class:`TrainingDivergedError` naming ``lr`` and
    ``steps`` when the flow after training (``after``, from
    :func:`~trivflow.training.evaluate_flow` on a fresh batch) is

    * non-finite: its loss is NaN/inf;
    * worse than untrained (``before``): loss_after − loss_before > z·√(δ_before² + δ_after²),
      δ the standard errors of the two batch means (reverse KL can only fall in expectation,
      so a significant rise means the optimiser diverged);
    * useless after a rising loss: ESS < 10⁻³ and no independence-MH proposal accepted.
    """
    la, lb = after["loss"], before["loss"]
    state = (f"loss {lb:.4g} -> {la:.4g}, ESS {before['ess']:.3g} -> {after['ess']:.3g}, "
             f"MH acceptance {before['mh_acceptance']:.3g} -> {after['mh_acceptance']:.3g}")
    advice = f"lower {{lr}}={lr:g} (or change {{steps}}={steps})"
    if not math.isfinite(la):
        raise TrainingDivergedError(f"training diverged ({state}): the trained flow gives non-finite weights; "
                                    f"{advice}", "lr", "steps")
    err = math.hypot(before.get("loss_err", 0.0), after.get("loss_err", 0.0))
    if la - lb > z * err:
        raise TrainingDivergedError(f"training diverged: the flow ended worse than it started ({state}, "
                                    f"a rise of {(la - lb) / err:.3g} standard errors); {advice}", "lr", "steps")
    if la > lb and after["ess"] < 1e-3 and after["mh_acceptance"] == 0:
        raise TrainingDivergedError(f"training failed: the loss rose and the flow is useless ({state}); {advice}",
                                    "lr", "steps")


@functools.lru_cache(maxsize=64)
def make_optimizer(lr: float, steps: int) -> optax.GradientTransformation:
    """Adam with learning rate lr · ½(1 + cos(π t/steps)) (cosine decay to 0 at ``steps``).

    Cached, so equal settings give the same object, and compiled steps (cached on the
    optimizer object, :func:`make_train_step`) are reused.
    """
    return optax.adam(optax.cosine_decay_schedule(lr, decay_steps=steps, alpha=0.0))


class TrainState(NamedTuple):
    """Everything one training step needs: the flow (:class:`trivflow.flows.Flow`, whose leaves
    are the parameters) and the optimizer state, the key, and the prior batch ``z``
    (``(B, *lattice)``) with ``log_r`` (``(B,)``) that this step trains on."""

    flow: Any
    opt_state: Any
    key: jax.Array
    z: jnp.ndarray
    log_r: jnp.ndarray


def make_train_step(
    prior,
    action_fn: Callable,
    optimizer: optax.GradientTransformation,
    batch_size: int,
):
    """``init(flow, key) -> TrainState`` and the jitted ``step(state) -> (state, metrics)`` of
    :func:`build_train_step`, bound to ``prior``.

    The flow and the prior are *arguments* of the compiled functions (pytrees, see
    :func:`trivflow.priors.base.as_pytree`), so neither the parameters nor an ensemble prior's
    array is a compiled-in constant. The compiled step is cached on the static inputs
    (:mod:`trivflow.training.cache`: at most 16 kept): the action (a ``functools.partial`` of
    scalars compares by value, so the same action built twice shares the step; a bound
    method by function and instance; other callables by identity), the optimizer (by
    identity: :func:`make_optimizer` returns one object per setting) and the batch size. It
    recompiles only for new static inputs or a new flow or prior *structure* (shapes, static
    fields), so repeated :func:`train_flow` calls — also with another ensemble of the same
    shape — do not recompile.
    """
    init, step, _ = _bound_train_functions(prior, action_fn, optimizer, batch_size)
    return init, step


def make_train_chunk(
    prior,
    action_fn: Callable,
    optimizer: optax.GradientTransformation,
    batch_size: int,
):
    """``run(state, n) -> (state, metrics)``: ``n`` (1 ≤ n ≤ :data:`TRAIN_CHUNK`, a runtime
    argument) steps of :func:`make_train_step` in ONE compiled call, bound to ``prior``;
    ``metrics[k]`` has :data:`TRAIN_CHUNK` entries, of which the first ``n`` are the steps'
    metrics (the rest NaN). The same numbers as ``n`` calls of the step, bit for bit
    (tests/test_training.py), without ``n − 1`` dispatches from Python: :func:`train_flow`
    runs its steps this way (13–24 % more steps/s at L = 8, batch 500 on 2 CPU cores,
    docs/performance.md). The state is donated."""
    return _bound_train_functions(prior, action_fn, optimizer, batch_size)[2]


def _bound_train_functions(prior, action_fn, optimizer, batch_size):
    """(init, step, run) of :func:`build_train_step`, cached on the static inputs, bound to ``prior``."""
    from ..priors.base import as_pytree

    init, step, run = _cached_train_step(Static(action_fn), Static(optimizer), batch_size)
    prior = as_pytree(prior)
    return (functools.partial(init, prior=prior), functools.partial(step, prior=prior),
            functools.partial(run, prior=prior))


@functools.lru_cache(maxsize=16)
def _cached_train_step(action: Static, optimizer: Static, batch_size: int):
    """:func:`build_train_step` once per static inputs (see :mod:`trivflow.training.cache`)."""
    return build_train_step(action.value, optimizer.value, batch_size)


#: Length of the metric buffers of one :func:`make_train_chunk` call: the most steps one call runs.
TRAIN_CHUNK = 64


def build_train_step(
    action_fn: Callable,
    optimizer: optax.GradientTransformation,
    batch_size: int,
):
    """Build ``init(flow, key, prior) -> TrainState``, the jitted
    ``step(state, prior) -> (state, metrics)`` and the jitted ``run(state, n, prior)`` of ``n``
    steps in one call (:func:`make_train_chunk`).

    One step: w = log r(z) − log|det J_g(z)| + S(g(z)) on the state's prior batch z, the
    gradient of mean w with respect to the flow's parameters, one optimizer update, and a fresh
    batch z′ ~ r for the next step. ``metrics`` (device scalars) are the loss, ESS and
    independence-MH acceptance of this batch's w, computed with the parameters *before* the
    update, for which the batch is fresh (drawn independently of them). The state is donated:
    do not reuse a state passed in.

    Why the next batch is drawn at the end of a step rather than at the start: a step's
    outputs are materialised, whereas a batch drawn and consumed inside one computation lets
    XLA fuse the bits → normal transform into every consumer and recompute it there, which
    costs more than the rest of the step on CPU (``optimization_barrier`` does not prevent it).
    """

    def draw(key, prior):
        z = prior.sample(key, batch_size)
        return z, jax.vmap(prior.log_prob)(z)

    draw_jit = jax.jit(draw)

    def init(flow, key, prior) -> TrainState:
        key, key_z = jax.random.split(key)
        z, log_r = draw_jit(key_z, prior)
        return TrainState(flow, optimizer.init(flow), key, z, log_r)

    def step(state: TrainState, prior):
        flow, opt_state, key, z, log_r = state
        key, key_z, key_mh = jax.random.split(key, 3)
        grad_fn = jax.value_and_grad(lambda f: reverse_kl_loss(f, z, log_r, action_fn), has_aux=True)
        (_, w), grads = grad_fn(flow)
        updates, opt_state = optimizer.update(grads, opt_state, flow)
        flow = optax.apply_updates(flow, updates)
        return TrainState(flow, opt_state, key, *draw(key_z, prior)), flow_metrics(key_mh, w)

    def run(state: TrainState, n, prior):
        # a loop with a runtime trip count: one compilation serves every chunk length
        shapes = jax.eval_shape(step, state, prior)[1]
        buffers = {k: jnp.full((TRAIN_CHUNK,), jnp.nan, v.dtype) for k, v in shapes.items()}

        def body(i, carry):
            state, buffers = carry
            state, metrics = step(state, prior)
            return state, {k: buffers[k].at[i].set(metrics[k]) for k in buffers}

        return jax.lax.fori_loop(0, jnp.minimum(n, TRAIN_CHUNK), body, (state, buffers))

    return init, jax.jit(step, donate_argnums=0), jax.jit(run, donate_argnums=0)


def _check_train_args(steps, batch_size, lr, log_every) -> None:
    def is_int(x):
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

    if not is_int(steps) or steps < 1:
        raise must_be("steps", steps, "an integer >= 1")
    if not is_int(batch_size) or batch_size < 2:
        raise must_be("batch_size", batch_size, "an integer >= 2")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not math.isfinite(lr) or lr <= 0:
        raise must_be("lr", lr, "a finite number > 0")
    if not is_int(log_every) or log_every < 1:
        raise must_be("log_every", log_every, "an integer >= 1")


def train_flow(
    key: jax.Array,
    flow,
    prior,
    action_fn: Callable[[jnp.ndarray], jnp.ndarray],
    *,
    steps: int = 1000,
    batch_size: int = 500,
    lr: float = 0.01,
    log_every: int = 50,
    progress: bool = True,
    callback: Callable | None = None,
    state_path: str | Path | None = None,
    save_every: int = 4,
    fingerprint: dict | None = None,
):
    """Train the flow by minimising the reverse KL, loss = mean_batch [log r − log|det J_g| + S∘g].

    Adam, learning rate ``lr`` with cosine decay to 0 over ``steps`` (the paper: 0.01, 1000
    steps, batch 500).

    Args:
        key: PRNG key (every step's batch and MH uniforms derive from it: same key ⇒ same run).
        flow: the :class:`trivflow.flows.Flow` to train (its leaves are the parameters); it is
            copied, the caller's arrays stay valid.
        prior: a :class:`trivflow.priors.Prior` whose ``shape`` is the training lattice.
        action_fn: S of ONE configuration, e.g. ``partial(phi4_action, beta=0.576, lam=0.5)``.
        steps, batch_size, lr: optimisation settings.
        log_every: metrics are fetched to the host, checked and reported every ``log_every``
            steps (and at the end).
        progress: show a tqdm progress bar with the latest loss, ESS and acceptance.
        callback: ``callback(step, metrics, flow)`` at every log point, ``metrics`` a dict of
            floats of the latest step, ``flow`` a copy of the current flow (safe to keep);
            returning ``True`` stops training early.
        state_path: resumable state file (:mod:`trivflow.state`): the :class:`TrainState`
            (flow, optimizer state, key, prior batch), the step counter and the history so
            far, written atomically every ``save_every`` log intervals and at the end. If it
            exists at the start, training continues from it, bit for bit equal to an
            uninterrupted run; a completed state returns its flow and history at once.
        save_every: log intervals between state saves (``train.checkpoint_every``).
        fingerprint: settings the state depends on, stored and checked on resume together
            with ``steps``, ``batch_size``, ``lr`` and hashes of ``key`` and the initial
            parameters; a mismatch raises :class:`trivflow.state.StateMismatchError`.

    Returns:
        ``(flow, history)``: the trained flow, and a dict of numpy arrays, one entry per
        completed step: ``step`` (1-based), ``loss``, ``ess``, ``mh_acceptance`` (of that
        step's batch with the parameters before that step's update, see
        :func:`make_train_step`), ``lr`` (learning rate used at that step); plus 0-d
        ``seconds`` (wall time, compilation included) and ``compile_seconds`` (first step,
        compilation included).

    Raises:
        ValueError: bad settings (before anything is compiled).
        NonFiniteLossError: (a ``FloatingPointError``) when a loss is NaN/inf, naming the
            first such step; detected at the next log point.
    """
    _check_train_args(steps, batch_size, lr, log_every)
    if not isinstance(save_every, (int, np.integer)) or isinstance(save_every, bool) or save_every < 1:
        raise must_be("save_every", save_every, "an integer >= 1")
    from tqdm.auto import tqdm

    from ..hmc.driver import _hash_tree
    from ..state import load_state, save_state

    optimizer = make_optimizer(lr, steps)
    init_fn, _, run_fn = _bound_train_functions(prior, action_fn, optimizer, batch_size)
    state_path = None if state_path is None else Path(state_path)
    fp = None
    if state_path is not None:
        fp = {"train_flow.steps": steps, "train_flow.batch_size": batch_size, "train_flow.lr": lr,
              "train_flow.key": _hash_tree(key), "train_flow.params": _hash_tree(flow),
              "train_flow.shape": list(prior.shape), **(fingerprint or {})}
    flow = jax.tree_util.tree_map(jnp.array, flow)  # copy: the step donates its inputs
    state = init_fn(flow, key)

    names = ("loss", "ess", "mh_acceptance")
    history: dict[str, list] = {k: [] for k in names}
    pending: list = []
    done = 0
    seconds_before = 0.0  # wall time of earlier, interrupted runs
    compile_seconds = float("nan")
    complete = False
    if state_path is not None and state_path.exists():
        like = {"state": state, "history": {k: 0 for k in names}}
        tree, meta = load_state(state_path, like=like, fingerprint=fp)
        state = jax.tree_util.tree_map(jnp.asarray, tree["state"])
        history = {k: [float(x) for x in tree["history"][k]] for k in names}
        done, complete = int(meta["done"]), bool(meta["complete"])
        seconds_before, compile_seconds = float(meta["seconds"]), float(meta["compile_seconds"])
        log.info("training: resuming from %s at step %d of %d", state_path, done, steps)
    resumed_at = done
    n_logs = 0
    t_start = time.perf_counter()

    def save(final: bool):
        if state_path is not None:
            meta = {"done": done, "complete": final, "seconds": seconds_before + time.perf_counter() - t_start,
                    "compile_seconds": compile_seconds, "steps": steps}
            hist = {k: np.asarray(history[k][:done], dtype=np.float64) for k in names}
            save_state(state_path, {"state": state, "history": hist}, fingerprint=fp, meta=meta)

    bar = tqdm(total=steps, initial=done, disable=not progress, desc="train flow", leave=False)
    i = done
    try:
        while i < (steps if not complete else done):
            # steps run in chunks of one compiled call that end at log points; the first one is a
            # single step, so compile_seconds stays the time of the first step
            log_point = min((i // log_every + 1) * log_every, steps)
            n = 1 if i == resumed_at else min(log_point - i, TRAIN_CHUNK)
            state, metrics = run_fn(state, n)
            if i == resumed_at and math.isnan(compile_seconds):
                jax.block_until_ready(metrics)
                compile_seconds = time.perf_counter() - t_start
            pending.append((metrics, n))
            i += n
            if i != log_point:
                continue
            fetched = jax.device_get([m for m, _ in pending])
            counts = [c for _, c in pending]
            pending = []
            for k in names:
                history[k].extend(float(x) for m, c in zip(fetched, counts) for x in m[k][:c])
            losses = np.asarray(history["loss"][done:])
            bad = np.flatnonzero(~np.isfinite(losses))
            if bad.size:
                raise NonFiniteLossError(done + int(bad[0]) + 1, float(losses[bad[0]]), lr)
            bar.update(i - done)
            done = i
            last = {k: history[k][-1] for k in names}
            bar.set_postfix(loss=f"{last['loss']:.4g}", ess=f"{last['ess']:.3f}", acc=f"{last['mh_acceptance']:.3f}")
            n_logs += 1
            if done == steps or n_logs % save_every == 0:
                save(final=done == steps)
            if callback is not None and callback(done, last, jax.tree_util.tree_map(jnp.copy, state.flow)):
                if done < steps:
                    save(final=True)  # stopped early: a resume returns this result
                break
    finally:
        bar.close()
    out = {"step": np.arange(1, done + 1)}
    out.update({k: np.asarray(history[k][:done]) for k in names})
    out["lr"] = lr * 0.5 * (1.0 + np.cos(np.pi * np.arange(done) / steps))  # optax cosine_decay_schedule
    out["seconds"] = np.asarray(seconds_before + time.perf_counter() - t_start)
    out["compile_seconds"] = np.asarray(compile_seconds)
    return state.flow, out
