"""FHMC's force in the coupling flows' 2×2 block layout (docs/performance.md).

φ⁴'s action and force of a field given by its blocks equal those of the interleaved field
(the force to the bit: the same terms in the same order; the action to rounding), the flows'
block pullback equals their ordinary one, and FHMC through the block path gives the force and
the chains of the ordinary path, all to rounding: XLA may fuse, and so round, the same
arithmetic differently in the two layouts (for the paper's one-layer flow the force alone
comes out bit for bit the same, but not inside the leapfrog).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trivflow import hmc, lattice
from trivflow.flows import (
    FLOW_REGISTRY,
    Flow,
    build_flow,
    flow_forward_and_pullback,
    flow_forward_and_pullback_blocks,
    flow_supports_blocks,
    registry_flow,
    split_flow,
)
from trivflow.flows.checkerboard import from_blocks, to_blocks
from trivflow.lattice.phi4 import block_neighbour, block_phi4_value_and_grad, phi4_action, phi4_force

SHAPES = [(4, 4), (6, 8), (8, 6)]


def _field(shape, seed, scale=1.3):
    return scale * jax.random.normal(jax.random.key(seed), shape)


def _flow(name, log_scale=0.1, **kwargs):
    """A registered flow at its initialisation with a non-zero global scale."""
    graphdef, params = split_flow(registry_flow(name, **kwargs))
    leaves, treedef = jax.tree_util.tree_flatten(params)
    leaves = [jnp.full_like(x, log_scale) if x.size == 1 else x for x in leaves]
    return graphdef, jax.tree_util.tree_unflatten(treedef, leaves)


@pytest.mark.parametrize("shape", SHAPES)
def test_block_neighbour_is_the_rolled_field(shape):
    phi = _field(shape, 0)
    blocks = to_blocks(phi)
    for mu in range(2):
        for sign in (+1, -1):
            rolled = to_blocks(jnp.roll(phi, -sign, axis=mu))  # φ_{x + sign μ̂}
            for b in blocks:
                np.testing.assert_array_equal(block_neighbour(blocks, b, mu, sign), rolled[b])


@pytest.mark.parametrize("shape", SHAPES)
def test_block_phi4_equals_the_lattice_action_and_force(shape):
    phi = _field(shape, 1)
    beta, lam = 0.61, 0.45
    action, force = jax.jit(block_phi4_value_and_grad)(to_blocks(phi), beta, lam)
    np.testing.assert_array_equal(from_blocks(force), jax.jit(phi4_force)(phi, beta, lam))
    np.testing.assert_allclose(action, phi4_action(phi, beta, lam), rtol=1e-13)
    # the force is the gradient of the block action
    grad = jax.grad(lambda b: block_phi4_value_and_grad(b, beta, lam)[0])(to_blocks(phi))
    np.testing.assert_allclose(from_blocks(grad), from_blocks(force), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(FLOW_REGISTRY))
def test_block_pullback_equals_the_ordinary_pullback(name):
    graphdef, params = _flow(name)
    if not flow_supports_blocks(graphdef, params):
        with pytest.raises(TypeError, match="no block pullback"):
            flow_forward_and_pullback_blocks(graphdef, params, _field((6, 8), 0))
        return
    z, phi_bar = _field((6, 8), 2), _field((6, 8), 3)

    @jax.jit
    def both(z, phi_bar):
        phi, ld, pb = flow_forward_and_pullback(graphdef, params, z)
        blocks, ld_b, pb_b = flow_forward_and_pullback_blocks(graphdef, params, z)
        return phi, ld, pb(phi_bar, -1.0), from_blocks(blocks), ld_b, pb_b(to_blocks(phi_bar), -1.0)

    phi, ld, z_bar, phi_b, ld_b, z_bar_b = both(z, phi_bar)
    # to rounding: between two coupling layers the block path skips an interleave and a split,
    # so XLA may fuse (and round) the second layer's arithmetic differently
    np.testing.assert_allclose(phi_b, phi, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(ld_b, ld, rtol=1e-14)
    np.testing.assert_allclose(z_bar_b, z_bar, rtol=1e-13, atol=1e-13)


def test_which_flows_compute_in_blocks():
    minimal = Flow.from_module(*split_flow(build_flow(kernel_size=3, num_layers=2)))
    hidden = Flow.from_module(*split_flow(build_flow(kernel_size=3, hidden_channels=(4,))))
    callable_flow = Flow.from_callable(lambda p, z: (2.0 * z, z.size * jnp.log(2.0)))
    assert minimal.supports_blocks
    assert not hidden.supports_blocks
    assert not callable_flow.supports_blocks


def _force_paths(flow, theory, x):
    params = {"flow": flow, "theory": hmc.phi4_params(theory)}
    full = hmc.pulled_back_value_and_grad(hmc.phi4_potential, hmc.phi4_force_fn)
    blocks = hmc.pulled_back_value_and_grad(hmc.phi4_potential, hmc.phi4_force_fn, hmc.phi4_block_value_and_grad)
    run = lambda vg: jax.jit(jax.vmap(vg, (0, None)))(x, params)  # noqa: E731
    return run(full), run(blocks)


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3), dict(kernel_size=5, num_layers=2),
                                    dict(kernel_size=3, compute_dtype="float32"),
                                    dict(kernel_size=3, hidden_channels=(4,))])
def test_fhmc_force_through_blocks_equals_the_ordinary_force(kwargs):
    theory = lattice.Phi4Theory(L=8, beta=0.6, lam=0.5)
    flow = Flow.from_module(*split_flow(build_flow(seed=3, **kwargs)))
    x = _field((4, 8, 8), 4, scale=0.8)
    (s_full, f_full), (s_blk, f_blk) = _force_paths(flow, theory, x)
    np.testing.assert_allclose(f_blk, f_full, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(s_blk, s_full, rtol=1e-13)


def test_fhmc_chains_through_blocks_agree_with_the_ordinary_path_to_rounding():
    """Same keys, same flow: the same accept/reject decisions and positions equal to rounding.

    Not to the bit: inside the leapfrog XLA fuses the block force into the momentum update
    differently (≈ 1 ulp in a fifth of the sites per trajectory)."""
    theory = lattice.Phi4Theory(L=8, beta=0.6, lam=0.5)
    flow = Flow.from_module(*split_flow(build_flow(kernel_size=3, seed=5)))
    params = {"flow": flow, "theory": hmc.phi4_params(theory)}
    pos = hmc.random_positions(jax.random.key(6), 4, theory.shape)
    common = dict(step_size=0.1, num_traj=40, num_therm=0, progress=False,
                  measure_fn=hmc.pulled_back_measure(hmc.phi4_measure))
    out = []
    for block_fn in (None, hmc.phi4_block_value_and_grad):
        kernel = hmc.fhmc_kernel(hmc.phi4_potential, num_steps=10, force_fn=hmc.phi4_force_fn,
                                 block_value_and_grad_fn=block_fn)
        out.append(hmc.run_chains(jax.random.key(7), kernel, pos, params, **common))
    full, blk = out
    np.testing.assert_array_equal(blk.accepted, full.accepted)
    assert 0.5 < float(np.mean(full.accepted)) < 1.0  # both decisions occur
    np.testing.assert_allclose(blk.final_state.position, full.final_state.position, rtol=0, atol=1e-11)
    np.testing.assert_allclose(blk.observables["M2"], full.observables["M2"], rtol=1e-11)
