#!/usr/bin/env python3
"""The GPU run of issue 17 in one process tree: benchmarks, the L = 40 table, L = 80 as far as time allows.

    python experiments/gpu_h200/driver.py OUTDIR [--tiny] [--budget SECONDS] [--only bench l40 l80]

Called by ``experiments/gpu_h200/run.sh`` (which first installs the wheels the GPU image lacks).
Every step is a child process with its own time limit (its process group is killed at the limit),
and writes its JSON into OUTDIR as soon as it finishes; a step that fails or runs out of time is
recorded in ``OUTDIR/steps.json`` and the next step runs. This process never imports JAX, so it
holds no accelerator memory while the children run.

Steps, in order of value (README.md beside this file has the sizing arithmetic):

0. ``00_environment.json``: ``jax.devices()``, versions, ``nvidia-smi``; printed first.
a. ``a_bench_<part>.json``: ``benchmarks/run_all --parts <file> --device-memory`` per part: HMC and
   FHMC chain-trajectories/s and ns/site/step for L = 16 … 256 at 1024 chains, 64 … 4096 chains,
   float64 and float32 (HMC ``--dtypes``, FHMC ``mixed``), k = 3, 5, 7, training steps/s at
   L = 40, compile times, peak device memory.
b. ``b_L40_<row>.json``: the rows of the paper's L = 40 table (``hmc``, ``fhmc@gaussian``,
   ``fhmc@interp4``, ``fhmc@interp4_x2``) with ``python -m trivflow.run lattice=L40 ...``, each sized
   for ≤ 5 % on τ_int(M) from the paper's τ and the rates measured in (a), within its time share.
c. ``c_L80_<row>.json``: the same rows at L = 80 (``lattice=L80``, β = 0.677, 18 leapfrog steps) with
   the time left, each as precise as its share allows, or recorded as not run with the time it needs.
d. ``summary.json`` / ``summary.md``: the rows beside the paper's with pulls, the GPU rates, what did
   not fit.

Precision model (docs/theory.md#gamma-method): δτ/τ = √((4W + 2)/N) for N trajectories in all
and the summation window W, which the automatic windowing puts at W ≈ 20 τ here
(experiments/coarse_interp: W/τ = 623/30.6 and 1165/62.1). Each chain must be much longer than W.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable

#: the paper's τ_int(M) (value, error) at L = 40 and 80 (docs/results.md; issue 17)
PAPER = {
    40: {"hmc": (570, 21), "fhmc@gaussian": (420, 16), "fhmc@interp4": (269, 17), "fhmc@interp4_x2": (164.5, 5.0)},
    80: {"hmc": (2518, 130), "fhmc@gaussian": (1965, 165), "fhmc@interp4": (1146, 182),
         "fhmc@interp4_x2": (788, 128)},
}
#: the command-line overrides of each row (sampler and prior)
# plain HMC gets no prior/train/flow override: trivflow refuses a command-line override no stage reads
ROW_ARGS = {"hmc": ["sampler=hmc"], "fhmc@gaussian": ["sampler=fhmc", "prior=gaussian"],
            "fhmc@interp4": ["sampler=fhmc", "prior=interp4"], "fhmc@interp4_x2": ["sampler=fhmc", "prior=interp4_x2"]}
ORDER = {40: ["hmc", "fhmc@gaussian", "fhmc@interp4", "fhmc@interp4_x2"],
         # L = 80: the baseline and the best prior first (their ratio is the headline), then the others
         80: ["hmc", "fhmc@interp4_x2", "fhmc@interp4", "fhmc@gaussian"]}
NUM_STEPS = {40: 10, 80: 18}

W_OVER_TAU = 20.0      # summation window / τ of the automatic windowing (module docstring)
TARGET_REL = 0.05      # aim: δτ/τ ≤ 5 %
MAX_REL = 0.15         # a row predicted to be worse than 15 % on τ is not run (its time goes to the next)
MIN_CHAIN_TAUS = 30    # each chain ≥ 30 τ (1.5 W) after thermalisation, else the run is not worth it
THERM_TAUS = 5         # thermalisation from a hot start: 5 τ per chain
CHAIN_CHOICES = (16, 32, 64, 128, 256, 512, 1024)
#: assumed H200 cost per leapfrog step (used when (a) measured nothing): latency + per site·chain;
#: README.md gives the arithmetic from this machine's CPU figures
ASSUMED = {"hmc": (25e-6, 0.02e-9), "fhmc": (120e-6, 0.10e-9)}
#: assumed fixed cost of one trivflow.run job (start, JAX import, compilation of its chunks), seconds
JOB_OVERHEAD = {"hmc": 25.0, "fhmc": 45.0}
TRAIN_STEPS_PER_S_ASSUMED = 200.0  # train_flow at L = 40, batch 500, if (a) measured none
#: prior ensembles on the GPU: 10 000 configurations from 500 chains, one kept every 20 trajectories
ENSEMBLE = {"prior.chains": 500, "prior.spacing": 20, "prior.therm": 1000, "prior.ensemble_size": 10000}


# --------------------------------------------------------------------------------------------
# Child processes with a time limit
# --------------------------------------------------------------------------------------------


def run_child(cmd: list[str], timeout: float, log: Path, env: dict | None = None) -> dict:
    """Run ``cmd`` in its own process group, output to ``log``; kill the group after ``timeout`` s.

    Returns ``{"rc", "seconds", "timed_out", "log"}`` (rc None when killed)."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                env=env)
        try:
            rc, timed_out = proc.wait(timeout=max(1.0, timeout)), False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rc, timed_out = None, True
    return {"rc": rc, "seconds": round(time.perf_counter() - t0, 2), "timed_out": timed_out, "log": log.name}


def tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------
# Step 0: environment
# --------------------------------------------------------------------------------------------

ENV_PROBE = r"""
import json, platform, sys, importlib.metadata as md
import jax
info = {"python": platform.python_version(), "executable": sys.executable,
        "jax_devices": [str(d) for d in jax.devices()], "default_backend": jax.default_backend(),
        "device_kinds": [d.device_kind for d in jax.devices()], "versions": {}}
for name in ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda13-pjrt", "jax-cuda12-plugin", "jax-cuda12-pjrt",
             "flax", "optax", "numpyro", "numpy", "scipy", "arviz", "xarray", "xarray-einstats", "h5netcdf",
             "hydra-core", "omegaconf", "antlr4-python3-runtime", "orbax-checkpoint"):
    try:
        info["versions"][name] = md.version(name)
    except md.PackageNotFoundError:
        pass
import trivflow
info["trivflow_file"] = trivflow.__file__
print(json.dumps(info))
"""


def environment(out: Path, timeout: float) -> dict:
    log = out / "logs" / "00_environment.log"
    res = run_child([PY, "-c", ENV_PROBE], timeout, log)
    info = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "hostname": os.uname().nodename, "cpu_count": os.cpu_count(), "python_executable": PY,
            "PYTHONPATH": os.environ.get("PYTHONPATH"), "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS"),
            "XLA_FLAGS": os.environ.get("XLA_FLAGS"), "probe": res}
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("{")]
    if res["rc"] == 0 and lines:
        info.update(json.loads(lines[-1]))
    if shutil.which("nvidia-smi"):
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        info["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()
    try:
        info["cpu_model"] = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                                 if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    write_json(out / "00_environment.json", info)
    print(json.dumps({k: info.get(k) for k in ("jax_devices", "default_backend", "versions", "nvidia_smi")},
                     indent=1), flush=True)
    return info


# --------------------------------------------------------------------------------------------
# Step a: benchmarks/run_all with GPU sizes
# --------------------------------------------------------------------------------------------

#: timing protocol of every part (run_all's COMMON): 2 interleaved repeats of ≈ 0.3 s runs
COMMON = ["--repeats", "2", "--target-seconds", "0.3", "--therm", "5"]


def bench_parts(tiny: bool) -> list[tuple[str, str, list[str], float]]:
    """(part, script, arguments, time limit in s), most valuable first. GPU: L = 16 … 256 at 1024
    chains (float64 HMC and FHMC, + training at L = 40); HMC float64/float32 at 1024 and 4096 chains;
    HMC, FA-HMC and FHMC towers of depth 1, 2 at L = 16, 32, 64 (benchmarks/multilevel_cost.py); FHMC
    float64 and mixed (float32 conditioners) at 64 … 4096 chains; k = 5, 7; L = 256 × 4096."""
    if tiny:
        t = ["--repeats", "1", "--target-seconds", "0.05", "--therm", "2"]
        return [("vs_L", "fhmc.py", ["--L", "8", "--k", "3", "--chains", "2", "--variants", "exact",
                                     "--train-steps", "3", "--train-L", "8", "--train-batch", "16", *t], 240),
                ("hmc_dtypes", "hmc.py", ["--L", "8", "--chains", "2", "--dtypes", "float64", "float32",
                                          "--backends", "jax", *t], 120),
                ("multilevel", "multilevel_cost.py", ["--L", "4", "--depths", "1", "2", "--chains", "2", *t], 240),
                ("vs_k", "fhmc.py", ["--L", "8", "--k", "5", "--chains", "2", "--variants", "mixed",
                                     "--train-steps", "0", *t], 240)]
    return [
        ("vs_L", "fhmc.py", ["--L", "16", "32", "64", "128", "256", "--k", "3", "--chains", "1024",
                             "--variants", "exact", "--train-steps", "200", "--train-L", "40", "--train-batch", "500",
                             *COMMON], 90),
        ("hmc_dtypes", "hmc.py", ["--L", "64", "256", "--chains", "1024", "4096", "--dtypes", "float64", "float32",
                                  "--backends", "jax", *COMMON], 40),
        # issue 15's GPU extrapolation: HMC, FA-HMC and FHMC towers of depth 1, 2 per trajectory, side by side
        # (experiments/multilevel/analyze.py --bench a_bench_multilevel.json combines them with the CPU τ's)
        ("multilevel", "multilevel_cost.py", ["--L", "16", "32", "64", "--depths", "1", "2", "--chains", "1024",
                                              *COMMON], 60),
        ("vs_chains", "fhmc.py", ["--L", "64", "--k", "3", "--chains", "64", "256", "4096", "--variants", "exact",
                                  "mixed", "--train-steps", "0", *COMMON], 60),
        ("vs_k", "fhmc.py", ["--L", "64", "--k", "5", "7", "--chains", "1024", "--variants", "exact", "mixed",
                             "--train-steps", "0", *COMMON], 50),
        ("L256_4096", "fhmc.py", ["--L", "256", "--k", "3", "--chains", "4096", "--variants", "exact", "mixed",
                                  "--train-steps", "0", *COMMON], 50),
    ]


def bench(out: Path, parts: list, deadline: float, steps: list) -> dict:
    """Each part is its own run_all (its JSON lands when it ends; a failed part loses only itself)."""
    reports = {}
    for name, script, args, limit in parts:
        left = deadline - time.perf_counter()
        if left < 5:
            steps.append({"step": f"a_bench_{name}", "status": "skipped", "reason": "step (a) time used up"})
            continue
        spec = out / "logs" / f"a_bench_{name}.parts.json"
        write_json(spec, [[name, script, args]])
        target = out / f"a_bench_{name}.json"
        res = run_child([PY, "benchmarks/run_all", "--parts", str(spec), "--device-memory", "--out", str(target)],
                        min(limit, left), out / "logs" / f"a_bench_{name}.log")
        ok = res["rc"] == 0 and target.is_file()
        steps.append({"step": f"a_bench_{name}", "status": "ok" if ok else "failed", **res,
                      **({} if ok else {"log_tail": tail(out / "logs" / res["log"])})})
        print(f"[gpu] a_bench_{name}: {'ok' if ok else 'FAILED'} in {res['seconds']:.0f} s", flush=True)
        if ok:
            reports[name] = json.loads(target.read_text())
    return reports


# --------------------------------------------------------------------------------------------
# Cost model and sizing
# --------------------------------------------------------------------------------------------


class CostModel:
    """Seconds per trajectory of all C chains at extent L with n leapfrog steps, per sampler kind.

    From (a): the 1024-chain rates vs L (log-log interpolation in V), per leapfrog step; fewer
    chains are taken to cost as much as 1024 (an upper bound: the GPU is latency-bound there),
    more chains proportionally more. Without (a): ASSUMED latency + rate. A correction factor per
    kind (measured / predicted sampling time of the jobs already run) scales later predictions."""

    def __init__(self, reports: dict):
        self.points = {"hmc": {}, "fhmc": {}}  # kind -> {V: seconds per trajectory step at 1024 chains}
        self.train_rate = None
        for rep in reports.values():
            for r in rep.get("throughput", []):
                if r["chains"] == 1024 and (r["sampler"] == "hmc" or r["k"] == 3) and r["ns_per_site_step"]:
                    self.points[r["sampler"]].setdefault(r["L"] ** 2, r["ns_per_site_step"] * 1e-9 * r["L"] ** 2 * 1024)
            for part in rep.get("parts", {}).values():
                for t in part["result"].get("training", []):
                    if t["dtype"] == "float64":
                        self.train_rate = (t["steps_per_second"], t["L"])
        self.correction = {"hmc": [], "fhmc": []}
        # one job's fixed cost: start and imports (≈ 10 s) + compiling its chunks (≈ 3 compilations);
        # replaced by the measured one once a job of that kind has run
        compiles = {"hmc": [], "fhmc": []}
        for rep in reports.values():
            for r in rep.get("throughput", []):
                compiles[r["sampler"]].append(r["compile_seconds"] or 0.0)
        self.overhead = {k: (10.0 + 3 * max(v) if v else JOB_OVERHEAD[k]) for k, v in compiles.items()}

    def step_seconds(self, kind: str, L: int, C: int) -> float:
        """Seconds of one leapfrog step (trajectory share incl. measurement) of C chains at L."""
        V = L * L
        pts = sorted(self.points[kind].items())
        if len(pts) >= 2:
            lo = max([p for p in pts if p[0] <= V], default=pts[0], key=lambda p: p[0])
            hi = min([p for p in pts if p[0] >= V], default=pts[-1], key=lambda p: p[0])
            if lo == hi:  # outside the measured range: constant per site beyond it, the latency floor below
                t = lo[1] * (V / lo[0] if V > lo[0] else 1.0)
            else:
                w = math.log(V / lo[0]) / math.log(hi[0] / lo[0])
                t = math.exp((1 - w) * math.log(lo[1]) + w * math.log(hi[1]))
            t *= max(1.0, C / 1024)
            source = "measured"
        else:
            lat, rate = ASSUMED[kind]
            t, source = lat + C * V * rate, "assumed"
        corr = self.correction[kind]
        factor = sorted(corr)[len(corr) // 2] if corr else 1.0
        self.last_source = source
        return t * factor

    def traj_seconds(self, row: str, L: int, C: int, n_steps: int) -> float:
        kind = "hmc" if row == "hmc" else "fhmc"
        layers = 2 if row.endswith("_x2") else 1  # g₂ ∘ g₁: two couplings, twice the flow's cost
        t = self.step_seconds(kind, L, C) * n_steps
        return t * layers if kind == "fhmc" else t

    def train_seconds(self, L: int, steps: int = 1000) -> float:
        rate, L0 = self.train_rate or (TRAIN_STEPS_PER_S_ASSUMED, 40)
        return steps / rate * max(1.0, (L / L0) ** 2)


def size_row(model: CostModel, row: str, L: int, budget: float, tau: float) -> dict:
    """Chains and trajectories for one row: the cheapest (C, num_traj) reaching δτ/τ ≤ 5 % within
    ``budget`` s, else the most precise within it; ``None`` sizes if not even 30 τ per chain and
    15 % fit (``seconds_minimal``: the least time for that).

    δτ/τ = √((4W + 2)/(C·num_traj)), W = 20 τ; num_therm = 5 τ; each chain ≥ 30 τ; the fixed cost
    is the job overhead + the prior ensembles (HMC at L/2, L/4) + training (1000 steps, twice for x2)."""
    n_steps = NUM_STEPS[L]
    kind = "hmc" if row == "hmc" else "fhmc"
    fixed = model.overhead[kind]
    if "interp4" in row:
        levels = [L // 2, L // 4] if row.endswith("_x2") else [L // 2]
        per_chain = ENSEMBLE["prior.ensemble_size"] // ENSEMBLE["prior.chains"]
        seq = ENSEMBLE["prior.therm"] + per_chain * ENSEMBLE["prior.spacing"]
        fixed += sum(seq * model.traj_seconds("hmc", lv, ENSEMBLE["prior.chains"], 10) + 10 for lv in levels)
    if kind == "fhmc":
        fixed += model.train_seconds(L) + (model.train_seconds(L // 2) if row.endswith("_x2") else 0.0)
    W = W_OVER_TAU * tau
    n_target = (4 * W + 2) / TARGET_REL**2
    therm = math.ceil(THERM_TAUS * tau)
    options = []
    for C in CHAIN_CHOICES:
        t_traj = model.traj_seconds(row, L, C, n_steps)
        n_full = max(math.ceil(n_target / C), math.ceil(MIN_CHAIN_TAUS * tau))
        afford = int((budget - fixed) / t_traj) - therm
        n = min(n_full, afford)
        if n < MIN_CHAIN_TAUS * tau or (4 * W + 2) / (C * n) > MAX_REL**2:
            continue
        options.append({"chains": C, "num_traj": n, "num_therm": therm, "traj_seconds": t_traj,
                        "predicted_seconds": fixed + (therm + n) * t_traj,
                        "predicted_rel_error": math.sqrt((4 * W + 2) / (C * n)),
                        "seconds_for_target": fixed + (therm + n_full) * t_traj})
    need = min(fixed + (therm + max(math.ceil(n_target / C), math.ceil(MIN_CHAIN_TAUS * tau)))
               * model.traj_seconds(row, L, C, n_steps) for C in CHAIN_CHOICES)
    n_floor = (4 * W + 2) / MAX_REL**2
    minimal = min(fixed + (therm + max(math.ceil(n_floor / C), math.ceil(MIN_CHAIN_TAUS * tau)))
                  * model.traj_seconds(row, L, C, n_steps) for C in CHAIN_CHOICES)
    plan = {"row": row, "L": L, "tau_expected": tau, "W_expected": W, "budget_seconds": budget,
            "fixed_seconds": fixed, "seconds_for_5pc": need, "seconds_minimal": minimal,
            "rate_source": model.last_source}
    if not options:
        return {**plan, "chains": None}
    hit = [o for o in options if o["predicted_rel_error"] <= TARGET_REL * 1.0001]
    if hit:
        best = min(hit, key=lambda o: o["predicted_seconds"])
    else:
        best = min(options, key=lambda o: o["predicted_rel_error"])
    return {**plan, **best}


def meas_every_for(tau: float) -> int:
    """Measure every m ≈ τ/20 trajectories: τ_int is still resolved (20 measurements per τ) and the
    stored chains stay small (512 chains × 40 000 trajectories × 25 observables would be 4 GB)."""
    return max(1, int(tau // 20))


def row_overrides(plan: dict, tiny: bool, flow: bool = True) -> list[str]:
    """trivflow.run overrides of one row's size (GPU: from ``plan``; tiny: a few trajectories);
    ``flow=False`` (plain HMC): no ``prior.*``/``train.*``, which trivflow would refuse as unread."""
    if tiny:
        return ["sampler.num_chains=2", "sampler.num_traj=20", "sampler.num_therm=0", "sampler.chunk_size=20",
                *(["prior.ensemble_size=8", "prior.chains=2", "prior.spacing=2", "prior.therm=0",
                   "train.steps=3", "train.batch_size=8", "train.log_every=1"] if flow else [])]
    m = meas_every_for(plan["tau_expected"])
    n = max(m, plan["num_traj"] // m * m)
    chunk = max(m, min(n, 20000) // m * m)  # ≥ 2 host visits on long runs (progress, state for resume)
    return [f"sampler.num_chains={plan['chains']}", f"sampler.num_traj={n}", f"sampler.num_therm={plan['num_therm']}",
            f"sampler.meas_every={m}", f"sampler.chunk_size={chunk}",
            *([f"{k}={v}" for k, v in ENSEMBLE.items()] if flow else [])]


# --------------------------------------------------------------------------------------------
# Steps b and c: the tables
# --------------------------------------------------------------------------------------------


def find_ensemble(run_dir: Path, L: int) -> Path | None:
    hits = sorted((run_dir / "priors").glob(f"phi4_L{L}_*.npz")) if run_dir else []
    return hits[0] if hits else None


def table(out: Path, L: int, model: CostModel, tiny: bool, deadline: float, steps: list, work: Path,
          ensembles: dict, reserve: float) -> dict:
    """The rows at extent L in ORDER[L]; each row's share of the time left is proportional to
    the time it needs for 5 %; a row that cannot reach 30 τ per chain in its share is skipped."""
    rows = ORDER[L]
    done = {}
    for i, row in enumerate(rows):
        tau = PAPER[L][row][0]
        name = f"{'b' if L == 40 else 'c'}_L{L}_{row.replace('@', '_')}"
        left = deadline - time.perf_counter() - reserve
        # each row's fixed cost (job, ensembles, training) is set aside; the sampling time left is
        # shared in proportion to what each remaining row needs for 5 %, or each gets its 5 % if all fit
        full = {r: size_row(model, r, L, 1e9, PAPER[L][r][0]) for r in rows[i:]}
        fixed = sum(f["fixed_seconds"] for f in full.values())
        var = {r: f["seconds_for_5pc"] - f["fixed_seconds"] for r, f in full.items()}
        spare = max(0.0, left - fixed)
        share = full[row]["fixed_seconds"] + min(var[row], spare * var[row] / sum(var.values())) \
            if spare < sum(var.values()) else full[row]["seconds_for_5pc"]
        plan = size_row(model, row, L, share, tau)
        if plan["chains"] is None and not tiny and plan["seconds_minimal"] <= left:
            # too little in its share for 30 τ per chain, but in order of value it may take its minimum
            plan = size_row(model, row, L, plan["seconds_minimal"] * 1.001, tau)
        if tiny:
            plan = {**plan, "tiny": True}
        if (plan["chains"] is None and not tiny) or left < 5:
            steps.append({"step": name, "status": "not run", "plan": plan,
                          "reason": f"{left:.0f} s left ({share:.0f} s share); "
                                    f"30 τ per chain and 15 % need {plan['seconds_minimal']:.0f} s; "
                                    f"5 % would need {plan['seconds_for_5pc']:.0f} s"})
            print(f"[gpu] {name}: not run (needs {plan['seconds_for_5pc']:.0f} s for 5 %)", flush=True)
            continue
        run_dir = work / name
        if run_dir.exists():
            shutil.rmtree(run_dir)
        # conf/experiment/coarse_interp.yaml (whose README gives the L = 40 and 80 commands), one row per job
        cmd = [PY, "-m", "trivflow.run", "experiment=coarse_interp", "baselines=[]", f"lattice=L{L}", *ROW_ARGS[row],
               f"sampler.num_steps={NUM_STEPS[L]}", *row_overrides(plan, tiny, flow=row != "hmc"),
               "progress=false", "quiet=true", "plots=false", f"hydra.run.dir={run_dir}"]
        # reuse ensembles made by earlier rows (same theory; trivflow refuses another theory's file)
        if "interp4" in row and ensembles.get(L // 2):
            cmd.append(f"prior.ensemble={ensembles[L // 2]}")
        if row.endswith("_x2") and ensembles.get(L // 4):
            cmd.append(f"prior.ensemble_coarser={ensembles[L // 4]}")
        limit = left if tiny else min(left, max(plan["predicted_seconds"] * 1.6 + 30, share))
        print(f"[gpu] {name}: {' '.join(cmd[4:])} (predicted {plan.get('predicted_seconds', 0):.0f} s, "
              f"limit {limit:.0f} s)", flush=True)
        res = run_child(cmd, limit, out / "logs" / f"{name}.log")
        results = run_dir / "results.json"
        entry = {"step": name, "plan": plan, "command": " ".join(["python", *cmd[1:]]), **res}
        if res["rc"] == 0 and results.is_file():
            r = json.loads(results.read_text())
            run = r["runs"][r["config"]["sampler"]["name"]]
            tau_m, dtau, W = run["tau_int"]["M"]
            paper, dpaper = PAPER[L][row]
            record = {"row": row, "L": L, "beta": r["lattice"]["beta"], "num_steps": NUM_STEPS[L],
                      "num_chains": run["num_chains"], "num_traj": run["num_traj"], "num_therm": run["num_therm"],
                      "meas_every": run["meas_every"], "tau_int_M": [tau_m, dtau], "window": W,
                      "rel_error": dtau / tau_m if tau_m else None, "paper": [paper, dpaper],
                      "pull": (tau_m - paper) / math.hypot(dtau, dpaper), "acceptance": run["acceptance"],
                      "exp_minus_dH": run["exp_minus_dH"], "observables": run["observables"],
                      "traj_per_second": run["traj_per_second"], "sampling_seconds": run["seconds"],
                      "compile_seconds": run["compile_seconds"], "therm_seconds": run["therm_seconds"],
                      "job_seconds": res["seconds"], "training": r.get("training"), "plan": plan,
                      "command": entry["command"], "results_json": r}
            write_json(out / f"{name}.json", record)
            entry["status"] = "ok"
            done[row] = record
            for lv in (L // 2, L // 4):
                ens = find_ensemble(run_dir, lv)
                if ens and lv not in ensembles:
                    ensembles[lv] = ens
            if not tiny:
                # measured / predicted sampling time corrects the later predictions of this kind
                t_pred = plan["traj_seconds"] * (plan["num_traj"] + plan["num_therm"])
                t_meas = run["seconds"] + run["therm_seconds"]
                model.correction["hmc" if row == "hmc" else "fhmc"].append(t_meas / t_pred)
                train = r.get("training") or {}
                t_train = (train.get("seconds") or 0.0) + ((train.get("coarse") or {}).get("seconds") or 0.0)
                model.overhead["hmc" if row == "hmc" else "fhmc"] = max(5.0, res["seconds"] - t_meas - t_train)
            print(f"[gpu] {name}: τ_int(M) = {tau_m:.1f}({dtau:.1f}) (paper {paper}({dpaper})), "
                  f"{res['seconds']:.0f} s", flush=True)
        else:
            entry["status"] = "timed out" if res["timed_out"] else "failed"
            entry["log_tail"] = tail(out / "logs" / res["log"])
            print(f"[gpu] {name}: {entry['status'].upper()} after {res['seconds']:.0f} s", flush=True)
        steps.append(entry)
    return done


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


def bench_headline(reports: dict) -> list[dict]:
    """HMC and FHMC (k = 3, exact) at L = 64 and 256 with ≥ 1024 chains, float64."""
    rows = []
    for part, rep in reports.items():
        for r in rep.get("throughput", []):
            if r["L"] in (64, 256) and r["chains"] >= 1024 and r["sampler"] in ("hmc", "fhmc") \
                    and r.get("k") in (None, 3):
                rows.append({"part": part, **{k: r[k] for k in ("sampler", "L", "k", "chains", "traj_per_second",
                                                                "ns_per_site_step", "compile_seconds")}})
    return rows


def summary(out: Path, env: dict, reports: dict, tables: dict, steps: list, t_total: float, tiny: bool) -> None:
    device = ", ".join(env.get("jax_devices", [])) or "unknown"
    head = bench_headline(reports)
    not_run = [s for s in steps if s["status"] != "ok"]
    data = {"device": device, "nvidia_smi": env.get("nvidia_smi"), "versions": env.get("versions"), "tiny": tiny,
            "total_seconds": t_total, "bench_headline": head,
            "tables": {str(L): rows for L, rows in tables.items()},
            "not_run_or_failed": [{k: s.get(k) for k in ("step", "status", "reason", "seconds")} |
                                  ({"seconds_for_5pc": s["plan"]["seconds_for_5pc"]} if s.get("plan") else {})
                                  for s in not_run]}
    write_json(out / "summary.json", data)
    md = [f"GPU run of issue 17 on **{device}** ({env.get('nvidia_smi') or 'no nvidia-smi'}), jax "
          f"{(env.get('versions') or {}).get('jax')}; total {t_total:.0f} s"
          f"{' (--tiny: CPU smoke test)' if tiny else ''}.", ""]
    for L, rows in tables.items():
        md += [f"τ_int(M) at L = {L} ({NUM_STEPS[L]} leapfrog steps), on {device}:", "",
               "| row | chains × traj | τ_int(M) | δτ/τ | paper | pull | acceptance | traj/s | job s |",
               "|---|---|---|---|---|---|---|---|---|"]
        for row in ORDER[L]:
            r = rows.get(row)
            if r is None:
                md.append(f"| {row} | not run | | | {PAPER[L][row][0]}({PAPER[L][row][1]}) | | | | |")
                continue
            md.append(f"| {row} | {r['num_chains']} × {r['num_traj']} | "
                      f"{r['tau_int_M'][0]:.1f}({r['tau_int_M'][1]:.1f}) "
                      f"| {r['rel_error']:.1%} | {r['paper'][0]}({r['paper'][1]}) | {r['pull']:+.1f} | "
                      f"{r['acceptance']:.3f} | {r['traj_per_second']:.4g} | {r['job_seconds']:.0f} |")
        md.append("")
    if head:
        md += [f"Speed on {device} (float64, k = 3):", "",
               "| part | sampler | L | chains | chain-traj/s | ns/site/step |",
               "|---|---|---|---|---|---|"]
        md += [f"| {h['part']} | {h['sampler']} | {h['L']} | {h['chains']} | {h['traj_per_second']:.4g} | "
               f"{h['ns_per_site_step']:.3g} |" for h in head]
        md.append("")
    if not_run:
        md += ["Not run or failed:", ""]
        for s in data["not_run_or_failed"]:
            need = f"; 5 % would need ≈ {s['seconds_for_5pc']:.0f} s" if "seconds_for_5pc" in s else ""
            md.append(f"* {s['step']}: {s['status']}{' — ' + s['reason'] if s.get('reason') else ''}{need}")
    (out / "summary.md").write_text("\n".join(md) + "\n")
    print("\n".join(md), flush=True)


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    tmp.replace(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("outdir", type=Path)
    p.add_argument("--tiny", action="store_true", help="the same steps at tiny sizes (CPU smoke test)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for the whole run (default 530: one 9-minute command; --tiny 1800)")
    p.add_argument("--only", nargs="+", choices=["bench", "l40", "l80"], default=["bench", "l40", "l80"],
                   help="run only these steps (e.g. --only bench on a CPU for the reference figures)")
    args = p.parse_args(argv)
    budget = args.budget or (1800.0 if args.tiny else 530.0)
    t0 = time.perf_counter()
    deadline = t0 + budget
    out = args.outdir.resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("TRIVFLOW_GPU_WORK", "/tmp/trivflow_gpu_runs")) / out.name
    work.mkdir(parents=True, exist_ok=True)
    steps: list[dict] = []

    def save_steps():
        write_json(out / "steps.json", {"budget_seconds": budget, "elapsed_seconds": time.perf_counter() - t0,
                                        "tiny": args.tiny, "steps": steps})

    env = environment(out, 120)
    steps.append({"step": "00_environment", "status": "ok" if env.get("jax_devices") else "failed", **env["probe"]})
    save_steps()
    reports = {}
    parts = bench_parts(args.tiny)
    core, late = parts[:2], parts[2:]  # vs_L and hmc_dtypes size the tables; the rest runs after L = 40
    only_bench = args.only == ["bench"]
    if "bench" in args.only:
        reports.update(bench(out, core, deadline if only_bench or args.tiny else t0 + 130.0, steps))
        save_steps()
    model = CostModel(reports)
    write_json(out / "cost_model.json", {"step_seconds_1024_chains": model.points, "train_rate": model.train_rate,
                                         "overhead": model.overhead, "assumed": ASSUMED})
    tables, ensembles = {}, {}
    if "l40" in args.only:
        # L = 40 may use all but 60 s (the later benchmark parts, L = 80, the summary get what it leaves)
        tables[40] = table(out, 40, model, args.tiny, deadline, steps, work, ensembles, 0.0 if args.tiny else 60.0)
        save_steps()
    if "bench" in args.only:
        reports.update(bench(out, late, deadline if only_bench or args.tiny else
                             min(deadline - 30.0, time.perf_counter() + 100.0), steps))
        save_steps()
    if "l80" in args.only:
        tables[80] = table(out, 80, model, args.tiny, deadline, steps, work, ensembles, 0.0 if args.tiny else 10.0)
        save_steps()
    summary(out, env, reports, tables, steps, time.perf_counter() - t0, args.tiny)
    save_steps()
    return 0


if __name__ == "__main__":
    sys.exit(main())
