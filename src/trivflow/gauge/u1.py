"""Compact U(1) lattice gauge theory in two dimensions, pure JAX (docs/theory.md#u1).

Conventions (the same axis convention as φ⁴'s, where direction μ is array axis μ of the field):

* a configuration is the array of link angles ``theta`` of shape ``(2, L, L)``: ``theta[mu]`` is
  θ_μ(x), the angle of the link from x to x + μ̂, and x = (x₀, x₁) indexes ``theta[mu][x0, x1]``;
  so direction μ of the lattice is array axis μ of ``theta[mu]`` (axis μ + 1 of ``theta``);
* a shift by +ν̂ reads the neighbour: f(x + ν̂) = ``jnp.roll(f, -1, axis=nu)`` (periodic);
* plaquette angle θ_P(x) = θ₀(x) + θ₁(x+0̂) − θ₀(x+1̂) − θ₁(x), shape ``(L, L)``, one per site;
* Wilson action S = −β Σ_P cos θ_P (V = L² plaquettes), 2π-periodic in every link; HMC moves the
  angles on ℝ;
* gauge transformation θ_μ(x) → θ_μ(x) + α(x) − α(x+μ̂) leaves every θ_P, hence S, Q and each
  Wilson loop, unchanged;
* geometric topological charge Q = (1/2π) Σ_P [θ_P], [·] the representative in (−π, π]; it is an
  integer on every configuration because Σ_P θ_P = 0 identically on the torus.

Every function acts on ONE configuration; vmap over chains at the edge.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

#: the Wilson loops W(R×T) measured by :func:`u1_observables`, as (R, T)
WILSON_LOOPS = ((1, 1), (1, 2), (2, 2))


def shift(f: jnp.ndarray, nu: int, n: int = 1) -> jnp.ndarray:
    """f(x + n ν̂) for a site field ``f`` of shape ``(L, L)`` (periodic)."""
    return jnp.roll(f, -n, axis=nu)


def plaquette_angles(theta: jnp.ndarray) -> jnp.ndarray:
    """θ_P(x) = θ₀(x) + θ₁(x+0̂) − θ₀(x+1̂) − θ₁(x), shape ``(L, L)``, not wrapped.

    Args:
        theta: link angles, shape ``(2, L, L)`` (module docstring).
    """
    t0, t1 = theta[0], theta[1]
    return t0 + shift(t1, 0) - shift(t0, 1) - t1


def wrap_angle(x: jnp.ndarray) -> jnp.ndarray:
    """The representative [x] ∈ (−π, π] of x modulo 2π: [x] = π − ((π − x) mod 2π)."""
    return math.pi - jnp.mod(math.pi - x, 2.0 * math.pi)


def wilson_action(theta: jnp.ndarray, beta) -> jnp.ndarray:
    """S = −β Σ_P cos θ_P (scalar)."""
    return -beta * jnp.sum(jnp.cos(plaquette_angles(theta)))


def wilson_force(theta: jnp.ndarray, beta) -> jnp.ndarray:
    """∂S/∂θ_μ(x), shape ``(2, L, L)``, with s(x) = sin θ_P(x):

    ∂S/∂θ₀(x) = β [s(x) − s(x − 1̂)]   (θ₀(x) enters P(x) with +, P(x − 1̂) with −),
    ∂S/∂θ₁(x) = β [s(x − 0̂) − s(x)]   (θ₁(x) enters P(x − 0̂) with +, P(x) with −).
    """
    s = jnp.sin(plaquette_angles(theta))
    return beta * jnp.stack([s - shift(s, 1, -1), shift(s, 0, -1) - s])


def topological_charge(theta: jnp.ndarray) -> jnp.ndarray:
    """Q = (1/2π) Σ_P [θ_P], [·] ∈ (−π, π] (scalar; an integer up to rounding)."""
    return jnp.sum(wrap_angle(plaquette_angles(theta))) / (2.0 * math.pi)


def loop_angles(theta: jnp.ndarray, R: int, T: int) -> jnp.ndarray:
    """Angle of the R × T rectangular Wilson loop with lower-left corner x, extent R along
    direction 0 and T along direction 1, shape ``(L, L)``: by Stokes' theorem on the lattice it is
    the sum of the (unwrapped) plaquette angles it encloses, Σ_{0≤i<R, 0≤j<T} θ_P(x + i 0̂ + j 1̂)."""
    p = plaquette_angles(theta)
    rows = sum(shift(p, 0, i) for i in range(R))
    return sum(shift(rows, 1, j) for j in range(T))


def wilson_loop(theta: jnp.ndarray, R: int, T: int) -> jnp.ndarray:
    """W(R×T) = (1/2V) Σ_x [cos θ_{R×T}(x) + cos θ_{T×R}(x)], both orientations averaged (scalar)."""
    a = jnp.mean(jnp.cos(loop_angles(theta, R, T)))
    b = a if R == T else jnp.mean(jnp.cos(loop_angles(theta, T, R)))
    return 0.5 * (a + b)


def gauge_transform(theta: jnp.ndarray, alpha: jnp.ndarray) -> jnp.ndarray:
    """θ_μ(x) → θ_μ(x) + α(x) − α(x + μ̂) for a site field ``alpha`` of shape ``(L, L)``."""
    return jnp.stack([theta[mu] + alpha - shift(alpha, mu) for mu in range(2)])


def u1_observables(theta: jnp.ndarray) -> dict:
    """Per-configuration observables (docs/theory.md#u1), each a scalar:

    ``plaquette`` = (1/V) Σ_P cos θ_P, ``Q`` (geometric charge), ``Q2`` = Q², and ``W_RxT``
    (:func:`wilson_loop`) for each (R, T) of :data:`WILSON_LOOPS`."""
    p = plaquette_angles(theta)
    q = jnp.sum(wrap_angle(p)) / (2.0 * math.pi)
    out = {"plaquette": jnp.mean(jnp.cos(p)), "Q": q, "Q2": q * q}
    for R, T in WILSON_LOOPS:
        out[f"W_{R}x{T}"] = wilson_loop(theta, R, T)
    return out
