"""The FHMC force path of the flows: hand-written pullbacks, fusion stages, mixed precision.

* ``flow_forward_and_pullback`` equals ``jax.vjp`` of ``flow_forward`` (float64, every
  registered variant, any cotangents), and a ``Flow.from_module`` uses it for the FHMC force
  (a ``Flow.from_callable`` uses ``jax.vjp``, with the same result).
* ``compute_dtype="float32"`` (mixed precision): the log-det is that of the map actually
  computed (against the autodiff Jacobian to 1e-9), the round trip is float64-exact (1e-12),
  φ and the force agree with float64 to float32 accuracy, and FHMC still reproduces HMC.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from checks import assert_same_mean, leapfrog_round_trip

from trivflow import hmc, lattice
from trivflow.flows import (
    FLOW_REGISTRY,
    Flow,
    FlowConfig,
    build_flow,
    flow_forward,
    flow_forward_and_pullback,
    flow_inverse,
    registry_flow,
    split_flow,
    with_compute_dtype,
)
from trivflow.flows.checkerboard import fusion_stage

NAMES = sorted(FLOW_REGISTRY)
THEORY = lattice.preset("L8")


def _flow(name, compute_dtype=None, log_scale=0.1):
    """A registered flow at its initialisation with a non-zero global scale."""
    graphdef, params = split_flow(registry_flow(name, compute_dtype=compute_dtype))
    leaves, treedef = jax.tree_util.tree_flatten(params)
    leaves = [jnp.full_like(x, log_scale) if x.size == 1 else x for x in leaves]
    return graphdef, jax.tree_util.tree_unflatten(treedef, leaves)


def _field(shape, seed, scale=1.3):
    return scale * jax.random.normal(jax.random.key(seed), shape)


# --- the hand-written pullback -----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_pullback_equals_jax_vjp(name):
    graphdef, params = _flow(name)
    z, phi_bar = _field((6, 8), 1), _field((6, 8), 2)

    @jax.jit
    def both(z, phi_bar, ld_bar):
        phi, ld, pullback = flow_forward_and_pullback(graphdef, params, z)
        (phi_ref, ld_ref), vjp = jax.vjp(lambda x: flow_forward(graphdef, params, x), z)
        return phi, ld, pullback(phi_bar, ld_bar), phi_ref, ld_ref, vjp((phi_bar, ld_bar))[0]

    for ld_bar in (-1.0, 0.7):
        phi, ld, grad, phi_ref, ld_ref, grad_ref = both(z, phi_bar, jnp.float64(ld_bar))
        np.testing.assert_allclose(phi, phi_ref, rtol=0, atol=1e-13)
        np.testing.assert_allclose(ld, ld_ref, rtol=0, atol=1e-12)
        np.testing.assert_allclose(grad, grad_ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("k, shape", [(7, (4, 4)), (7, (8, 6)), (5, (2, 4))])
def test_pullback_of_wide_kernels_equals_jax_vjp(k, shape):
    """k >= 5 reads the taps from periodically padded blocks (halo wider than a block at L=4)."""
    graphdef, params = split_flow(build_flow(kernel_size=k, num_layers=2, seed=3))
    z, phi_bar = _field(shape, 11), _field(shape, 12)

    @jax.jit
    def fast(x, c):
        phi, ld, pullback = flow_forward_and_pullback(graphdef, params, x)
        return phi, ld, pullback(c, -1.0)

    phi, ld, grad = fast(z, phi_bar)
    (phi_ref, ld_ref), vjp = jax.vjp(lambda x: flow_forward(graphdef, params, x), z)
    np.testing.assert_allclose(phi, phi_ref, rtol=0, atol=1e-13)
    np.testing.assert_allclose(ld, ld_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(grad, vjp((phi_bar, -1.0))[0], rtol=0, atol=1e-12)


def test_pullback_vmapped_matches_single_configurations():
    graphdef, params = _flow("layers2_k3_k5")
    z, phi_bar = _field((3, 8, 8), 3), _field((3, 8, 8), 4)
    pb = jax.jit(jax.vmap(lambda x, c: (lambda out: out[2](c, -1.0))(flow_forward_and_pullback(graphdef, params, x))))
    batched = pb(z, phi_bar)
    for i in range(3):
        _, vjp = jax.vjp(lambda x: flow_forward(graphdef, params, x), z[i])
        np.testing.assert_allclose(batched[i], vjp((phi_bar[i], -1.0))[0], rtol=0, atol=1e-12)


def test_a_module_flow_uses_the_pullback_and_a_callable_flow_jax_vjp():
    graphdef, params = _flow("minimal_k3")
    module_flow = Flow.from_module(graphdef, params)
    callable_flow = Flow.from_callable(lambda q, z: flow_forward(graphdef, q, z), params)
    x = _field(THEORY.shape, 5)
    # the module flow's pullback IS the hand-written one (same jaxpr), the callable's is jax.vjp
    fast = jax.make_jaxpr(lambda f, z: f.forward_and_pullback(z)[2](z, -1.0))(module_flow, x)
    hand = jax.make_jaxpr(lambda q, z: flow_forward_and_pullback(graphdef, q, z)[2](z, -1.0))(params, x)
    slow = jax.make_jaxpr(lambda f, z: f.forward_and_pullback(z)[2](z, -1.0))(callable_flow, x)
    assert str(fast) == str(hand) and str(slow) != str(hand)
    # both routes give the same FHMC force
    vg = hmc.pulled_back_value_and_grad(hmc.phi4_potential, hmc.phi4_force_fn)
    f1 = vg(x, {"flow": module_flow, "theory": hmc.phi4_params(THEORY)})
    f2 = vg(x, {"flow": callable_flow, "theory": hmc.phi4_params(THEORY)})
    np.testing.assert_allclose(f1[0], f2[0], rtol=1e-14)
    np.testing.assert_allclose(f1[1], f2[1], rtol=0, atol=1e-12)


# --- fusion stages -----------------------------------------------------------------------------


def test_fusion_stage_is_fn_when_pred_holds_and_nan_otherwise():
    def fn(x, y):
        return {"a": x * y, "b": jnp.roll(x, 1)}

    x, y = jnp.arange(4.0), jnp.full(4, 2.0)
    out = jax.jit(fusion_stage, static_argnums=0)(fn, jnp.bool_(True), x, y)
    np.testing.assert_array_equal(out["a"], x * y)
    np.testing.assert_array_equal(out["b"], jnp.roll(x, 1))
    bad = jax.jit(fusion_stage, static_argnums=0)(fn, jnp.bool_(False), x, y)
    assert np.isnan(bad["a"]).all() and np.isnan(bad["b"]).all()
    # differentiable and vmappable with an unbatched predicate
    g = jax.grad(lambda x: jnp.sum(fusion_stage(fn, jnp.bool_(True), x, y)["a"] ** 2))(x)
    np.testing.assert_allclose(g, 2 * x * y * y)
    v = jax.vmap(lambda x: fusion_stage(fn, jnp.bool_(True), x, y)["a"])(jnp.stack([x, x + 1]))
    np.testing.assert_array_equal(v, jnp.stack([x * y, (x + 1) * y]))


# --- mixed precision ---------------------------------------------------------------------------


def test_compute_dtype_config():
    assert FlowConfig(compute_dtype="float32").compute_dtype == "float32"
    assert FlowConfig(compute_dtype=jnp.float32).compute_dtype == "float32"
    assert FlowConfig().compute_dtype is None
    cfg = FlowConfig(kernel_size=5, compute_dtype="float32")
    assert FlowConfig.from_dict(cfg.to_dict()) == cfg
    assert FlowConfig(compute_dtype=np.dtype("float64")).compute_dtype == "float64"
    for bad in ("float16", "int32", "f32x", 3, jnp.int32, [1]):
        with pytest.raises(ValueError, match="compute_dtype must be one of") as err:
            build_flow(compute_dtype=bad)
        assert repr(bad) in str(err.value)
    graphdef, params = split_flow(build_flow(kernel_size=3))
    gd32 = with_compute_dtype(graphdef, params, jnp.float32)
    z = _field((8, 8), 6)
    phi, _ = flow_forward(graphdef, params, z)
    phi32, _ = flow_forward(gd32, params, z)
    assert phi32.dtype == jnp.float64 and 0 < float(jnp.max(jnp.abs(phi32 - phi))) < 1e-5
    np.testing.assert_array_equal(flow_forward(with_compute_dtype(gd32, params, None), params, z)[0], phi)


@pytest.mark.parametrize("name", NAMES)
def test_mixed_precision_accuracy(name):
    """Mixed precision: float64 field and log-det, coupling networks in float32.

    Stated accuracy: round trip and ld_fwd + ld_inv at float64 rounding (the inverse divides
    by the forward's rounded multipliers); the log-det is Σ log m of the rounded multipliers,
    the exact log|det| of the computed (triangular) half-steps, so it agrees with slogdet of
    the autodiff Jacobian of the whole map to the float32 accuracy of that Jacobian's
    off-diagonal blocks (~1e-8 relative); φ, the log-det and the force differ from float64
    at float32 level (< 1e-5 relative)."""
    graphdef, params = _flow(name, compute_dtype="float32")
    graphdef64, _ = _flow(name)
    z = _field((6, 6), 7)
    phi, ld = flow_forward(graphdef, params, z)
    back, ld_inv = flow_inverse(graphdef, params, phi)
    assert phi.dtype == ld.dtype == jnp.float64
    np.testing.assert_allclose(back, z, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ld + ld_inv, 0.0, atol=1e-12)
    jac = jax.jacfwd(lambda x: flow_forward(graphdef, params, x)[0])(z).reshape(36, 36)
    np.testing.assert_allclose(ld, jnp.linalg.slogdet(jac)[1], rtol=1e-7, atol=1e-9)
    phi64, ld64 = flow_forward(graphdef64, params, z)
    assert float(jnp.max(jnp.abs(phi - phi64))) < 1e-5 * float(jnp.max(jnp.abs(phi64)))
    assert abs(float(ld - ld64)) < 1e-5 * max(1.0, abs(float(ld64)))
    theory = hmc.phi4_params(THEORY)
    x = _field(THEORY.shape, 8)
    vg = jax.jit(hmc.pulled_back_value_and_grad(hmc.phi4_potential, hmc.phi4_force_fn))
    s32, f32 = vg(x, {"flow": Flow.from_module(graphdef, params), "theory": theory})
    s64, f64 = vg(x, {"flow": Flow.from_module(graphdef64, params), "theory": theory})
    assert abs(float(s32 - s64)) < 1e-5 * abs(float(s64))
    assert float(jnp.linalg.norm(f32 - f64)) < 1e-5 * float(jnp.linalg.norm(f64))


def test_mixed_precision_fhmc_is_reversible():
    """Reversible to ~1e-8 after 10 steps (float64: ~1e-11): the float32 parts of the force
    are piecewise constant at their rounding scale, and the reversed trajectory, off by
    float64 rounding, crosses some of those steps."""
    graphdef, params = _flow("minimal_k3", compute_dtype="float32")
    p = {"flow": Flow.from_module(graphdef, params), "theory": hmc.phi4_params(THEORY)}
    vg = hmc.pulled_back_value_and_grad(hmc.phi4_potential, hmc.phi4_force_fn)
    x0, p0 = _field(THEORY.shape, 9, 1.0), _field(THEORY.shape, 10, 1.0)
    dx, dp = leapfrog_round_trip(lambda y: vg(y, p), x0, p0)
    assert dx < 1e-6 and dp < 1e-6


def test_mixed_precision_fhmc_reproduces_hmc():
    """Exactness with compute_dtype=float32 (the flow at initialisation, as test_fhmc.py)."""
    graphdef, params = split_flow(build_flow(kernel_size=3, seed=7, compute_dtype="float32"))
    leaves, treedef = jax.tree_util.tree_flatten(params)
    params = jax.tree_util.tree_unflatten(treedef, [jnp.full_like(x, 0.1) if x.size == 1 else x for x in leaves])
    p = {"flow": Flow.from_module(graphdef, params), "theory": hmc.phi4_params(THEORY)}
    common = dict(step_size=0.1, num_traj=4000, num_therm=200, chunk_size=2000, progress=False)
    pos = hmc.random_positions(jax.random.key(20), 32, THEORY.shape)
    ref = hmc.run_chains(jax.random.key(21), hmc.phi4_kernel(10), pos, p["theory"], measure_fn=hmc.phi4_measure,
                         **common)
    kernel = hmc.fhmc_kernel(hmc.phi4_potential, num_steps=10, force_fn=hmc.phi4_force_fn)
    res = hmc.run_chains(jax.random.key(22), kernel, pos, p,
                         measure_fn=hmc.pulled_back_measure(hmc.phi4_measure), **common)
    assert res.acceptance > 0.8
    assert abs(float(np.mean(np.exp(-res.delta_H))) - 1.0) < 0.01
    for name in ("M2", "absM", "G0"):
        assert_same_mean(res.observables[name], ref.observables[name], name)
