"""The table and plot of experiments/u1_topology from its runs' results.json (Markdown on stdout,
tau_q_vs_beta.png beside this file): per run directory ``<method>_L<L>`` and sampler, the point
(L, beta), the acceptance, tau_int(Q) and tau_int(plaquette) with errors (Gamma method, in
trajectories or IMH steps), <Q^2> measured vs exact with the deviation in sigma, the plaquette
likewise, the number of chain-trajectories, and the cost block: force evaluations (HMC/FHMC) or
flow evaluations (IMH) per independent sample of Q, seconds of sampling per independent sample,
and seconds per independent sample with the flow's training amortised over this run
(results.json's ``cost``: ``per_indep`` and ``amortised_seconds_per_indep``).

    python experiments/u1_topology/analyze.py experiments/u1_topology/runs > experiments/u1_topology/table.md

Methods (directory prefixes): hmc, fhmc (flow trained at that point), fhmc-reuse4 and fhmc-reuse8
(the L = 4 or L = 8 flow reused at larger L, flow.checkpoint), imh (independence MH with the flow
trained at that point). A method ending in ``-long`` (e.g. fhmc-reuse8-long) is a longer rerun of
the same method at a point already in the record: its own row in the table, and in the fits and the
plot it replaces the shorter run of that method at the same L (the short row stays in the table).

Fits (fits.json beside this file, and a table at the end of the Markdown): the growth of τ_int(Q)
with β per method, over the points whose results.json says ``diagnostics.reliable`` (R-hat(Q) ≤ 1.1
and an automatic Γ-method window; the others are listed as excluded, with their R-hat). The series
fhmc-reuse<L0> also holds the fhmc run at L0 (the same flow at the point it was trained at). Two
models, each a weighted linear least-squares fit of log τ with σ = δτ/τ
(:func:`trivflow.report.fit_z`, parameter errors from the fit covariance, not rescaled by χ²/dof):

* exponential, τ = a e^{cβ} (log τ linear in β: fit_z with ξ = e^β): a change of Q on the lattice
  passes a plaquette through θ_P = ±π, whose Wilson action is ≈ 2β above the vacuum's, so a
  tunnelling rate ∝ e^{−(barrier ∝ β)} is expected — the primary model;
* power law, τ = b β^p (fit_z with ξ = β), i.e. τ ∝ a_lat^{−2p} at fixed physical volume, the
  critical-slowing-down form, for comparison: χ² says which of the two the points prefer (with
  two points both go through them, dof = 0, and nothing is tested).

Changes of the integer charge (rate_fits.json, rate_vs_beta.png, and a table at the end): per run,
the changes of rint(Q) along its chains (runs/<name>/changes.json, written by changes.py from the
chains files; or results.json's ``Q_change_rate``), the rate per trajectory (IMH: step) and its
ratio to HMC's at the same β; per series the Poisson maximum-likelihood fit rate = r₀ e^{−cβ}
(:func:`trivflow.gauge.tunnelling.fit_rate_exponential`) over every run at β ≥ RATE_BETA_MIN, frozen
ones included (docs/theory.md#u1-tunnelling): a count is a measurement where τ_int(Q) is not; but
not a run whose plaquette is off by more than MAX_PLAQUETTE_SHIFT of the action density (chains not
even locally thermalised: independence MH that accepts almost nothing).

Each series is fitted twice where that differs: over all its reliable points, and over those with
β ≥ BETA_MIN = 2 (L ≥ 8). The second was added after the first fit of HMC over β = 0.5 … 4.5 gave
χ²/dof = 6.3: at β = 0.5 (L = 4) τ_int(Q) ≈ 0.7 is at its floor of 1/2 (Q nearly independent from
one trajectory to the next), where no barrier limits tunnelling and e^{cβ} is not expected to hold.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from trivflow.formatting import paren
from trivflow.gauge.tunnelling import fit_rate_exponential
from trivflow.report import fit_z

HERE = Path(__file__).parent
#: the second fit of each series keeps β ≥ BETA_MIN (module docstring)
BETA_MIN = 2.0
ORDER = ["hmc", "hmc-long", "fhmc", "fhmc-long", "fhmc-reuse4", "fhmc-reuse4-long", "fhmc-reuse8", "fhmc-reuse8-long",
         "fhmc-depth16", "fhmc-depth16-eps40", "fhmc-depth24-eps40", "imh"]
#: the fits of the rate of changes of Q keep β ≥ RATE_BETA_MIN: over β ≥ 2 HMC's deviance/dof was 237,
#: the local slope of log(rate) growing from 1.0 (β = 2 → 3.125) to 1.5, 1.7 and 2.3 — the
#: exponential holds only at weak coupling, where Q changes through one plaquette at ±π
RATE_BETA_MIN = 4.5
#: a run enters the rate fits only if its plaquette is within this fraction of the action density
#: 1 − ⟨cos θ_P⟩ of the exact value (:func:`local_disequilibrium`)
MAX_PLAQUETTE_SHIFT = 0.1
#: suffix of a longer rerun of a method (module docstring)
LONG = "-long"


def order_key(label: str) -> tuple:
    """Sort key of a ``method[:sampler]`` label: the methods of ORDER first, in its order."""
    method = label.split(":")[0]
    return (ORDER.index(method) if method in ORDER else len(ORDER), label)


def rows(runs_dir: Path):
    def key(p):
        method, L = p.parent.name.rsplit("_L", 1)
        return (ORDER.index(method) if method in ORDER else len(ORDER), method, int(L))

    for path in sorted(runs_dir.glob("*/results.json"), key=key):
        res = json.loads(path.read_text())
        method = path.parent.name.rsplit("_L", 1)[0]
        for label, block in res["runs"].items():
            yield res["lattice"], f"{method}:{label}", block, res["config"]["sampler"], path.parent


def changes_of(run_dir: Path, block) -> dict | None:
    """The changes of the integer charge of one run: its changes.json (changes.py, from the chains
    file) or, for a run whose results.json has it, ``Q_change_rate`` × chain-steps; else None."""
    f = run_dir / "changes.json"
    if f.exists():
        return json.loads(f.read_text())
    rate = block["observables"].get("Q_change_rate")
    if not rate or rate[0] is None:
        return None
    steps = block["num_chains"] * (block["num_traj"] - 1)
    return {"changes": round(rate[0] * steps), "chain_steps": steps, "rate": rate, "per_chain": None}


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
    points, series, rates, every_run = {}, {}, {}, []
    for lat, label, b, sampler_cfg, run_dir in rows(Path(runs_dir)):
        o, t, ex = b["observables"], b["tau_int"], b["exact"]
        evals, secs, amort = cost_cells(b, sampler_cfg)
        print(f"| {label} | {lat['L']} | {lat['beta']:g} | {b['acceptance']:.3f} | {fmt(*t['Q'][:2])} | "
              f"{fmt(*t['plaquette'][:2])} | {fmt(*o['Q2'])} | {ex['Q2']:.4g} | {sigma(o['Q2'], ex['Q2'])} | "
              f"{fmt(*o['plaquette'], digits=5)} | {ex['plaquette']:.5f} | {sigma(o['plaquette'], ex['plaquette'])} | "
              f"{b['num_chains']} × {b['num_traj']} | {evals} | {secs} | {amort} | {len(b.get('warnings', []))} |")
        method, sampler = label.split(":", 1)
        base = f"{method.removesuffix(LONG)}:{sampler}"
        ch = changes_of(run_dir, b)
        if ch is not None:  # a longer rerun replaces the shorter one at its L, as for τ below
            row = {"L": lat["L"], "beta": lat["beta"], "label": label, **ch, "plaquette_shift": local_disequilibrium(b)}
            every_run.append((base, row))
            rates[base] = [r for r in rates.get(base, []) if r["L"] != lat["L"] or not method.endswith(LONG)]
            rates[base].append(row)
        if t["Q"][0] is not None:
            pt = (lat["beta"], t["Q"][0], t["Q"][1] or 0.0, b["num_traj"])
            fp = fit_point(lat, b)
            if method.endswith(LONG):  # a longer rerun replaces the shorter one at its L (rows() sorts it after)
                points[base] = [p for p in points.get(base, []) if p[0] != pt[0]]
                series[base] = [p for p in series.get(base, []) if p["L"] != fp["L"]]
            points.setdefault(base, []).append(pt)
            series.setdefault(base, []).append(fp)
    print("\n\\* derived from τ_int(Q), sampler.num_steps and traj_per_second (record without a cost block); "
          "seconds are wall time on a shared 2-core CPU.")
    for label in list(series):  # fhmc-reuse<L0>: the flow at its own point is the fhmc run at L0
        m = re.match(r"fhmc-reuse(\d+):(.*)", label)
        if m:
            own = [p for p in series.get(f"fhmc:{m.group(2)}", []) if p["L"] == int(m.group(1))]
            series[label] = sorted(own + series[label], key=lambda p: p["beta"])
    fits = {}
    for label, pts in series.items():
        fits[label] = fit_growth(pts)
        asym = [p for p in pts if p["beta"] >= BETA_MIN]
        if len(asym) < len(pts) and len([p for p in asym if p["reliable"]]) >= 2:
            fits[f"{label}, β ≥ {BETA_MIN:g}"] = fit_growth(asym)
    (HERE / "fits.json").write_text(json.dumps(fits, indent=2) + "\n")
    print_fits(fits)
    plot(points, fits)
    print_rate_table(every_run, rates.get("hmc:hmc", []))
    for label in list(rates):  # as for τ: the series fhmc-reuse<L0> starts with the flow at its own point
        m = re.match(r"fhmc-reuse(\d+):(.*)", label)
        if m:
            own = [r for r in rates.get(f"fhmc:{m.group(2)}", []) if r["L"] == int(m.group(1))]
            rates[label] = sorted(own + rates[label], key=lambda r: r["beta"])
    rate_fits = {label: fit_rates(pts) for label, pts in rates.items()}
    (HERE / "rate_fits.json").write_text(json.dumps(rate_fits, indent=2) + "\n")
    print_rate_fits(rate_fits)
    plot_rates(rates, rate_fits)


def local_disequilibrium(b) -> float:
    """|⟨cos θ_P⟩ − exact| / (1 − exact): the plaquette's distance from equilibrium in units of the
    action density. A frozen but locally thermalised chain (HMC, FHMC) is within a few per cent
    (its Q biases the plaquette slightly); independence-MH chains that accept almost nothing sit on
    raw flow samples, 100 % or more away."""
    p, exact = b["observables"]["plaquette"][0], b["exact"]["plaquette"]
    return abs(p - exact) / (1 - exact)


def fit_rates(pts: list[dict]) -> dict:
    """The Poisson fit r = r₀ e^{−cβ} (:func:`trivflow.gauge.tunnelling.fit_rate_exponential`) of
    the counts of one series at β ≥ RATE_BETA_MIN, every locally thermalised run included (a count
    is a measurement however frozen the run; a run without a change is the upper limit it is). A run
    whose plaquette is off by more than MAX_PLAQUETTE_SHIFT of the action density
    (:func:`local_disequilibrium`) is excluded: its changes of Q are not those of equilibrium."""
    at = sorted((p for p in pts if p["beta"] >= RATE_BETA_MIN), key=lambda p: p["beta"])
    used = [p for p in at if p["plaquette_shift"] <= MAX_PLAQUETTE_SHIFT]
    out = {"points": [{k: p[k] for k in ("L", "beta", "changes", "chain_steps", "rate")} for p in used],
           "excluded": [{"L": p["L"], "beta": p["beta"], "plaquette_shift": p["plaquette_shift"]}
                        for p in at if p not in used]}
    if len({p["beta"] for p in used if p["changes"]}) < 2:  # else no maximum of the likelihood
        out["note"] = (f"{len(used)} point(s) at β ≥ {RATE_BETA_MIN:g}, "
                       f"{len({p['beta'] for p in used if p['changes']})} with changes: no fit")
        return out
    f = fit_rate_exponential([p["beta"] for p in used], [p["changes"] for p in used],
                             [p["chain_steps"] for p in used])
    out["exponential"] = {"model": "rate = r0 exp(-c beta)", "c": f.c, "c_err": f.c_err, "log_r0": f.log_r0,
                          "log_r0_err": f.log_r0_err, "deviance": f.deviance, "dof": f.dof}
    return out


def rate_cell(r: dict) -> str:
    """n / N = rate(err), or the 1/N resolution of a run without a change."""
    n, N = r["changes"], r["chain_steps"]
    return f"0 / {N} (< {1 / N:.1e})" if n == 0 else f"{n} / {N} = {paren(*r['rate'])}"


def print_rate_table(every_run: list, hmc_rows: list) -> None:
    """One row per run: its changes of Q, the rate, the per-chain spread and the ratio to HMC's rate
    at the same β (errors of the two rates in quadrature; n/a where HMC saw no change)."""
    print("\n## Changes of the integer charge (changes.json, rate_fits.json)\n")
    print("Changes of rint(Q) between consecutive trajectories (IMH: steps) over all chains; rate error: "
          "between-chain standard error or √n/N (n ≥ 1), the larger (docs/theory.md#u1-tunnelling).\n")
    print("| method:sampler | L | β | changes / chain-steps = rate | per chain (min–max) | rate / HMC's | "
          "plaquette off by (in 1 − P) |")
    print("|---|---|---|---|---|---|---|")
    hmc = {r["beta"]: r for r in hmc_rows}
    for label, r in every_run:
        pc, h = r.get("per_chain"), hmc.get(r["beta"])
        spread = f"{min(pc)}–{max(pc)}" if pc else "n/a"
        ratio = "n/a"
        if label != "hmc:hmc" and h and h["changes"] and r["changes"]:
            x = r["rate"][0] / h["rate"][0]
            ratio = paren(x, x * np.hypot(r["rate"][1] / r["rate"][0], h["rate"][1] / h["rate"][0]))
        print(f"| {r['label']} | {r['L']} | {r['beta']:g} | {rate_cell(r)} | {spread} | {ratio} | "
              f"{r['plaquette_shift']:.1%} |")


def print_rate_fits(fits: dict) -> None:
    print(f"\nPoisson maximum-likelihood fits of rate = r₀ e^(−cβ), runs at β ≥ {RATE_BETA_MIN:g}:\n")
    print("| series | points (L: changes) | excluded (L: plaquette off by, in 1 − P) | c | r₀ | deviance/dof |")
    print("|---|---|---|---|---|---|")
    for label in sorted(fits, key=order_key):
        f = fits[label]
        pts = ", ".join(f"{p['L']}: {p['changes']}" for p in f["points"]) or "none"
        exc = ", ".join(f"{p['L']}: {p['plaquette_shift']:.0%}" for p in f["excluded"]) or "none"
        e = f.get("exponential")
        if e is None:
            print(f"| {label} | {pts} | {exc} | {f['note']} | | |")
            continue
        r0 = np.exp(e["log_r0"])
        dev = "— (two points: no dof)" if e["dof"] == 0 else f"{e['deviance']:.2f}/{e['dof']} = " \
            f"{e['deviance'] / e['dof']:.2f}"
        print(f"| {label} | {pts} | {exc} | {paren(e['c'], e['c_err'])} | {paren(r0, r0 * e['log_r0_err'])} | {dev} |")


def plot_rates(rates: dict, fits: dict) -> None:
    """rate_vs_beta.png: the rate of changes of Q vs β per series (log scale), a run without a change
    drawn as a downward arrow at 1/N, a run not even locally thermalised (:func:`local_disequilibrium`)
    as a cross, the Poisson fits as dashed lines over their β range."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.add_subplot()
    for i, label in enumerate(sorted(rates)):
        color, pts = f"C{i}", sorted(rates[label], key=lambda r: r["beta"])
        off = [r for r in pts if r["plaquette_shift"] > MAX_PLAQUETTE_SHIFT]  # not thermalised: crosses only
        ax.plot([r["beta"] for r in off], [r["rate"][0] if r["changes"] else 1 / r["chain_steps"] for r in off],
                "x", color=color)
        pts = [r for r in pts if r not in off]
        seen = [r for r in pts if r["changes"]]
        lower = [min(r["rate"][1], 0.9 * r["rate"][0]) for r in seen]  # a log axis: clip bars that reach 0
        ax.errorbar([r["beta"] for r in seen], [r["rate"][0] for r in seen],
                    yerr=[lower, [r["rate"][1] for r in seen]], marker="o", capsize=3, color=color, label=label)
        for r in pts:
            if not r["changes"]:
                ax.plot(r["beta"], 1 / r["chain_steps"], "v", color=color, mfc="white", zorder=5)
        e = fits[label].get("exponential")
        if e is not None:
            b = np.linspace(min(p["beta"] for p in fits[label]["points"]),
                            max(p["beta"] for p in fits[label]["points"]), 50)
            ax.plot(b, np.exp(e["log_r0"] - e["c"] * b), "--", color=color, lw=1,
                    label=f"{label.split(':')[0]}: r₀·e^(−cβ), c = {paren(e['c'], e['c_err'])}")
    ax.set_yscale("log")
    floor = min(min(r["rate"][0] if r["changes"] else 1 / r["chain_steps"] for r in pts) for pts in rates.values())
    ax.set_ylim(bottom=floor / 30)  # the fits' extrapolation to β = 18 would otherwise set the scale
    ax.set_xlabel("β  (L = √(32 β))")
    ax.set_ylabel("changes of Q per trajectory / IMH step")
    ax.set_title("2D U(1), β = L²/32 (▽: no change in N chain-steps, at 1/N; ×: not thermalised; "
                 f"fits: β ≥ {RATE_BETA_MIN:g})", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(HERE / "rate_vs_beta.png", dpi=120)


def fit_point(lat, b) -> dict:
    """One point of a series: (L, β, τ_int(Q), δτ) and whether its run says it is reliable."""
    d = b.get("diagnostics") or {}
    return {"L": lat["L"], "beta": lat["beta"], "tau": b["tau_int"]["Q"][0], "tau_err": b["tau_int"]["Q"][1],
            "reliable": bool(d.get("reliable")), "rhat_Q": (d.get("rhat") or {}).get("Q")}


def fit_growth(pts: list[dict]) -> dict:
    """The exponential and power-law fits (module docstring) of the reliable points of one series."""
    used = [p for p in pts if p["reliable"] and p["tau_err"]]
    out = {"points": used, "excluded": [p for p in pts if p not in used]}
    if len({p["beta"] for p in used}) < 2:
        out["note"] = f"{len(used)} reliable point(s): no fit"
        return out
    beta = np.array([p["beta"] for p in used])
    tau, dtau = np.array([p["tau"] for p in used]), np.array([p["tau_err"] for p in used])
    e = fit_z(np.exp(beta), np.zeros_like(beta), tau, dtau)  # log τ = log a + c β
    w = fit_z(beta, np.zeros_like(beta), tau, dtau)  # log τ = log b + p log β
    out["exponential"] = {"model": "tau = a exp(c beta)", "c": e.z, "c_err": e.z_err, "log_a": e.log_c,
                          "log_a_err": e.log_c_err, "chi2": e.chi2, "dof": e.dof}
    out["power"] = {"model": "tau = b beta^p", "p": w.z, "p_err": w.z_err, "log_b": w.log_c,
                    "log_b_err": w.log_c_err, "chi2": w.chi2, "dof": w.dof}
    if e.dof == 0:
        out["note"] = "two points: no dof (the fit goes through both; nothing is tested)"
    return out


def chi2_cell(f) -> str:
    return "— (two points: no dof)" if f["dof"] == 0 else f"{f['chi2']:.2f}/{f['dof']} = {f['chi2'] / f['dof']:.2f}"


def print_fits(fits: dict) -> None:
    print("\n## Growth of τ_int(Q) with β (fits.json)\n")
    print("Reliable points only (results.json `diagnostics.reliable`); weighted least squares of log τ.\n")
    print("| method:sampler | points (L: τ_int(Q)) | excluded (L: R-hat(Q)) | τ = a e^{cβ}: c | a | χ²/dof "
          "| τ = b β^p: p | χ²/dof |")
    print("|---|---|---|---|---|---|---|---|")
    for label, f in sorted(fits.items(), key=lambda kv: order_key(kv[0])):
        pts = ", ".join(f"{p['L']}: {paren(p['tau'], p['tau_err'])}" for p in f["points"]) or "none"
        exc = ", ".join(f"{p['L']}: {p['rhat_Q']:.2f}" for p in f["excluded"]) or "none"
        e, w = f.get("exponential"), f.get("power")
        if e is None:
            print(f"| {label} | {pts} | {exc} | {f['note']} | | | | |")
            continue
        a = np.exp(e["log_a"])
        print(f"| {label} | {pts} | {exc} | {paren(e['c'], e['c_err'])} | {paren(a, a * e['log_a_err'])} | "
              f"{chi2_cell(e)} | {paren(w['p'], w['p_err'])} | {chi2_cell(w)} |")


def plot(points, fits) -> None:
    """tau_int(Q) vs beta per method (log scale); a point whose tau exceeds num_traj/20 is drawn
    as an open triangle without error bar and not joined to the others (no reliable window: a
    lower bound at best, its Γ-method error meaningless). The exponential fit of a method
    (:func:`fit_growth`) is a dashed line over the β range of its points."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.5))
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
        for name, style in [(label, "--"), (f"{label}, β ≥ {BETA_MIN:g}", ":")]:
            e = fits.get(name, {}).get("exponential")
            if e is None:
                continue
            b = np.linspace(min(p["beta"] for p in fits[name]["points"]),
                            max(p["beta"] for p in fits[name]["points"]), 50)
            where = "" if name == label else f", β ≥ {BETA_MIN:g}"
            ax.plot(b, np.exp(e["log_a"] + e["c"] * b), style, color=color, lw=1,
                    label=f"a·e^(cβ){where}: c = {paren(e['c'], e['c_err'])}")
    ax.set_yscale("log")
    ax.set_xlabel("β  (L = √(32 β))")
    ax.set_ylabel("τ_int(Q)  [trajectories / IMH steps]")
    ax.set_title("2D U(1), β = L²/32 (open △: τ > num_traj/20, a lower bound at best)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(HERE / "tau_q_vs_beta.png", dpi=120)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(HERE / "runs"))
