"""Training (docs/theory.md#training-reverse-kl): weights, metrics, the reverse-KL loop, NaN guard, checkpoints."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trivflow.flows import Flow, build_flow, flow_forward, split_flow
from trivflow.lattice import phi4_action
from trivflow.priors import GaussianPrior
from trivflow.training import (
    NonFiniteLossError,
    effective_sample_size,
    evaluate_flow,
    load_flow,
    mh_acceptance,
    reverse_kl_loss,
    save_flow,
    train_flow,
)

L8_ACTION = functools.partial(phi4_action, beta=0.576, lam=0.5)


def module_flow(**kwargs) -> Flow:
    """A coupling flow built by :func:`build_flow` as a :class:`Flow`."""
    return Flow.from_module(*split_flow(build_flow(**kwargs)))


# --- metrics -------------------------------------------------------------------------------------


def test_ess_limits_and_stability():
    B = 100
    assert float(effective_sample_size(jnp.zeros(B))) == pytest.approx(1.0, abs=1e-14)
    w = jnp.full(B, 50.0).at[3].set(0.0)  # one sample dominates
    assert float(effective_sample_size(w)) == pytest.approx(1.0 / B, rel=1e-12)
    w = jax.random.normal(jax.random.PRNGKey(0), (B,))
    naive = float(jnp.sum(jnp.exp(-w)) ** 2 / (B * jnp.sum(jnp.exp(-2 * w))))
    assert float(effective_sample_size(w)) == pytest.approx(naive, rel=1e-12)
    # invariant under shifts that overflow the naive formula in either direction
    for shift in (-1e4, 1e4):
        assert float(effective_sample_size(w + shift)) == pytest.approx(naive, rel=1e-9)


def test_mh_acceptance_matches_sequential_chain():
    key = jax.random.PRNGKey(1)
    w = 2.0 * jax.random.normal(jax.random.PRNGKey(2), (300,))
    log_u = np.log(np.asarray(jax.random.uniform(key, (299,), w.dtype)))
    w_np = np.asarray(w)
    current, accepted = w_np[0], 0
    for j in range(1, 300):
        if log_u[j - 1] < current - w_np[j]:  # accept with min{1, e^{w_cur − w_j}}
            current, accepted = w_np[j], accepted + 1
    assert float(mh_acceptance(key, w)) == pytest.approx(accepted / 299, abs=1e-15)
    assert float(mh_acceptance(key, jnp.zeros(50))) == pytest.approx(1.0, abs=1e-14)  # perfect flow
    # chain stuck at a very good first sample: nothing is accepted
    assert float(mh_acceptance(key, jnp.zeros(50).at[0].set(-100.0))) == 0.0


def test_weights_formula():
    graphdef, params = split_flow(build_flow(kernel_size=3, seed=3))
    flow = Flow.from_module(graphdef, params)
    prior = GaussianPrior((8, 8))
    z = prior.sample(jax.random.PRNGKey(4), 3)
    log_r = jax.vmap(prior.log_prob)(z)
    loss_fn = jax.jit(lambda f, z, lr: reverse_kl_loss(f, z, lr, L8_ACTION))
    loss, w = loss_fn(flow, z, log_r)
    single = jax.jit(lambda p, x: (flow_forward(graphdef, p, x), L8_ACTION(flow_forward(graphdef, p, x)[0])))
    for i in range(3):
        (_, log_det), action = single(params, z[i])
        assert float(w[i]) == pytest.approx(float(log_r[i] - log_det + action), abs=1e-12)
    assert float(loss) == pytest.approx(float(jnp.mean(w)), abs=1e-13)
    # log r carries no gradient
    g = jax.jit(jax.grad(lambda lr: reverse_kl_loss(flow, z, lr, L8_ACTION)[0]))(log_r)
    np.testing.assert_array_equal(g, 0.0)


# --- the training loop ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_l8():
    """The paper's flow (k = 3, 1 layer, 37 params) trained at L = 8, β = 0.576, λ = 0.5."""
    flow = module_flow(kernel_size=3, seed=0)
    prior = GaussianPrior((8, 8))
    before = evaluate_flow(jax.random.PRNGKey(100), flow, prior, L8_ACTION, batch_size=4000)
    trained, history = train_flow(jax.random.PRNGKey(0), flow, prior, L8_ACTION, steps=300, batch_size=256,
                                  log_every=50, progress=False)
    after = evaluate_flow(jax.random.PRNGKey(100), trained, prior, L8_ACTION, batch_size=4000)
    return dict(flow=flow, trained=trained, history=history, before=before, after=after)


