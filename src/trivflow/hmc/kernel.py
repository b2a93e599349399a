"""The HMC transition kernel as a pair of pure functions (BlackJAX style).

``init(position, params) -> HMCState`` and
``step(key, state, params, step_size) -> (HMCState, HMCInfo)`` act on ONE chain; the driver
vmaps them over chains. ``params`` is any pytree the potential depends on (couplings, flow
parameters): it is a jit argument, so changing it never recompiles.

One step: π ~ N(0, 1), integrate H = ½Σπ² + U for ``num_steps`` steps, accept with
probability min{1, e^{−ΔH}}, full momentum refresh. A divergent trajectory — ΔH non-finite or
|ΔH| > :data:`DIVERGENCE_THRESHOLD` — is rejected and flagged, so a blown-up trajectory never
enters the chain. Rejecting on |ΔH| keeps detailed balance: the reversed trajectory has −ΔH,
so the rejected set is symmetric under reversal (a large *negative* ΔH is the mark of a
blown-up integration as much as a large positive one).

Options (off by default, the unit-mass threefry kernel unchanged): ``metric`` gives the kinetic
term ½ Σ_p |π̂(p)|²/M̂(p) of Fourier acceleration and ``momentum_draw`` another random stream
for π (:mod:`trivflow.hmc.fourier`, docs/theory.md#fourier-accelerated-hmc).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from ..errors import must_be
from .fourier import FourierMetric
from .fourier import momentum_draw as get_momentum_draw
from .integrators import get_integrator, kinetic_energy

#: |ΔH| above this (or non-finite) marks a trajectory as divergent.
DIVERGENCE_THRESHOLD = 1000.0


class HMCState(NamedTuple):
    """What the next step needs: position x, U(x) and ∂U/∂x at x."""

    position: jnp.ndarray
    potential: jnp.ndarray
    grad: jnp.ndarray


class HMCInfo(NamedTuple):
    """Diagnostics of one trajectory."""

    delta_H: jnp.ndarray  # H(end) − H(start); NaN/inf kept as is for diagnostics
    accepted: jnp.ndarray  # bool
    acceptance_prob: jnp.ndarray  # min{1, e^{−ΔH}}, 0 for a divergent trajectory (rejected)
    divergent: jnp.ndarray  # bool: non-finite or |ΔH| > DIVERGENCE_THRESHOLD


class HMCKernel(NamedTuple):
    init: Callable
    step: Callable


def build_kernel(
    potential_fn: Callable,
    *,
    num_steps: int,
    integrator: str = "leapfrog",
    value_and_grad_fn: Callable | None = None,
    metric: FourierMetric | None = None,
    momentum_draw: str = "threefry",
) -> HMCKernel:
    """Build the HMC kernel for ``potential_fn(position, params) -> U`` (scalar).

    Args:
        potential_fn: the potential (for lattice theories, the action S) of one configuration.
        num_steps: integration steps per trajectory (static: fixes the loop structure).
        integrator: ``"leapfrog"`` or ``"omelyan"``.
        value_and_grad_fn: optional ``(position, params) -> (U, ∂U/∂x)``, e.g. an analytic
            force; defaults to ``jax.value_and_grad(potential_fn)``.
        metric: None (unit mass) or the Fourier mass matrix of one configuration
            (:class:`trivflow.hmc.fourier.FourierMetric`): π ~ N(0, M), K = ½πᵀM⁻¹π, drift M⁻¹π.
        momentum_draw: ``"threefry"`` (default), ``"rbg"`` or ``"float32"``
            (:func:`trivflow.hmc.fourier.momentum_draw`: the stream changes, not the distribution).
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise must_be("num_steps", num_steps, "a positive integer")
    integrate = get_integrator(integrator)
    vg = value_and_grad_fn if value_and_grad_fn is not None else jax.value_and_grad(potential_fn)
    draw = get_momentum_draw(momentum_draw)
    kinetic = kinetic_energy if metric is None else metric.kinetic_energy
    velocity = None if metric is None else metric.velocity

    def init(position, params) -> HMCState:
        potential, grad = vg(position, params)
        return HMCState(position, potential, grad)

    def step(key, state: HMCState, params, step_size):
        key_momentum, key_accept = jax.random.split(key)
        momentum = draw(key_momentum, state.position.shape, state.position.dtype)
        if metric is not None:
            if metric.shape != state.position.shape:
                raise ValueError(f"the Fourier mass kernel is for shape {metric.shape}, the position has "
                                 f"shape {state.position.shape}")
            momentum = metric.sample(momentum)
        h_start = kinetic(momentum) + state.potential
        position, momentum, potential, grad = integrate(
            lambda x: vg(x, params), state.position, momentum, state.potential, state.grad,
            step_size, num_steps, velocity=velocity,
        )
        delta_H = kinetic(momentum) + potential - h_start
        finite = jnp.isfinite(delta_H)
        divergent = ~finite | (jnp.abs(delta_H) > DIVERGENCE_THRESHOLD)
        acceptance_prob = jnp.where(divergent, 0.0, jnp.minimum(1.0, jnp.exp(-delta_H)))
        accepted = ~divergent & (jax.random.uniform(key_accept, (), delta_H.dtype) < acceptance_prob)
        new_state = jax.tree_util.tree_map(
            lambda new, old: jnp.where(accepted, new, old),
            HMCState(position, potential, grad),
            state,
        )
        return new_state, HMCInfo(delta_H, accepted, acceptance_prob, divergent)

    return HMCKernel(init, step)

