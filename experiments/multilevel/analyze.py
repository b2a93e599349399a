"""Issue 15 §3, where does a flow win: tables, z fits and plots from experiments/multilevel/runs.

    python experiments/multilevel/analyze.py   # table.md, table.csv, fits.json, tau_cost_vs_L.png
    python experiments/multilevel/analyze.py --bench FILE   # the break-even lines with another machine's
        # cost ratios (FILE: benchmarks/multilevel_cost.py's JSON, or a run_all report holding one as a
        # part, e.g. the GPU run's a_bench_multilevel.json); prints only, writes nothing

Every run block of every runs/<job>/results.json is one row. The method of a row is read from
the run itself: `hmc` with sampler.fourier_mass set is FA-HMC; FHMC rows are named by their
prior, a multilevel tower by its depth (interp4 = ML1, interp4_x2 = ML2: the same towers,
docs/theory.md#multilevel). Costs are the run's own `cost` block (docs/results.md#cost), and
the cost per independent sample in HMC trajectories, 2 τ_int × r, with r the sampler's cost per
trajectory relative to HMC's from one benchmark run (cost_benchmark.json, written by
benchmarks/multilevel_cost.py: all samplers timed side by side, so r does not depend on what
else loaded the machine while each job ran).
"""

import argparse
import csv
import json
import re
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from trivflow.formatting import paren, plain, ratio
from trivflow.report import fit_z

HERE = Path(__file__).parent
ORDER = ["HMC", "FA-HMC", "FHMC gaussian", "FHMC ML1 (interp4)", "FHMC ML2 (interp4_x2)", "FHMC ML3", "FHMC ML4"]
#: towers whose depth grows with L: the coarsest (HMC ensemble) lattice fixed at 2 or at 4
FAMILIES = {"FHMC ML to 2² (N = log2 L − 1)": 1, "FHMC ML to 4² (N = log2 L − 2)": 2}
BENCH = HERE / "cost_benchmark.json"


def bench_ratios(path=BENCH):
    """{(benchmark sampler, L): cost per trajectory relative to HMC} from a multilevel_cost.py JSON
    (or a run_all report with such a part); {} if there is none."""
    if not Path(path).is_file():
        return {}
    report = json.loads(Path(path).read_text())
    results = [part["result"] for part in report["parts"].values()] if "parts" in report else [report]
    return {(p["sampler"], p["L"]): p["cost_ratio"] for res in results if res.get("benchmark") == "multilevel_cost"
            for p in res["points"]}


def bench_name(r):
    """The benchmark sampler whose trajectory costs what this row's does: FHMC with N coupling
    layers (the Gaussian flow: 1) is fhmc_dN."""
    if r["method"] in ("HMC", "FA-HMC"):
        return {"HMC": "hmc", "FA-HMC": "fa_hmc"}[r["method"]]
    return f"fhmc_d{r['levels'] or 1}"


def method(results, label, block):
    """The row's method name (see the module docstring)."""
    if block["sampler"] == "hmc":
        return "FA-HMC" if results["config"]["sampler"].get("fourier_mass") else "HMC"
    prior = block.get("prior")
    levels = {"interp4": 1, "interp4_x2": 2}.get(prior)
    if prior == "multilevel":
        levels = results["config"]["prior"]["levels"]
    if levels is None:
        return f"FHMC {prior}"
    return f"FHMC ML{levels}" + {1: " (interp4)", 2: " (interp4_x2)"}.get(levels, "")


def levels(results, block):
    """The depth N of a row's multilevel tower (interp4 = 1, interp4_x2 = 2), else None."""
    prior = block.get("prior")
    if prior == "multilevel":
        return results["config"]["prior"]["levels"]
    return {"interp4": 1, "interp4_x2": 2}.get(prior)


def family(r):
    """The FAMILIES entry of a row (its coarsest lattice 2 or 4), else None."""
    if r["levels"] is None:
        return None
    return next((f for f, k in FAMILIES.items() if r["levels"] == int(np.log2(r["L"])) - k), None)


def flags(warnings):
    """Short tags of a run's warnings for the table (the full text is in table.csv)."""
    text = " ".join(warnings)
    out = []
    if m := re.search(r"R-hat > 1.01 for M \(([\d.]+)\)", text):
        out.append(f"R-hat(M) {m.group(1)}")
    if "tau_int(M): no automatic window" in text:
        out.append("no window for τ_int(M): τ unreliable")
    if "chains do not mix" in text:
        out.append("chains do not mix")
    return out