def test_training_lowers_loss_and_raises_acceptance(trained_l8):
    """Recorded (seed 0, 300 steps, batch 256, evaluated on 4000 fresh samples):
    loss 1.62 → −18.4, MH acceptance 0.003 → 0.05–0.06, a → −0.35.
    An untrained or broken flow cannot reach these margins."""
    before, after = trained_l8["before"], trained_l8["after"]
    print(f"\nL=8 training: before {before}\n              after  {after}")
    assert before["loss"] > -5.0
    assert after["loss"] < -17.5
    assert after["loss"] < before["loss"] - 15.0
    assert before["mh_acceptance"] < 0.015
    assert after["mh_acceptance"] > 0.025
    assert after["mh_acceptance"] > 4 * before["mh_acceptance"]
    log_scale = float(trained_l8["trained"].params["layers"][1]["log_scale"][...])
    assert -0.6 < log_scale < -0.1  # the field is narrower than N(0,1): the map contracts


def test_training_history(trained_l8):
    h = trained_l8["history"]
    assert set(h) >= {"step", "loss", "ess", "mh_acceptance", "lr", "seconds", "compile_seconds"}
    for k in ("step", "loss", "ess", "mh_acceptance", "lr"):
        assert isinstance(h[k], np.ndarray) and h[k].shape == (300,)
    np.testing.assert_array_equal(h["step"], np.arange(1, 301))
    assert h["lr"][0] == pytest.approx(0.01) and h["lr"][-1] < 1e-6 and np.all(np.diff(h["lr"]) <= 0)
    assert np.all((h["ess"] > 0) & (h["ess"] <= 1)) and np.all((h["mh_acceptance"] >= 0) & (h["mh_acceptance"] <= 1))
    assert h["loss"][-50:].mean() < h["loss"][0] - 15.0  # step 1 is the untrained flow
    assert h["mh_acceptance"][-50:].mean() > 0.03  # single-batch values are noisy; see test above
    assert float(h["seconds"]) > 0


def test_caller_params_untouched(trained_l8):
    """train_flow donates its working copy, never the caller's arrays."""
    params = trained_l8["flow"].params
    assert float(params["layers"][1]["log_scale"][...]) == 0.0
    assert np.isfinite(np.asarray(params["layers"][0]["net_a"]["kernels"][0][...])).all()


