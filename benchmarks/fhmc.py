#!/usr/bin/env python
"""FHMC throughput benchmark: flowed HMC against plain HMC, and flow training steps per second.

For every (L, chains) the library's HMC (``trivflow.hmc.phi4_kernel``) and FHMC
(``trivflow.hmc.fhmc_kernel`` with the paper's flow, kernel size k, and the analytic φ⁴ force as
the VJP seed) run through the same driver (``trivflow.hmc.run_chains``: vmapped chains,
lax.scan over trajectories, in-scan measurement; for FHMC the observables are measured on
φ = g(φ̃)), float64 positions, momenta and Hamiltonian, τ_MD = 1, ``--num-steps`` leapfrog steps.
The cost ratio FHMC/HMC per trajectory is (HMC traj/s) / (FHMC traj/s).

FHMC variants (``--variants``):

* ``exact``: the library default, everything float64, the flows' hand-written pullback, φ and
  the φ⁴ force in the coupling's 2×2 block layout (``block_value_and_grad_fn``, as the
  application runs φ⁴);
* ``full``: ``exact`` with φ interleaved into the lattice for the φ⁴ action and force and the
  force split into blocks again (the implementation before the block layout; for comparison);
* ``mixed``: ``compute_dtype="float32"`` (coupling networks in float32, field, coupling update,
  log-determinant, action and Hamiltonian in float64);
* ``autodiff``: float64 with the force from ``jax.vjp`` of ``flow_forward`` (the implementation
  before the hand-written pullback; for comparison).

Timing protocol (as benchmarks/hmc.py; the runner and helpers come from benchmarks/harness.py): per (L, chains)
all runners (HMC and every FHMC k × variant) compile and thermalise, a calibration run sets
``num_traj`` for about ``--target-seconds`` per timed run, then ``--repeats`` rounds run every
runner once, interleaved, so that load from other processes hits all alike. Rates use the
median run; the best run and the spread are recorded. The flow is the paper's at its random
initialisation (seed ``--seed``): the cost does not depend on the parameter values, the
acceptance does (it is reported, but is not that of a trained flow).

Training: ``trivflow.training.train_flow`` at L = ``--train-L``, batch ``--train-batch``,
k = ``--train-k``, Gaussian prior, float64 and float32 runs interleaved; steps per second
exclude the first step (compilation).

Usage (from the repository root)::

    .venv/bin/python benchmarks/fhmc.py --quick       # L 16 64 × k 3 × chains 1 64 + training, ~2 min
    .venv/bin/python benchmarks/fhmc.py               # L 16 32 64 × k 3 5 7 × chains 1 64, ~15 min on 2 cores
    .venv/bin/python benchmarks/fhmc.py --profile     # pieces of one trajectory at L=64, 64 chains, k=3
    .venv/bin/python benchmarks/fhmc.py --accuracy    # mixed precision vs float64 on FHMC configurations

See benchmarks/README.md for the options and the JSON fields.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
import harness as hb  # noqa: E402  benchmarks/harness.py: JaxRunner, summarise, beta_for, machine_info, ...

DEFAULT_L = [16, 32, 64]
DEFAULT_K = [3, 5, 7]
DEFAULT_CHAINS = [1, 64]
QUICK_L = [16, 64]
QUICK_K = [3]
VARIANTS = ("exact", "full", "mixed", "autodiff")
#: rough FHMC cost per site and step relative to HMC, only to size the calibration chunk
_FHMC_GUESS_FACTOR = 6.0


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="trivflow FHMC vs HMC throughput (library run_chains), and flow training steps/s.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--L", type=int, nargs="+", default=None, help=f"lattice extents (default {DEFAULT_L})")
    p.add_argument("--k", type=int, nargs="+", default=None, help=f"flow kernel sizes (default {DEFAULT_K})")
    p.add_argument("--chains", type=int, nargs="+", default=None, help=f"numbers of chains (default {DEFAULT_CHAINS})")
    p.add_argument("--variants", nargs="+", default=["exact", "mixed"], choices=VARIANTS,
                   help="FHMC variants: exact (float64, library default), full (exact without the block-layout "
                        "force), mixed (compute_dtype=float32), "
                        "autodiff (float64, force from jax.vjp of flow_forward)")
    p.add_argument("--num-steps", type=int, default=10, help="leapfrog steps per trajectory")
    p.add_argument("--traj-length", type=float, default=1.0, help="τ_MD; step size = τ_MD / num_steps")
    p.add_argument("--lam", type=float, default=hb.LAM, help="quartic coupling λ")
    p.add_argument("--beta", type=float, default=None,
                   help="override β for every L (default: line of constant physics, interpolated in log L)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per runner and point")
    p.add_argument("--target-seconds", type=float, default=None,
                   help="wall time of one timed run (default 1.5; --quick 0.4)")
    p.add_argument("--therm", type=int, default=None,
                   help="thermalisation trajectories per chain (default 50; --quick 10)")
    p.add_argument("--chunk-size", type=int, default=1000, help="largest run_chains chunk")
    p.add_argument("--train-steps", type=int, default=None,
                   help="training steps per timed training run; 0 skips training (default 300; --quick 100)")
    p.add_argument("--train-L", type=int, default=8)
    p.add_argument("--train-batch", type=int, default=500)
    p.add_argument("--train-k", type=int, default=3)
    p.add_argument("--train-dtypes", nargs="+", default=["float64", "float32"], choices=["float64", "float32"])
    p.add_argument("--train-draws", nargs="+", default=["threefry", "float32"], choices=["threefry", "rbg", "float32"],
                   help="the Gaussian prior's streams (prior.draw) timed for float64 training")
    p.add_argument("--host-devices", type=int, default=1,
                   help="split the CPU into N XLA host devices and shard the chains over them, as the application's "
                        "cpu_devices does (sets XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts; "
                        "training runs on the first device)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/fhmc.json"),
                   help="JSON output; the Markdown table goes beside it with suffix .md")
    p.add_argument("--quick", action="store_true",
                   help=f"L {QUICK_L} × k {QUICK_K} × chains {DEFAULT_CHAINS}, short runs")
    p.add_argument("--profile", action="store_true",
                   help="time the pieces of one trajectory (step, force, measurement) at the first --L, --chains, --k")
    p.add_argument("--accuracy", action="store_true",
                   help="compare the mixed-precision flow with float64 on thermalised FHMC configurations and exit")
    args = p.parse_args(argv)
    if args.quick:
        args.L = args.L or QUICK_L
        args.k = args.k or QUICK_K
        args.target_seconds = args.target_seconds or 0.4
        args.therm = 10 if args.therm is None else args.therm
        args.train_steps = 100 if args.train_steps is None else args.train_steps
    if args.profile:
        args.L, args.chains, args.k = args.L or [64], args.chains or [64], args.k or [3]
    if args.accuracy:
        args.L, args.k = args.L or [16, 64], args.k or [3]
    args.L = args.L or DEFAULT_L
    args.k = args.k or DEFAULT_K
    args.chains = args.chains or DEFAULT_CHAINS
    args.target_seconds = args.target_seconds or 1.5
    args.therm = 50 if args.therm is None else args.therm
    args.train_steps = 300 if args.train_steps is None else args.train_steps
    # attributes hmc.JaxRunner reads
    args.prng, args.dtypes = "threefry", ["float64"]
    if min(args.num_steps, args.repeats, args.host_devices) < 1 or any(k < 1 or k % 2 == 0 for k in args.k):
        p.error("--num-steps, --repeats and --host-devices must be >= 1, --k odd and >= 1")
    if any(L % 2 for L in args.L):
        p.error("--L must be even (checkerboard flow)")
    return args


# --------------------------------------------------------------------------------------------
# Runners
# --------------------------------------------------------------------------------------------


def benchmark_flow(k: int, variant: str, seed: int):
    """The paper's flow with kernel size k as a :class:`trivflow.flows.Flow` for an FHMC variant:
    a module flow (hand-written pullback), or for ``autodiff`` the same map as a callable flow
    (force from ``jax.vjp``)."""
    from trivflow.flows import Flow, build_flow, flow_forward, split_flow

    compute_dtype = "float32" if variant == "mixed" else None
    graphdef, params = split_flow(build_flow(kernel_size=k, seed=seed, compute_dtype=compute_dtype))
    if variant == "autodiff":
        return Flow.from_callable(functools.partial(flow_forward, graphdef), params)
    return Flow.from_module(graphdef, params)


def block_fn(variant: str):
    """The φ⁴ action and force on blocks for every variant but ``full`` (a callable flow, as
    ``autodiff``'s, has no block layout and ignores it)."""
    from trivflow import hmc

    return None if variant == "full" else hmc.phi4_block_value_and_grad


class FhmcRunner(hb.JaxRunner):
    """benchmarks/harness.py's JAX runner with the FHMC kernel, params {flow, theory} and the
    pulled-back measurement; same chains, keys, calibration and timing."""

    def __init__(self, jax, L, C, beta, args, k, variant):
        super().__init__(jax, L, C, "float64", beta, args)
        hmc = self.hmc
        self.kernel = hmc.fhmc_kernel(hmc.phi4_potential, num_steps=args.num_steps, force_fn=hmc.phi4_force_fn,
                                      block_value_and_grad_fn=block_fn(variant))
        self.params = {"flow": benchmark_flow(k, variant, args.seed), "theory": self.params}
        self.measure_fn = hmc.pulled_back_measure(hmc.phi4_measure)
        self.guess_ns = _FHMC_GUESS_FACTOR * self.guess_ns
        self.k, self.variant = k, variant


def run_group(jax, L, C, args) -> list[dict]:
    """HMC and every FHMC (k, variant) at one (L, chains), timed in interleaved rounds."""
    beta, _ = hb.beta_for(L, args.beta)
    runners = [hb.JaxRunner(jax, L, C, "float64", beta, args)]
    runners[0].k, runners[0].variant = None, None
    runners += [FhmcRunner(jax, L, C, beta, args, k, v) for k in args.k for v in args.variants]
    for r in runners:
        r.calibrate()  # compiles (once per chunk shape) and thermalises
    results = hb.timed_rounds(runners, args.repeats)
    rows = []
    for r, res in zip(runners, results):
        row = hb.summarise(r, L, C, "float64", beta, *res)
        row["sampler"] = "hmc" if r.variant is None else "fhmc"
        row["k"], row["variant"] = r.k, r.variant
        rows.append(row)
    return rows


def cost_ratios(points: list[dict]) -> list[dict]:
    """FHMC/HMC cost per trajectory = HMC traj/s over FHMC traj/s, per (L, chains, k, variant)."""
    hmc = {(p["L"], p["chains"]): p for p in points if p["sampler"] == "hmc"}
    out = []
    for p in points:
        h = hmc.get((p["L"], p["chains"]))
        if p["sampler"] != "fhmc" or h is None:
            continue
        out.append({"L": p["L"], "chains": p["chains"], "k": p["k"], "variant": p["variant"],
                    "fhmc_over_hmc_cost": h["traj_per_second"] / p["traj_per_second"],
                    "fhmc_over_hmc_cost_best": h["traj_per_second_best"] / p["traj_per_second_best"]})
    return out


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def run_training(jax, args) -> list[dict]:
    """train_flow steps/s at (train_L, train_batch, train_k) per dtype, interleaved repeats."""
    import jax.numpy as jnp

    from trivflow.flows import Flow, build_flow, split_flow
    from trivflow.lattice import phi4_action
    from trivflow.priors import GaussianPrior
    from trivflow.training import train_flow

    L, B, k, n = args.train_L, args.train_batch, args.train_k, args.train_steps
    beta, _ = hb.beta_for(L, args.beta)
    action = functools.partial(phi4_action, beta=beta, lam=args.lam)
    setups = {}
    for dtype in args.train_dtypes:
        dt = jnp.dtype(dtype)
        # float32 fields draw float32 normals anyway: the prior's stream options matter for float64
        for draw in (args.train_draws if dt == jnp.float64 else ["threefry"]):
            flow = Flow.from_module(*split_flow(build_flow(kernel_size=k, seed=args.seed, dtype=dt)))
            setups[(dtype, draw)] = (flow, GaussianPrior((L, L), dtype=dt, draw=draw))

    def one(name, i):
        flow, prior = setups[name]
        cpu0 = time.process_time()
        _, h = train_flow(jax.random.key(args.seed + i), flow, prior, action, steps=n, batch_size=B,
                          log_every=n, progress=False)
        cpu = time.process_time() - cpu0
        wall, first = float(h["seconds"]), float(h["compile_seconds"])
        return (n - 1) / (wall - first), first, float(h["loss"][-1]), hb.cpu_fraction(wall, cpu)

    first_call = {name: one(name, 0)[1] for name in setups}  # compiles (cached for the timed runs)
    rates = {name: [] for name in setups}
    extra = {name: [] for name in setups}
    for i in range(args.repeats):
        for name in setups:
            r, first, loss, cpu = one(name, i + 1)
            rates[name].append(r)
            extra[name].append((first, loss, cpu))
    rows = []
    for name in setups:
        v = rates[name]
        rows.append({
            "dtype": name[0], "prior_draw": name[1], "L": L, "batch_size": B, "k": k, "beta": beta, "steps_per_run": n,
            "steps_per_second": statistics.median(v), "steps_per_second_best": max(v),
            "steps_per_second_runs": [round(x, 2) for x in v],
            "spread": (max(v) - min(v)) / statistics.median(v),
            "first_call_seconds": first_call[name],
            "first_step_seconds_timed_runs": [round(e[0], 4) for e in extra[name]],
            "final_loss": [round(e[1], 4) for e in extra[name]],
            "cpu_fraction": [round(e[2], 3) for e in extra[name]],
        })
    return rows


def run_training_dispatch(jax, args) -> dict:
    """float64 steps/s of the same training steps dispatched one per call (``make_train_step``,
    as train_flow ran them before 2026-12-06) and in chunks of ``log_every`` = 50 steps per call
    (``make_train_chunk``, train_flow's loop now), interleaved repeats; both give the same bits."""
    import jax.numpy as jnp

    from trivflow.flows import Flow, build_flow, split_flow
    from trivflow.lattice import phi4_action
    from trivflow.priors import GaussianPrior
    from trivflow.training import make_optimizer, make_train_chunk, make_train_step

    L, B, k, n, chunk = args.train_L, args.train_batch, args.train_k, args.train_steps, 50
    beta, _ = hb.beta_for(L, args.beta)
    action = functools.partial(phi4_action, beta=beta, lam=args.lam)
    flow = Flow.from_module(*split_flow(build_flow(kernel_size=k, seed=args.seed, dtype=jnp.float64)))
    prior = GaussianPrior((L, L), dtype=jnp.float64)
    opt = make_optimizer(0.01, n)
    init, step = make_train_step(prior, action, opt, B)
    run = make_train_chunk(prior, action, opt, B)

    def per_step(state):
        pending = []
        for _ in range(n):
            state, m = step(state)
            pending.append(m)
        jax.device_get(pending)
        return state

    def chunked(state):
        pending = []
        for i in range(0, n, chunk):
            state, m = run(state, min(chunk, n - i))
            pending.append(m)
        jax.device_get(pending)
        return state

    runners = {"per_step": per_step, "chunked": chunked}
    states = {name: init(jax.tree_util.tree_map(jnp.array, flow), jax.random.key(args.seed)) for name in runners}
    for name, fn in runners.items():  # compile, warm up
        states[name] = fn(states[name])
    rates = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, fn in runners.items():
            t0 = time.perf_counter()
            states[name] = fn(states[name])
            rates[name].append(n / (time.perf_counter() - t0))
    out = {"L": L, "batch_size": B, "k": k, "dtype": "float64", "steps_per_run": n, "chunk": chunk}
    for name, v in rates.items():
        out[name] = {"steps_per_second": statistics.median(v), "steps_per_second_best": max(v),
                     "steps_per_second_runs": [round(x, 2) for x in v]}
    out["chunked_over_per_step"] = out["chunked"]["steps_per_second"] / out["per_step"]["steps_per_second"]
    return out


# --------------------------------------------------------------------------------------------
# --profile: the pieces of one trajectory
# --------------------------------------------------------------------------------------------


def run_profile(jax, args) -> dict:
    """Best-of time per call of: one trajectory (vmapped kernel.step), one force evaluation,
    the measurement, for HMC and each FHMC variant at the first L, chains, k."""
    from trivflow import hmc, lattice

    L, C, k = args.L[0], args.chains[0], args.k[0]
    beta, _ = hb.beta_for(L, args.beta)
    theory = lattice.Phi4Theory(L=L, d=2, beta=beta, lam=args.lam)
    tp = hmc.phi4_params(theory)
    x = hmc.random_positions(jax.random.key(args.seed), C, theory.shape)
    keys = jax.random.split(jax.random.key(args.seed + 1), C)
    eps = args.traj_length / args.num_steps
    V = L * L

    def step_fn(kernel):
        return jax.jit(lambda ks, s, p: jax.vmap(kernel.step, (0, 0, None, None))(ks, s, p, eps))

    cases = {}
    hk = hmc.phi4_kernel(args.num_steps)
    cases["hmc trajectory (kernel.step)"] = (step_fn(hk), (keys, jax.vmap(hk.init, (0, None))(x, tp), tp), True)
    cases["hmc force"] = (jax.jit(jax.vmap(hmc.phi4_value_and_grad, (0, None))), (x, tp), False)
    cases["hmc measurement"] = (jax.jit(jax.vmap(hmc.phi4_measure, (0, None))), (x, tp), False)
    variants = list(dict.fromkeys([*args.variants, "autodiff"]))
    for v in variants:
        params = {"flow": benchmark_flow(k, v, args.seed), "theory": tp}
        kern = hmc.fhmc_kernel(hmc.phi4_potential, num_steps=args.num_steps, force_fn=hmc.phi4_force_fn,
                               block_value_and_grad_fn=block_fn(v))
        states = jax.jit(jax.vmap(kern.init, (0, None)))(x, params)
        vg = hmc.pulled_back_value_and_grad(hmc.phi4_potential, hmc.phi4_force_fn, block_fn(v))
        cases[f"fhmc {v} trajectory (kernel.step)"] = (step_fn(kern), (keys, states, params), True)
        cases[f"fhmc {v} force (S̃ and ∂S̃/∂φ̃)"] = (jax.jit(jax.vmap(vg, (0, None))), (x, params), False)
        if v != "autodiff":
            # the forward pass the measurement uses
            cases[f"fhmc {v} flow forward g(φ̃)"] = (
                jax.jit(jax.vmap(lambda z, p: p["flow"].forward_and_pullback(z)[0], (0, None))), (x, params), False)
            cases[f"fhmc {v} measurement (g, then observables)"] = (
                jax.jit(jax.vmap(hmc.pulled_back_measure(hmc.phi4_measure), (0, None))), (x, params), False)
    res = {}
    for name, (fn, a, per_step) in cases.items():
        sec = hb.best_seconds(jax, fn, *a)
        res[name] = {"ms": sec * 1e3, "ns_per_site": sec / (C * V) * 1e9,
                     "ns_per_site_step": sec / (C * V * (args.num_steps if per_step else 1)) * 1e9}
    print(f"\nL={L}, chains={C}, k={k}, {args.num_steps} steps (best of 5×5 calls)")
    print(f"  {'piece':<52s} {'ms/call':>9s} {'ns/site':>9s} {'ns/site/step':>13s}")
    for name, r in res.items():
        print(f"  {name:<52s} {r['ms']:9.3f} {r['ns_per_site']:9.3f} {r['ns_per_site_step']:13.3f}")
    shares = {}
    for v in args.variants:
        if v == "autodiff":
            continue
        step = res[f"fhmc {v} trajectory (kernel.step)"]["ms"]
        meas = res[f"fhmc {v} measurement (g, then observables)"]["ms"]
        fwd = res[f"fhmc {v} flow forward g(φ̃)"]["ms"]
        shares[v] = {"measurement_share_of_trajectory": meas / (step + meas),
                     "flow_forward_in_measurement_share": fwd / (step + meas)}
        print(f"  fhmc {v}: measurement = {shares[v]['measurement_share_of_trajectory']:.1%} of a trajectory "
              f"(its flow forward g(φ̃): {shares[v]['flow_forward_in_measurement_share']:.1%}, the most that "
              f"reusing the last force evaluation's φ could save)")
    return {"L": L, "chains": C, "k": k, "beta": beta, "num_steps": args.num_steps, "pieces": res, "shares": shares}


# --------------------------------------------------------------------------------------------
# --accuracy: mixed precision against float64 on FHMC configurations
# --------------------------------------------------------------------------------------------


def run_accuracy(jax, args) -> dict:
    """On thermalised FHMC (float64) configurations φ̃: S̃, φ, the force and the log-det of the
    mixed-precision flow against float64, the round trip, and the implied bound on the bias."""
    import jax.numpy as jnp

    from trivflow import hmc, lattice
    from trivflow.flows import flow_forward_and_pullback, flow_inverse, with_compute_dtype

    out = []
    C, n_therm = 16, max(args.therm, 100)
    for L in args.L:
        for k in args.k:
            beta, _ = hb.beta_for(L, args.beta)
            theory = lattice.Phi4Theory(L=L, d=2, beta=beta, lam=args.lam)
            flow = benchmark_flow(k, "exact", args.seed)
            gd, fp = flow.graphdef, flow.params
            gd32 = with_compute_dtype(gd, fp, "float32")
            params = {"flow": flow, "theory": hmc.phi4_params(theory)}
            kern = hmc.fhmc_kernel(hmc.phi4_potential, num_steps=args.num_steps, force_fn=hmc.phi4_force_fn)
            res = hmc.run_chains(jax.random.key(args.seed), kern,
                                 hmc.random_positions(jax.random.key(args.seed + 1), C, theory.shape), params,
                                 step_size=args.traj_length / args.num_steps, num_traj=1, num_therm=n_therm,
                                 progress=False)
            z = res.final_state.position

            def evaluate(graphdef):
                def one(zi):
                    phi, ld, pullback = flow_forward_and_pullback(graphdef, fp, zi)
                    s = hmc.phi4_potential(phi, params["theory"])
                    grad = pullback(hmc.phi4_force_fn(phi, params["theory"]), -1.0)
                    back, ld_inv = flow_inverse(graphdef, fp, phi)
                    return s - ld, phi, ld, grad, back, ld_inv
                return jax.jit(jax.vmap(one))(z)

            s64, phi64, ld64, g64, back64, ldi64 = evaluate(gd)
            s32, phi32, ld32, g32, back32, ldi32 = evaluate(gd32)
            delta = np.asarray(s32 - s64)
            row = {
                "L": L, "k": k, "beta": beta, "configurations": C, "thermalisation": n_therm,
                "S_tilde_mean_abs": float(np.mean(np.abs(np.asarray(s64)))),
                "delta_S_tilde_mean": float(np.mean(delta)),
                "delta_S_tilde_std": float(np.std(delta, ddof=1)),
                "delta_S_tilde_max_abs": float(np.max(np.abs(delta))),
                "phi_max_rel": float(jnp.max(jnp.abs(phi32 - phi64)) / jnp.max(jnp.abs(phi64))),
                "log_det_max_abs_diff": float(jnp.max(jnp.abs(ld32 - ld64))),
                "force_rel_l2": float(jnp.sqrt(jnp.sum((g32 - g64) ** 2) / jnp.sum(g64**2))),
                "round_trip_max_abs_float64": float(jnp.max(jnp.abs(back64 - z))),
                "round_trip_max_abs_mixed": float(jnp.max(jnp.abs(back32 - z))),
                "log_det_forward_plus_inverse_mixed": float(jnp.max(jnp.abs(ld32 + ldi32))),
            }
            # first order: ⟨O⟩_mixed − ⟨O⟩ = −cov(O, Δ) with Δ the change of S̃ (up to a constant),
            # so |bias| ≤ σ_O · std(Δ); the constant part of Δ changes nothing
            row["relative_bias_bound_in_units_of_sigma_O"] = row["delta_S_tilde_std"]
            out.append(row)
            print(f"L={L} k={k}: |S̃|≈{row['S_tilde_mean_abs']:.4g}, ΔS̃ mean {row['delta_S_tilde_mean']:.3g} "
                  f"std {row['delta_S_tilde_std']:.3g} max {row['delta_S_tilde_max_abs']:.3g}; "
                  f"max|Δφ|/max|φ| {row['phi_max_rel']:.3g}; |Δ log det| {row['log_det_max_abs_diff']:.3g}; "
                  f"force rel. L2 {row['force_rel_l2']:.3g}; round trip {row['round_trip_max_abs_float64']:.2g} "
                  f"(float64) {row['round_trip_max_abs_mixed']:.2g} (mixed; forward and inverse in one program, "
                  f"where XLA may round float32 differently per fusion)", flush=True)
    return {"points": out}


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def markdown_table(points: list[dict], ratios: list[dict], training: list[dict], variants) -> str:
    by = {(p["L"], p["chains"], p["k"], p["variant"]): p for p in points}
    rat = {(r["L"], r["chains"], r["k"], r["variant"]): r for r in ratios}
    keys = sorted({(p["L"], p["chains"], p["k"]) for p in points if p["sampler"] == "fhmc"})
    head = "| L | chains | k | HMC traj/s | HMC acc |"
    for v in variants:
        head += f" FHMC {v} traj/s | acc | FHMC/HMC cost ({v}) | best-run ratio |"
    head += " FHMC compile s |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for L, C, k in keys:
        h = by[(L, C, None, None)]
        line = f"| {L} | {C} | {k} | {h['traj_per_second']:.4g} | {h['acceptance']:.3f} |"
        for v in variants:
            p, r = by.get((L, C, k, v)), rat.get((L, C, k, v))
            line += (f" {p['traj_per_second']:.4g} | {p['acceptance']:.3f} | **{r['fhmc_over_hmc_cost']:.2f}×** "
                     f"| {r['fhmc_over_hmc_cost_best']:.2f}× |") if p else " — | — | — | — |"
        comp = [by[(L, C, k, v)]["compile_seconds"] for v in variants if (L, C, k, v) in by]
        line += f" {max(comp):.1f} |"
        lines.append(line)
    text = "\n".join(lines) + "\n"
    if training:
        text += ("\n| training dtype | prior.draw | L | batch | k | steps/s (median) | best | spread "
                 "| first call s (compile) |\n|---|---|---|---|---|---|---|---|---|\n")
        for t in training:
            text += (f"| {t['dtype']} | {t['prior_draw']} | {t['L']} | {t['batch_size']} | {t['k']} "
                     f"| {t['steps_per_second']:.1f} "
                     f"| {t['steps_per_second_best']:.1f} | {t['spread']:.0%} | {t['first_call_seconds']:.2f} |\n")
    return text


def main(argv=None) -> int:
    args = parse_args(argv)
    jax = hb.setup_jax(args)
    t_start = time.perf_counter()
    report = hb.report_header("fhmc", jax, args)
    extra = "profile" if args.profile else "accuracy" if args.accuracy else None
    if extra:
        report[extra] = (run_profile if args.profile else run_accuracy)(jax, args)
        report["machine"]["loadavg_end"] = os.getloadavg()
        out = args.out.with_name(f"{args.out.stem}_{extra}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, default=hb.json_default) + "\n")
        print(f"wrote {out}")
        return 0

    report["settings"] = {
        "theory": "2D phi^4, S = Σ_x[-β Σ_μ φ_{x+μ}φ_x + φ_x² + λ(φ_x²-1)²]", "lam": args.lam,
        "beta": {L: dict(zip(("value", "source"), hb.beta_for(L, args.beta))) for L in args.L},
        "num_steps": args.num_steps, "traj_length": args.traj_length, "step_size": args.traj_length / args.num_steps,
        "precision": "float64 positions, momenta, action and Hamiltonian",
        "flow": "paper's minimal flow (one affine coupling, k×k conv 1→2, tanh, global rescaling) at its random "
                f"initialisation, seed {args.seed}",
        "fhmc_variants": {"exact": "float64, hand-written pullback, phi4 force in the block layout (library default)",
                          "full": "exact with phi interleaved for the phi4 force (before the block layout)",
                          "mixed": "compute_dtype=float32 (coupling networks float32)",
                          "autodiff": "float64, force = jax.vjp of flow_forward (pre-pullback implementation)"},
        "variants": args.variants, "k": args.k, "chains": args.chains, "host_devices": args.host_devices,
        "measurement": "M, |M|, M², G(0), C(t) after every trajectory, in-scan; FHMC on φ = g(φ̃)",
        "repeats": args.repeats, "target_seconds": args.target_seconds, "therm": args.therm,
        "max_chunk_size": args.chunk_size,
        "timing": "per (L, chains): every runner (HMC, FHMC k × variant) calibrated, then `repeats` rounds "
                  "running each once, interleaved; rates from the median run, *_best from the shortest",
        "training": {"L": args.train_L, "batch_size": args.train_batch, "k": args.train_k,
                     "steps_per_run": args.train_steps, "dtypes": args.train_dtypes,
                     "prior_draws_float64": args.train_draws,
                     "rate": "(steps − 1) / (wall − first step): compilation and first step excluded"},
    }
    points = []
    for L in args.L:
        for C in args.chains:
            t0 = time.perf_counter()
            rows = run_group(jax, L, C, args)
            points.extend(rows)
            h = rows[0]["traj_per_second"]
            msg = "  ".join(f"k={r['k']} {r['variant']}: {r['traj_per_second']:.4g} traj/s "
                            f"({h / r['traj_per_second']:.2f}×)" for r in rows[1:])
            print(f"[L={L:3d} C={C:3d}] hmc {h:.4g} traj/s  {msg}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    ratios = cost_ratios(points)
    training = []
    if args.train_steps > 1:
        t0 = time.perf_counter()
        training = run_training(jax, args)
        print("training: " + "  ".join(f"{t['dtype']} (prior.draw={t['prior_draw']}) "
                                       f"{t['steps_per_second']:.1f} steps/s" for t in training)
              + f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
        report["training_dispatch"] = d = run_training_dispatch(jax, args)
        print(f"training dispatch (float64): one step per call {d['per_step']['steps_per_second']:.1f} steps/s, "
              f"{d['chunk']} per call {d['chunked']['steps_per_second']:.1f} steps/s "
              f"({d['chunked_over_per_step']:.2f}×)", flush=True)
    report.update(points=points, cost_ratio=ratios, training=training)
    report["machine"]["loadavg_end"] = os.getloadavg()
    report["total_seconds"] = time.perf_counter() - t_start
    table = markdown_table(points, ratios, training, args.variants)
    print()
    print(table)
    for r in ratios:
        if r["k"] == 3 and r["chains"] == 64 and r["L"] in (16, 32, 64):
            print(f"issue 14's target (FHMC cost ≤ 3.5× HMC at k=3, 64 chains) L={r['L']} {r['variant']}: "
                  f"{r['fhmc_over_hmc_cost']:.2f}× (best-run {r['fhmc_over_hmc_cost_best']:.2f}×) -> "
                  f"{'met' if r['fhmc_over_hmc_cost'] <= 3.5 else 'NOT met'}")
    hb.write_outputs(report, table, args.out)
    print(f"total {report['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
