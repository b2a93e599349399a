#!/usr/bin/env bash
# Study 1 (issue 6): scaling along ξ = L/4. Run from the repository root:
#   bash experiments/scaling/commands.sh
# Run directories (with chains.nc, plots) go to $RUNS (default multirun/scaling, not committed);
# results.json and .hydra/overrides.yaml of each are copied to experiments/scaling/runs/L<L>/.
# Per L (POINTS entries L:num_traj:num_therm[:extra override]): num_traj ≈ 300 τ_FHMC per chain
# (τ_FHMC ≈ 0.75·78·(L/16)², the brief's a-priori guess, not a fit; 240 at L = 20), num_therm
# ≈ 20 τ_HMC; 64 chains. L = 16 and 20 ran without the imh baseline (baselines=[hmc]) to fit the
# compute budget: independence MH at L = 12 already cost as much as FHMC.
set -euo pipefail
RUNS=${RUNS:-multirun/scaling}
PY=${PY:-.venv/bin/python}
keep() {  # keep <run dir> <record dir>: copy the small, reproducible outputs into the record
  mkdir -p "$2/.hydra"; cp "$1/results.json" "$2/"; cp "$1/.hydra/overrides.yaml" "$2/.hydra/"
}
run() {  # run L num_traj num_therm [extra override]
  nice -n 10 $PY -m trivflow.run experiment=scaling lattice=L$1 sampler.num_traj=$2 sampler.num_therm=$3 ${4:-} \
    progress=false quiet=true hydra.run.dir=$RUNS/L$1
  keep $RUNS/L$1 experiments/scaling/runs/L$1
}
points=${POINTS:-"8:4500:500 10:7000:600 12:10000:900 14:13500:1200 16:17500:1600:baselines=[hmc] 20:22000:2500:baselines=[hmc]"}
for p in $points; do IFS=: read -r L NT NTH EXTRA <<<"$p"; run $L $NT $NTH $EXTRA; done
$PY -m trivflow.report experiments/scaling/runs --out experiments/scaling/report
