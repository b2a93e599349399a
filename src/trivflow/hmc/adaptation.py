"""Step-size adaptation by dual averaging during thermalization (docs/theory.md#step-size-adaptation).

Hoffman & Gelman (2014, sec. 3.2), as in Stan, NumPyro and BlackJAX: with the statistic
g_t = δ − ᾱ_t (δ the target acceptance, ᾱ_t the acceptance probability min{1, e^{−ΔH}} of
step t averaged over the chains, which share one ε),

    ḡ_t = (1 − 1/(t + t₀)) ḡ_{t−1} + g_t/(t + t₀),
    log ε_t = μ − √t/γ · ḡ_t,                     μ = log(10 ε₀),
    log ε̄_t = t^{−κ} log ε_t + (1 − t^{−κ}) log ε̄_{t−1},

step t + 1 runs with ε_t; after thermalization the step size is frozen at ε̄ (the average of
the iterates), so the measured chain is a fixed, exact HMC chain: adaptation only chooses its ε.
Defaults t₀ = 10, κ = 0.75, γ = 0.05 (Stan's and NumPyro's).

The adaptation runs in compiled chunks like the driver's (:mod:`trivflow.hmc.chunks`), with the
same keys ``fold_in(chain_key[c], t)``, carrying :class:`DualAveragingState` beside the chains.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from ..errors import must_be


@dataclass(frozen=True)
class DualAveraging:
    """Settings of the dual-averaging adaptation (module docstring); hashable (a compile key)."""

    target: float = 0.8
    t0: float = 10.0
    kappa: float = 0.75
    gamma: float = 0.05

    def __post_init__(self):
        if not 0 < self.target < 1:
            raise must_be("target_accept", self.target, "a number in (0, 1)")
        if not 0.5 < self.kappa <= 1 or not self.t0 >= 0 or not self.gamma > 0:
            raise ValueError(f"dual averaging needs 0.5 < kappa <= 1, t0 >= 0, gamma > 0, got {self!r}")


class DualAveragingState(NamedTuple):
    """log ε_t (the next step's), log ε̄_t (the frozen value's), ḡ_t, t and μ = log(10 ε₀)."""

    log_step: jnp.ndarray
    log_step_avg: jnp.ndarray
    g_avg: jnp.ndarray
    t: jnp.ndarray
    mu: jnp.ndarray


def init(step_size, dtype=jnp.float64) -> DualAveragingState:
    """The state before the first step: ε₀ = ``step_size`` (the configured one), ḡ = 0, t = 0."""
    log_eps = jnp.log(jnp.asarray(step_size, dtype))
    zero = jnp.zeros((), dtype)
    return DualAveragingState(log_eps, log_eps, zero, jnp.zeros((), dtype), log_eps + jnp.log(10.0).astype(dtype))


def update(state: DualAveragingState, acceptance_prob, settings: DualAveraging) -> DualAveragingState:
    """One dual-averaging update with the chains' mean acceptance probability of the last step."""
    t = state.t + 1
    eta = 1.0 / (t + settings.t0)
    g_avg = (1.0 - eta) * state.g_avg + eta * (settings.target - acceptance_prob)
    log_step = state.mu - jnp.sqrt(t) / settings.gamma * g_avg
    w = t ** (-settings.kappa)
    log_step_avg = w * log_step + (1.0 - w) * state.log_step_avg
    return DualAveragingState(log_step, log_step_avg, g_avg, t, state.mu)


def final_step_size(state: DualAveragingState):
    """The frozen step size ε̄ = exp(log ε̄_t)."""
    return jnp.exp(state.log_step_avg)


@functools.lru_cache(maxsize=16)
def adaptation_chunk(step: Callable, num_steps: int, settings: DualAveraging, replicated=None):
    """jit-compiled ``chunk(states, da_state, chain_keys, start, params) -> (states, da_state, infos)``:
    ``num_steps`` steps of all chains (``step(key, state, params, ε)`` vmapped), step t with
    ε = exp(log ε_{t−1}) and key ``fold_in(chain_key[c], t)``, each followed by :func:`update`.
    infos have shape (C, num_steps).

    ``replicated``: with chains sharded over several devices, their acceptance probabilities are
    gathered onto every device (this sharding) before the mean, so that the sum runs in one
    device's order and ε, hence every number, equals a one-device run's."""
    vstep = jax.vmap(step, in_axes=(0, 0, None, None))
    fold = jax.vmap(jax.random.fold_in, in_axes=(0, None))

    def chunk(states, da, chain_keys, start, params):
        def one_step(carry, t):
            states, da = carry
            eps = jnp.exp(da.log_step).astype(states.position.dtype)
            states, info = vstep(fold(chain_keys, t), states, params, eps)
            acc = info.acceptance_prob
            if replicated is not None:
                acc = jax.lax.with_sharding_constraint(acc, replicated)
            da = update(da, jnp.mean(acc).astype(da.g_avg.dtype), settings)
            return (states, da), info

        (states, da), infos = jax.lax.scan(one_step, (states, da), start + jnp.arange(num_steps))
        return states, da, jax.tree_util.tree_map(lambda a: jnp.moveaxis(a, 0, -1), infos)

    return jax.jit(chunk, donate_argnums=(0,))
