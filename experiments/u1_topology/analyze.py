"""The table and plot of experiments/u1_topology from its runs' results.json (Markdown on stdout,
tau_q_vs_beta.png beside this file): per run directory ``<method>_L<L>`` and sampler, the point
(L, beta), the acceptance, tau_int(Q) and tau_int(plaquette) with errors (Gamma method, in
trajectories or IMH steps), <Q^2> measured vs exact with the deviation in sigma, the plaquette
likewise, the number of chain-trajectories, and the cost block: force evaluations (HMC/FHMC) or
flow evaluations (IMH) per independent sample of Q, seconds of sampling per independent sample,
and seconds per independent sample with the flow's training amortised over this run
(results.json's ``cost``: ``per_indep`` and ``amortised_seconds_per_indep``).

    python experiments/u1_topology/analyze.py experiments/u1_topology/runs > experiments/u1_topology/table.md

Methods (directory prefixes): hmc, fhmc (flow trained at that point), fhmc-reuse8 (the L = 8 flow
reused at larger L, flow.checkpoint), imh (independence MH with the flow trained at that point).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
ORDER = ["hmc", "fhmc", "fhmc-reuse8", "imh"]


def rows(runs_dir: Path):
    def key(p):
        method, L = p.parent.name.rsplit("_L", 1)
        return (ORDER.index(method) if method in ORDER else len(ORDER), method, int(L))

    for path in sorted(runs_dir.glob("*/results.json"), key=key):
        res = json.loads(path.read_text())
        method = path.parent.name.rsplit("_L", 1)[0]
        for label, block in res["runs"].items():
            yield res["lattice"], f"{method}:{label}", block, res["config"]["sampler"]


def fmt(x, dx, digits=3):
    return "n/a" if x is None or dx is None else f"{x:.{digits}g} ± {dx:.2g}"


def sigma(mean_err, exact):
    mean, err = mean_err
    return "n/a" if mean is None or not err else f"{(mean - exact) / err:+.1f}σ"


def cost_cells(b, sampler_cfg):
    """(evals, seconds, seconds incl. training) per independent sample of Q; for a record without a
    cost block (the HMC runs, made before trivflow wrote one) derived as results.json's cost block
    does, 2 τ_int(Q) × num_steps force evaluations and 2 τ_int(Q) / traj_per_second seconds
    (marked *), errors from τ's."""
    c = b.get("cost")
    if not c and b["sampler"] == "hmc":
        tau, dtau = b["tau_int"]["Q"][:2]
        n, rate = sampler_cfg["num_steps"], b["traj_per_second"]
        return (fmt(2 * tau * n, 2 * dtau * n) + " *", fmt(2 * tau / rate, 2 * dtau / rate) + " *",
                fmt(2 * tau / rate, 2 * dtau / rate) + " *")
    c = c or {}
    per = c.get("per_indep") or {}
    evals = per.get("flow_evals") if b["sampler"] == "imh" else per.get("force_evals")
    secs = per.get("seconds")
    amort = c.get("amortised_seconds_per_indep")
    return (fmt(*evals[:2]) if evals else "n/a", fmt(*secs[:2]) if secs else "n/a",
            fmt(*amort[:2]) if amort else "n/a")


def main(runs_dir: str) -> None:
    print("| method:sampler | L | β | acceptance | τ_int(Q) | τ_int(plaquette) | ⟨Q²⟩ | exact ⟨Q²⟩ | dev. | "
          "plaquette | exact | dev. | chains × traj | evals / indep. Q | s / indep. Q | s / indep. Q incl. training |"
          " warnings |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    points = {}
    for lat, label, b, sampler_cfg in rows(Path(runs_dir)):
        o, t, ex = b["observables"], b["tau_int"], b["exact"]
        evals, secs, amort = cost_cells(b, sampler_cfg)
        print(f"| {label} | {lat['L']} | {lat['beta']:g} | {b['acceptance']:.3f} | {fmt(*t['Q'][:2])} | "
              f"{fmt(*t['plaquette'][:2])} | {fmt(*o['Q2'])} | {ex['Q2']:.4g} | {sigma(o['Q2'], ex['Q2'])} | "
              f"{fmt(*o['plaquette'], digits=5)} | {ex['plaquette']:.5f} | {sigma(o['plaquette'], ex['plaquette'])} | "
              f"{b['num_chains']} × {b['num_traj']} | {evals} | {secs} | {amort} | {len(b.get('warnings', []))} |")
        if t["Q"][0] is not None:
            points.setdefault(label, []).append((lat["beta"], t["Q"][0], t["Q"][1] or 0.0, b["num_traj"]))
    print("\n\\* derived from τ_int(Q), sampler.num_steps and traj_per_second (record without a cost block); "
          "seconds are wall time on a shared 2-core CPU.")
    plot(points)


def plot(points) -> None:
    """tau_int(Q) vs beta per method (log scale); a point whose tau exceeds num_traj/20 is drawn
    as an open triangle without error bar and not joined to the others (no reliable window: a
    lower bound at best, its Γ-method error meaningless)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4))
    ax = fig.add_subplot()
    for i, (label, pts) in enumerate(sorted(points.items(), key=lambda kv: kv[0])):
        pts.sort()
        good = [p for p in pts if p[1] <= p[3] / 20]
        bound = [p for p in pts if p[1] > p[3] / 20]
        color = f"C{i}"
        ax.errorbar([p[0] for p in good], [p[1] for p in good], yerr=[p[2] for p in good], marker="o",
                    capsize=3, color=color, label=label)
        if bound:
            ax.plot([p[0] for p in bound], [p[1] for p in bound], "^", mfc="white", color=color, zorder=5)
    ax.set_yscale("log")
    ax.set_xlabel("β  (L = √(32 β))")
    ax.set_ylabel("τ_int(Q)  [trajectories / IMH steps]")
    ax.set_title("2D U(1), β = L²/32 (open △: τ > num_traj/20, a lower bound at best)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "tau_q_vs_beta.png", dpi=120)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(HERE / "runs"))