def rows(bench_path=BENCH):
    out = []
    for path in sorted(HERE.glob("runs/*/results.json")):
        results = json.loads(path.read_text())
        for label, b in results["runs"].items():
            cost = b["cost"]
            eps = b.get("step_size", {}).get("adapted") or results["config"]["sampler"]["traj_length"] / \
                results["config"]["sampler"]["num_steps"]
            out.append({
                "job": path.parent.name, "label": label, "method": method(results, label, b),
                "L": b["lattice"]["L"], "beta": b["lattice"]["beta"], "levels": levels(results, b),
                "eps": eps, "num_steps": results["config"]["sampler"]["num_steps"],
                "fourier_mass": results["config"]["sampler"].get("fourier_mass"),
                "acc": b["acceptance"], "chains": b["num_chains"], "traj": b["num_traj"],
                "tau": b["tau_int"]["M"][0], "tau_err": b["tau_int"]["M"][1], "window": b["tau_int"]["M"][2],
                "tau_absM": b["tau_int"]["absM"][0], "tau_absM_err": b["tau_int"]["absM"][1],
                "xi": b["observables"]["xi"][0], "xi_err": b["observables"]["xi"][1],
                "chi": b["observables"]["chi"][0], "chi_err": b["observables"]["chi"][1],
                "evals": cost["per_indep"]["force_evals"][0], "evals_err": cost["per_indep"]["force_evals"][1],
                "s_traj": cost["per_traj"]["seconds"],
                "s_indep": cost["per_indep"]["seconds"][0], "s_indep_err": cost["per_indep"]["seconds"][1],
                "setup": cost["setup_seconds"],
                "amort": cost["amortised_seconds_per_indep"][0], "amort_err": cost["amortised_seconds_per_indep"][1],
                "flags": "; ".join(flags(b.get("warnings", []))),
                "reliable": "no automatic window" not in " ".join(b.get("warnings", [])),
                "warnings": " | ".join(b.get("warnings", [])),
            })
    out.sort(key=lambda r: (r["L"], ORDER.index(r["method"]) if r["method"] in ORDER else 99))
    bench = bench_ratios(bench_path)
    for r in out:
        r["cost_ratio"] = bench.get((bench_name(r), r["L"]), float("nan"))
        r["hmc_traj"], r["hmc_traj_err"] = 2 * r["tau"] * r["cost_ratio"], 2 * r["tau_err"] * r["cost_ratio"]
    return out


def table(rs):
    head = ("| L | β | method | ε (τ_MD = 10ε) | acc. | chains × traj | τ_int(M) (rel. err.) | τ_int(\\|M\\|) | ξ | χ "
            "| force evals / indep. | cost / traj (× HMC, benchmark) | HMC traj / indep. | s / traj "
            "| s / indep. (sampling) | setup s | s / indep. amortised | warnings |")
    lines = [head, "|" + "---|" * 18]
    for r in rs:
        lines.append(
            f"| {r['L']} | {r['beta']} | {r['method']} | {r['eps']:.3f} | {r['acc']:.3f} | {r['chains']} × {r['traj']} "
            f"| {paren(r['tau'], r['tau_err'])} ({100 * r['tau_err'] / r['tau']:.0f} %) "
            f"| {paren(r['tau_absM'], r['tau_absM_err'])} | {paren(r['xi'], r['xi_err'])} "
            f"| {paren(r['chi'], r['chi_err'])} | {paren(r['evals'], r['evals_err'])} | {r['cost_ratio']:.2f} "
            f"| {paren(r['hmc_traj'], r['hmc_traj_err'])} | {plain(r['s_traj'], 3)} "
            f"| {paren(r['s_indep'], r['s_indep_err'])} "
            f"| {r['setup']:.0f} | {paren(r['amort'], r['amort_err'])} | {r['flags'] or '—'} |")
    return "\n".join(lines) + "\n"


def fits(rs):
    """z from τ = c ξ^z (measured ξ of each run) per method with ≥ 2 lattice sizes; runs without an
    automatic window for τ_int(M) are left out (their τ is a lower bound at best)."""
    out = {}
    for m in [*ORDER, *FAMILIES]:
        pts = [r for r in rs if m in (r["method"], family(r)) and r["reliable"]]
        if len({r["L"] for r in pts}) < 2:
            continue
        f = fit_z([r["xi"] for r in pts], [r["xi_err"] for r in pts], [r["tau"] for r in pts],
                  [r["tau_err"] for r in pts])
        out[m] = {"L": [r["L"] for r in pts], "z": f.z, "z_err": f.z_err, "c": float(np.exp(f.log_c)),
                  "chi2": f.chi2, "dof": f.dof}
    return out


