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
# # (a) HMC vs FHMC at L = 16, from Python
#
# This tutorial runs plain HMC and flowed HMC (FHMC) on the same lattice, L = 16 at
# β = 0.634, λ = 0.5 (ξ = 4 on the line of constant physics), from JAX code without Hydra, and
# compares their acceptance, observables and integrated autocorrelation time τ_int(M).
#
# **Sizes.** The docs build runs this page with `TRIVFLOW_DOCS_SMALL=1` (few chains and
# trajectories, short training) so that it finishes in about a minute on 2 CPU cores; every
# number below comes from that run. At these sizes τ_int is *not* resolved to the paper's
# precision; set `TRIVFLOW_DOCS_SMALL=0` to run the paper-sized version (64 chains × 40 000
# trajectories each, as in `experiments/minimal_network`, about 10 minutes on a laptop CPU).

# %%
import os
from functools import partial

import jax

jax.config.update("jax_enable_x64", True)  # float64: ΔH stays exact at large volume
import matplotlib.pyplot as plt
import numpy as np

from trivflow import analysis, flows, hmc, lattice, priors, training

SMALL = os.environ.get("TRIVFLOW_DOCS_SMALL", "1") == "1"
NUM_CHAINS, NUM_TRAJ, NUM_THERM = (32, 3000, 200) if SMALL else (64, 40000, 2000)
TRAIN_STEPS = 300 if SMALL else 1000
print(f"{NUM_CHAINS} chains x {NUM_TRAJ} trajectories, {TRAIN_STEPS} training steps")

# %% [markdown]
# ## The theory
#
# `lattice.preset("L16")` is the line-of-constant-physics point. `hmc.phi4_params` turns it into
# the parameter pytree that the φ⁴ potential reads (a jit argument, so changing β does not
# recompile).

# %%
theory = lattice.preset("L16")
print(theory)
theory_params = hmc.phi4_params(theory)
positions = hmc.random_positions(jax.random.key(0), NUM_CHAINS, theory.shape)  # hot start
print("positions:", positions.shape, positions.dtype)

# %% [markdown]
# ## Plain HMC
#
# τ_MD = 1 in 10 leapfrog steps (ε = 0.1), the paper's setting. `run_chains` vmaps the chains and
# scans over trajectories; `phi4_measure` records M, |M|, M², G(0) and C(t) in the scan.

# %%
kernel = hmc.phi4_kernel(num_steps=10)
res_hmc = hmc.run_chains(jax.random.key(1), kernel, positions, theory_params, step_size=0.1,
                         num_traj=NUM_TRAJ, num_therm=NUM_THERM, measure_fn=hmc.phi4_measure,
                         progress=False)
print(f"HMC acceptance {res_hmc.acceptance:.3f}, {res_hmc.traj_per_second:.0f} chain-trajectories/s")

# %% [markdown]
# ## Train the paper's minimal flow
#
# One affine coupling layer with k = 3 convolutions, 4k² + 1 = 37 parameters, trained by reverse
# KL from a Gaussian prior (Adam, lr 0.01 with cosine decay, batch 500).

# %%
# one object: the flax NNX module split into its structure and its parameters
flow = flows.Flow.from_module(*flows.split_flow(flows.build_flow(kernel_size=3)))
print("parameters:", flows.num_params(flow.params))
action = partial(lattice.phi4_action, beta=theory.beta, lam=theory.lam)
flow, history = training.train_flow(jax.random.key(2), flow, priors.GaussianPrior(theory.shape), action,
                                    steps=TRAIN_STEPS, batch_size=500, lr=0.01, progress=False)
print(f"loss {history['loss'][0]:.2f} -> {history['loss'][-1]:.2f}, "
      f"ESS {history['ess'][-1]:.4f}, MH acceptance {history['mh_acceptance'][-1]:.3f}")

# %%
fig, ax = plt.subplots(1, 2, figsize=(9, 3))
ax[0].plot(history["step"], history["loss"])
ax[0].set(xlabel="step", ylabel="loss = E[log r - log|det J| + S]")
ax[1].plot(history["step"], history["mh_acceptance"])
ax[1].set(xlabel="step", ylabel="MH acceptance (batch)")
fig.tight_layout()
plt.show()

