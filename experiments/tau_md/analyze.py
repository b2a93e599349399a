"""tau_int(M) and force evaluations per independent sample vs tau_MD (experiments/tau_md/runs).

    python experiments/tau_md/analyze.py    # writes experiments/tau_md/tau_vs_tau_md.png
"""

import json
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

HERE = Path(__file__).parent


def points():
    """``{sampler: {"tmd": [...], "tau": [...], "tau_err": [...], "evals": [...], "evals_err": [...]}}``."""
    out = {}
    for path in sorted(HERE.glob("runs/*/results.json")):
        results = json.loads(path.read_text())
        tmd = results["config"]["sampler"]["traj_length"]
        for block in results["runs"].values():
            p = out.setdefault(block["sampler"], {k: [] for k in ("tmd", "tau", "tau_err", "evals", "evals_err")})
            p["tmd"].append(tmd)
            p["tau"], p["tau_err"] = p["tau"] + [block["tau_int"]["M"][0]], p["tau_err"] + [block["tau_int"]["M"][1]]
            evals = block["cost"]["per_indep"]["force_evals"]
            p["evals"].append(evals[0])
            p["evals_err"].append(evals[1])
    return out


def main():
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    ax_tau, ax_cost = fig.subplots(1, 2)
    for i, (sampler, p) in enumerate(sorted(points().items())):
        ax_tau.errorbar(p["tmd"], p["tau"], p["tau_err"], fmt="o-", color=f"C{i}", capsize=2, label=sampler)
        ax_cost.errorbar(p["tmd"], p["evals"], p["evals_err"], fmt="o-", color=f"C{i}", capsize=2, label=sampler)
    ax_tau.set(xscale="log", yscale="log", xlabel="τ_MD (ε = 0.1)", ylabel="τ_int(M) [trajectories]")
    ax_cost.set(xscale="log", xlabel="τ_MD (ε = 0.1)", ylabel="force evals per independent sample")
    for ax in (ax_tau, ax_cost):
        ax.set_xticks([0.5, 1, 2, 3], labels=["0.5", "1", "2", "3"])
        ax.xaxis.set_minor_formatter(NullFormatter())  # no 6×10⁻¹ beside 0.5
        ax.legend(fontsize=8)
    fig.suptitle("L = 12, β = 0.616 (ξ = 3), λ = 0.5; 64 chains × 8000 trajectories per point")
    fig.savefig(HERE / "tau_vs_tau_md.png", dpi=120)


if __name__ == "__main__":
    main()
