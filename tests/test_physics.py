"""Physics checks against the paper's line of constant physics (docs/theory.md#line-of-constant-physics)."""

import jax

from trivflow import hmc, lattice
from trivflow.lattice.theory import correlation_length


def sample_phi4(theory, num_chains, num_traj, num_therm, seed=0):
    kernel = hmc.phi4_kernel(10)
    pos = hmc.random_positions(jax.random.key(seed), num_chains, theory.shape)
    return hmc.run_chains(jax.random.key(seed + 1), kernel, pos, hmc.phi4_params(theory), step_size=0.1,
                          num_traj=num_traj, num_therm=num_therm, measure_fn=hmc.phi4_measure,
                          chunk_size=2500, progress=False)


def test_correlation_length_on_the_line_of_constant_physics_at_l8():
    """ξ(L = 8, β = 0.576, λ = 0.5) = L/4 = 2.

    A long run (64 chains × 40 000 trajectories) gives ξ = 1.9997(47) with the default
    plateau t ∈ [2, 3]; this shorter one must agree with 2 within 3σ.
    """
    res = sample_phi4(lattice.preset("L8"), num_chains=32, num_traj=10000, num_therm=500)
    xi = correlation_length(res.observables["C"], res.observables["M"], 8)
    assert xi.err < 0.03, xi
    assert abs(xi.mean - 2.0) < 3 * xi.err, (xi.mean, xi.err)