# %% [markdown]
# The loss is an upper bound on −log Z; it falls steeply and then flattens: a single coupling
# layer cannot trivialise the theory, and the MH acceptance stays small. FHMC does not need it
# to be large.

# %% [markdown]
# ## Flowed HMC
#
# HMC in φ̃ on the pulled-back action S̃(φ̃) = S(g(φ̃)) − log|det J_g(φ̃)|. The kernel is the same
# HMC kernel with another potential; `pulled_back_measure` measures on φ = g(φ̃).

# %%
# the trained flow is an argument of the sampler, like the couplings
fkernel = hmc.fhmc_kernel(hmc.phi4_potential, num_steps=10, force_fn=hmc.phi4_force_fn,
                          block_value_and_grad_fn=hmc.phi4_block_value_and_grad)
res_fhmc = hmc.run_chains(jax.random.key(3), fkernel, positions,
                          {"flow": flow, "theory": theory_params}, step_size=0.1,
                          num_traj=NUM_TRAJ, num_therm=NUM_THERM,
                          measure_fn=hmc.pulled_back_measure(hmc.phi4_measure),
                          progress=False)
print(f"FHMC acceptance {res_fhmc.acceptance:.3f}, {res_fhmc.traj_per_second:.0f} chain-trajectories/s")

# %% [markdown]
# ## Compare, with Γ-method errors
#
# The chains are replicas of one ensemble. `gamma_method` returns the mean, its error with the
# autocorrelation taken into account, and τ_int with Wolff's automatic window (S_τ = 4).
# ⟨e^{−ΔH}⟩ = 1 is an exactness check of each sampler.

# %%
V = theory.volume
rows = {}
for name, res in [("HMC", res_hmc), ("FHMC", res_fhmc)]:
    M = analysis.gamma_method(res.observables["M"])
    chi = analysis.gamma_method(V * res.observables["M2"])
    emdh = analysis.gamma_method(np.exp(-res.delta_H))
    rows[name] = (M, chi, emdh)
    print(f"{name:5s} acc {res.acceptance:.3f}  <exp(-dH)> {emdh.mean:.4f} ± {emdh.err:.4f}  "
          f"chi {chi.mean:.3f} ± {chi.err:.3f}  tau_int(M) {M.tau_int:.1f} ± {M.tau_int_err:.1f} (W={M.window})")

# %% [markdown]
# These checks are part of the docs build: if a sampler were wrong, the page would not build.

# %%
for name, (M, chi, emdh) in rows.items():
    assert abs(emdh.mean - 1) < 5 * emdh.err + 1e-3, (name, emdh)
chi_h, chi_f = rows["HMC"][1], rows["FHMC"][1]
assert abs(chi_h.mean - chi_f.mean) < 5 * np.hypot(chi_h.err, chi_f.err), (chi_h, chi_f)
assert res_fhmc.acceptance > 0.8
print("exactness and agreement checks passed")

# %%
fig, ax = plt.subplots(1, 2, figsize=(9, 3))
for name, res in [("HMC", res_hmc), ("FHMC", res_fhmc)]:
    g = analysis.gamma_method(res.observables["M"])
    ax[0].plot(g.tau_int_of_w[:4 * g.window + 1], label=f"{name} (W={g.window})")
    ax[1].plot(res.observables["M"][0, :500], lw=0.7, label=name)
ax[0].set(xlabel="W", ylabel="τ_int(M) at window W")
ax[1].set(xlabel="trajectory (chain 0)", ylabel="M")
ax[0].legend()
ax[1].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# **Reading the result.** FHMC's acceptance stays high although the flow's MH acceptance is
# small: the Metropolis step of FHMC only sees the integration error of S̃. With paper-sized
# statistics (`TRIVFLOW_DOCS_SMALL=0`, or `python -m trivflow.run experiment=minimal_network`)
# τ_int(M) of FHMC is about 0.75 of HMC's (the paper: 56.9(1.8) vs 77.9(1.5); trivflow's record:
# [Reproduction](../reproduction.md)). At the small sizes of the docs build, τ_int has a large
# error and the two may not be distinguishable. FHMC costs about 5× HMC per trajectory on a
# CPU ([Performance](../performance.md)).
