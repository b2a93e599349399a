"""Independence Metropolis–Hastings with proposals from a normalizing flow (docs/theory.md#imh).

A proposal is φ′ = g(z′), z′ ~ r, with log-weight w(φ′) = log q(φ′) + S(φ′)
= log r(z′) − log|det J_g(z′)| + S(g(z′)). It is accepted with probability
min{1, exp(w(φ) − w(φ′))}: exact for any flow, but the acceptance falls with the volume as the
overlap of q and p shrinks.

The sampler is a kernel (:func:`imh_kernel`) of the one chain driver
:func:`trivflow.hmc.run_chains`, which vmaps it over chains, scans over steps in compiled chunks,
measures in the scan, and gives resume, part files, sharding, progress and timings;
:func:`run_imh` binds the two. Step t of chain c draws its proposal and its uniform from
``fold_in(chain_key[c], t)``, so the numbers do not depend on the chunk size.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from ..hmc.driver import ChainResult, Kernel, run_chains


class IMHState(NamedTuple):
    """One chain's current configuration φ and its log-weight w(φ) = log q(φ) + S(φ)
    (+∞ before the first proposal, so that one is accepted unconditionally)."""

    position: jnp.ndarray
    log_weight: jnp.ndarray


class IMHInfo(NamedTuple):
    """Diagnostics of one step, with the fields :func:`trivflow.hmc.run_chains` books."""

    delta_H: jnp.ndarray  # w(φ′) − w(φ): accept with min{1, e^{−ΔH}}; ⟨e^{−ΔH}⟩ = 1 in equilibrium
    accepted: jnp.ndarray  # bool
    acceptance_prob: jnp.ndarray  # min{1, e^{−ΔH}}, 0 for a proposal with a non-finite weight
    divergent: jnp.ndarray  # bool: w(φ′) non-finite (the proposal is rejected)


@functools.lru_cache(maxsize=32)  # one kernel per proposal, so the driver's compile cache finds it again
def imh_kernel(propose_fn: Callable) -> Kernel:
    """The independence-MH kernel for ``propose_fn(key, params) -> (φ′, w(φ′))``.

    ``init(position, params)`` gives :class:`IMHState` ``(position, +∞)``: the first step accepts
    its proposal whatever it is (the chain's start is a draw from q; ``position`` is only a
    placeholder of the proposals' shape and dtype; w is kept in the default float type, float64
    with x64). ``step(key, state, params)``: draw (φ′, w′),
    ΔH = w′ − w, accept with probability min{1, e^{−ΔH}} (0 if w′ is not finite, flagged
    ``divergent``); returns ``(state, IMHInfo)``. At the first step ΔH = −∞.
    """

    def init(position, params) -> IMHState:
        return IMHState(position, jnp.asarray(jnp.inf, jnp.promote_types(position.dtype, float)))

    def step(key, state: IMHState, params):
        key_proposal, key_accept = jax.random.split(key)
        position, w = propose_fn(key_proposal, params)
        w = jnp.asarray(w, state.log_weight.dtype)
        delta = w - state.log_weight
        divergent = ~jnp.isfinite(w)
        # −ΔH clipped at 0 so that exp never overflows; ΔH = −∞ (first step) gives probability 1
        prob = jnp.where(divergent, 0.0, jnp.exp(jnp.minimum(-delta, 0.0)))
        accepted = jax.random.uniform(key_accept, (), prob.dtype) < prob
        new = IMHState(position.astype(state.position.dtype), w)
        state = jax.tree_util.tree_map(lambda n, o: jnp.where(accepted, n, o), new, state)
        return state, IMHInfo(delta, accepted, prob, divergent)

    return Kernel(init, step)


def run_imh(
    key,
    propose_fn: Callable,
    params,
    *,
    num_chains: int,
    num_steps: int,
    measure_fn: Callable,
    num_therm: int = 0,
    meas_every: int = 1,
    batch_size: int = 1000,
    progress: bool = True,
    desc: str = "IMH",
    state_path: str | Path | None = None,
    save_every: int = 1,
    fingerprint: dict | None = None,
    devices=None,
    min_acceptance: float | None = None,
) -> ChainResult:
    """Run ``num_chains`` independence-MH chains: :func:`imh_kernel` in :func:`trivflow.hmc.run_chains`.

    Every chain first accepts one proposal unconditionally (its start, a draw from q), then
    makes ``num_therm`` discarded and ``num_steps`` measured Metropolis steps. The driver sees
    ``num_therm + 1`` thermalization steps (``result.num_therm``), so the first step's
    ΔH = −∞ never enters the measured series.

    Args:
        key: PRNG key, split into the chain keys as in :func:`trivflow.hmc.run_chains`.
        propose_fn: ``(key, params) -> (phi, w)`` one proposal and its log-weight
            w = log q(φ) + S(φ) (see :func:`trivflow.samplers.flow_proposal`).
        params: pytree for ``propose_fn`` and ``measure_fn`` (a jit argument).
        measure_fn: ``(phi, params) -> pytree`` of observables.
        num_steps: measured steps per chain (a multiple of ``meas_every``).
        num_therm, meas_every: discarded steps after the start; measure every ``meas_every``-th step.
        batch_size: steps per compiled chunk (``sampler.batch_size``); the numbers do not depend on it.
        progress, desc, state_path, save_every, fingerprint, devices, min_acceptance: as in
            :func:`trivflow.hmc.run_chains` (the acceptance check judges steps: a chain that never
            accepts stops the run with :class:`trivflow.hmc.driver.FrozenChainsError`).

    Returns:
        :class:`~trivflow.hmc.ChainResult` with observables of shape
        (num_chains, num_steps / meas_every, ...), and ``delta_H`` = w(φ′) − w(φ), ``accepted``,
        ``acceptance_prob``, ``divergent`` per measured step; ``final_state`` an :class:`IMHState`.
    """
    phi = jax.eval_shape(lambda k: propose_fn(k, params)[0], key)
    positions = jnp.zeros((num_chains, *phi.shape), phi.dtype)  # placeholders: the first step replaces them
    return run_chains(key, imh_kernel(propose_fn), positions, params, num_traj=num_steps,
                      num_therm=num_therm + 1, meas_every=meas_every, measure_fn=measure_fn,
                      chunk_size=batch_size, progress=progress, desc=desc, state_path=state_path,
                      save_every=save_every, fingerprint=fingerprint, devices=devices,
                      min_acceptance=min_acceptance)


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