def plot(rs, fz):
    fig = Figure(figsize=(16, 4), layout="constrained")
    ax_tau, ax_ev, ax_h, ax_s = fig.subplots(1, 4)
    for i, m in enumerate(ORDER):
        pts = [r for r in rs if r["method"] == m]
        if not pts:
            continue
        lab = m + (f", z = {paren(fz[m]['z'], fz[m]['z_err'])}" if m in fz else "")
        ok = [r for r in pts if r["reliable"]]
        ax_tau.errorbar([r["L"] for r in ok], [r["tau"] for r in ok], [r["tau_err"] for r in ok], fmt="o-",
                        color=f"C{i}", capsize=2, label=lab)
        bad = [r for r in pts if not r["reliable"]]
        if bad:
            ax_tau.plot([r["L"] for r in bad], [r["tau"] for r in bad], "^", mfc="none", color=f"C{i}",
                        label=f"{m}: no window, τ unreliable")
        # the cost panels as the τ panel: a τ without a window makes its cost a lower bound at best, so
        # those points are open triangles, not joined to the measured ones
        Lok = [r["L"] for r in ok]
        ax_ev.errorbar(Lok, [r["evals"] for r in ok], [r["evals_err"] for r in ok], fmt="o-", color=f"C{i}",
                       capsize=2, label=m)
        ax_h.errorbar(Lok, [r["hmc_traj"] for r in ok], [r["hmc_traj_err"] for r in ok], fmt="o-", color=f"C{i}",
                      capsize=2, label=m)
        ax_s.errorbar(Lok, [r["s_indep"] for r in ok], [r["s_indep_err"] for r in ok], fmt="o-", color=f"C{i}",
                      capsize=2, label=m + " (sampling)")
        ax_s.plot(Lok, [r["amort"] for r in ok], "x--", color=f"C{i}", alpha=0.7)
        for ax, key in ((ax_ev, "evals"), (ax_h, "hmc_traj"), (ax_s, "s_indep")):
            if bad:
                ax.plot([r["L"] for r in bad], [r[key] for r in bad], "^", mfc="none", color=f"C{i}")
    for j, fam in enumerate(FAMILIES):
        pts = [r for r in rs if family(r) == fam and r["reliable"]]
        if len(pts) > 1 and fam in fz:
            ax_tau.plot([r["L"] for r in pts], [r["tau"] for r in pts], ":", color="k", alpha=0.4 + 0.3 * j,
                        label=f"{fam}, z = {paren(fz[fam]['z'], fz[fam]['z_err'])}")
    ax_tau.set(ylabel="τ_int(M) [trajectories]")
    ax_ev.set(ylabel="force evaluations per independent sample")
    ax_h.set(ylabel="cost per independent sample [HMC trajectories]\n(2 τ_int × benchmarked cost per trajectory)")
    ax_s.set(ylabel="CPU seconds per independent sample\n(o sampling, x amortised incl. training)")
    Ls = sorted({r["L"] for r in rs})
    for ax in (ax_tau, ax_ev, ax_h, ax_s):
        ax.set(xscale="log", yscale="log", xlabel="L (ξ = L/4)")
        ax.set_xticks(Ls, labels=[str(L) for L in Ls])
        ax.minorticks_off()
    ax_tau.legend(fontsize=7)
    ax_s.legend(fontsize=7)
    fig.suptitle("ξ = L/4, λ = 0.5, step size tuned per sampler (acc. 0.8, 10 steps; FA-HMC: see README)")
    fig.savefig(HERE / "tau_cost_vs_L.png", dpi=110)


def break_even(rs):
    print("\nbreak-even: a sampler beats HMC (FA-HMC) per independent sample in seconds when its cost per")
    print("trajectory is below τ_HMC/τ (τ_FA/τ) times HMC's (FA-HMC's); the benchmarked cost ratio beside it")
    for r in rs:
        ref = {m: next((q for q in rs if q["L"] == r["L"] and q["method"] == m), None) for m in ("HMC", "FA-HMC")}
        if r["method"] in ref or not r["reliable"]:
            continue
        parts = []
        for m, q in ref.items():
            if q is not None:
                v, e = ratio(q["tau"], q["tau_err"], r["tau"], r["tau_err"])
                parts.append(f"τ_{m}/τ = {paren(v, e)}, cost/traj ÷ {m}'s = {r['cost_ratio'] / q['cost_ratio']:.2f} "
                             f"(benchmark; the jobs' own s/traj: {r['s_traj'] / q['s_traj']:.1f})")
        print(f"L = {r['L']} {r['method']}: " + "; ".join(parts))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, default=None,
                      help="cost ratios from this benchmark JSON instead of cost_benchmark.json; print only")
    args = parser.parse_args(argv)
    if args.bench is not None:
        if not args.bench.is_file():
            raise SystemExit(f"--bench {args.bench}: no such file")
        if not bench_ratios(args.bench):
            raise SystemExit(f"--bench {args.bench}: no multilevel_cost benchmark in it")
        rs = rows(args.bench)
        print(f"cost ratios from {args.bench}: " + json.dumps({f"{k[0]}@L{k[1]}": round(v, 3)
                                                                for k, v in bench_ratios(args.bench).items()}))
        for r in rs:
            print(f"L = {r['L']} {r['method']}: τ = {paren(r['tau'], r['tau_err'])}, "
                  f"cost/traj {r['cost_ratio']:.2f}× HMC, "
                  f"{paren(r['hmc_traj'], r['hmc_traj_err'])} HMC trajectories per independent sample")
        break_even(rs)
        return
    rs = rows()
    (HERE / "table.md").write_text(table(rs))
    with open(HERE / "table.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rs[0]))
        w.writeheader()
        w.writerows(rs)
    fz = fits(rs)
    (HERE / "fits.json").write_text(json.dumps(fz, indent=1) + "\n")
    print(table(rs))
    for m, f in fz.items():
        print(f"{m}: z = {paren(f['z'], f['z_err'])}, c = {f['c']:.3g}, "
              f"chi2/dof = {f['chi2']:.1f}/{f['dof']}, L = {f['L']}")
    break_even(rs)
    plot(rs, fz)


if __name__ == "__main__":
    main()
