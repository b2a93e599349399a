"""The normal draws of trivflow.draws (docs/theory.md, momentum and prior streams): the Gaussian
prior's ``draw`` option changes the random stream, not the distribution, and the default is
JAX's normal bit for bit."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trivflow.draws import NORMAL_DRAWS, normal_draw
from trivflow.lattice import phi4_action
from trivflow.priors import GaussianPrior


def test_default_prior_draw_is_jax_normal_bit_for_bit():
    key = jax.random.key(3)
    z = GaussianPrior((4, 6)).sample(key, 5)
    np.testing.assert_array_equal(np.asarray(z), np.asarray(jax.random.normal(key, (5, 4, 6), jnp.float64)))


@pytest.mark.parametrize("name", ["rbg", "float32"])
def test_prior_draw_changes_the_stream_not_the_distribution(name):
    prior = GaussianPrior((8, 8), draw=name)
    z = np.asarray(prior.sample(jax.random.key(0), 4000)).ravel()  # 256 000 numbers
    assert z.dtype == np.float64
    n = z.size
    # mean, variance and fourth moment of N(0, 1) within 4 standard errors
    assert abs(z.mean()) < 4 / np.sqrt(n) and abs(z.var() - 1) < 4 * np.sqrt(2 / n)
    assert abs(np.mean(z**4) - 3) < 4 * np.sqrt(96 / n)
    assert not np.array_equal(z, np.asarray(GaussianPrior((8, 8)).sample(jax.random.key(0), 4000)).ravel())
    if name == "float32":  # N(0, 1) rounded to float32, then exactly representable in float64
        np.testing.assert_array_equal(z, z.astype(np.float32).astype(np.float64))


def test_bad_draw_names_fail_at_construction():
    with pytest.raises(ValueError, match=r"draw='philox'"):
        GaussianPrior((4, 4), draw="philox")
    with pytest.raises(ValueError, match=r"momentum_draw='philox'"):
        normal_draw("philox", key_name="momentum_draw")
    assert NORMAL_DRAWS == ("threefry", "rbg", "float32")


def test_training_batches_come_from_the_prior_draw():
    """The training step draws its batches with the prior's stream: float32 batches are
    float32-representable, and the loss of a fresh flow agrees with threefry's within errors."""
    from trivflow.flows import Flow, build_flow, split_flow
    from trivflow.training import evaluate_flow, make_optimizer, make_train_step

    action = functools.partial(phi4_action, beta=0.5, lam=0.5)
    flow = Flow.from_module(*split_flow(build_flow(kernel_size=3, seed=1)))
    for name in ("threefry", "float32"):
        prior = GaussianPrior((4, 4), draw=name)
        init, step = make_train_step(prior, action, make_optimizer(0.01, 10), 16)
        state, _ = step(init(jax.tree_util.tree_map(jnp.array, flow), jax.random.key(2)))
        z = np.asarray(state.z)
        assert z.shape == (16, 4, 4) and z.dtype == np.float64
        assert np.array_equal(z, z.astype(np.float32).astype(np.float64)) == (name == "float32")
    a = evaluate_flow(jax.random.key(4), flow, GaussianPrior((4, 4)), action, batch_size=4000)
    b = evaluate_flow(jax.random.key(5), flow, GaussianPrior((4, 4), draw="float32"), action, batch_size=4000)
    assert abs(a["loss"] - b["loss"]) < 4 * np.hypot(a["loss_err"], b["loss_err"])
