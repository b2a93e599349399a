#!/usr/bin/env bash
# Topology freezing in 2D U(1) at fixed physical volume beta = L^2/32 (issue 16).
# HMC at every point (what this record holds), then the table: bash experiments/u1_topology/commands.sh
# FHMC=1 also runs FHMC with a gauge flow trained at each point and HMC beside it (experiment=u1_topology;
# hours on a CPU: not in this record yet).
set -euo pipefail
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-multirun/u1_topology}
HERE=experiments/u1_topology
for point in "8 2.0" "12 4.5" "16 8.0" "20 12.5" "24 18.0"; do
  set -- $point
  d=$RUNS/hmc_L$1
  nice -n 10 $PY -m trivflow.run experiment=u1_topology sampler=hmc 'baselines=[]' lattice.L=$1 lattice.beta=$2 \
    sampler.num_chains=16 sampler.num_traj=4000 sampler.num_therm=200 sampler.num_steps=20 \
    progress=false quiet=true hydra.run.dir=$d
  mkdir -p $HERE/runs/hmc_L$1/.hydra
  cp $d/results.json $HERE/runs/hmc_L$1/; cp $d/.hydra/overrides.yaml $HERE/runs/hmc_L$1/.hydra/
  if [ "${FHMC:-0}" = 1 ]; then
    d=$RUNS/fhmc_L$1
    nice -n 10 $PY -m trivflow.run experiment=u1_topology lattice.L=$1 lattice.beta=$2 \
      progress=false quiet=true hydra.run.dir=$d
    mkdir -p $HERE/runs/fhmc_L$1/.hydra
    cp $d/results.json $HERE/runs/fhmc_L$1/; cp $d/.hydra/overrides.yaml $HERE/runs/fhmc_L$1/.hydra/
  fi
done
$PY $HERE/analyze.py $HERE/runs > $HERE/table.md
