# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # (e) Your own action: 3D φ⁴ from JAX code
#
# trivflow's HMC kernel takes any potential U(x, params) of one configuration: write the action
# as a pure JAX function, hand it to `hmc.build_kernel`, and the multi-chain driver, the
# Γ-method analysis and (for 2D fields) the flows work with it unchanged. This page writes the
# φ⁴ action in d = 3 with its own code (no trivflow action involved), checks it against the
# exactly solvable free theory, and then samples the interacting theory.
#
# The action on an L³ periodic lattice, each bond once (the same convention as
# [Theory](../theory.md)):
#
# $$ S(\phi) = \sum_x \Big[ -\beta \sum_{\mu=1}^{3} \phi_{x+\hat\mu}\phi_x + \phi_x^2
#    + \lambda(\phi_x^2 - 1)^2 \Big]. $$

# %%
import os

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)
import numpy as np

from trivflow import analysis, hmc, lattice

SMALL = os.environ.get("TRIVFLOW_DOCS_SMALL", "1") == "1"
L = 6
NUM_CHAINS, NUM_TRAJ = (16, 1500) if SMALL else (64, 20000)


def action_3d(phi, params):
    """S(φ) for ONE configuration of shape (L, L, L); params = {"beta": β, "lam": λ}."""
    hop = sum(jnp.roll(phi, -1, axis=mu) for mu in range(phi.ndim))  # φ_{x+μ̂}, one bond each
    return jnp.sum(-params["beta"] * hop * phi + phi**2 + params["lam"] * (phi**2 - 1) ** 2)


# %% [markdown]
# ## Any potential → an HMC kernel
#
# Without `value_and_grad_fn`, `build_kernel` differentiates the potential with `jax.grad`.
# Measurements are any function of one configuration, run inside the compiled scan.

# %%
kernel = hmc.build_kernel(action_3d, num_steps=10)


def measure(phi, params):
    m = jnp.mean(phi)
    return {"M": m, "M2": m**2, "phi2": jnp.mean(phi**2)}


# %% [markdown]
# ## Check against the free theory
#
# At λ = 0 the theory is Gaussian with Â(p) = 2 − 2β Σ_μ cos p_μ (stable for β < 1/3), and
# `trivflow.lattice.free` gives ⟨φ²⟩ and χ = V⟨M²⟩ exactly for any d.

# %%
free = {"beta": 0.25, "lam": 0.0}
pos = hmc.random_positions(jax.random.key(0), NUM_CHAINS, (L, L, L))
res = hmc.run_chains(jax.random.key(1), kernel, pos, free, step_size=0.1, num_traj=NUM_TRAJ,
                     num_therm=200, measure_fn=measure, progress=False)
phi2 = analysis.gamma_method(res.observables["phi2"])
chi = analysis.gamma_method(L**3 * res.observables["M2"])
exact_phi2 = lattice.free.phi2(L, 3, 0.25)
exact_chi = lattice.free.chi(L, 3, 0.25)
print(f"acceptance {res.acceptance:.3f}")
print(f"<phi^2> {phi2.mean:.5f} ± {phi2.err:.5f}   exact {exact_phi2:.5f}")
print(f"chi     {chi.mean:.4f} ± {chi.err:.4f}    exact {exact_chi:.4f}")
assert abs(phi2.mean - exact_phi2) < 4 * phi2.err
assert abs(chi.mean - exact_chi) < 4 * chi.err

# %% [markdown]
# ## The interacting theory
#
# Same kernel, new parameters: no recompilation (params are a jit argument).

# %%
inter = {"beta": 0.35, "lam": 0.5}
res = hmc.run_chains(jax.random.key(2), kernel, pos, inter, step_size=0.1, num_traj=NUM_TRAJ,
                     num_therm=200, measure_fn=measure, progress=False)
for name in ("M2", "phi2"):
    g = analysis.gamma_method(res.observables[name])
    print(f"{name:5s} {g.mean:.5f} ± {g.err:.5f}   tau_int {g.tau_int:.2f} ± {g.tau_int_err:.2f}")
emdh = analysis.gamma_method(np.exp(-res.delta_H))
print(f"acceptance {res.acceptance:.3f}, <exp(-dH)> {emdh.mean:.4f} ± {emdh.err:.4f}")
assert abs(emdh.mean - 1) < 5 * emdh.err + 1e-3

# %% [markdown]
# ## Faster: an analytic force
#
# For a hot loop, pass `value_and_grad_fn` with a hand-written force
# ∂S/∂φ_x = −β Σ_μ(φ_{x+μ̂} + φ_{x−μ̂}) + 2φ_x + 4λφ_x(φ_x² − 1), and check it against autodiff.

# %%
def value_and_grad_3d(phi, params):
    nn = sum(jnp.roll(phi, s, axis=mu) for mu in range(phi.ndim) for s in (-1, 1))
    force = -params["beta"] * nn + 2 * phi + 4 * params["lam"] * phi * (phi**2 - 1)
    return action_3d(phi, params), force


phi = jax.random.normal(jax.random.key(3), (L, L, L))
auto = jax.grad(action_3d)(phi, inter)
print("max |analytic - autodiff| =", float(jnp.max(jnp.abs(value_and_grad_3d(phi, inter)[1] - auto))))
assert jnp.allclose(value_and_grad_3d(phi, inter)[1], auto, rtol=1e-12, atol=1e-12)
fast_kernel = hmc.build_kernel(action_3d, num_steps=10, value_and_grad_fn=value_and_grad_3d)

# %% [markdown]
# **Flows in 3D.** trivflow's coupling flows, `flows.flow_forward` and `training.train_flow` act
# on 2D checkerboards (a 3D field raises a `ValueError`; `lattice.d` must be 2 for flow samplers).
# For FHMC with your own d-dimensional bijection, write `forward(flow_params, z) -> (phi, log_det)`
# in JAX (log_det = log|det ∂φ/∂z|), train it with your own optax loop on the reverse-KL loss
# mean[log r(z) − log_det + S(φ)] (the objective of [Theory](../theory.md#training-reverse-kl)),
# wrap it as `flow = flows.Flow.from_callable(forward, flow_params)` and run
# `hmc.fhmc_kernel(action_3d, num_steps=10)` with `params = {"flow": flow, "theory": ...}`: the
# kernel, the driver and the pulled-back measurement are dimension-agnostic, and the force comes
# from `jax.vjp` through your flow.
