"""Tables, fits and plots of the issue-6 studies from their recorded ``results.json`` files.

    .venv/bin/python experiments/scaling/analyze.py            # every study whose records exist
    .venv/bin/python experiments/scaling/analyze.py scaling    # one of: scaling mh kernel reuse

Reads only the records committed beside this file (``experiments/<study>/runs/*/results.json``,
``experiments/reuse_xi3/run``, ``experiments/reuse_volume``, ``experiments/minimal_network``,
``experiments/hmc_baseline``) and writes per study ``table.md``, ``table.csv`` and plots into the
study's directory. Nothing is fitted or tuned to the paper: the paper's numbers only appear in
the ``paper`` columns.

Conventions: τ = τ_int(M) in trajectories (Γ-method, S_τ = 4, errors δτ = τ√((4W+2)/N));
"chain-traj/s" = chain-trajectories per second of the whole run (all chains, one process);
cost per independent sample = 2τ / (chain-traj/s) seconds; errors of ratios of independent runs
by linear propagation, r·√((δa/a)² + (δb/b)²); z from ``trivflow.report.fit_z`` (τ = c ξ^z,
weighted least squares in log–log with the ξ errors folded in), each sampler against its own
measured ξ.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
EXP = HERE.parent
sys.path.insert(0, str(EXP.parent / "src"))

from trivflow.report import fit_z  # noqa: E402

PAPER_Z_NOTE = "paper: z ≈ 2 for HMC, unchanged by a fixed-architecture flow (docs/theory.md#what-the-paper-reports)"


def load(path: Path) -> dict:
    return json.loads((path / "results.json").read_text())


def pm(v, e, nd=None) -> str:
    """'v ± e' with a sensible number of digits."""
    if v is None:
        return "—"
    if e is None or not math.isfinite(e) or e == 0:
        return f"{v:.4g}"
    if nd is None:
        nd = max(0, 1 - int(math.floor(math.log10(abs(e)))))
    return f"{v:.{nd}f} ± {e:.{nd}f}"


def ratio(a, da, b, db):
    r = a / b
    return r, r * math.hypot(da / a, db / b)


def write_table(out: Path, name: str, header: list[str], rows: list[list], md_rows: list[list[str]], note: str = ""):
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    lines = ["| " + " | ".join(md_rows[0]) + " |", "|" + "---|" * len(md_rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in md_rows[1:]]
    (out / f"{name}.md").write_text(("" if not note else note + "\n\n") + "\n".join(lines) + "\n")
    print(f"wrote {out / name}.md/.csv")


def scaling_runs() -> dict[int, dict]:
    runs = {}
    for d in sorted((EXP / "scaling" / "runs").glob("L*")):
        if (d / "results.json").is_file():
            r = load(d)
            runs[r["lattice"]["L"]] = r
    return dict(sorted(runs.items()))


def tau(block):
    t = block["tau_int"]["M"]
    return t[0], t[1], t[2]


def obs(block, key):
    v = block["observables"][key]
    return v[0], v[1]


# ----------------------------------------------------------------------------------------------
# Study 1: scaling along ξ = L/4
# ----------------------------------------------------------------------------------------------


def study_scaling():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = scaling_runs()
    if not runs:
        print("scaling: no records yet")
        return
    out = EXP / "scaling"
    header = ["L", "beta", "xi_hmc", "xi_hmc_err", "xi_fhmc", "xi_fhmc_err", "tau_hmc", "tau_hmc_err", "W_hmc",
              "tau_fhmc", "tau_fhmc_err", "W_fhmc", "ratio", "ratio_err", "acc_hmc", "acc_fhmc",
              "chains", "num_traj", "hmc_traj_per_s", "fhmc_traj_per_s", "cost_indep_hmc_s", "cost_indep_fhmc_s"]
    rows, md = [], [["L", "β", "ξ (HMC)", "ξ (FHMC)", "τ_HMC", "τ_FHMC", "τ_FHMC/τ_HMC", "acc HMC / FHMC",
                     "chains × traj", "s per indep. sample HMC / FHMC"]]
    series = {"hmc": ([], [], [], []), "fhmc": ([], [], [], [])}
    for L, r in runs.items():
        h, f = r["runs"]["hmc"], r["runs"]["fhmc"]
        th, dth, wh = tau(h)
        tf, dtf, wf = tau(f)
        xh, dxh = obs(h, "xi")
        xf, dxf = obs(f, "xi")
        q, dq = ratio(tf, dtf, th, dth)
        ch, cf = 2 * th / h["traj_per_second"], 2 * tf / f["traj_per_second"]
        rows.append([L, r["lattice"]["beta"], xh, dxh, xf, dxf, th, dth, wh, tf, dtf, wf, q, dq, h["acceptance"],
                     f["acceptance"], f["num_chains"], f["num_traj"], h["traj_per_second"], f["traj_per_second"],
                     ch, cf])
        md.append([str(L), str(r["lattice"]["beta"]), pm(xh, dxh), pm(xf, dxf),
                   f"{pm(th, dth)} ({100 * dth / th:.0f} %)", f"{pm(tf, dtf)} ({100 * dtf / tf:.0f} %)", pm(q, dq, 2),
                   f"{h['acceptance']:.3f} / {f['acceptance']:.3f}", f"{f['num_chains']} × {f['num_traj']}",
                   f"{ch:.2e} / {cf:.2e}"])
        for name, (t, dt, x, dx) in (("hmc", (th, dth, xh, dxh)), ("fhmc", (tf, dtf, xf, dxf))):
            for lst, v in zip(series[name], (x, dx, t, dt)):
                lst.append(v)
    write_table(out, "table", header, rows, md,
                "τ = τ_int(M) (Γ-method, S_τ = 4) with its error and relative precision; ξ measured in the "
                "same run; s per indep. sample = 2τ/(chain-traj/s) on the shared 2-core CPU.")
    fits = {}
    for name, (x, dx, t, dt) in series.items():
        if len(set(x)) >= 2:
            fz = fit_z(x, dx, t, dt)
            fits[name] = {"z": fz.z, "z_err": fz.z_err, "c": math.exp(fz.log_c), "log_c": fz.log_c,
                          "log_c_err": fz.log_c_err, "chi2": fz.chi2, "dof": fz.dof, "L": list(runs)}
    if "hmc" in fits and "fhmc" in fits:
        d = fits["fhmc"]["z"] - fits["hmc"]["z"]
        fits["z_fhmc_minus_z_hmc"] = {"value": d, "err": math.hypot(fits["fhmc"]["z_err"], fits["hmc"]["z_err"]),
                                      "note": "independent runs (separate chains): errors added in quadrature"}
    fits["paper"] = PAPER_Z_NOTE
    (out / "fits.json").write_text(json.dumps(fits, indent=2) + "\n")
    print("z:", {k: (round(v["z"], 3), round(v["z_err"], 3))
                 for k, v in fits.items() if isinstance(v, dict) and "z" in v})
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for name, color in (("hmc", "C0"), ("fhmc", "C1")):
        x, dx, t, dt = map(np.asarray, series[name])
        label = {"hmc": "HMC", "fhmc": "FHMC, k = 3 Gaussian-prior flow"}[name]
        if name in fits:
            label += f": z = {fits[name]['z']:.2f} ± {fits[name]['z_err']:.2f}"
            xx = np.linspace(x.min() * 0.95, x.max() * 1.05, 50)
            ax.plot(xx, fits[name]["c"] * xx ** fits[name]["z"], color=color, lw=1)
        ax.errorbar(x, t, xerr=dx, yerr=dt, fmt="o", color=color, label=label, ms=4, capsize=2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ξ (measured)")
    ax.set_ylabel("τ_int(M)  [trajectories]")
    ax.set_title("Line of constant physics ξ = L/4, λ = 0.5")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "tau_vs_xi.png", dpi=120)
    plt.close(fig)
    print(f"wrote {out / 'tau_vs_xi.png'}")


# ----------------------------------------------------------------------------------------------
# Study 4 and 5: MH vs FHMC, and training vs sampling cost (from the scaling runs)
# ----------------------------------------------------------------------------------------------


def study_mh():
    runs = scaling_runs()
    if not runs:
        print("mh: no records yet")
        return
    out = EXP / "mh_vs_fhmc"
    header = ["L", "train_mh_acc_untrained", "train_mh_acc", "train_ess", "imh_acc", "imh_steps",
              "fhmc_acc", "fhmc_tau", "fhmc_tau_err", "hmc_acc", "hmc_tau", "hmc_tau_err"]
    rows, md = [], [["L", "flow MH acc. (training, batch of 500): untrained → trained", "ESS", "independence MH acc. "
                     "(64 chains × steps)", "FHMC acc.", "FHMC τ", "HMC acc.", "HMC τ"]]
    for L, r in runs.items():
        tr, f, h = r["training"], r["runs"]["fhmc"], r["runs"]["hmc"]
        imh = r["runs"].get("imh")
        extra = EXP / "mh_vs_fhmc" / "runs" / f"L{L}_imh"  # imh run later with this job's flow loaded
        if imh is None and (extra / "results.json").is_file():
            imh = load(extra)["runs"]["imh"]
        tf, dtf, _ = tau(f)
        th, dth, _ = tau(h)
        rows.append([L, tr["untrained"]["mh_acceptance"], tr["mh_acceptance"], tr["ess"],
                     imh["acceptance"] if imh else None, imh["num_traj"] if imh else None,
                     f["acceptance"], tf, dtf, h["acceptance"], th, dth])
        md.append([str(L), f"{tr['untrained']['mh_acceptance']:.3f} → {tr['mh_acceptance']:.3f}", f"{tr['ess']:.4f}",
                   f"{imh['acceptance']:.4f} ({imh['num_traj']})" if imh else "not run",
                   f"{f['acceptance']:.3f}", pm(tf, dtf), f"{h['acceptance']:.3f}", pm(th, dth)])
    write_table(out, "table", header, rows, md,
                "Each flow is trained at its own L (k = 3, Gaussian prior, 1000 Adam steps, batch 500) and "
                "used for independence MH and FHMC at that L (experiments/scaling runs; the L = 16 independence "
                "MH ran afterwards with that job's flow loaded, runs/L16_imh).")
    # study 5: cost accounting
    header = ["L", "training_s", "training_compile_s", "fhmc_sampling_s", "fhmc_therm_s", "fhmc_compile_s",
              "hmc_sampling_s", "training_over_fhmc_sampling", "training_over_one_indep_fhmc_sample"]
    rows, md = [], [["L", "training s (of which compile)", "FHMC sampling s (+ therm, compile)", "HMC sampling s",
                     "training / FHMC sampling", "training in FHMC indep. samples"]]
    for L, r in runs.items():
        tr, f, h = r["training"], r["runs"]["fhmc"], r["runs"]["hmc"]
        tf = tau(f)[0]
        per_indep = 2 * tf / f["traj_per_second"]
        rows.append([L, tr["seconds"], tr["compile_seconds"], f["seconds"], f["therm_seconds"], f["compile_seconds"],
                     h["seconds"], tr["seconds"] / f["seconds"], tr["seconds"] / per_indep])
        md.append([str(L), f"{tr['seconds']:.1f} ({tr['compile_seconds']:.1f})",
                   f"{f['seconds']:.0f} (+ {f['therm_seconds']:.0f}, {f['compile_seconds']:.0f})",
                   f"{h['seconds']:.0f}",
                   f"{tr['seconds'] / f['seconds']:.3f}", f"{tr['seconds'] / per_indep:.0f}"])
    write_table(EXP / "scaling", "cost", header, rows, md,
                "Wall seconds on the shared 2-core CPU (other jobs running). Training: 1000 Adam steps, "
                "batch 500, including its compilation. 'training in FHMC indep. samples': how many "
                "independent FHMC configurations (2τ chain-trajectories each) cost as much as the training.")


# ----------------------------------------------------------------------------------------------
# Study 2: kernel size
# ----------------------------------------------------------------------------------------------


def study_kernel():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kdir = EXP / "kernel_size" / "runs"
    recs = []
    for d in sorted(kdir.glob("L*")) if kdir.is_dir() else []:
        if (d / "results.json").is_file():
            r = load(d)
            fl = r["config"]["flow"]
            recs.append((r["lattice"]["L"], fl["kernel_size"], fl["num_layers"], r, "kernel_size"))
    scal = scaling_runs()
    Ls = sorted({L for L, *_ in recs})
    for L in Ls:
        if L in scal:
            recs.append((L, 3, 1, scal[L], "scaling"))
    if not recs:
        print("kernel: no records yet")
        return
    recs.sort(key=lambda t: (t[0], t[2], t[1]))
    header = ["L", "k", "layers", "params", "tau", "tau_err", "acc", "chains", "num_traj", "traj_per_s",
              "s_per_chain_traj", "cost_indep_s", "cost_indep_err", "cost_vs_hmc", "tau_vs_hmc", "tau_vs_hmc_err",
              "training_s", "record"]
    rows, md = [], [["L", "flow", "τ_FHMC", "τ / τ_HMC", "acc.", "µs per chain-traj.", "s per indep. sample (× HMC)",
                     "training s", "record"]]
    for L, k, nl, r, src in recs:
        f = r["runs"]["fhmc"]
        tf, dtf, _ = tau(f)
        hm = scal.get(L, {}).get("runs", {}).get("hmc")
        tps = f["traj_per_second"]
        cost, dcost = 2 * tf / tps, 2 * dtf / tps
        if hm:
            th, dth, _ = tau(hm)
            q, dq = ratio(tf, dtf, th, dth)
            chm = 2 * th / hm["traj_per_second"]
        else:
            q = dq = chm = None
        nparams = nl * 4 * k * k + 1
        rows.append([L, k, nl, nparams, tf, dtf, f["acceptance"], f["num_chains"], f["num_traj"], tps, 1 / tps,
                     cost, dcost,
                     cost / chm if chm else None, q, dq, r["training"]["seconds"], src])
        md.append([str(L), f"k = {k}, {nl} layer{'s' if nl > 1 else ''} ({nparams} par.)",
                   f"{pm(tf, dtf)} ({100 * dtf / tf:.0f} %)", pm(q, dq, 2) if q else "—", f"{f['acceptance']:.3f}",
                   f"{1e6 / tps:.1f}", f"{cost:.2e} ({cost / chm:.1f}×)" if chm else f"{cost:.2e}",
                   f"{r['training']['seconds']:.0f}", src])
    write_table(EXP / "kernel_size", "table", header, rows, md,
                "τ_HMC and the k = 3, 1-layer rows are the experiments/scaling runs at the same L, β. "
                "µs per chain-trajectory = 1/(chain-traj/s) of the run (64 chains together); "
                "(× HMC): cost per independent sample relative to HMC's in its own run.")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for i, L in enumerate(Ls):
        pts = [(k, nl, r) for LL, k, nl, r, _ in recs if LL == L and nl == 1]
        ks = [k for k, _, _ in pts]
        t = [tau(r["runs"]["fhmc"]) for _, _, r in pts]
        c = [2 * tt[0] / r["runs"]["fhmc"]["traj_per_second"] for tt, (_, _, r) in zip(t, pts)]
        axes[0].errorbar(ks, [x[0] for x in t], yerr=[x[1] for x in t], fmt="o-", color=f"C{i}", label=f"L = {L}",
                         capsize=2, ms=4)
        axes[1].plot(ks, c, "o-", color=f"C{i}", label=f"L = {L}", ms=4)
        two = [(r) for LL, k, nl, r, _ in recs if LL == L and nl == 2]
        for r in two:
            tt = tau(r["runs"]["fhmc"])
            axes[0].errorbar([3.15], [tt[0]], yerr=[tt[1]], fmt="s", color=f"C{i}", mfc="none", capsize=2)
            axes[1].plot([3.15], [2 * tt[0] / r["runs"]["fhmc"]["traj_per_second"]], "s", color=f"C{i}", mfc="none")
        hm = scal.get(L, {}).get("runs", {}).get("hmc")
        if hm:
            th = tau(hm)
            axes[0].axhline(th[0], color=f"C{i}", ls=":", lw=1)
            axes[1].axhline(2 * th[0] / hm["traj_per_second"], color=f"C{i}", ls=":", lw=1)
    axes[0].set_ylabel("τ_int(M) of FHMC")
    axes[1].set_ylabel("s per independent sample (2τ / chain-traj/s)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("kernel size k (open square: k = 3, 2 layers; dotted: HMC)")
        ax.set_xticks([3, 5, 7])
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(EXP / "kernel_size" / "tau_vs_kernel_size.png", dpi=120)
    plt.close(fig)
    print(f"wrote {EXP / 'kernel_size' / 'tau_vs_kernel_size.png'}")


# ----------------------------------------------------------------------------------------------
# Study 3: reuse on bigger volumes
# ----------------------------------------------------------------------------------------------


def study_reuse():
    srcs = [(2, EXP / "reuse_volume"), (3, EXP / "reuse_xi3" / "run"), (3, EXP / "reuse_xi3" / "run_n13")]
    header = ["xi_target", "L_train", "L", "num_steps", "tau", "tau_err", "ratio_to_trained_L", "ratio_err", "acc",
              "xi", "xi_err", "chains", "num_traj", "record"]
    rows, md = [], [["ξ", "trained at", "L", "leapfrog steps", "FHMC τ", "τ / τ(L_train)", "acc.", "ξ measured",
                     "chains × traj", "record"]]
    for xit, d in srcs:
        if not (d / "results.json").is_file():
            continue
        r = load(d)
        Lt = r["lattice"]["L"]
        nsteps = r["config"]["sampler"]["num_steps"]
        base = tau(r["runs"]["fhmc"])
        for label, f in r["runs"].items():
            t, dt, _ = tau(f)
            L = f["lattice"]["L"]
            q, dq = (1.0, 0.0) if L == Lt else ratio(t, dt, base[0], base[1])
            x, dx = obs(f, "xi")
            rec = str(d.relative_to(EXP))
            rows.append([xit, Lt, L, nsteps, t, dt, q, dq, f["acceptance"], x, dx, f["num_chains"], f["num_traj"], rec])
            md.append([str(xit), str(Lt), str(L), str(nsteps), f"{pm(t, dt)} ({100 * dt / t:.0f} %)",
                       "1" if L == Lt else pm(q, dq, 2), f"{f['acceptance']:.3f}", pm(x, dx),
                       f"{f['num_chains']} × {f['num_traj']}", rec])
    if len(rows) == 0:
        print("reuse: no records yet")
        return
    write_table(EXP / "reuse_xi3", "table", header, rows, md,
                "The flow (k = 3, Gaussian prior) is trained once at L = 4ξ and reused without retraining at "
                "2L and 4L at the same β; τ_MD = 1 with the number of leapfrog steps shown (ε = 1/steps).")


STUDIES = {"scaling": study_scaling, "mh": study_mh, "kernel": study_kernel, "reuse": study_reuse}

if __name__ == "__main__":
    for name in sys.argv[1:] or list(STUDIES):
        STUDIES[name]()
