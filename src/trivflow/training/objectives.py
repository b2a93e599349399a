"""Reverse-KL objective and the flow-quality metrics of docs/theory.md#training-reverse-kl, all on device.

With z ~ r and φ = g(z), the model density is q(φ) = r(z) |det J_g(z)|⁻¹ and the
(unnormalised) target p(φ) ∝ e^{−S(φ)}. The log-weight of a sample is

    w(z) = log r(z) − log|det J_g(z)| + S(g(z))   ( = log q(φ) − log p̃(φ) ),

loss = mean_batch w, an unbiased estimate of KL(q‖p) − log Z ≥ −log Z.
Importance weights are e^{−w}.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from .cache import Static


def reverse_kl_weights(
    flow,
    z: jnp.ndarray,
    log_r: jnp.ndarray,
    action_fn: Callable[[jnp.ndarray], jnp.ndarray],
) -> jnp.ndarray:
    """w_i = log r(z_i) − log|det J_g(z_i)| + S(g(z_i)) for a batch.

    Args:
        flow: the :class:`trivflow.flows.Flow` g (differentiate w.r.t. it: its leaves are the
            parameters).
        z: prior samples, shape ``(B, L0, L1)``.
        log_r: log r(z_i), shape ``(B,)``; carries no gradient (stop_gradient).
        action_fn: S of ONE configuration (vmapped here), e.g.
            ``functools.partial(phi4_action, beta=0.576, lam=0.5)``.

    Returns:
        w, shape ``(B,)``.
    """
    phi, log_det = jax.vmap(flow.forward)(z)
    return jax.lax.stop_gradient(log_r) - log_det + jax.vmap(action_fn)(phi)


def reverse_kl_loss(flow, z, log_r, action_fn) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(mean_batch w, w); differentiate w.r.t. ``flow`` with ``has_aux=True``."""
    w = reverse_kl_weights(flow, z, log_r, action_fn)
    return jnp.mean(w), w


def effective_sample_size(w: jnp.ndarray) -> jnp.ndarray:
    """Normalised ESS = (Σ_i e^{−w_i})² / (B Σ_i e^{−2w_i}) ∈ (0, 1], computed with logsumexp.

    log ESS = 2 lse(−w) − lse(−2w) − log B, so it is exact for any offset of w.
    """
    B = w.shape[0]
    return jnp.exp(2.0 * jax.nn.logsumexp(-w) - jax.nn.logsumexp(-2.0 * w) - jnp.log(B))


def mh_acceptance(key: jax.Array, w: jnp.ndarray) -> jnp.ndarray:
    """Acceptance rate of the independence Metropolis chain run over a batch of weights.

    The chain starts at sample 0; proposal j = 1 … B−1 is accepted with probability
    min{1, exp(w_current − w_j)} (docs/theory.md#imh: p(φ′)q(φ)/(p(φ)q(φ′)) = e^{w(φ) − w(φ′)}),
    sequentially, in a ``lax.scan``. Returns the fraction accepted (B − 1 proposals).
    The batch must be drawn independently of the parameters that produced w.
    """
    log_u = jnp.log(jax.random.uniform(key, (w.shape[0] - 1,), w.dtype))

    def body(w_cur, x):
        w_new, lu = x
        accept = lu < w_cur - w_new
        return jnp.where(accept, w_new, w_cur), accept

    _, accepted = jax.lax.scan(body, w[0], (w[1:], log_u))
    return jnp.mean(accepted.astype(w.dtype))


def flow_metrics(key: jax.Array, w: jnp.ndarray) -> dict[str, jnp.ndarray]:
    """``loss`` (mean w), ``ess`` and ``mh_acceptance`` of one batch of weights."""
    return {"loss": jnp.mean(w), "ess": effective_sample_size(w), "mh_acceptance": mh_acceptance(key, w)}


def _evaluation_metrics(key: jax.Array, w: jnp.ndarray) -> dict[str, jnp.ndarray]:
    """:func:`flow_metrics` plus ``loss_err`` = std(w)/√B, the standard error of the loss (the
    batch is i.i.d. from the prior)."""
    return {**flow_metrics(key, w), "loss_err": jnp.std(w, ddof=1) / jnp.sqrt(w.shape[0])}


def evaluate_flow(
    key: jax.Array,
    flow,
    prior,
    action_fn: Callable,
    *,
    batch_size: int = 1000,
) -> dict[str, float]:
    """loss (with its standard error ``loss_err``), ESS and independence-MH acceptance of the
    flow on a fresh prior batch (host floats).

    The flow (:class:`trivflow.flows.Flow`) and the prior are jit arguments
    (:func:`trivflow.priors.base.as_pytree`: an ensemble is not compiled in). The compiled
    functions are cached on ``action_fn`` and ``batch_size`` (:mod:`trivflow.training.cache`:
    a ``functools.partial`` of scalars compares by value, a bound method by function and
    instance, other callables by identity), so repeated calls reuse the compilation.
    """
    from ..priors.base import as_pytree

    key_z, key_mh = jax.random.split(key)
    draw, weights = _evaluation_functions(Static(action_fn), batch_size)
    z, log_r = draw(as_pytree(prior), key_z)
    w = weights(flow, z, log_r)
    return {k: float(v) for k, v in _metrics(key_mh, w).items()}


@functools.lru_cache(maxsize=16)
def _evaluation_functions(action: Static, batch_size: int):
    """The jitted ``draw(prior, key) -> (z, log r(z))`` of ``batch_size`` prior samples and
    ``weights(flow, z, log_r) -> w`` of ``action``, once per static inputs."""
    action_fn = action.value

    def draw(prior, key):
        z = prior.sample(key, batch_size)
        return z, jax.vmap(prior.log_prob)(z)

    def weights(flow, z, log_r):
        return reverse_kl_weights(flow, z, log_r, action_fn)

    return jax.jit(draw), jax.jit(weights)


_metrics = jax.jit(_evaluation_metrics)