def test_free_gaussian_target_reaches_log_z():
    """β = λ = 0: S = Σφ², p = N(0, ½) per site, reachable exactly (s = t = 0, a = −½ log 2),
    so the loss must approach −log Z = −(V/2) log π from above (KL ≥ 0). A wrong log-det sign
    or a wrong w would fail this. Also: same key ⇒ same run; callback can stop early."""
    L, V = 4, 16
    action = functools.partial(phi4_action, beta=0.0, lam=0.0)
    prior = GaussianPrior((L, L))
    flow = module_flow(kernel_size=3, seed=1)
    kw = dict(steps=200, batch_size=256, lr=0.02, log_every=40, progress=False)
    trained, h = train_flow(jax.random.PRNGKey(5), flow, prior, action, **kw)
    log_z = 0.5 * V * math.log(math.pi)
    ev = evaluate_flow(jax.random.PRNGKey(6), trained, prior, action, batch_size=4000)
    # recorded: loss + log Z = 0.002, ESS 0.997, MH acceptance 0.967, a = −0.334 (−0.347 exact)
    assert -log_z - 0.01 < ev["loss"] < -log_z + 0.03
    assert float(trained.params["layers"][1]["log_scale"][...]) == pytest.approx(-0.5 * math.log(2.0), abs=0.03)
    assert ev["mh_acceptance"] > 0.9 and ev["ess"] > 0.95

    trained2, h2 = train_flow(jax.random.PRNGKey(5), flow, prior, action, **kw)
    np.testing.assert_array_equal(h["loss"], h2["loss"])
    calls = []

    def stop_at_80(step, metrics, p):
        calls.append((step, metrics))
        return step >= 80

    _, h3 = train_flow(jax.random.PRNGKey(5), flow, prior, action, callback=stop_at_80, **kw)
    assert [c[0] for c in calls] == [40, 80] and set(calls[0][1]) == {"loss", "ess", "mh_acceptance"}
    assert h3["loss"].shape == (80,)
    np.testing.assert_array_equal(h3["loss"], h["loss"][:80])


def test_nan_loss_stops_with_clear_error(trained_l8):
    """A non-finite loss stops training at the next log point with an error naming the first
    bad step. Here the action returns NaN because the flow's parameters are NaN (fields are
    NaN); the fixture's settings are reused so the compiled step is too."""
    nan_flow = jax.tree_util.tree_map(lambda x: x * jnp.nan, trained_l8["flow"])
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss nan at step 1\b") as err:
        train_flow(jax.random.PRNGKey(0), nan_flow, GaussianPrior((8, 8)), L8_ACTION, steps=300,
                   batch_size=256, log_every=5, progress=False)
    assert isinstance(err.value, FloatingPointError) and err.value.step == 1 and math.isnan(err.value.value)


@pytest.mark.parametrize(
    "kwargs, text",
    [(dict(steps=0), "steps=0"), (dict(batch_size=1), "batch_size=1"), (dict(lr=-0.1), "lr=-0.1"),
     (dict(lr=float("nan")), "lr=nan"), (dict(log_every=0), "log_every=0"), (dict(steps=2.5), "steps=2.5")],
)
def test_bad_training_settings_raise(kwargs, text):
    with pytest.raises(ValueError, match=text):
        train_flow(jax.random.PRNGKey(0), module_flow(), GaussianPrior((4, 4)), L8_ACTION, progress=False, **kwargs)


# --- checkpoints -----------------------------------------------------------------------------------


def test_save_load_round_trip_at_other_L(tmp_path, trained_l8):
    graphdef, params = trained_l8["trained"].graphdef, trained_l8["trained"].params
    config = {"kernel_size": 3, "num_layers": 1, "seed": 0,
              "lattice": {"L": 8, "d": 2, "beta": 0.576, "lam": 0.5}}
    path = save_flow(tmp_path / "flow", params, config)
    gd2, p2, cfg2 = load_flow(path, shape=(12, 12), expect={"kernel_size": 3})
    assert cfg2["lattice"] == config["lattice"] and cfg2["kernel_size"] == 3 and cfg2["hidden_channels"] == []
    z = GaussianPrior((12, 12)).sample(jax.random.PRNGKey(7), 1)[0]
    phi, ld = flow_forward(graphdef, params, z)
    phi2, ld2 = flow_forward(gd2, p2, z)
    np.testing.assert_array_equal(phi, phi2)
    assert float(ld) == float(ld2)

    with pytest.raises(ValueError, match="d=3"):
        load_flow(path, shape=(8, 8, 8))
    with pytest.raises(ValueError, match="L=7"):
        load_flow(path, shape=(7, 7))
    with pytest.raises(ValueError, match="kernel_size=3.*kernel_size=5"):
        load_flow(path, expect={"kernel_size": 5})
    with pytest.raises(FileExistsError):
        save_flow(path, params, config)
    save_flow(path, params, config, overwrite=True)
    with pytest.raises(FileNotFoundError):
        load_flow(tmp_path / "missing")


