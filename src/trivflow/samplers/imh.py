"""Independence Metropolis–Hastings with proposals from a normalizing flow (docs/theory.md#imh).

A proposal is φ′ = g(z′), z′ ~ r, with log-weight w(φ′) = log q(φ′) + S(φ′)
= log r(z′) − log|det J_g(z′)| + S(g(z′)). It is accepted with probability
min{1, exp(w(φ) − w(φ′))}: exact for any flow, but the acceptance falls with the volume as the
overlap of q and p shrinks.

Layout: per chunk, ``batch`` proposals for every chain are drawn and measured at once
(vmapped, the expensive part), then a ``lax.scan`` runs the sequential accept/reject over the
batch, carrying the current weight and observables — no configuration is copied.

Resume: like :func:`trivflow.hmc.run_chains`, ``run_imh`` can save its state every few chunks
and continue from it bit for bit. (NUTS, :mod:`trivflow.samplers.nuts`, is not resumable: it
runs as one NumPyro call.)
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ..hmc.driver import ChainResult, _check_positive_int, _hash_tree, _postfix, check_acceptance
from ..state import load_state, save_state

log = logging.getLogger(__name__)


def _accept_scan(key, w_proposals, obs_proposals, w_current, obs_current):
    """Sequential independence-MH over one chain's batch of proposals.

    Args:
        w_proposals: (B,) log-weights; obs_proposals: pytree of (B, ...) observables.
        w_current, obs_current: the chain's state before the batch.
    Returns:
        (w, obs) after the batch, and per step (observables of the current state, accepted,
        acceptance probability).
    """
    uniforms = jax.random.uniform(key, w_proposals.shape, w_proposals.dtype)

    def step(carry, inputs):
        w_cur, obs_cur = carry
        w_new, obs_new, u = inputs
        log_ratio = w_cur - w_new
        prob = jnp.where(jnp.isfinite(w_new), jnp.minimum(1.0, jnp.exp(jnp.minimum(log_ratio, 0.0))), 0.0)
        accept = u < prob
        w_cur = jnp.where(accept, w_new, w_cur)
        obs_cur = jax.tree_util.tree_map(lambda n, c: jnp.where(accept, n, c), obs_new, obs_cur)
        return (w_cur, obs_cur), (obs_cur, accept, prob)

    return jax.lax.scan(step, (w_current, obs_current), (w_proposals, obs_proposals, uniforms))


@functools.lru_cache(maxsize=16)
def _chunk_function(propose_fn: Callable, measure_fn: Callable, batch: int):
    def propose_and_measure(key, params):
        phi, w = propose_fn(key, params)
        return w, measure_fn(phi, params)

    def chunk(chain_keys, index, params, w_current, obs_current):
        keys = jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, index), batch + 1))(chain_keys)
        w_prop, obs_prop = jax.vmap(jax.vmap(propose_and_measure, (0, None)), (0, None))(keys[:, 1:], params)
        return jax.vmap(_accept_scan)(keys[:, 0], w_prop, obs_prop, w_current, obs_current)

    return jax.jit(chunk)


def run_imh(
    key,
    propose_fn: Callable,
    params,
    *,
    num_chains: int,
    num_steps: int,
    measure_fn: Callable,
    batch_size: int = 1000,
    progress: bool = True,
    desc: str = "IMH",
    state_path: str | Path | None = None,
    save_every: int = 1,
    fingerprint: dict | None = None,
    min_acceptance: float | None = None,
) -> ChainResult:
    """Run ``num_chains`` independence-MH chains for ``num_steps`` steps each.

    Randomness: chunk i of every chain c uses ``split(fold_in(chain_key[c], i), batch + 1)``
    (the first key for the accept uniforms, the others one per proposal), so the numbers depend
    on ``batch_size`` but not on interruptions.

    Args:
        propose_fn: ``(key, params) -> (phi, w)`` one proposal and its log-weight
            w = log q(φ) + S(φ) (see :func:`trivflow.samplers.flow_proposal`).
        measure_fn: ``(phi, params) -> pytree`` of observables.
        batch_size: proposals per chain per compiled chunk.
        progress: progress bar with the acceptance so far and a running τ_int(M).
        state_path, save_every, fingerprint: resumable state, as in
            :func:`trivflow.hmc.run_chains` (saved every ``save_every`` chunks and at the end:
            current log-weights and observables, chain keys, chunk index, series so far).
        min_acceptance: stop with :class:`trivflow.hmc.driver.FrozenChainsError` when the
            acceptance over the steps so far (judged as in :func:`trivflow.hmc.run_chains`) is
            below it (None: never).

    Runs on one device: with the chain axis sharded (as :func:`trivflow.hmc.run_chains` does),
    XLA:CPU (jax 0.7) fails on the FFT of the in-scan correlator with a layout RET_CHECK.

    Returns:
        :class:`~trivflow.hmc.ChainResult` with observables of shape (num_chains, num_steps, ...),
        ``accepted`` and ``acceptance_prob`` per step; ``delta_H`` is ``None``.
    """
    _check_positive_int("num_chains", num_chains)
    _check_positive_int("num_traj", num_steps)
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("checkpoint_every", save_every)
    chain_keys = jax.random.split(key, num_chains + 1)
    init_key, chain_keys = chain_keys[0], chain_keys[1:]
    state_path = None if state_path is None else Path(state_path)
    fp = None
    if state_path is not None:
        fp = {"run_imh.num_chains": num_chains, "run_imh.num_steps": num_steps,
              "run_imh.batch_size": batch_size, "run_imh.key": _hash_tree(key),
              "run_imh.params": _hash_tree(params), **(fingerprint or {})}
    obs_all, acc_all, prob_all = [], [], []
    done, index, seconds, save_seconds = 0, 0, 0.0, 0.0
    if state_path is not None and state_path.exists():
        obs_struct = jax.eval_shape(lambda k: measure_fn(propose_fn(k, params)[0], params), init_key)
        w_struct = jax.eval_shape(lambda k: propose_fn(k, params)[1], init_key)
        like = {"chain_keys": chain_keys, "w_current": w_struct, "obs_current": obs_struct,
                "observables": obs_struct, "accepted": 0, "acceptance_prob": 0}
        tree, meta = load_state(state_path, like=like, fingerprint=fp)
        chain_keys, w_current, obs_current = tree["chain_keys"], tree["w_current"], tree["obs_current"]
        obs_all, acc_all, prob_all = [tree["observables"]], [tree["accepted"]], [tree["acceptance_prob"]]
        done, index, seconds = int(meta["done"]), int(meta["index"]), float(meta["seconds"])
        log.info("%s: resuming from %s at step %d of %d", desc, state_path, done, num_steps)
    else:
        # the first state of every chain is a proposal, accepted unconditionally
        first = jax.vmap(lambda k: propose_fn(k, params))(jax.random.split(init_key, num_chains))
        w_current = first[1]
        obs_current = jax.vmap(measure_fn, (0, None))(first[0], params)
    resumed_at = done

    def concat():
        cat = lambda *a: np.concatenate(a, axis=1)  # noqa: E731
        return (jax.tree_util.tree_map(cat, *obs_all), np.concatenate(acc_all, axis=1),
                np.concatenate(prob_all, axis=1))

    def save(final: bool, elapsed: float):
        nonlocal obs_all, acc_all, prob_all, save_seconds
        if state_path is None:
            return
        t0 = time.perf_counter()
        obs, acc, prob = concat()
        obs_all, acc_all, prob_all = [obs], [acc], [prob]  # keep one block
        tree = {"chain_keys": chain_keys, "w_current": w_current, "obs_current": obs_current,
                "observables": obs, "accepted": acc, "acceptance_prob": prob}
        meta = {"done": done, "index": index, "seconds": seconds + elapsed, "complete": final}
        save_state(state_path, tree, fingerprint=fp, meta=meta)
        save_seconds += time.perf_counter() - t0

    bar = tqdm(total=num_steps, initial=done, desc=desc, disable=not progress)
    t0 = time.perf_counter()
    n_chunks = 0
    while done < num_steps:
        batch = min(batch_size, num_steps - done)
        fn = _chunk_function(propose_fn, measure_fn, batch)
        (w_current, obs_current), (obs, acc, prob) = fn(chain_keys, index, params, w_current, obs_current)
        obs_all.append(jax.tree_util.tree_map(np.asarray, obs))
        acc_all.append(np.asarray(acc))
        prob_all.append(np.asarray(prob))
        done += batch
        index += 1
        n_chunks += 1
        bar.update(batch)
        if not bar.disable:
            o, a, _ = concat()
            _postfix(bar, a, o, 1)
        if done == num_steps or n_chunks % save_every == 0:
            save(done == num_steps, time.perf_counter() - t0 - save_seconds)
        if min_acceptance:
            n_acc = int(sum(np.sum(a) for a in acc_all))
            check_acceptance(n_acc, done * num_chains, 0, num_chains=num_chains, phase_length=num_steps,
                             min_acceptance=min_acceptance, desc=desc, phase="measurement", step_size=None)
    if done > resumed_at:
        seconds += time.perf_counter() - t0 - save_seconds
    bar.close()
    observables, accepted, acceptance_prob = concat()
    return ChainResult(
        observables=observables,
        delta_H=None,
        accepted=accepted,
        acceptance_prob=acceptance_prob,
        divergent=np.zeros_like(accepted),
        final_state=None,
        num_chains=num_chains,
        num_traj=num_steps,
        num_therm=0,
        meas_every=1,
        seconds=seconds,
        therm_seconds=0.0,
        compile_seconds=0.0,
        extra={"resumed_at": resumed_at, "checkpoint_seconds": save_seconds},
    )


def flow_proposal(prior, potential_fn: Callable) -> Callable:
    """Proposals φ′ = g(z′), z′ ~ r, with w = log r(z′) − log|det J_g(z′)| + U(φ′).

    Args:
        prior: a :class:`trivflow.priors.Prior` of the sampling lattice's shape, closed over;
            or ``None`` to take it from ``params["prior"]`` at call time — the way for priors
            holding arrays (an ensemble: a pytree, :func:`trivflow.priors.base.as_pytree`),
            which then are jit arguments instead of compiled-in constants.
        potential_fn: ``(phi, theory_params) -> S``.
    Returns:
        ``propose(key, params)`` with ``params = {"flow": Flow, "theory": ...[, "prior": ...]}``
        (:class:`trivflow.flows.Flow`).
    """

    def propose(key, params):
        r = params["prior"] if prior is None else prior
        z = r.sample(key, 1)[0]
        phi, log_det = params["flow"].forward(z)
        return phi, r.log_prob(z) - log_det + potential_fn(phi, params["theory"])

    return propose
