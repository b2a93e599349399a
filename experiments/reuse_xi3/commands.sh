#!/usr/bin/env bash
# Study 3 (issue 6): reuse of a flow trained at L = 4ξ = 12 at 2L = 24 and 4L = 48 (ξ = 3).
#   bash experiments/reuse_xi3/commands.sh
set -euo pipefail
RUNS=${RUNS:-multirun/reuse_xi3}
PY=${PY:-.venv/bin/python}
nice -n 10 $PY -m trivflow.run experiment=reuse_xi3 progress=false quiet=true hydra.run.dir=$RUNS/L12
mkdir -p experiments/reuse_xi3/run/.hydra
cp $RUNS/L12/results.json experiments/reuse_xi3/run/
cp $RUNS/L12/.hydra/overrides.yaml experiments/reuse_xi3/run/.hydra/
# Control for the acceptance drop at L = 48: the same flow (same seed and training) with 13
# leapfrog steps (ε = 1/13) at L = 12 and 48.
nice -n 10 $PY -m trivflow.run experiment=reuse_xi3 sampler.num_steps=13 'volumes=[48]' progress=false quiet=true \
  hydra.run.dir=$RUNS/L12_n13
mkdir -p experiments/reuse_xi3/run_n13/.hydra
cp $RUNS/L12_n13/results.json experiments/reuse_xi3/run_n13/
cp $RUNS/L12_n13/.hydra/overrides.yaml experiments/reuse_xi3/run_n13/.hydra/
