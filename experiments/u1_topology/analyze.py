"""The table of experiments/u1_topology from its runs' results.json (Markdown on stdout):
per run label and point (L, beta), tau_int(Q) and tau_int(plaquette) with errors (Gamma method,
in trajectories), <Q^2> measured vs exact with the deviation in sigma, the plaquette likewise, the
acceptance and the number of chain-trajectories.

    python experiments/u1_topology/analyze.py experiments/u1_topology/runs > experiments/u1_topology/table.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def rows(runs_dir: Path):
    for path in sorted(runs_dir.glob("*/results.json"), key=lambda p: (p.parent.name.split("_L")[0],
                                                                        int(p.parent.name.split("_L")[1]))):
        res = json.loads(path.read_text())
        lat = res["lattice"]
        for label, block in res["runs"].items():
            yield lat, label, block


def fmt(x, dx, digits=3):
    return "n/a" if x is None or dx is None else f"{x:.{digits}g} ± {dx:.2g}"


def sigma(mean_err, exact):
    mean, err = mean_err
    return "n/a" if mean is None or not err else f"{(mean - exact) / err:+.1f}σ"


def main(runs_dir: str) -> None:
    print("| sampler | L | β | acceptance | τ_int(Q) | τ_int(plaquette) | ⟨Q²⟩ | exact ⟨Q²⟩ | dev. | "
          "plaquette | exact | dev. | chains × traj | warnings |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for lat, label, b in rows(Path(runs_dir)):
        o, t, ex = b["observables"], b["tau_int"], b["exact"]
        print(f"| {label} | {lat['L']} | {lat['beta']:g} | {b['acceptance']:.3f} | {fmt(*t['Q'][:2])} | "
              f"{fmt(*t['plaquette'][:2])} | {fmt(*o['Q2'])} | {ex['Q2']:.4g} | {sigma(o['Q2'], ex['Q2'])} | "
              f"{fmt(*o['plaquette'], digits=5)} | {ex['plaquette']:.5f} | {sigma(o['plaquette'], ex['plaquette'])} | "
              f"{b['num_chains']} × {b['num_traj']} | {len(b.get('warnings', []))} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).parent / "runs"))