def test_save_rejects_params_that_do_not_fit_the_config(tmp_path):
    _, params = split_flow(build_flow(kernel_size=5))
    with pytest.raises(ValueError, match="shape"):
        save_flow(tmp_path / "bad", params, {"kernel_size": 3})
    _, params2 = split_flow(build_flow(num_layers=2))
    with pytest.raises(ValueError, match="missing|unexpected"):
        save_flow(tmp_path / "bad2", params2, {"kernel_size": 3})
    with pytest.raises(ValueError, match="kernal_size"):
        save_flow(tmp_path / "bad3", params, {"kernal_size": 5})


def test_float32_and_custom_unhashable_prior():
    """A user prior implementing the Prior protocol (here mutable, hence unhashable) and a
    float32 flow train and evaluate; every metric stays float32-finite."""
    import dataclasses

    from trivflow.priors import Prior

    @dataclasses.dataclass  # not frozen: unhashable
    class WidePrior:
        shape: tuple
        sigma: float = 1.5

        def sample(self, key, batch_size):
            return self.sigma * jax.random.normal(key, (batch_size, *self.shape), jnp.float32)

        def log_prob(self, z):
            return jnp.sum(-0.5 * (z / self.sigma) ** 2 - jnp.log(self.sigma * jnp.sqrt(2 * jnp.pi)))

    prior = WidePrior((4, 4))
    assert isinstance(prior, Prior)
    trained, h = train_flow(jax.random.PRNGKey(0), module_flow(dtype=jnp.float32), prior, L8_ACTION, steps=10,
                            batch_size=16, log_every=5, progress=False)
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(trained))
    assert np.isfinite(h["loss"]).all() and h["loss"][-3:].mean() < h["loss"][:3].mean()
    ev = evaluate_flow(jax.random.PRNGKey(1), trained, prior, L8_ACTION, batch_size=64)
    assert all(np.isfinite(v) for v in ev.values())


# --- compile cache -------------------------------------------------------------------------------


def test_static_key_compares_partials_by_value_and_the_rest_by_identity():
    from trivflow.lattice.theory import Phi4Theory
    from trivflow.training.cache import Static

    a = functools.partial(phi4_action, beta=0.576, lam=0.5)
    assert Static(a) == Static(functools.partial(phi4_action, beta=0.576, lam=0.5))
    assert hash(Static(a)) == hash(Static(functools.partial(phi4_action, lam=0.5, beta=0.576)))
    assert Static(a) != Static(functools.partial(phi4_action, beta=0.5, lam=0.5))
    assert Static(functools.partial(phi4_action, beta=0.0)) != Static(functools.partial(phi4_action, beta=-0.0))
    assert Static(functools.partial(phi4_action, beta=1)) != Static(functools.partial(phi4_action, beta=1.0))
    with_array = functools.partial(phi4_action, beta=jnp.asarray(0.5))  # unhashable value: by identity
    assert Static(with_array) == Static(with_array)
    assert Static(with_array) != Static(functools.partial(phi4_action, beta=jnp.asarray(0.5)))
    theory = Phi4Theory(L=4, d=2, beta=0.5, lam=0.5)
    assert Static(theory.action) == Static(theory.action)  # a new bound-method object per access

    class Unhashable:
        __hash__ = None

        def __call__(self, phi):
            return jnp.sum(phi**2)

    u = Unhashable()
    assert Static(u) == Static(u) and Static(u) != Static(Unhashable()) and isinstance(hash(Static(u)), int)


