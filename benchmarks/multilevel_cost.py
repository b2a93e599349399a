#!/usr/bin/env python
"""Cost per trajectory of every sampler of experiments/multilevel, timed side by side.

At each L (64 chains, float64, ``--num-steps`` leapfrog steps, τ_MD = 1) the library driver
(``trivflow.hmc.run_chains``) runs, interleaved in the same rounds (benchmarks/harness.py's
protocol, so load from other processes hits all of them alike):

* ``hmc``: plain HMC (``trivflow.hmc.phi4_kernel``);
* ``fa_hmc``: Fourier-accelerated HMC, kinetic mass M̂(p) = β Σ_μ 4 sin²(p_μ/2) + m² with
  m² = β (4/L)² = β/ξ² on the line ξ = L/4 (the study's choice: ``sampler.fourier_mass``);
* ``fhmc_d<N>``: FHMC with a multilevel tower of depth N = ``--depths`` (N = 1: one k = 3 coupling
  flow, the Gaussian-prior flow and interp4 alike; N = 2: interp4_x2; …): N of the paper's minimal
  k = 3 flows composed, g_N ∘ … ∘ g_1, as ``prior=multilevel`` builds it
  (``trivflow.flows.compose_flows``), with the hand-written pullback.

The cost of a trajectory does not depend on the flow's weights (random initialisation, seed
``--seed``) nor on the step size at fixed ``--num-steps`` (the study tunes ε per sampler and
keeps 10 steps), so these ratios are what each sampler's trajectory costs relative to HMC's in
the study: multiplied by 2 τ_int they give its cost per independent sample in HMC trajectories
(experiments/multilevel/analyze.py reads ``cost_ratio`` from the JSON). The acceptances printed
are those of untrained flows at ε = 0.1 and mean nothing.

Usage (from the repository root)::

    .venv/bin/python benchmarks/multilevel_cost.py                       # L 8 16 32, depths 1-4, ~3 min
    .venv/bin/python benchmarks/multilevel_cost.py --L 32 --depths 1 2 --repeats 5 --out /tmp/m.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
import harness as hb  # noqa: E402  benchmarks/harness.py: JaxRunner, timed_rounds, summarise, ...
from fhmc import FhmcRunner, benchmark_flow  # noqa: E402  FHMC runner of the k = 3 flow


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--L", type=int, nargs="+", default=[8, 16, 32], help="lattice extents (even)")
    p.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3, 4], help="tower depths (k = 3 flows composed)")
    p.add_argument("--chains", type=int, default=64)
    p.add_argument("--num-steps", type=int, default=10, help="leapfrog steps per trajectory (the study's 10)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (each runner once per round)")
    p.add_argument("--target-seconds", type=float, default=1.0, help="wall time of one timed run")
    p.add_argument("--therm", type=int, default=20, help="trajectories before timing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/multilevel_cost.json"),
                   help="JSON output; the Markdown table goes beside it with suffix .md")
    args = p.parse_args(argv)
    if any(L % 2 for L in args.L) or min(args.depths) < 1 or min(args.num_steps, args.repeats, args.chains) < 1:
        p.error("--L must be even; --depths, --num-steps, --repeats, --chains >= 1")
    # what harness.JaxRunner and fhmc.FhmcRunner read
    args.lam, args.prng, args.host_devices, args.traj_length, args.chunk_size = hb.LAM, "threefry", 1, 1.0, 1000
    args.dtypes = ["float64"]
    return args


def fourier_mass(L: int, beta: float) -> float:
    """m² = β (4/L)² = β/ξ² on the line ξ = L/4 (experiments/multilevel's FA-HMC)."""
    return beta * (4.0 / L) ** 2


class FaHmcRunner(hb.JaxRunner):
    """HMC with the Fourier kinetic mass of ``sampler.fourier_mass`` = m² (same chains and timing)."""

    def __init__(self, jax, L, C, beta, args):
        super().__init__(jax, L, C, "float64", beta, args)
        hmc = self.hmc
        shape = (L, L)
        metric = hmc.FourierMetric(hmc.lattice_mass(shape, beta, fourier_mass(L, beta)), shape)
        self.kernel = hmc.build_kernel(hmc.phi4_potential, num_steps=args.num_steps,
                                       value_and_grad_fn=hmc.phi4_value_and_grad, metric=metric)
        self.guess_ns = 2.0 * self.guess_ns


class TowerRunner(FhmcRunner):
    """FHMC with ``depth`` k = 3 flows composed (seeds seed, seed + 1, …)."""

    def __init__(self, jax, L, C, beta, args, depth):
        from trivflow.flows import compose_flows

        super().__init__(jax, L, C, beta, args, 3, "exact")
        flow = self.params["flow"]
        for level in range(1, depth):
            flow = compose_flows(flow, benchmark_flow(3, "exact", args.seed + level))
        self.params = {**self.params, "flow": flow}
        self.guess_ns = depth * self.guess_ns
        self.depth = depth


def run_L(jax, L, args) -> list[dict]:
    """Every sampler at one L, calibrated, then timed in interleaved rounds."""
    beta, _ = hb.beta_for(L, None)
    named = [("hmc", hb.JaxRunner(jax, L, args.chains, "float64", beta, args)),
             ("fa_hmc", FaHmcRunner(jax, L, args.chains, beta, args))]
    named += [(f"fhmc_d{d}", TowerRunner(jax, L, args.chains, beta, args, d)) for d in args.depths]
    for _, r in named:
        r.calibrate()
    results = hb.timed_rounds([r for _, r in named], args.repeats)
    rows = []
    for (name, r), res in zip(named, results):
        row = hb.summarise(r, L, args.chains, "float64", beta, *res)
        row["sampler"] = name
        row["depth"] = getattr(r, "depth", None)
        rows.append(row)
    hmc = rows[0]
    for row in rows:
        row["cost_ratio"] = hmc["traj_per_second"] / row["traj_per_second"]
        row["cost_ratio_best"] = hmc["traj_per_second_best"] / row["traj_per_second_best"]
    return rows


def markdown_table(points: list[dict]) -> str:
    names = list(dict.fromkeys(p["sampler"] for p in points))
    head = "| L | " + " | ".join(f"{n} traj/s | {n}/HMC" for n in names) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for L in sorted({p["L"] for p in points}):
        by = {p["sampler"]: p for p in points if p["L"] == L}
        cells = [f"{by[n]['traj_per_second']:.4g} | **{by[n]['cost_ratio']:.2f}×**" if n in by else "— | —"
                 for n in names]
        lines.append(f"| {L} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    jax = hb.setup_jax(args)
    t_start = time.perf_counter()
    report = {
        **hb.report_header("multilevel_cost", jax, args),
        "settings": {
            "chains": args.chains, "num_steps": args.num_steps, "traj_length": 1.0, "lam": args.lam,
            "beta": "line of constant physics (benchmarks/harness.py beta_for)", "depths": args.depths,
            "fa_hmc": "fourier mass m^2 = beta (4/L)^2", "flows": "k = 3 minimal flows, random init, composed",
            "repeats": args.repeats, "target_seconds": args.target_seconds, "therm": args.therm,
            "timing": "per L: every runner calibrated, then `repeats` rounds running each once, interleaved; "
                      "rates from the median run, *_best from the shortest; cost_ratio = HMC traj/s / traj/s",
        },
    }
    points = []
    for L in args.L:
        t0 = time.perf_counter()
        rows = run_L(jax, L, args)
        points.extend(rows)
        print(f"[L={L:3d}] " + "  ".join(f"{r['sampler']} {r['traj_per_second']:.4g} traj/s ({r['cost_ratio']:.2f}×)"
                                         for r in rows) + f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    report["points"] = points
    report["cost_ratio"] = {f"{p['sampler']}@L{p['L']}": p["cost_ratio"] for p in points}
    report["machine"]["loadavg_end"] = os.getloadavg()
    report["total_seconds"] = time.perf_counter() - t_start
    table = markdown_table(points)
    print()
    print(table)
    hb.write_outputs(report, table, args.out)
    print(f"total {report['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
