"""Assertions shared by several test files (imported as ``from checks import ...``; pytest puts
tests/ on sys.path)."""

import jax
import jax.numpy as jnp
import numpy as np

from trivflow import hmc
from trivflow.analysis import gamma_method


def assert_same_mean(a, b, name, n_sigma=3.0):
    """Γ-method means of two (chains, N) series agree within ``n_sigma`` combined errors, and
    the combined error is below 5 % of the mean (so the comparison has teeth)."""
    ra, rb = gamma_method(a), gamma_method(b)
    sigma = float(np.hypot(ra.err, rb.err))
    assert abs(ra.mean - rb.mean) < n_sigma * sigma, (name, ra.mean, rb.mean, sigma)
    assert sigma < 0.05 * abs(rb.mean), (name, sigma)


def leapfrog_round_trip(value_and_grad, x0, p0, step_size=0.1, num_steps=10):
    """max |x₂ − x₀| and max |p₂ + p₀| after ``num_steps`` leapfrog steps forward, a momentum
    flip and the same steps again (exactly 0 for an exactly reversible integrator)."""
    f = jax.jit(lambda x, p: hmc.leapfrog(value_and_grad, x, p, *value_and_grad(x), step_size, num_steps))
    x1, p1, _, _ = f(x0, p0)
    x2, p2, _, _ = f(x1, -p1)
    return float(jnp.max(jnp.abs(x2 - x0))), float(jnp.max(jnp.abs(p2 + p0)))


def assert_layers_in_turn(flow, z, rtol=0.0):
    """A loaded flow whose module is a ``Compose`` maps ``z`` as its layers applied in turn:
    φ = g₂(g₁(z)) and log|det J| = log|det J₁| + log|det J₂| (``rtol`` 0: bit for bit).
    Returns the ``Compose`` module for further checks."""
    from trivflow.flows import Compose

    module = flow.module()
    assert isinstance(module, Compose) and len(module.layers) == 2
    phi, log_det = flow.forward(z)
    phi1, ld1 = module.layers[0].forward_and_log_det(z)
    phi2, ld2 = module.layers[1].forward_and_log_det(phi1)
    np.testing.assert_allclose(np.asarray(phi), np.asarray(phi2), rtol=rtol, atol=0)
    np.testing.assert_allclose(float(log_det), float(ld1 + ld2), rtol=rtol, atol=0)
    return module
