#!/usr/bin/env python3
"""U(1) gauge theory: the cost of the FHMC force through the gauge-equivariant flow against HMC's.

    .venv/bin/python benchmarks/u1.py                          # L 8 12 16 24, 16 chains
    .venv/bin/python benchmarks/u1.py --L 12 16 --out u1.json

Per L (16 chains, vmapped, float64, the default ``flow=u1_equivariant`` architecture at its random
initialisation: the cost does not depend on the weights): best-of time per call
(:func:`harness.best_seconds`) of the Wilson force (HMC's, with the action), the flow forward
g(θ̃) with its log-det, and the FHMC force (S̃ and ∂S̃/∂θ̃ through one VJP of the flow,
:func:`trivflow.hmc.pulled_back_value_and_grad`), in ms per call and ns per site, and the ratio
FHMC force / HMC force. The pieces of one L are timed in interleaved rounds, so the ratio is
robust to load from other processes; absolute times are not.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import harness as hb

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--L", type=int, nargs="+", default=[8, 12, 16, 24], help="lattice extents (multiples of 4)")
    p.add_argument("--chains", type=int, default=16)
    p.add_argument("--beta", type=float, default=4.5)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of best-of timings per L")
    p.add_argument("--host-devices", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=HERE / "out" / "u1.json")
    args = p.parse_args(argv)
    args.dtypes = ["float64"]  # harness.machine_info records it
    jax = hb.setup_jax(args)
    import jax.numpy as jnp

    from trivflow import hmc
    from trivflow.gauge.flows import gauge_flow
    from trivflow.gauge.theory import u1_force_fn, u1_potential, u1_value_and_grad

    flow = gauge_flow(dtype=jnp.float64)
    report = hb.report_header("u1", jax, args)
    report["settings"] = {"chains": args.chains, "beta": args.beta, "rounds": args.rounds,
                          "flow": "flow=u1_equivariant defaults (8 layers, k = 3, hidden [8, 8], 4 NCPs)"}
    rows = []
    for L in args.L:
        theta = jax.random.uniform(jax.random.key(L), (args.chains, 2, L, L), jnp.float64, -math.pi, math.pi)
        tp = {"beta": jnp.asarray(args.beta)}
        params = {"flow": flow, "theory": tp}
        pieces = {
            "hmc force (S and dS)": (jax.jit(jax.vmap(u1_value_and_grad, (0, None))), (theta, tp)),
            "flow forward g and log-det": (jax.jit(jax.vmap(lambda t, f: f.forward(t), (0, None))), (theta, flow)),
            "fhmc force (S~ and dS~)": (
                jax.jit(jax.vmap(hmc.pulled_back_value_and_grad(u1_potential, u1_force_fn), (0, None))),
                (theta, params)),
        }
        best = {name: math.inf for name in pieces}
        for _ in range(args.rounds):  # interleaved: load hits every piece alike
            for name, (fn, a) in pieces.items():
                best[name] = min(best[name], hb.best_seconds(jax, fn, *a))
        sites = args.chains * L * L
        row = {"L": L, "pieces": {name: {"ms": s * 1e3, "ns_per_site": s / sites * 1e9} for name, s in best.items()}}
        row["fhmc_over_hmc_force"] = best["fhmc force (S~ and dS~)"] / best["hmc force (S and dS)"]
        rows.append(row)
        print(f"L={L:3d} chains={args.chains}: " + "  ".join(
            f"{name} {v['ms']:.3f} ms ({v['ns_per_site']:.0f} ns/site)" for name, v in row["pieces"].items())
            + f"  FHMC/HMC force {row['fhmc_over_hmc_force']:.0f}x", flush=True)
    report["points"] = rows
    table = ("| L | HMC force ns/site | flow forward ns/site | FHMC force ns/site | FHMC/HMC force |\n"
             "|---|---|---|---|---|\n" + "".join(
                 f"| {r['L']} | {r['pieces']['hmc force (S and dS)']['ns_per_site']:.1f} "
                 f"| {r['pieces']['flow forward g and log-det']['ns_per_site']:.0f} "
                 f"| {r['pieces']['fhmc force (S~ and dS~)']['ns_per_site']:.0f} | {r['fhmc_over_hmc_force']:.0f}× |\n"
                 for r in rows))
    hb.write_outputs(report, table, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
