#!/usr/bin/env bash
# Study 2 (issue 6): kernel size k = 5, 7 and a second coupling layer (k = 3, 2 layers) on the
# line of constant physics; k = 3, 1 layer and HMC are the jobs of experiments/scaling.
#   bash experiments/kernel_size/commands.sh                                          # the 9 jobs at L = 8, 12, 16
#   POINTS="10:3400:600 14:6000:1200" FLOWS="5:1 7:1" bash experiments/kernel_size/commands.sh   # added later: L = 10, 14
# POINTS: L:num_traj:num_therm (≈ 145 τ_FHMC(k=3) per chain, 64 chains); FLOWS: k:layers.
set -euo pipefail
RUNS=${RUNS:-multirun/kernel_size}
PY=${PY:-.venv/bin/python}
points=${POINTS:-"8:2100:500 12:4800:900 16:8500:1600"}
flows=${FLOWS:-"5:1 7:1 3:2"}
for p in $points; do
  IFS=: read -r L NT NTH <<<"$p"
  for f in $flows; do
    IFS=: read -r K NL <<<"$f"
    d=$RUNS/L${L}_k${K}_n${NL}
    nice -n 10 $PY -m trivflow.run experiment=kernel_size lattice=L$L flow.kernel_size=$K flow.num_layers=$NL \
      sampler.num_traj=$NT sampler.num_therm=$NTH progress=false quiet=true hydra.run.dir=$d
    r=experiments/kernel_size/runs/L${L}_k${K}_n${NL}
    mkdir -p $r/.hydra; cp $d/results.json $r/; cp $d/.hydra/overrides.yaml $r/.hydra/
  done
done
