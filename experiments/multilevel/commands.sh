#!/usr/bin/env bash
# Issue 15 §3: where does a flow win? Run from the repository root:
#   bash experiments/multilevel/commands.sh
# Run directories (chains, flows, ensembles, plots) go to $RUNS (default multirun/multilevel, not
# committed); results.json and .hydra/overrides.yaml of each are copied to experiments/multilevel/runs/<job>/.
# conf/experiment/multilevel.yaml: sampler=fhmc prior=multilevel, baselines [hmc, fhmc@gaussian,
# fhmc@interp4], 64 chains, 1000 thermalisation trajectories that also adapt each sampler's step
# size to acceptance 0.8 (dual averaging, 10 leapfrog steps kept). β(2) is not in the table: the
# towers that reach L = 2 use prior.betas=[…, 0.3] (the tests' value; a choice, not a tuned β).
# FA-HMC (sampler.fourier_mass = m² = β (4/L)² = β/ξ², the propagator's mass on the line) runs as
# its own job with the same step-size adaptation.
set -euo pipefail
RUNS=${RUNS:-multirun/multilevel}
PY=${PY:-.venv/bin/python}
keep() {  # keep <job>: copy the small, reproducible outputs into the record
  mkdir -p experiments/multilevel/runs/$1/.hydra
  cp $RUNS/$1/results.json experiments/multilevel/runs/$1/
  cp $RUNS/$1/.hydra/overrides.yaml experiments/multilevel/runs/$1/.hydra/
}
run() {  # run <job> <overrides…>
  local job=$1; shift
  nice -n 10 $PY -m trivflow.run "$@" progress=false quiet=true hydra.run.dir=$RUNS/$job
  keep $job
}
ML="experiment=multilevel"
# HMC and FA-HMC: plain config (experiment=multilevel would name a prior that no HMC-only run reads)
HMC="sampler=hmc sampler.adapt_step_size=true sampler.target_accept=0.8 sampler.num_chains=64 sampler.num_therm=1000"
if [ "${STAGE:-all}" = all ]; then  # STAGE=L32: only the L = 32 jobs (and the report)
  run L8 $ML lattice=L8 prior.levels=2 'prior.betas=[null,0.3]' sampler.num_traj=6000
  run L16 $ML lattice=L16 prior.levels=3 'prior.betas=[null,null,0.3]' \
    'baselines=[hmc,fhmc@gaussian,fhmc@interp4,fhmc@interp4_x2]' sampler.num_traj=8000
  run fa_L8 $HMC lattice=L8 sampler.fourier_mass=0.144 sampler.num_traj=6000
  run fa_L16 $HMC lattice=L16 sampler.fourier_mass=0.0396 sampler.num_traj=8000
fi
# L = 32 (lattice=L32: β = 0.6609, tuned to ξ = 8 by experiments/tune_beta), one sampler per job, each
# long enough for δτ/τ ≲ 8 % where the chains mix; the towers of depth 3, 4 (which did not mix in 6000
# trajectories at β = 0.66) get 12000, what the time allowed; two queues side by side when QUEUE is
# unset (QUEUE=a or b runs one).
L32="lattice=L32"
F32="$L32 sampler.num_chains=64 sampler.num_traj=40000 sampler.num_therm=800"
queue_a() {
  run hmc_L32 $HMC $L32 sampler.num_traj=100000
  run fa_L32 $HMC $L32 sampler.fourier_mass=0.0103 sampler.num_traj=40000
  run ml1_L32 $ML $F32 prior.levels=1 'baselines=[]'
  run ml3_L32 $ML $F32 prior.levels=3 'baselines=[]' sampler.num_traj=12000
}
queue_b() {
  run gauss_L32 sampler=fhmc prior=gaussian sampler.adapt_step_size=true sampler.target_accept=0.8 $F32
  run ml2_L32 $ML $F32 prior.levels=2 'baselines=[]'
  run ml4_L32 $ML $F32 prior.levels=4 'prior.betas=[null,null,null,0.3]' 'baselines=[]' \
    sampler.num_traj=12000  # the deepest tower (coarsest 2²)
}
case "${QUEUE:-both}" in
  a) queue_a ;;
  b) queue_b ;;
  *) queue_a & queue_b & wait ;;
esac
$PY -m trivflow.report experiments/multilevel/runs --out experiments/multilevel/report
$PY experiments/multilevel/analyze.py
