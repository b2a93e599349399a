#!/usr/bin/env bash
# Independence MH at L = 16 with the flow trained in the L = 16 job of experiments/scaling
# (loaded from its run directory, no retraining), 64 chains × 17 500 steps as the FHMC run there.
set -euo pipefail
PY=${PY:-.venv/bin/python}
d=${RUNS:-multirun/mh_vs_fhmc}/L16_imh
nice -n 10 $PY -m trivflow.run experiment=scaling lattice=L16 sampler=imh 'baselines=[]' \
  flow.checkpoint=multirun/scaling/L16 sampler.num_chains=64 sampler.num_traj=17500 sampler.num_therm=0 \
  sampler.batch_size=500 progress=false quiet=true hydra.run.dir=$d
mkdir -p experiments/mh_vs_fhmc/runs/L16_imh/.hydra
cp $d/results.json experiments/mh_vs_fhmc/runs/L16_imh/; cp $d/.hydra/overrides.yaml experiments/mh_vs_fhmc/runs/L16_imh/.hydra/
