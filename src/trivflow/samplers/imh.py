"""Independence Metropolis–Hastings with proposals from a normalizing flow (physics.md §7).

A proposal is φ′ = g(z′), z′ ~ r, with log-weight w(φ′) = log q(φ′) + S(φ′)
= log r(z′) − log|det J_g(z′)| + S(g(z′)). It is accepted with probability
min{1, exp(w(φ) − w(φ′))}: exact for any flow, but the acceptance falls with the volume as the
overlap of q and p shrinks.

Layout: per chunk, ``batch`` proposals for every chain are drawn and measured at once
(vmapped, the expensive part), then a ``lax.scan`` runs the sequential accept/reject over the
batch, carrying the current weight and observables — no configuration is copied.
"""

from __future__ import annotations

import functools
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ..hmc.driver import ChainResult, _check_positive_int


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
) -> ChainResult:
    """Run ``num_chains`` independence-MH chains for ``num_steps`` steps each.

    Args:
        propose_fn: ``(key, params) -> (phi, w)`` one proposal and its log-weight
            w = log q(φ) + S(φ) (see :func:`trivflow.samplers.flow_proposal`).
        measure_fn: ``(phi, params) -> pytree`` of observables.
        batch_size: proposals per chain per compiled chunk.

    Returns:
        :class:`~trivflow.hmc.ChainResult` with observables of shape (num_chains, num_steps, ...),
        ``accepted`` and ``acceptance_prob`` per step; ``delta_H`` is ``None``.
    """
    _check_positive_int("num_chains", num_chains)
    _check_positive_int("num_traj", num_steps)
    _check_positive_int("batch_size", batch_size)
    chain_keys = jax.random.split(key, num_chains + 1)
    init_key, chain_keys = chain_keys[0], chain_keys[1:]
    # the first state of every chain is a proposal, accepted unconditionally
    first = jax.vmap(lambda k: propose_fn(k, params))(jax.random.split(init_key, num_chains))
    w_current = first[1]
    obs_current = jax.vmap(measure_fn, (0, None))(first[0], params)
    obs_all, acc_all, prob_all = [], [], []
    done, index = 0, 0
    bar = tqdm(total=num_steps, desc=desc, disable=not progress)
    t0 = time.perf_counter()
    while done < num_steps:
        batch = min(batch_size, num_steps - done)
        fn = _chunk_function(propose_fn, measure_fn, batch)
        (w_current, obs_current), (obs, acc, prob) = fn(chain_keys, index, params, w_current, obs_current)
        obs_all.append(jax.tree_util.tree_map(np.asarray, obs))
        acc_all.append(np.asarray(acc))
        prob_all.append(np.asarray(prob))
        done += batch
        index += 1
        bar.update(batch)
        bar.set_postfix(acc=f"{float(np.mean(acc_all[-1])):.3f}")
    seconds = time.perf_counter() - t0
    bar.close()
    observables = jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=1), *obs_all)
    accepted = np.concatenate(acc_all, axis=1)
    return ChainResult(
        observables=observables,
        delta_H=None,
        accepted=accepted,
        acceptance_prob=np.concatenate(prob_all, axis=1),
        divergent=np.zeros_like(accepted),
        final_state=None,
        num_chains=num_chains,
        num_traj=num_steps,
        num_therm=0,
        meas_every=1,
        seconds=seconds,
        therm_seconds=0.0,
        compile_seconds=0.0,
    )


def flow_proposal(flow_fn: Callable, prior, potential_fn: Callable) -> Callable:
    """Proposals φ′ = g(z′), z′ ~ r, with w = log r(z′) − log|det J_g(z′)| + U(φ′).

    Args:
        flow_fn: ``(flow_params, z) -> (phi, log_det)`` on one configuration.
        prior: a :class:`trivflow.priors.Prior` of the sampling lattice's shape.
        potential_fn: ``(phi, theory_params) -> S``.
    Returns:
        ``propose(key, params)`` with ``params = {"flow": ..., "theory": ...}``.
    """

    def propose(key, params):
        z = prior.sample(key, 1)[0]
        phi, log_det = flow_fn(params["flow"], z)
        return phi, prior.log_prob(z) - log_det + potential_fn(phi, params["theory"])

    return propose
