#!/usr/bin/env bash
# tau_int vs the trajectory length tau_MD for HMC and FHMC at one lattice point (issue 14):
# L = 12, beta = 0.616 (xi = 3 on the line of constant physics), lambda = 0.5; the step size stays
# eps = 0.1 (num_steps = 10 tau_MD), so the acceptance stays put and only tau_MD changes.
# One job per tau_MD (conf/experiment/tau_md.yaml: sampler=fhmc with the paper's k = 3 flow,
# Gaussian prior, trained in the job, and baselines=[hmc], 64 chains). Run from the repository root:
#   bash experiments/tau_md/commands.sh
# Run directories go to $RUNS (default multirun/tau_md, not committed); each job's results.json
# and .hydra/overrides.yaml are copied to experiments/tau_md/runs/tmd<tau_MD>/.
set -euo pipefail
RUNS=${RUNS:-multirun/tau_md}
PY=${PY:-.venv/bin/python}
NUM_TRAJ=${NUM_TRAJ:-8000}
points=${POINTS:-"0.5:5 1:10 2:20 3:30"}  # tau_MD:num_steps
for point in $points; do
  IFS=: read -r TMD STEPS <<<"$point"
  nice -n 10 $PY -m trivflow.run experiment=tau_md sampler.num_traj=$NUM_TRAJ \
    sampler.traj_length=$TMD sampler.num_steps=$STEPS progress=false quiet=true hydra.run.dir=$RUNS/tmd$TMD
  mkdir -p experiments/tau_md/runs/tmd$TMD/.hydra
  cp $RUNS/tmd$TMD/results.json experiments/tau_md/runs/tmd$TMD/
  cp $RUNS/tmd$TMD/.hydra/overrides.yaml experiments/tau_md/runs/tmd$TMD/.hydra/
done
$PY -m trivflow.report experiments/tau_md/runs --out experiments/tau_md/report