def test_train_flow_chunks_equal_single_steps_bit_for_bit():
    """train_flow runs its steps in chunks of one compiled call (make_train_chunk: here 1, 2, 3
    and 1 steps, ending at the log points); its history and trained flow are those of single
    make_train_step calls, bit for bit, and a chunk's unused metric entries are NaN."""
    from trivflow.training import make_optimizer, make_train_chunk, make_train_step

    prior, key, steps, batch = GaussianPrior((4, 4)), jax.random.key(5), 7, 8
    flow = module_flow(kernel_size=3, seed=2)
    trained, hist = train_flow(key, flow, prior, L8_ACTION, steps=steps, batch_size=batch, lr=0.05,
                               log_every=3, progress=False)
    opt = make_optimizer(0.05, steps)
    init, step = make_train_step(prior, L8_ACTION, opt, batch)
    state = init(jax.tree_util.tree_map(jnp.array, flow), key)
    losses, accs = [], []
    for _ in range(steps):
        state, m = step(state)
        losses.append(float(m["loss"]))
        accs.append(float(m["mh_acceptance"]))
    np.testing.assert_array_equal(hist["loss"], losses)
    np.testing.assert_array_equal(hist["mh_acceptance"], accs)
    for a, b in zip(jax.tree_util.tree_leaves(trained), jax.tree_util.tree_leaves(state.flow)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # one chunk of 3 from a fresh state: the first 3 entries are the steps', the rest NaN
    run = make_train_chunk(prior, L8_ACTION, opt, batch)
    _, m = run(init(jax.tree_util.tree_map(jnp.array, flow), key), 3)
    loss = np.asarray(m["loss"])
    np.testing.assert_array_equal(loss[:3], losses[:3])
    assert np.isnan(loss[3:]).all() and loss.shape == (64,)


def test_train_step_cache_is_bounded_and_keyed_by_value():
    """Equal actions built twice share one compiled step (no miss per fresh partial); another
    action or an unhashable callable gets its own; the caches are bounded."""
    from trivflow.training import make_optimizer, make_train_step
    from trivflow.training.loop import _cached_train_step
    from trivflow.training.objectives import _evaluation_functions

    assert _cached_train_step.cache_info().maxsize == 16 and _evaluation_functions.cache_info().maxsize == 16
    opt = make_optimizer(0.01, 10)
    prior = GaussianPrior((4, 4))
    _, s1 = make_train_step(prior, functools.partial(phi4_action, beta=0.3, lam=0.5), opt, 8)
    _, s2 = make_train_step(prior, functools.partial(phi4_action, beta=0.3, lam=0.5), opt, 8)
    _, s3 = make_train_step(prior, functools.partial(phi4_action, beta=0.4, lam=0.5), opt, 8)
    assert s1.func is s2.func and s1.func is not s3.func
    assert make_train_step(prior, L8_ACTION, make_optimizer(0.01, 10), 8)[1].func is \
        make_train_step(prior, L8_ACTION, opt, 8)[1].func

    class Action:  # mutable, unhashable: cached by identity
        __hash__ = None

        def __call__(self, phi):
            return phi4_action(phi, 0.3, 0.5)

    action = Action()
    flow = module_flow()
    _, h = train_flow(jax.random.PRNGKey(0), flow, prior, action, steps=4, batch_size=8, log_every=2,
                      progress=False)
    _, h_partial = train_flow(jax.random.PRNGKey(0), flow, prior, functools.partial(phi4_action, beta=0.3, lam=0.5),
                              steps=4, batch_size=8, log_every=2, progress=False)
    np.testing.assert_array_equal(h["loss"], h_partial["loss"])
    before = _evaluation_functions.cache_info()
    evs = [evaluate_flow(jax.random.PRNGKey(1), flow, prior, functools.partial(phi4_action, beta=0.3, lam=0.5),
                         batch_size=16) for _ in range(2)]
    assert evs[0] == evs[1] == evaluate_flow(jax.random.PRNGKey(1), flow, prior, action, batch_size=16)
    after = _evaluation_functions.cache_info()
    assert after.hits - before.hits >= 1 and after.misses - before.misses <= 2

