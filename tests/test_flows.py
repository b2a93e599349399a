"""Flows (docs/theory.md#flows): bijection properties, log-det vs autodiff Jacobians, symmetries,
an independent full-lattice reference of the coupling, reuse at other L, validation."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from trivflow.flows import (
    ACTIVATIONS,
    FLOW_REGISTRY,
    FlowConfig,
    build_flow,
    check_lattice_shape,
    compose,
    flow_forward,
    flow_inverse,
    num_params,
    registry_flow,
    split_flow,
)
from trivflow.lattice import checkerboard_mask

NAMES = sorted(FLOW_REGISTRY)


def _split(name):
    return split_flow(registry_flow(name))


def _field(shape, seed=0, scale=1.5):
    return scale * jax.random.normal(jax.random.PRNGKey(seed), shape)


# --- an independent reference: docs/theory.md#flows written on the full lattice with masks -----------


def _circular_conv(x, kernel):
    """Full-lattice circular cross-correlation, x (L0, L1, c_in), kernel (k, k, c_in, c_out)."""
    p = kernel.shape[0] // 2
    xp = jnp.pad(x, ((p, p), (p, p), (0, 0)), mode="wrap")
    out = jax.lax.conv_general_dilated(
        xp[None], kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )
    return out[0]


def _reference_forward(flow_params, cfg: FlowConfig, z):
    pure = nnx.to_pure_dict(flow_params)
    mask_a = checkerboard_mask(z.shape, 0)
    mask_b = checkerboard_mask(z.shape, 1)
    act, out_act = ACTIVATIONS[cfg.activation], ACTIVATIONS[cfg.output_activation]

    def conditioner(net, field, source):
        x = jnp.where(source, field, 0.0)[..., None]
        kernels = [net["kernels"][i] for i in range(len(net["kernels"]))]
        for n, kernel in enumerate(kernels):
            x = _circular_conv(x, kernel)
            x = out_act(x) if n == len(kernels) - 1 else act(x)
        return x[..., 0], x[..., 1]

    y, log_det = z, 0.0
    for layer in range(cfg.num_layers):
        nets = pure["layers"][layer]
        s, t = conditioner(nets["net_b"], y, mask_b)
        y = jnp.where(mask_a, y * jnp.exp(-jnp.abs(s)) + t, y)
        log_det -= jnp.sum(jnp.where(mask_a, jnp.abs(s), 0.0))
        s, t = conditioner(nets["net_a"], y, mask_a)
        y = jnp.where(mask_b, y * jnp.exp(-jnp.abs(s)) + t, y)
        log_det -= jnp.sum(jnp.where(mask_b, jnp.abs(s), 0.0))
    a = pure["layers"][cfg.num_layers]["log_scale"]
    return jnp.exp(a) * y, log_det + a * z.size


@pytest.mark.parametrize("name, L", [(name, 6) for name in NAMES] + [("minimal_k5", 4)])
def test_matches_full_lattice_reference(name, L):
    graphdef, params = _split(name)
    cfg = FlowConfig(**FLOW_REGISTRY[name])
    z = _field((L, L), seed=L)
    phi, log_det = flow_forward(graphdef, params, z)
    phi_ref, log_det_ref = _reference_forward(params, cfg, z)
    np.testing.assert_allclose(phi, phi_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(log_det, log_det_ref, rtol=0, atol=1e-11)


# --- bijection properties --------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_round_trip(name):
    graphdef, params = _split(name)
    for shape in [(6, 6), (4, 6)]:
        z = _field(shape, seed=1)
        phi, ld_fwd = flow_forward(graphdef, params, z)
        z_back, ld_inv = flow_inverse(graphdef, params, phi)
        np.testing.assert_allclose(z_back, z, rtol=0, atol=1e-10)
        np.testing.assert_allclose(ld_fwd + ld_inv, 0.0, atol=1e-10)
        phi_back, _ = flow_forward(graphdef, params, flow_inverse(graphdef, params, z)[0])
        np.testing.assert_allclose(phi_back, z, rtol=0, atol=1e-10)
        assert phi.shape == shape and phi.dtype == z.dtype and jnp.shape(ld_fwd) == ()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("L", [4, 6])
def test_log_det_matches_jacobian(name, L):
    """log|det ∂out/∂in| of both directions against the autodiff Jacobian (V × V)."""
    graphdef, params = _split(name)
    V = L * L
    z = _field((L, L), seed=2)
    for fn in (flow_forward, flow_inverse):
        jac = jax.jacfwd(lambda x: fn(graphdef, params, x)[0])(z).reshape(V, V)
        sign, logabsdet = jnp.linalg.slogdet(jac)
        assert sign != 0
        np.testing.assert_allclose(fn(graphdef, params, z)[1], logabsdet, rtol=0, atol=1e-10)


def test_block_conv_matches_full_lattice_conv():
    """Both block-conv code paths (unrolled, einsum) equal a full-lattice circular conv."""
    from trivflow.flows.checkerboard import ALL_BLOCKS, HALF_A, HALF_B, block_conv, from_blocks, to_blocks

    L, k, c_in, c_out = 6, 3, 2, 3
    x = _field((L, L, c_in), seed=20)
    kernel = jax.random.normal(jax.random.PRNGKey(21), (k, k, c_in, c_out))
    ref = _circular_conv(x, kernel)
    blocks = [to_blocks(x[..., c]) for c in range(c_in)]
    inputs = {b: [blocks[c][b] for c in range(c_in)] for b in ALL_BLOCKS}
    for max_unrolled in (0, 16):
        out = block_conv(kernel, inputs, ALL_BLOCKS, max_unrolled=max_unrolled)
        for d in range(c_out):
            np.testing.assert_allclose(from_blocks({b: out[b][d] for b in ALL_BLOCKS}), ref[..., d], atol=1e-12)
    # masked input (half B only), read on half A: the conditioner's situation
    mask_b = checkerboard_mask((L, L), 1)[..., None]
    ref_b = _circular_conv(jnp.where(mask_b, x, 0.0), kernel)
    for max_unrolled in (0, 16):
        out = block_conv(kernel, {b: inputs[b] for b in HALF_B}, HALF_A, max_unrolled=max_unrolled)
        for b in HALF_A:
            for d in range(c_out):
                np.testing.assert_allclose(out[b][d], to_blocks(ref_b[..., d])[b], atol=1e-12)


def test_coupling_jacobian_is_triangular_per_half():
    """Step 1 only reads B to update A: ∂y_A/∂z_A is diagonal (the coupling structure)."""
    graphdef, params = _split("minimal_k3")
    L = 4
    # drop the second half-step and the rescaling: look at the first half-step alone
    flow = nnx.merge(graphdef, params)
    coupling = flow.layers[0]
    from trivflow.flows.checkerboard import HALF_A, HALF_B, from_blocks, to_blocks
    from trivflow.flows.layers import _update_half

    def step1(z):
        blocks, _ = _update_half(coupling.net_b, to_blocks(z), HALF_B, HALF_A, inverse=False)
        return from_blocks(blocks)

    z = _field((L, L), seed=3)
    jac = np.asarray(jax.jacfwd(step1)(z)).reshape(L * L, L * L)
    a = np.asarray(checkerboard_mask((L, L), 0)).ravel()
    block_aa = jac[np.ix_(a, a)]
    np.testing.assert_allclose(block_aa, np.diag(np.diag(block_aa)), atol=1e-14)
    np.testing.assert_allclose(jac[np.ix_(~a, ~a)], np.eye((~a).sum()), atol=1e-14)  # y_B = z_B
    np.testing.assert_allclose(jac[np.ix_(~a, a)], 0.0, atol=1e-14)


# --- symmetries --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_z2_equivariance(name):
    graphdef, params = _split(name)
    z = _field((6, 6), seed=4)
    phi, ld = flow_forward(graphdef, params, z)
    phi_m, ld_m = flow_forward(graphdef, params, -z)
    if FlowConfig(**FLOW_REGISTRY[name]).z2_equivariant:
        np.testing.assert_allclose(phi_m, -phi, atol=1e-12)
        np.testing.assert_allclose(ld_m, ld, atol=1e-11)
    else:  # the check can fail: a non-odd activation breaks Z₂
        assert float(jnp.max(jnp.abs(phi_m + phi))) > 1e-4


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shift", [(2, 0), (0, 2), (1, 1), (-2, 4)])
def test_translation_equivariance_even_shifts(name, shift):
    """Shifts that preserve the checkerboard halves commute with g."""
    graphdef, params = _split(name)
    z = _field((6, 6), seed=5)
    phi, ld = flow_forward(graphdef, params, z)
    phi_s, ld_s = flow_forward(graphdef, params, jnp.roll(z, shift, axis=(0, 1)))
    np.testing.assert_allclose(phi_s, jnp.roll(phi, shift, axis=(0, 1)), atol=1e-12)
    np.testing.assert_allclose(ld_s, ld, atol=1e-11)


def test_odd_shift_is_not_a_symmetry():
    """A shift by one site swaps the halves; the test above would notice a broken checkerboard."""
    graphdef, params = _split("minimal_k3")
    z = _field((6, 6), seed=6)
    phi, _ = flow_forward(graphdef, params, z)
    phi_s, _ = flow_forward(graphdef, params, jnp.roll(z, 1, axis=0))
    assert float(jnp.max(jnp.abs(phi_s - jnp.roll(phi, 1, axis=0)))) > 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_zero_weights_give_identity(name):
    graphdef, params = _split(name)
    zero = jax.tree_util.tree_map(jnp.zeros_like, params)
    z = _field((6, 6), seed=7)
    for fn in (flow_forward, flow_inverse):
        out, ld = fn(graphdef, zero, z)
        np.testing.assert_array_equal(out, z)
        assert float(ld) == 0.0


def test_rescaling_only():
    """Zero conv weights and a ≠ 0: φ = e^a z, log det = V a."""
    graphdef, params = _split("minimal_k3")
    zero = jax.tree_util.tree_map(jnp.zeros_like, params)
    zero["layers"][1]["log_scale"][...] = 0.3
    z = _field((6, 6), seed=8)
    phi, ld = flow_forward(graphdef, zero, z)
    np.testing.assert_allclose(phi, math.exp(0.3) * z, rtol=1e-14)
    np.testing.assert_allclose(ld, 36 * 0.3, rtol=1e-14)


# --- parameters, L independence, composition ----------------------------------------------------


def test_parameter_counts():
    assert num_params(split_flow(build_flow())[1]) == 37  # 4k² + 1 at k = 3
    assert num_params(split_flow(build_flow(kernel_size=5))[1]) == 4 * 25 + 1
    assert num_params(split_flow(build_flow(kernel_size=3, num_layers=2))[1]) == 2 * 36 + 1
    assert num_params(split_flow(build_flow(kernel_size=[3, 5], num_layers=2))[1]) == 36 + 100 + 1
    # hidden layer of h channels: per conditioner k²(1·h + h·2)
    assert num_params(split_flow(build_flow(hidden_channels=(4,)))[1]) == 2 * 9 * (4 + 8) + 1


def test_init_distribution_and_seed():
    _, p0 = split_flow(build_flow(seed=0))
    _, p0b = split_flow(build_flow(seed=0))
    _, p1 = split_flow(build_flow(seed=1))
    kernel = np.asarray(p0["layers"][0]["net_b"]["kernels"][0][...])
    assert np.all(np.abs(kernel) < 1.0 / 3.0)  # U(−1/k, 1/k)
    assert float(p0["layers"][1]["log_scale"][...]) == 0.0
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(p0), jax.tree_util.tree_leaves(p0b)))
    assert not np.array_equal(kernel, p1["layers"][0]["net_b"]["kernels"][0][...])


@pytest.mark.parametrize("name", ["minimal_k3", "layers2_k3_k5", "hidden2x2_softsign"])
def test_params_from_L8_run_at_L12_and_L16(name):
    """Circular convs: the same params act at any even L; a field periodic with period 8 maps
    to the periodic image of the L = 8 result, with log det scaled by the number of copies."""
    graphdef, params = _split(name)
    z8 = _field((8, 8), seed=9)
    phi8, ld8 = flow_forward(graphdef, params, z8)
    for L in (12, 16):
        z = _field((L, L), seed=L)
        phi, ld = flow_forward(graphdef, params, z)
        np.testing.assert_allclose(flow_inverse(graphdef, params, phi)[0], z, atol=1e-10)
        assert phi.shape == (L, L) and np.isfinite(float(ld))
    z16 = jnp.tile(z8, (2, 2))
    phi16, ld16 = flow_forward(graphdef, params, z16)
    np.testing.assert_allclose(phi16, jnp.tile(phi8, (2, 2)), atol=1e-12)
    np.testing.assert_allclose(ld16, 4 * ld8, atol=1e-10)


def test_composition():
    g1, g2 = registry_flow("minimal_k3"), registry_flow("minimal_k5")
    gd1, p1 = split_flow(g1)
    gd2, p2 = split_flow(g2)
    gd, p = split_flow(compose(g1, g2))  # g₂ ∘ g₁
    z = _field((6, 6), seed=10)
    y, ld1 = flow_forward(gd1, p1, z)
    phi_ref, ld2 = flow_forward(gd2, p2, y)
    phi, ld = flow_forward(gd, p, z)
    np.testing.assert_allclose(phi, phi_ref, atol=1e-14)
    np.testing.assert_allclose(ld, ld1 + ld2, atol=1e-12)
    z_back, ld_inv = flow_inverse(gd, p, phi)
    np.testing.assert_allclose(z_back, z, atol=1e-10)
    np.testing.assert_allclose(ld_inv, -ld, atol=1e-10)
    assert num_params(p) == num_params(p1) + num_params(p2)


def test_pure_functional_interface_jit_vmap():
    """params are jit arguments (no captured constants); vmap over configurations = loop."""
    graphdef, params = _split("layers2_k3_k5")
    z = _field((5, 6, 6), seed=11)
    fwd = jax.jit(jax.vmap(lambda p, x: flow_forward(graphdef, p, x), in_axes=(None, 0)))
    phi, ld = fwd(params, z)
    for i in range(z.shape[0]):
        phi_i, ld_i = flow_forward(graphdef, params, z[i])
        np.testing.assert_allclose(phi[i], phi_i, atol=1e-13)
        np.testing.assert_allclose(ld[i], ld_i, atol=1e-12)
    closed = jax.make_jaxpr(lambda p, x: flow_forward(graphdef, p, x))(params, z[0])
    assert all(np.size(c) <= 1 for c in closed.consts)  # no parameter baked in as a constant
    # new params, same compiled function, different output
    params2 = jax.tree_util.tree_map(lambda x: 0.5 * x, params)
    assert not np.allclose(fwd(params2, z)[0], phi)


def test_float32_path():
    graphdef, params = split_flow(build_flow(kernel_size=3, num_layers=2, dtype=jnp.float32))
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(params))
    z = _field((8, 8), seed=12).astype(jnp.float32)
    phi, ld = flow_forward(graphdef, params, z)
    assert phi.dtype == jnp.float32 and ld.dtype == jnp.float32
    z_back, ld_inv = flow_inverse(graphdef, params, phi)
    np.testing.assert_allclose(z_back, z, atol=1e-5)
    np.testing.assert_allclose(ld + ld_inv, 0.0, atol=1e-4)


# --- configuration and validation --------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(kernel_size=4), "kernel_size=4"),
        (dict(kernel_size=0), "kernel_size=0"),
        (dict(kernel_size=-3), "kernel_size=-3"),
        (dict(kernel_size=3.0), "kernel_size=3.0"),
        (dict(kernel_size=True), "kernel_size=True"),
        (dict(kernel_size=[3, 4], num_layers=2), "kernel_size="),
        (dict(kernel_size=[3, 5], num_layers=3), "num_layers=3"),
        (dict(num_layers=0), "num_layers=0"),
        (dict(num_layers=1.5), "num_layers=1.5"),
        (dict(activation="swish"), "activation='swish'"),
        (dict(output_activation="sigmoid"), "output_activation='sigmoid'"),
        (dict(hidden_channels=(4, 0)), "hidden_channels="),
        (dict(hidden_channels=4), "hidden_channels=4"),
        (dict(seed="0"), "seed='0'"),
    ],
)
def test_bad_config_raises_naming_key_and_value(kwargs, key):
    # the library names its parameter (the application renames it flow.<key>: tests/test_run.py)
    with pytest.raises(ValueError, match=r"must be|must have") as err:
        build_flow(**kwargs)
    assert key in str(err.value) and "flow." not in str(err.value)


@pytest.mark.parametrize(
    "shape, text",
    [((7, 7), "L=7"), ((8, 5), "L=5"), ((8, 8, 8), "d=3"), ((4, 8, 8), "vmap"), ((16,), "d=1")],
)
def test_bad_lattice_shape_raises(shape, text):
    graphdef, params = _split("minimal_k3")
    x = jnp.zeros(shape)
    for fn in (flow_forward, flow_inverse):
        with pytest.raises(ValueError, match=text):
            fn(graphdef, params, x)
    with pytest.raises(ValueError, match=text):
        check_lattice_shape(shape)


def test_flow_config_round_trip_and_unknown_key():
    cfg = FlowConfig(kernel_size=[3, 5], num_layers=2, hidden_channels=[4], activation="softsign")
    assert cfg.kernel_sizes == (3, 5) and cfg.hidden_channels == (4,)
    assert FlowConfig.from_dict(cfg.to_dict()) == cfg
    assert FlowConfig(kernel_size=5, num_layers=3).kernel_sizes == (5, 5, 5)
    with pytest.raises(ValueError, match="kernal_size"):
        FlowConfig.from_dict({"kernal_size": 3})
    assert FlowConfig.from_dict({"kernel_size": 3, "checkpoint": None}, ignore=("checkpoint",)).kernel_size == 3
    with pytest.raises(ValueError, match="name='nope'"):
        registry_flow("nope")


def test_flow_fields_are_listed_once():
    """The FlowConfig fields are the one list: to_dict writes every field, build_flow's signature
    is derived from them (positional order included)."""
    import dataclasses
    import inspect

    names = FlowConfig.field_names()
    assert names == tuple(f.name for f in dataclasses.fields(FlowConfig))
    assert tuple(FlowConfig().to_dict()) == names
    params = inspect.signature(build_flow).parameters
    assert tuple(params)[:-1] == names and params["dtype"].kind is inspect.Parameter.KEYWORD_ONLY
    assert all(params[f.name].default == f.default for f in dataclasses.fields(FlowConfig))
    _, p_pos = split_flow(build_flow(5, 2, (), "tanh", "tanh", 7))
    _, p_kw = split_flow(build_flow(kernel_size=5, num_layers=2, seed=7))
    for a, b in zip(jax.tree_util.tree_leaves(p_pos), jax.tree_util.tree_leaves(p_kw)):
        np.testing.assert_array_equal(a, b)


def test_layers_split_keeps_public_names():
    """The activations and pullbacks moved out of layers.py stay importable from trivflow.flows."""
    from trivflow import flows
    from trivflow.flows import activations, layers, pullback

    assert flows.ACTIVATIONS is activations.ACTIVATIONS and flows.ODD_ACTIVATIONS is activations.ODD_ACTIVATIONS
    assert layers.ACTIVATIONS is activations.ACTIVATIONS
    assert set(activations.ODD_ACTIVATIONS) < set(activations.ACTIVATIONS)
    assert flows.flow_forward_and_pullback is not None and callable(pullback.half_pullback)
