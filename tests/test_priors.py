"""Priors (docs/theory.md#priors): the Prior interface and the normalised Gaussian."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from trivflow.priors import GaussianPrior, Prior


def test_gaussian_is_a_prior():
    assert isinstance(GaussianPrior((4, 4)), Prior)


def test_sample_shape_dtype_and_moments():
    prior = GaussianPrior((8, 8))
    z = prior.sample(jax.random.PRNGKey(0), 500)
    assert z.shape == (500, 8, 8) and z.dtype == jnp.float64
    # 32000 draws: mean ± 4σ = 4/√32000 ≈ 0.022, variance ± 4·√(2/32000) ≈ 0.032
    assert abs(float(jnp.mean(z))) < 0.03
    assert abs(float(jnp.var(z)) - 1.0) < 0.04
    z2 = prior.sample(jax.random.PRNGKey(0), 500)
    np.testing.assert_array_equal(z, z2)  # same key, same sample
    assert not np.array_equal(z, prior.sample(jax.random.PRNGKey(1), 500))


def test_float32_samples():
    prior = GaussianPrior((4, 4), dtype=jnp.float32)
    z = prior.sample(jax.random.PRNGKey(0), 3)
    assert z.dtype == jnp.float32
    assert prior.log_prob(z[0]).dtype == jnp.float32


def test_log_prob_matches_scipy():
    prior = GaussianPrior((6, 4))
    z = prior.sample(jax.random.PRNGKey(2), 5)
    log_r = jax.vmap(prior.log_prob)(z)
    expected = stats.norm.logpdf(np.asarray(z)).sum(axis=(1, 2))
    np.testing.assert_allclose(log_r, expected, rtol=1e-13)
    # analytic: −½Σz² − (V/2) log 2π
    np.testing.assert_allclose(prior.log_prob(jnp.zeros((6, 4))), -12 * math.log(2 * math.pi), rtol=1e-14)


def test_log_prob_is_normalised():
    """∫ r = 1 numerically for V = 1 (adaptive quadrature) and V = 2 (trapezoid on a grid,
    exponentially accurate for a smooth, rapidly decaying integrand)."""
    p1 = GaussianPrior((1,))
    log_r1 = jax.jit(p1.log_prob)
    total, _ = integrate.quad(lambda x: math.exp(float(log_r1(jnp.array([x])))), -12, 12)
    assert abs(total - 1.0) < 1e-10
    p2 = GaussianPrior((2,))
    x = np.linspace(-10, 10, 801)
    grid = jnp.stack(np.meshgrid(x, x, indexing="ij"), axis=-1).reshape(-1, 2)
    density = np.exp(np.asarray(jax.vmap(p2.log_prob)(grid))).reshape(801, 801)
    total = integrate.trapezoid(integrate.trapezoid(density, x, axis=1), x)
    assert abs(total - 1.0) < 1e-10


@pytest.mark.parametrize("shape", [(), (0, 4), (4, -2), (4.0, 4), "44", 8])
def test_bad_shape_raises(shape):
    with pytest.raises(ValueError, match="shape"):
        GaussianPrior(shape)


def test_bad_calls_raise():
    prior = GaussianPrior((4, 4))
    with pytest.raises(ValueError, match="batch_size=0"):
        prior.sample(jax.random.PRNGKey(0), 0)
    with pytest.raises(ValueError, match="ONE configuration"):
        prior.log_prob(jnp.zeros((2, 4, 4)))


def test_prior_is_hashable_and_jittable():
    """Frozen priors can be closed over or passed as static arguments."""
    prior = GaussianPrior((4, 4))
    assert hash(prior) == hash(GaussianPrior([4, 4]))
    f = jax.jit(lambda key: jax.vmap(prior.log_prob)(prior.sample(key, 7)))
    assert f(jax.random.PRNGKey(0)).shape == (7,)
