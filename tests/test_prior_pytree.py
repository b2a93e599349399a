"""Priors are JAX pytrees: jitted code takes an ensemble prior as an argument, never as a
compiled-in constant, and one compilation serves every ensemble of the same shape."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trivflow.flows import Flow, build_flow, split_flow
from trivflow.lattice.phi4 import phi4_action
from trivflow.priors import CoarseTheoryPrior, GaussianPrior, Interleave4Prior, InterpolationPrior
from trivflow.priors.base import _StaticPrior, as_pytree
from trivflow.training import make_optimizer, make_train_step, train_flow


def ensemble(n, L, seed=0):
    return jax.random.normal(jax.random.key(seed), (n, L, L))


@pytest.mark.parametrize("make", [
    lambda c: CoarseTheoryPrior(c, beta=0.5, lam=0.5),
    lambda c: InterpolationPrior(c, beta=0.5, lam=0.5, noise=0.1),
    lambda c: Interleave4Prior(c, beta=0.5, lam=0.5, flip_sign=False),
])
def test_round_trip_through_the_pytree_keeps_the_prior(make):
    prior = make(ensemble(5, 4))
    leaves, treedef = jax.tree_util.tree_flatten(prior)
    assert len(leaves) == 1 and leaves[0] is prior.configs  # the ensemble is the only leaf
    back = jax.tree_util.tree_unflatten(treedef, leaves)
    z = prior.sample(jax.random.key(1), 3)
    np.testing.assert_array_equal(back.sample(jax.random.key(1), 3), z)
    np.testing.assert_array_equal(jax.vmap(back.log_prob)(z), jax.vmap(prior.log_prob)(z))


def test_gaussian_prior_has_no_leaves_and_other_priors_are_wrapped():
    assert jax.tree_util.tree_leaves(GaussianPrior((4, 4))) == []

    class Mine:
        shape = (2, 2)

        def sample(self, key, n):
            return jnp.zeros((n, 2, 2))

        def log_prob(self, z):
            return -jnp.sum(z**2)

    wrapped = as_pytree(Mine())
    assert isinstance(wrapped, _StaticPrior) and jax.tree_util.tree_leaves(wrapped) == []
    assert wrapped.shape == (2, 2) and float(wrapped.log_prob(jnp.ones((2, 2)))) == -4.0


def test_train_step_does_not_embed_the_ensemble_and_is_shared_between_ensembles():
    L, n = 8, 4000  # 2 MB of float64
    flow = Flow.from_module(*split_flow(build_flow(kernel_size=3)))
    action = functools.partial(phi4_action, beta=0.576, lam=0.5)
    optimizer = make_optimizer(0.01, 10)
    p1 = CoarseTheoryPrior(ensemble(n, L, 0), beta=0.576, lam=0.5)
    p2 = CoarseTheoryPrior(ensemble(n, L, 1), beta=0.576, lam=0.5)
    init1, step1 = make_train_step(p1, action, optimizer, 16)
    init2, step2 = make_train_step(p2, action, optimizer, 16)
    assert step1.func is step2.func  # one compiled step for both ensembles
    state = init1(flow, jax.random.key(0))
    hlo = step1.func.lower(state, p1).as_text()
    assert len(hlo) < 200_000, f"the compiled step is {len(hlo)} characters: the ensemble is embedded"
    # and the step really uses its argument: the next batch comes from p1's members
    state, _ = step1(state)
    members = np.asarray(p1.configs).reshape(n, -1)
    for z in np.asarray(state.z).reshape(16, -1):
        assert np.min(np.abs(np.abs(members) - np.abs(z)).sum(axis=1)) == 0.0


def test_training_with_an_ensemble_prior_is_reproducible():
    flow = Flow.from_module(*split_flow(build_flow(kernel_size=3)))
    action = functools.partial(phi4_action, beta=0.576, lam=0.5)
    prior = Interleave4Prior(ensemble(64, 4), beta=0.45, lam=0.5)
    runs = [train_flow(jax.random.key(3), flow, prior, action, steps=6, batch_size=8, log_every=3,
                       progress=False)[1]["loss"] for _ in range(2)]
    np.testing.assert_array_equal(*runs)
    assert np.all(np.isfinite(runs[0]))
