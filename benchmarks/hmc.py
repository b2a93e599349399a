#!/usr/bin/env python
"""HMC throughput benchmark: trivflow's JAX HMC against a straightforward NumPy HMC.

For every (L, chains, dtype) point both backends run the same algorithm (docs/theory.md#action, §7):
2D φ⁴ at λ = 0.5, β on the line of constant physics, leapfrog with fused kicks, τ_MD = 1,
``--num-steps`` steps, Metropolis on ΔH, full momentum refresh, and the observables
(M, |M|, M², G(0), C(t)) measured after every trajectory. JAX runs the library's
``trivflow.hmc.run_chains`` (vmapped chains, lax.scan over trajectories, in-scan measurement,
compilation excluded and reported separately); NumPy runs one batched array with a leading chain
axis (the idiomatic vectorised NumPy way), forces from ``np.roll``.

Timing protocol per point: a calibration run (also the JIT compile and the warm-up/thermalisation)
sets ``num_traj`` so that one timed run lasts about ``--target-seconds``; then ``--repeats`` timed
runs per backend, JAX and NumPy interleaved (so that load from other processes on the machine hits
both alike), each continuing the chain of the previous one. Reported rates use the median run;
the best (shortest) run and the spread (max − min)/median are recorded too.

Usage (from the repository root)::

    .venv/bin/python benchmarks/hmc.py --quick          # a few points, < 1 min
    .venv/bin/python benchmarks/hmc.py                  # full grid, float64 + float32, < 10 min
    .venv/bin/python benchmarks/hmc.py --check          # validate the NumPy baseline, then exit
    .venv/bin/python benchmarks/hmc.py --profile        # where the time goes at L=64, 64 chains

See benchmarks/README.md for every option and for the meaning of the JSON fields.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from harness import (  # benchmarks/harness.py, beside this script (the script's directory is on sys.path)
    _GUESS_NS,
    _GUESS_OVERHEAD,
    LAM,
    JaxRunner,
    best_seconds,
    beta_for,
    cpu_fraction,
    json_default,
    report_header,
    setup_jax,
    summarise,
    timed_rounds,
    write_outputs,
)

DEFAULT_L = [8, 16, 32, 64]
DEFAULT_CHAINS = [1, 16, 64]
QUICK_L = [8, 64]
QUICK_CHAINS = [1, 64]


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="trivflow HMC throughput: JAX (library run_chains) vs a batched NumPy HMC.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--L", type=int, nargs="+", default=None, help=f"lattice extents (default {DEFAULT_L})")
    p.add_argument("--chains", type=int, nargs="+", default=None,
                   help=f"numbers of chains (default {DEFAULT_CHAINS})")
    p.add_argument("--num-steps", type=int, default=10, help="leapfrog steps per trajectory")
    p.add_argument("--traj-length", type=float, default=1.0, help="τ_MD; step size = τ_MD / num_steps")
    p.add_argument("--lam", type=float, default=LAM, help="quartic coupling λ")
    p.add_argument("--beta", type=float, default=None,
                   help="override β for every L (default: line of constant physics, interpolated in log L)")
    p.add_argument("--dtypes", nargs="+", default=None, choices=["float64", "float32"],
                   help="working precisions (default: float64 float32; --quick: float64)")
    p.add_argument("--backends", nargs="+", default=["jax", "numpy"], choices=["jax", "numpy"])
    p.add_argument("--repeats", type=int, default=3, help="timed runs per backend and point")
    p.add_argument("--target-seconds", type=float, default=None,
                   help="wall time of one timed run (default 1.5; --quick 0.3)")
    p.add_argument("--therm", type=int, default=None,
                   help="thermalisation trajectories per chain before timing, run with the JAX kernel "
                        "(untimed); NumPy starts from the same configurations (default 100; --quick 20)")
    p.add_argument("--chunk-size", type=int, default=1000,
                   help="largest run_chains chunk (trajectories per compiled scan; library default 1000)")
    p.add_argument("--prng", default="threefry", choices=["threefry", "rbg", "unsafe_rbg"],
                   help="JAX PRNG implementation of the keys handed to run_chains (library default: threefry)")
    p.add_argument("--host-devices", type=int, default=1,
                   help="split the CPU into N XLA host devices and shard the chains over them "
                        "(sets XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/hmc.json"),
                   help="JSON output; the Markdown table goes beside it with suffix .md")
    p.add_argument("--quick", action="store_true", help=f"L {QUICK_L} x chains {QUICK_CHAINS}, float64, short runs")
    p.add_argument("--check", action="store_true",
                   help="validate the NumPy HMC (free theory, acceptance vs JAX, trajectory vs library) and exit")
    p.add_argument("--profile", action="store_true",
                   help="time the pieces of one trajectory (force, action, momentum draw, measurement, ...) "
                        "at the first --L and --chains and exit")
    args = p.parse_args(argv)
    if args.quick:
        args.L = args.L or QUICK_L
        args.chains = args.chains or QUICK_CHAINS
        args.dtypes = args.dtypes or ["float64"]
        args.target_seconds = args.target_seconds or 0.3
        args.therm = 20 if args.therm is None else args.therm
    if args.profile:
        args.L = args.L or [64]
        args.chains = args.chains or [64]
    args.L = args.L or DEFAULT_L
    args.chains = args.chains or DEFAULT_CHAINS
    args.dtypes = args.dtypes or ["float64", "float32"]
    args.target_seconds = args.target_seconds or 1.5
    args.therm = 100 if args.therm is None else args.therm
    if args.num_steps < 1 or args.repeats < 1 or args.host_devices < 1:
        p.error("--num-steps, --repeats and --host-devices must be >= 1")
    return args


# --------------------------------------------------------------------------------------------
# Physics parameters
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# The NumPy baseline
# --------------------------------------------------------------------------------------------


class NumpyPhi4HMC:
    """HMC for 2D (any-d) φ⁴ in plain NumPy, all chains in one array of shape (C, L, ..., L).

    The same algorithm as trivflow.hmc with trivflow.hmc.phi4_kernel: S and the analytic force of
    docs/theory.md#action with np.roll, leapfrog with fused inner kicks (one force evaluation per step),
    the action evaluated once per trajectory (at its end; the current one is cached with the
    state, as is the force), Metropolis on ΔH per chain (non-finite ΔH rejected), momenta
    refreshed from N(0, 1) every trajectory, observables measured after every trajectory.
    """

    def __init__(self, L, d, beta, lam, num_steps, step_size, num_chains, dtype, seed, phi=None):
        self.shape = (num_chains,) + (L,) * d
        self.axes = tuple(range(1, d + 1))
        self.L, self.d = L, d
        self.beta, self.lam = float(beta), float(lam)  # Python floats: never promote float32 arrays
        self.num_steps, self.eps = num_steps, float(step_size)
        self.dtype = np.dtype(dtype)
        self.rng = np.random.default_rng(seed)
        self.phi = (self.rng.standard_normal(self.shape, dtype=self.dtype) if phi is None
                    else np.array(phi, dtype=self.dtype))
        self.S = self.action(self.phi)
        self.F = self.force(self.phi)

    def action(self, phi):
        """S per chain, shape (C,)."""
        phi2 = phi * phi
        forward = np.roll(phi, -1, axis=self.axes[0])
        for a in self.axes[1:]:
            forward = forward + np.roll(phi, -1, axis=a)
        return np.sum(phi2 + self.lam * (phi2 - 1.0) ** 2 - self.beta * forward * phi, axis=self.axes)

    def force(self, phi):
        """∂S/∂φ, same shape as phi."""
        hop = np.roll(phi, 1, axis=self.axes[0]) + np.roll(phi, -1, axis=self.axes[0])
        for a in self.axes[1:]:
            hop = hop + np.roll(phi, 1, axis=a) + np.roll(phi, -1, axis=a)
        return 2.0 * phi - self.beta * hop + 4.0 * self.lam * phi * (phi * phi - 1.0)

    def integrate(self, x, p, f):
        """Leapfrog over τ = num_steps · ε from (x, p) with force f at x; returns (x, p, f)."""
        eps = self.eps
        p = p - 0.5 * eps * f
        for _ in range(self.num_steps - 1):
            x = x + eps * p
            p = p - eps * self.force(x)
        x = x + eps * p
        f = self.force(x)
        p = p - 0.5 * eps * f
        return x, p, f

    def trajectory(self):
        """One HMC trajectory of every chain; returns (ΔH, accepted), shape (C,) each."""
        pi = self.rng.standard_normal(self.shape, dtype=self.dtype)
        h_start = 0.5 * np.sum(pi * pi, axis=self.axes) + self.S
        x, p, f = self.integrate(self.phi, pi, self.F)
        s_end = self.action(x)
        delta_h = 0.5 * np.sum(p * p, axis=self.axes) + s_end - h_start
        finite = np.isfinite(delta_h)
        with np.errstate(over="ignore", invalid="ignore"):
            prob = np.where(finite, np.minimum(1.0, np.exp(-delta_h)), 0.0)
        accepted = finite & (self.rng.random(self.shape[0]) < prob)
        site_mask = accepted.reshape((-1,) + (1,) * self.d)
        self.phi = np.where(site_mask, x, self.phi)
        self.F = np.where(site_mask, f, self.F)
        self.S = np.where(accepted, s_end, self.S)
        return delta_h, accepted

    def measure(self):
        """Observables of docs/theory.md#observables per chain (the same set as trivflow.hmc.phi4_measure)."""
        phi, axes = self.phi, self.axes
        m = np.mean(phi, axis=axes)
        slices = np.stack([np.mean(phi, axis=tuple(a for a in axes if a != mu)) for mu in axes], axis=1)
        s_hat = np.fft.rfft(slices, axis=-1)
        autocorr = np.fft.irfft(s_hat * np.conj(s_hat), n=self.L, axis=-1) / self.L  # (C, d, L)
        c = np.mean(autocorr, axis=1)
        c_sym = 0.5 * (c + np.roll(c[:, ::-1], 1, axis=-1))
        return {"M": m, "absM": np.abs(m), "M2": m * m, "G0": np.mean(phi * phi, axis=axes),
                "C": c_sym[:, : self.L // 2 + 1]}

    def run(self, num_traj: int) -> dict:
        """num_traj trajectories of every chain, measuring after each; returns series and wall time."""
        C = self.shape[0]
        delta_h = np.empty((C, num_traj))
        accepted = np.empty((C, num_traj), dtype=bool)
        obs = None
        t0 = time.perf_counter()
        for t in range(num_traj):
            delta_h[:, t], accepted[:, t] = self.trajectory()
            o = self.measure()
            if obs is None:
                obs = {k: np.empty((C, num_traj) + v.shape[1:], v.dtype) for k, v in o.items()}
            for k, v in o.items():
                obs[k][:, t] = v
        seconds = time.perf_counter() - t0
        return {"seconds": seconds, "delta_H": delta_h, "accepted": accepted, "observables": obs}


# --------------------------------------------------------------------------------------------
# Runners: one object per backend and point, with calibrate() and timed()
# --------------------------------------------------------------------------------------------


class NumpyRunner:
    backend = "numpy"

    def __init__(self, L, C, dtype, beta, args, phi=None):
        self.C, self.V = C, L**2
        self.args = args
        self.sim = NumpyPhi4HMC(L, 2, beta, args.lam, args.num_steps, args.traj_length / args.num_steps, C,
                                dtype, seed=args.seed + 1, phi=phi)
        self.thermalised = phi is not None
        self.compile_seconds = None

    def calibrate(self):
        t_guess = self.C * self.V * self.args.num_steps * _GUESS_NS["numpy"] + _GUESS_OVERHEAD["numpy"]
        n_cal = int(min(100_000, max(2, math.ceil(0.3 / t_guess))))
        # warm-up; thermalisation too when no JAX-thermalised start was handed over
        self.sim.run(max(2, n_cal // 4) if self.thermalised else max(n_cal // 4, self.args.therm))
        out = self.sim.run(n_cal)
        rate = n_cal / max(out["seconds"], 1e-9)
        self.num_traj = int(max(3, round(self.args.target_seconds * rate)))

    def timed(self):
        cpu0 = time.process_time()
        out = self.sim.run(self.num_traj)
        cpu = time.process_time() - cpu0
        return (out["seconds"], float(np.mean(out["accepted"])), cpu_fraction(out["seconds"], cpu),
                float(np.mean(out["observables"]["G0"])))


def run_point(jax, L, C, dtype, args) -> list[dict]:
    beta, _ = beta_for(L, args.beta)
    runners = []
    start = None
    if "jax" in args.backends:
        runners.append(JaxRunner(jax, L, C, dtype, beta, args))
        runners[-1].calibrate()  # compiles and thermalises
        start = np.asarray(runners[-1].positions)
    if "numpy" in args.backends:
        runners.append(NumpyRunner(L, C, dtype, beta, args, phi=start))
        runners[-1].calibrate()
    results = timed_rounds(runners, args.repeats)  # interleaved: jax, numpy, jax, numpy, ...
    return [summarise(r, L, C, dtype, beta, *res) for r, res in zip(runners, results)]


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def speedups(points: list[dict]) -> list[dict]:
    out = []
    by_key = {(p["L"], p["chains"], p["dtype"], p["backend"]): p for p in points}
    for (L, C, dt, be), p in by_key.items():
        if be != "jax" or (L, C, dt, "numpy") not in by_key:
            continue
        q = by_key[(L, C, dt, "numpy")]
        out.append({"L": L, "chains": C, "dtype": dt,
                    "jax_over_numpy": p["traj_per_second"] / q["traj_per_second"],
                    "jax_over_numpy_best": p["traj_per_second_best"] / q["traj_per_second_best"]})
    return out


def markdown_table(points: list[dict], sp: list[dict]) -> str:
    spd = {(s["L"], s["chains"], s["dtype"]): s for s in sp}
    by_key = {(p["L"], p["chains"], p["dtype"], p["backend"]): p for p in points}
    keys = sorted({(p["L"], p["chains"], p["dtype"]) for p in points}, key=lambda k: (k[2] != "float64", k[0], k[1]))
    head = ("| L | chains | dtype | β | JAX traj/s | JAX ns/site/step | JAX acc | JAX compile s | JAX spread "
            "| NumPy traj/s | NumPy ns/site/step | NumPy acc | NumPy spread | speedup (median) | speedup (best) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]

    def f(x, fmt):
        return "—" if x is None else format(x, fmt)

    for L, C, dt in keys:
        j, n, s = by_key.get((L, C, dt, "jax")), by_key.get((L, C, dt, "numpy")), spd.get((L, C, dt))
        beta = (j or n)["beta"]
        lines.append(
            f"| {L} | {C} | {dt} | {beta:g} "
            f"| {f(j and j['traj_per_second'], '.4g')} | {f(j and j['ns_per_site_step'], '.3g')} "
            f"| {f(j and j['acceptance'], '.3f')} | {f(j and j['compile_seconds'], '.2f')} "
            f"| {f(j and j['spread'], '.0%')} "
            f"| {f(n and n['traj_per_second'], '.4g')} | {f(n and n['ns_per_site_step'], '.3g')} "
            f"| {f(n and n['acceptance'], '.3f')} | {f(n and n['spread'], '.0%')} "
            f"| {f(s and s['jax_over_numpy'], '.2f')}× | {f(s and s['jax_over_numpy_best'], '.2f')}× |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# --check: validation of the NumPy baseline against exact results and the library
# --------------------------------------------------------------------------------------------


def _chain_mean_err(x: np.ndarray) -> tuple[float, float]:
    """Mean over (chains, time) and its error from the scatter of the per-chain means."""
    per_chain = x.reshape(x.shape[0], -1).mean(axis=1)
    return float(per_chain.mean()), float(per_chain.std(ddof=1) / math.sqrt(len(per_chain)))


def _compare(name, a, da, b, db, tol_sigma=4.0) -> dict:
    err = math.hypot(da, db)
    z = abs(a - b) / err if err > 0 else (0.0 if a == b else float("inf"))
    ok = bool(z < tol_sigma)
    print(f"  {name:<44s} {a:.5f} ± {da:.5f}  vs  {b:.5f} ± {db:.5f}   ({z:.1f}σ)  {'ok' if ok else 'FAIL'}")
    return {"name": name, "a": a, "a_err": da, "b": b, "b_err": db, "sigma": z, "ok": ok}


def run_check(jax, args) -> dict:
    import jax.numpy as jnp

    from trivflow import hmc, lattice
    from trivflow.lattice import free

    checks = []
    n_steps, eps = args.num_steps, args.traj_length / args.num_steps

    print("1. NumPy action, force and one leapfrog trajectory vs the library (float64, L=8, β=0.576)")
    L, beta, lam = 8, 0.576, 0.5
    sim = NumpyPhi4HMC(L, 2, beta, lam, n_steps, eps, 3, np.float64, seed=1)
    phi = sim.phi
    s_lib = np.array([float(lattice.phi4_action(jnp.asarray(x), beta, lam)) for x in phi])
    f_lib = np.stack([np.asarray(lattice.phi4_force(jnp.asarray(x), beta, lam)) for x in phi])
    mom = np.random.default_rng(2).standard_normal(phi.shape)
    x_np, p_np, _ = sim.integrate(phi, mom, sim.F)

    def vg(x):
        return lattice.phi4_action(x, beta, lam), lattice.phi4_force(x, beta, lam)

    lf = jax.jit(jax.vmap(lambda x, p: hmc.leapfrog(vg, x, p, *vg(x), eps, n_steps)[:2]))
    x_lib, p_lib = (np.asarray(a) for a in lf(jnp.asarray(phi), jnp.asarray(mom)))
    errs = {"action_rel": float(np.max(np.abs(sim.S - s_lib) / np.abs(s_lib))),
            "force_abs": float(np.max(np.abs(sim.F - f_lib))),
            "leapfrog_x_abs": float(np.max(np.abs(x_np - x_lib))),
            "leapfrog_p_abs": float(np.max(np.abs(p_np - p_lib)))}
    ok = all(v < 1e-10 for v in errs.values())
    print(f"  max deviations {errs}  {'ok' if ok else 'FAIL'}")
    checks.append({"name": "numpy vs library action/force/leapfrog (float64)", **errs, "ok": ok})

    def jax_run(L, beta, lam, C, n_therm, n_traj, seed):
        theory = lattice.Phi4Theory(L=L, d=2, beta=beta, lam=lam)
        res = hmc.run_chains(jax.random.key(seed), hmc.phi4_kernel(num_steps=n_steps),
                             hmc.random_positions(jax.random.key(seed + 100), C, theory.shape),
                             hmc.phi4_params(theory), step_size=eps, num_traj=n_traj, num_therm=n_therm,
                             measure_fn=hmc.phi4_measure, progress=False)
        return res.accepted, res.observables, res.delta_H

    def numpy_run(L, beta, lam, C, n_therm, n_traj, seed):
        s = NumpyPhi4HMC(L, 2, beta, lam, n_steps, eps, C, np.float64, seed=seed)
        s.run(n_therm)
        out = s.run(n_traj)
        return out["accepted"], out["observables"], out["delta_H"]

    C, n_therm, n_traj = 32, 200, 2000
    print(f"2. free theory λ=0, L=8, β=0.45 ({C} chains × {n_traj} trajectories after {n_therm})")
    L, beta = 8, 0.45
    exact_phi2, exact_chi = free.phi2(L, 2, beta), free.chi(L, 2, beta)
    for name, fn in (("numpy", numpy_run), ("jax", jax_run)):
        acc, obs, dh = fn(L, beta, 0.0, C, n_therm, n_traj, args.seed + 7)
        m, dm = _chain_mean_err(obs["G0"])
        checks.append(_compare(f"{name}: <phi^2> vs exact (1/V)Σ 1/Â(p)", m, dm, exact_phi2, 0.0))
        m, dm = _chain_mean_err(L * L * obs["M2"])
        checks.append(_compare(f"{name}: V<M^2> vs exact 1/(2-2dβ)", m, dm, exact_chi, 0.0))
        m, dm = _chain_mean_err(np.exp(-dh))
        checks.append(_compare(f"{name}: <exp(-ΔH)> vs 1", m, dm, 1.0, 0.0))
        if name == "numpy":
            acc_free_np = _chain_mean_err(acc.astype(float))
        else:
            checks.append(_compare("acceptance free theory: numpy vs jax", *acc_free_np,
                                   *_chain_mean_err(acc.astype(float))))

    L, beta, lam = 8, 0.576, 0.5
    print(f"3. interacting λ=0.5, L=8, β=0.576: NumPy vs JAX ({C} chains × {n_traj} trajectories)")
    a_np, o_np, _ = numpy_run(L, beta, lam, C, n_therm, n_traj, args.seed + 11)
    a_jx, o_jx, _ = jax_run(L, beta, lam, C, n_therm, n_traj, args.seed + 13)
    checks.append(_compare("acceptance: numpy vs jax", *_chain_mean_err(a_np.astype(float)),
                           *_chain_mean_err(a_jx.astype(float))))
    for k in ("G0", "absM", "M2"):
        checks.append(_compare(f"<{k}>: numpy vs jax", *_chain_mean_err(o_np[k]), *_chain_mean_err(o_jx[k])))
    c_np, c_jx = o_np["C"].mean(axis=(0, 1)), o_jx["C"].mean(axis=(0, 1))
    print(f"  <c(t)> numpy {np.round(c_np, 4)}\n  <c(t)> jax   {np.round(c_jx, 4)}")
    all_ok = all(c["ok"] for c in checks)
    print("CHECK", "PASSED" if all_ok else "FAILED")
    return {"checks": checks, "passed": all_ok}


# --------------------------------------------------------------------------------------------
# --profile: where the time of one trajectory goes
# --------------------------------------------------------------------------------------------


def _while_body_fusions(hlo_text: str) -> list[int]:
    """Number of fusion calls inside each while-loop body of an optimised HLO module."""
    import re

    bodies = re.findall(r"while\(.*?body=%?([\w.\-]+)", hlo_text)
    counts = []
    for name in bodies:
        m = re.search(r"^%?" + re.escape(name) + r" .*?\{\n(.*?)^\}", hlo_text, re.S | re.M)
        if m:
            counts.append(len(re.findall(r"\bfusion\(", m.group(1))))
    return counts


def run_profile(jax, args) -> dict:
    import jax.numpy as jnp

    from trivflow import hmc, lattice

    L, C, n = args.L[0], args.chains[0], args.num_steps
    beta, _ = beta_for(L, args.beta)
    lam, eps_f = args.lam, args.traj_length / n
    V = L * L
    report = {"L": L, "chains": C, "beta": beta, "num_steps": n, "ns_per_site": {}, "notes": {}}
    rounds, reps = 7, 10

    def timer(fn, *a):
        return best_seconds(jax, fn, *a, rounds=rounds, reps=reps)

    for dt_name in args.dtypes:
        dt = np.dtype(dt_name)
        beta_a, lam_a, eps = (jnp.asarray(v, dt) for v in (beta, lam, eps_f))
        x0 = jax.random.normal(jax.random.key(0), (C, L, L), dt)
        p0 = jax.random.normal(jax.random.key(1), (C, L, L), dt)

        def vg(x):
            return lattice.phi4_action(x, beta_a, lam_a), lattice.phi4_force(x, beta_a, lam_a)

        def lf_force_only(x, p):
            """Leapfrog that evaluates only the force inside the loop and the action once at the end."""
            p = p - 0.5 * eps * lattice.phi4_force(x, beta_a, lam_a)

            def body(_, c):
                x, p = c
                x = x + eps * p
                return x, p - eps * lattice.phi4_force(x, beta_a, lam_a)

            x, p = jax.lax.fori_loop(0, n - 1, body, (x, p))
            x = x + eps * p
            f = lattice.phi4_force(x, beta_a, lam_a)
            return x, p - 0.5 * eps * f, lattice.phi4_action(x, beta_a, lam_a), f

        kernel = hmc.phi4_kernel(num_steps=n)
        params = hmc.phi4_params(lattice.Phi4Theory(L=L, d=2, beta=beta, lam=lam), dtype=dt)
        states = jax.vmap(kernel.init, (0, None))(x0, params)
        keys = {impl: jax.random.split(jax.random.key(3, impl=None if impl == "threefry" else impl), C)
                for impl in ("threefry", "rbg", "unsafe_rbg")}

        def momenta(ks):  # exactly the kernel's way: fold_in, split, normal per chain
            return jax.vmap(lambda k: jax.random.normal(jax.random.split(jax.random.fold_in(k, 5))[0],
                                                        (L, L), dt))(ks)

        def momenta_f32(ks):  # variant: draw in float32, cast (not bit-exact Gaussian in float64)
            return jax.vmap(lambda k: jax.random.normal(jax.random.split(jax.random.fold_in(k, 5))[0],
                                                        (L, L), np.float32).astype(dt))(ks)

        def measure_direct(phi, _):  # variant: C(t) by a direct O(L²) sum instead of rfft
            s = lattice.slice_averages(phi)
            c = jnp.stack([jnp.mean(jnp.sum(s * jnp.roll(s, -t, axis=-1), axis=-1)) for t in range(L // 2 + 1)])
            m = jnp.mean(phi)
            return {"M": m, "absM": jnp.abs(m), "M2": m * m, "G0": jnp.mean(phi * phi), "C": c / L}

        jit_cases = {
            "jax kernel.step (one trajectory, vmapped)": (
                jax.jit(lambda ks, s: jax.vmap(kernel.step, (0, 0, None, None))(ks, s, params, eps)),
                (keys["threefry"], states), n),
            "jax library leapfrog (action every step)": (
                jax.jit(jax.vmap(lambda x, p: hmc.leapfrog(vg, x, p, *vg(x), eps, n))), (x0, p0), n),
            "jax leapfrog, force only in loop, action at end": (
                jax.jit(jax.vmap(lf_force_only)), (x0, p0), n),
            "jax force (one evaluation)": (jax.jit(jax.vmap(lambda x: lattice.phi4_force(x, beta_a, lam_a))),
                                           (x0,), 1),
            "jax action (one evaluation)": (jax.jit(jax.vmap(lambda x: lattice.phi4_action(x, beta_a, lam_a))),
                                            (x0,), 1),
            "jax momentum draw, threefry (per trajectory)": (jax.jit(momenta), (keys["threefry"],), 1),
            "jax momentum draw, threefry float32 -> cast": (jax.jit(momenta_f32), (keys["threefry"],), 1),
            "jax momentum draw, rbg (per trajectory)": (jax.jit(momenta), (keys["rbg"],), 1),
            "jax momentum draw, unsafe_rbg (per trajectory)": (jax.jit(momenta), (keys["unsafe_rbg"],), 1),
            "jax measurement phi4_measure (per trajectory)": (
                jax.jit(jax.vmap(hmc.phi4_measure, (0, None))), (x0, None), 1),
            "jax measurement, C(t) by direct sum (variant)": (
                jax.jit(jax.vmap(measure_direct, (0, None))), (x0, None), 1),
        }
        sim = NumpyPhi4HMC(L, 2, beta, lam, n, eps_f, C, dt, seed=0, phi=np.asarray(x0))
        xn, pn = np.asarray(x0), np.asarray(p0)
        np_cases = {
            "numpy trajectory (incl. momenta, Metropolis)": (sim.trajectory, (), n),
            "numpy leapfrog": (lambda: sim.integrate(xn, pn, sim.F), (), n),
            "numpy force (one evaluation)": (lambda: sim.force(xn), (), 1),
            "numpy action (one evaluation)": (lambda: sim.action(xn), (), 1),
            "numpy momentum draw (per trajectory)": (lambda: sim.rng.standard_normal(sim.shape, dtype=dt), (), 1),
            "numpy measurement (per trajectory)": (sim.measure, (), 1),
        }
        res = {}
        for name, (fn, a, steps) in {**jit_cases, **np_cases}.items():
            sec = timer(fn, *a)
            res[name] = {"seconds": sec, "ns_per_site": sec / (C * V) * 1e9,
                         "ns_per_site_step": sec / (C * V * steps) * 1e9}
        report["ns_per_site"][dt_name] = res
        fus = _while_body_fusions(jit_cases["jax library leapfrog (action every step)"][0]
                                  .lower(x0, p0).compile().as_text())
        fus2 = _while_body_fusions(jit_cases["jax leapfrog, force only in loop, action at end"][0]
                                   .lower(x0, p0).compile().as_text())
        report["notes"][dt_name] = {"fusions_in_leapfrog_loop_body_library": fus,
                                    "fusions_in_leapfrog_loop_body_force_only": fus2}
        print(f"\n{dt_name}, L={L}, chains={C}, {n} steps (best of {rounds}×{reps} calls)")
        print(f"  {'piece':<52s} {'ms/call':>9s} {'ns/site':>9s} {'ns/site/step':>13s}")
        for name, r in res.items():
            print(f"  {name:<52s} {r['seconds'] * 1e3:9.3f} {r['ns_per_site']:9.3f} {r['ns_per_site_step']:13.3f}")
        print(f"  fusions per leapfrog loop iteration: library {fus}, force-only {fus2}")
    return report


# --------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    jax = setup_jax(args)
    t_start = time.perf_counter()
    report = report_header("hmc", jax, args)
    if args.check:
        report["check"] = run_check(jax, args)
        out = args.out.with_name(args.out.stem + "_check.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, default=json_default) + "\n")
        print(f"wrote {out}")
        return 0 if report["check"]["passed"] else 1
    if args.profile:
        report["profile"] = run_profile(jax, args)
        out = args.out.with_name(args.out.stem + "_profile.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, default=json_default) + "\n")
        print(f"wrote {out}")
        return 0

    report["settings"] = {
        "theory": "2D phi^4, S = Σ_x[-β Σ_μ φ_{x+μ}φ_x + φ_x² + λ(φ_x²-1)²]", "lam": args.lam,
        "beta": {L: dict(zip(("value", "source"), beta_for(L, args.beta))) for L in args.L},
        "num_steps": args.num_steps, "traj_length": args.traj_length,
        "step_size": args.traj_length / args.num_steps, "integrator": "leapfrog (fused kicks)",
        "measurement": "M, |M|, M², G(0), C(t) after every trajectory (JAX: in-scan, phi4_measure)",
        "jax_impl": "trivflow.hmc.run_chains + phi4_kernel (vmap over chains, lax.scan over trajectories, "
                    "AOT-compiled per chunk shape; compile time excluded from seconds)",
        "numpy_impl": "NumpyPhi4HMC in benchmarks/hmc.py: one array (chains, L, L) with a leading batch axis, "
                      "np.roll stencil, Python loop over trajectories and leapfrog steps, single-threaded",
        "prng": args.prng, "host_devices": args.host_devices,
        "repeats": args.repeats, "target_seconds": args.target_seconds, "max_chunk_size": args.chunk_size,
        "timing": "per point: calibration (compile + warm-up) then `repeats` runs per backend, interleaved; "
                  "rates from the median run, *_best from the shortest",
    }
    points = []
    for dtype in args.dtypes:
        for L in args.L:
            for C in args.chains:
                t0 = time.perf_counter()
                rows = run_point(jax, L, C, dtype, args)
                points.extend(rows)
                msg = "  ".join(f"{r['backend']}: {r['traj_per_second']:.4g} traj/s "
                                f"{r['ns_per_site_step']:.3g} ns/site/step acc {r['acceptance']:.3f}" for r in rows)
                print(f"[{dtype} L={L:3d} C={C:3d}] {msg}  ({time.perf_counter() - t0:.1f} s)", flush=True)
    sp = speedups(points)
    report["points"] = points
    report["speedup"] = sp
    report["machine"]["loadavg_end"] = os.getloadavg()
    report["total_seconds"] = time.perf_counter() - t_start
    table = markdown_table(points, sp)
    print()
    print(table)
    target = [s for s in sp if s["L"] == 64 and s["chains"] == 64]
    for s in target:
        verdict = "met" if s["jax_over_numpy"] >= 10 else "NOT met"
        print(f"target (JAX ≥ 10× NumPy at L=64, 64 chains) {s['dtype']}: {s['jax_over_numpy']:.2f}× "
              f"(best-run ratio {s['jax_over_numpy_best']:.2f}×) -> {verdict}")
    write_outputs(report, table, args.out)
    print(f"total {report['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
