#!/usr/bin/env bash
# Topology freezing in 2D U(1) at fixed physical volume beta = L^2/32 (issue 16).
# HMC at every point: bash experiments/u1_topology/commands.sh (PY=/path/to/python RUNS=<scratch dir>);
# HMC_POINTS="L:beta ..." runs a subset (the L = 10 and L = 4 points were added later, with
# HMC_POINTS="10:3.125" and HMC_POINTS="4:0.5").
# HMC14=1: HMC at L = 14, beta = 6.125 with 8 x 40000 trajectories (for the fit of tau_int(Q) vs beta).
# The gauge flow needs L a multiple of 4 (its plaquette masks have period 4): at L = 10 only HMC runs;
# the flow samplers' third point is L = 4, beta = 0.5 (FLOW4=1, below).
# FHMC=1 adds the flow samplers at L = 8 and 12 (~1 h on a shared 2-core CPU):
#   fhmc_L<L>        FHMC with a gauge flow (bounded NCPs, flow=u1_equivariant defaults) trained at that point
#   imh_L<L>         independence MH with that same flow (flow.checkpoint)
#   fhmc-reuse8_L12  FHMC at L = 12 with the flow trained at L = 8 (flow.checkpoint)
#   fhmc-reuse8_L16  the same at L = 16, beta = 8
# and the table and plot: python experiments/u1_topology/analyze.py experiments/u1_topology/runs.
# HMC16LONG=1 (added later): HMC at L = 16, beta = 8 with 16 x 100000 trajectories (rate of changes of Q).
# DEPTH=1 (added later): FHMC at L = 12, beta = 4.5 with flows of 16 and 24 coupling layers.
# L16LONG=1 (added later): FHMC at L = 16, beta = 8 with the flow of fhmc_L16, 32 x 1000 trajectories.
# LONG=1 (added later, ~1 h on a shared 2-core CPU): fhmc-reuse8-long_L12, the L = 8 flow reused at
#   L = 12 for 16 x 1500 trajectories (a longer rerun of fhmc-reuse8_L12), and fhmc_L16, FHMC with a
#   flow trained at L = 16, beta = 8 (16 x 600 trajectories).
# LONG2=1 (added later, ~20 min on a shared 2-core CPU with the two long runs in parallel):
#   fhmc-reuse4-long_L12 (the L = 4 flow reused at L = 12) and fhmc-long_L12 (the L = 12 flow, in 20 steps),
#   16 x 1500 trajectories each: longer reruns of fhmc-reuse4_L12 and fhmc_L12, for a third reliable
#   point in the fits of tau_int(Q) vs beta.
# LARGE=1 (added later, after LONG=1; 38 min wall in two parallel streams on a shared 2-core CPU, load
#   5-12 from other jobs): imh_L16 with the flow of fhmc_L16, and at L = 20 and 24 a flow trained there
#   (fhmc-short25_L<L>, scratch) with FHMC (fhmc_L<L>, 16 x 200) and independence MH (imh_L<L>) with it.
set -euo pipefail
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-multirun/u1_topology}
HERE=experiments/u1_topology
keep() {  # keep() <run dir> <name>: the record of a run in runs/<name>
  mkdir -p $HERE/runs/$2/.hydra
  cp $1/results.json $HERE/runs/$2/; cp $1/.hydra/overrides.yaml $HERE/runs/$2/.hydra/
}
if [ "${HMC:-1}" = 1 ]; then
  for point in ${HMC_POINTS:-4:0.5 8:2.0 10:3.125 12:4.5 16:8.0 20:12.5 24:18.0}; do
    set -- ${point%%:*} ${point#*:}
    nice -n 10 $PY -m trivflow.run experiment=u1_topology sampler=hmc 'baselines=[]' lattice.L=$1 lattice.beta=$2 \
      sampler.num_chains=16 sampler.num_traj=4000 sampler.num_therm=200 sampler.num_steps=20 \
      progress=false quiet=true hydra.run.dir=$RUNS/hmc_L$1
    keep $RUNS/hmc_L$1 hmc_L$1
  done
fi
if [ "${FHMC:-0}" = 1 ]; then
  # L = 8, beta = 2: train (500 steps, batch 32) and FHMC, 16 x 800 trajectories of length 1 in 20 steps
  nice -n 10 $PY -m trivflow.run experiment=u1_topology 'baselines=[]' lattice.L=8 lattice.beta=2.0 \
    sampler.num_chains=16 sampler.num_traj=800 sampler.num_therm=100 sampler.num_steps=20 \
    train.steps=500 train.batch_size=32 progress=false quiet=true hydra.run.dir=$RUNS/fhmc_L8
  keep $RUNS/fhmc_L8 fhmc_L8
  nice -n 10 $PY -m trivflow.run experiment=u1_topology sampler=imh 'baselines=[]' lattice.L=8 lattice.beta=2.0 \
    sampler.num_chains=16 sampler.num_traj=4000 sampler.num_therm=200 flow.checkpoint=$RUNS/fhmc_L8 \
    progress=false quiet=true hydra.run.dir=$RUNS/imh_L8
  keep $RUNS/imh_L8 imh_L8
  # L = 12, beta = 4.5: train (500 steps, batch 32) and FHMC, 16 x 200 trajectories in 40 steps (step 1/40);
  # the flow.ncp_* values are the defaults, spelled out as when this run was made
  nice -n 10 $PY -m trivflow.run experiment=u1_topology lattice.L=12 lattice.beta=4.5 'baselines=[]' \
    sampler.num_chains=16 sampler.num_traj=200 sampler.num_therm=50 sampler.num_steps=40 \
    train.steps=500 train.batch_size=32 train.log_every=50 \
    flow.ncp_alpha_min=0.5 flow.ncp_alpha_max=2 flow.ncp_shift_max=0.5 progress=false hydra.run.dir=$RUNS/fhmc_L12
  keep $RUNS/fhmc_L12 fhmc_L12
  nice -n 10 $PY -m trivflow.run experiment=u1_topology sampler=imh 'baselines=[]' lattice.L=12 lattice.beta=4.5 \
    sampler.num_chains=16 sampler.num_traj=4000 sampler.num_therm=200 flow.checkpoint=$RUNS/fhmc_L12 \
    progress=false quiet=true hydra.run.dir=$RUNS/imh_L12
  keep $RUNS/imh_L12 imh_L12
  # the L = 8 flow reused at L = 12, beta = 4.5: FHMC, 16 x 200 trajectories in 20 steps
  nice -n 10 $PY -m trivflow.run experiment=u1_topology 'baselines=[]' lattice.L=12 lattice.beta=4.5 \
    sampler.num_chains=16 sampler.num_traj=200 sampler.num_therm=50 sampler.num_steps=20 \
    flow.checkpoint=$RUNS/fhmc_L8 progress=false quiet=true hydra.run.dir=$RUNS/fhmc-reuse8_L12
  keep $RUNS/fhmc-reuse8_L12 fhmc-reuse8_L12
  # the L = 8 flow reused at L = 16, beta = 8 (where HMC freezes): FHMC, 16 x 200 trajectories in 25 steps
  nice -n 5 $PY -m trivflow.run experiment=u1_topology 'baselines=[]' lattice.L=16 lattice.beta=8.0 \
    sampler.num_chains=16 sampler.num_traj=200 sampler.num_therm=40 sampler.num_steps=25 \
    flow.checkpoint=$RUNS/fhmc_L8 progress=false hydra.run.dir=$RUNS/fhmc-reuse8_L16
  keep $RUNS/fhmc-reuse8_L16 fhmc-reuse8_L16
fi
if [ "${HMC14:-0}" = 1 ]; then
  # L = 14, beta = 6.125 (added for the fit of tau_int(Q) vs beta): HMC, 8 chains x 40000 trajectories
  # (tau_int(Q) ~ 10^3 expected there from the fit over beta = 2 ... 4.5: 4000 would not resolve it)
  nice -n 19 $PY -m trivflow.run experiment=u1_topology sampler=hmc 'baselines=[]' lattice.L=14 lattice.beta=6.125 \
    sampler.num_chains=8 sampler.num_traj=40000 sampler.num_therm=2000 sampler.num_steps=20 \
    progress=false quiet=true hydra.run.dir=$RUNS/hmc_L14
  keep $RUNS/hmc_L14 hmc_L14
fi
if [ "${HMC16LONG:-0}" = 1 ]; then
  # (added later) L = 16, beta = 8: HMC with 16 chains x 100000 trajectories after 2000, for the rate of
  # changes of Q where HMC freezes (1 change in the 16 x 4000 of hmc_L16; the fit of the rate over
  # beta = 4.5 ... 6.125 predicts ~5e-5 per trajectory there, ~70 changes in this run)
  nice -n 15 $PY -m trivflow.run experiment=u1_topology sampler=hmc 'baselines=[]' lattice.L=16 lattice.beta=8.0 \
    sampler.num_chains=16 sampler.num_traj=100000 sampler.num_therm=2000 sampler.num_steps=20 \
    progress=false quiet=true hydra.run.dir=$RUNS/hmc-long_L16
  keep $RUNS/hmc-long_L16 hmc-long_L16
fi
if [ "${FLOW4:-0}" = 1 ]; then
  # L = 4, beta = 0.5 (the smallest L the gauge flow takes): train (500 steps, batch 32) and FHMC,
  # 16 x 800 trajectories of length 1 in 20 steps; then independence MH with that flow
  nice -n 19 $PY -m trivflow.run experiment=u1_topology 'baselines=[]' lattice.L=4 lattice.beta=0.5 \
    sampler.num_chains=16 sampler.num_traj=800 sampler.num_therm=100 sampler.num_steps=20 \
    train.steps=500 train.batch_size=32 progress=false quiet=true hydra.run.dir=$RUNS/fhmc_L4
  keep $RUNS/fhmc_L4 fhmc_L4
  nice -n 19 $PY -m trivflow.run experiment=u1_topology sampler=imh 'baselines=[]' lattice.L=4 lattice.beta=0.5 \
    sampler.num_chains=16 sampler.num_traj=4000 sampler.num_therm=200 flow.checkpoint=$RUNS/fhmc_L4 \
    progress=false quiet=true hydra.run.dir=$RUNS/imh_L4
  keep $RUNS/imh_L4 imh_L4
  # the L = 4 flow (the smallest L) reused at L = 8, beta = 2 (16 x 400) and L = 12, beta = 4.5 (16 x 200),
  # FHMC with trajectories of length 1 in 20 steps
  nice -n 19 $PY -m trivflow.run experiment=u1_topology 'baselines=[]' lattice.L=8 lattice.beta=2.0 \
    sampler.num_chains=16 sampler.num_traj=400 sampler.num_therm=50 sampler.num_steps=20 \
    flow.checkpoint=$RUNS/fhmc_L4 progress=false quiet=true hydra.run.dir=$RUNS/fhmc-reuse4_L8
  keep $RUNS/fhmc-reuse4_L8 fhmc-reuse4_L8
  nice -n 19 $PY -m trivflow.run experiment=u1_topology 'baselines=[]' lattice.L=12 lattice.beta=4.5 \
    sampler.num_chains=16 sampler.num_traj=200 sampler.num_therm=50 sampler.num_steps=20 \
    flow.checkpoint=$RUNS/fhmc_L4 progress=false quiet=true hydra.run.dir=$RUNS/fhmc-reuse4_L12
  keep $RUNS/fhmc-reuse4_L12 fhmc-reuse4_L12
fi
if [ "${LONG:-0}" = 1 ]; then
  # (added later; run with LONG=1 HMC=0, the two runs in parallel, each at the lowest CPU priority)
  # the L = 8 flow reused at L = 12, beta = 4.5 as fhmc-reuse8_L12 (epsilon = 1/20, 20 steps), but
  # 16 x 1500 trajectories after 100: the longer rerun (fhmc-reuse8_L12, 16 x 200, stays in the record)
  nice -n 19 $PY -m trivflow.run experiment=u1_topology 'baselines=[]' lattice.L=12 lattice.beta=4.5 \
    sampler.num_chains=16 sampler.num_traj=1500 sampler.num_therm=100 sampler.num_steps=20 \
    flow.checkpoint=$RUNS/fhmc_L8 progress=false quiet=true hydra.run.dir=$RUNS/fhmc-reuse8-long_L12
  keep $RUNS/fhmc-reuse8-long_L12 fhmc-reuse8-long_L12
  # L = 16, beta = 8: a flow trained there (500 steps, batch 32). First the step-size check, 16 x 20
  # trajectories after 5 in 25 steps (epsilon = 1/25; acceptance 0.928 >= 0.8, so 40 steps were not
  # tried; its results stay in scratch, not in runs/), then the same training (seed 0, deterministic)
  # with FHMC 16 x 600 trajectories after 50 in 25 steps
  nice -n 19 $PY -m trivflow.run experiment=u1_topology 'baselines=[]' lattice.L=16 lattice.beta=8.0 \
    sampler.num_chains=16 sampler.num_traj=20 sampler.num_therm=5 sampler.num_steps=25 \
    train.steps=500 train.batch_size=32 train.log_every=50 progress=false hydra.run.dir=$RUNS/fhmc-short25_L16
  nice -n 19 $PY -m trivflow.run experiment=u1_topology 'baselines=[]' lattice.L=16 lattice.beta=8.0 \
    sampler.num_chains=16 sampler.num_traj=600 sampler.num_therm=50 sampler.num_steps=25 \
    train.steps=500 train.batch_size=32 train.log_every=50 progress=false hydra.run.dir=$RUNS/fhmc_L16
  keep $RUNS/fhmc_L16 fhmc_L16
fi
if [ "${LONG2:-0}" = 1 ]; then
  # (added later, for the fit of tau_int(Q) vs beta: a third reliable point for the fhmc and fhmc-reuse4
  # series at L = 12, beta = 4.5, whose short runs (16 x 200) did not mix; run with LONG2=1 HMC=0, the two
  # long runs in parallel after the step-size check below, each at the lowest CPU priority)
  # the L = 4 flow reused at L = 12, beta = 4.5 as fhmc-reuse4_L12 (epsilon = 1/20, 20 steps), but
  # 16 x 1500 trajectories after 100: the longer rerun (fhmc-reuse4_L12, 16 x 200, stays in the record)
  nice -n 19 $PY -m trivflow.run experiment=u1_topology 'baselines=[]' lattice.L=12 lattice.beta=4.5 \
    sampler.num_chains=16 sampler.num_traj=1500 sampler.num_therm=100 sampler.num_steps=20 \
    flow.checkpoint=$RUNS/fhmc_L4 progress=false quiet=true hydra.run.dir=$RUNS/fhmc-reuse4-long_L12
  keep $RUNS/fhmc-reuse4-long_L12 fhmc-reuse4-long_L12
  # the flow trained at L = 12 (that of fhmc_L12, which ran in 40 steps, epsilon = 1/40). First the
  # step-size check at epsilon = 1/20, 16 x 20 trajectories after 5 in 20 steps (acceptance 0.909 >= 0.8,
  # so 20 steps, not 40; its results stay in scratch, not in runs/), then FHMC 16 x 1500 trajectories
  # after 100 in 20 steps: the longer rerun (fhmc_L12, 16 x 200 in 40 steps, stays in the record)
  nice -n 19 $PY -m trivflow.run experiment=u1_topology 'baselines=[]' lattice.L=12 lattice.beta=4.5 \
    sampler.num_chains=16 sampler.num_traj=20 sampler.num_therm=5 sampler.num_steps=20 \
    flow.checkpoint=$RUNS/fhmc_L12 progress=false quiet=true hydra.run.dir=$RUNS/fhmc-short20_L12
  nice -n 19 $PY -m trivflow.run experiment=u1_topology 'baselines=[]' lattice.L=12 lattice.beta=4.5 \
    sampler.num_chains=16 sampler.num_traj=1500 sampler.num_therm=100 sampler.num_steps=20 \
    flow.checkpoint=$RUNS/fhmc_L12 progress=false quiet=true hydra.run.dir=$RUNS/fhmc-long_L12
  keep $RUNS/fhmc-long_L12 fhmc-long_L12
fi
if [ "${LARGE:-0}" = 1 ]; then
  # (added later; run with LARGE=1 HMC=0 after LONG=1, which made $RUNS/fhmc_L16; at the lowest CPU priority.
  # The runs were made in two parallel streams, imh_L16, fhmc-short25_L24, fhmc_L24, imh_L24 and
  # fhmc-short25_L20, fhmc_L20, imh_L20, with RUNS=/tmp/u1e/runs and the L = 16 flow read from the
  # LONG block's run directory of fhmc_L16, /work/runs/u1c/fhmc_L16; the commands are these, in another
  # order)
  # the flow samplers at the large-L points, where HMC is frozen (hmc_L16, hmc_L20, hmc_L24) and FHMC
  # with a flow trained at L = 16 is too (fhmc_L16): measured so that every point has them.
  # Independence MH at L = 16, beta = 8 with the flow of fhmc_L16 (LONG block), 16 x 4000 steps after 200
  nice -n 19 $PY -m trivflow.run experiment=u1_topology sampler=imh 'baselines=[]' lattice.L=16 lattice.beta=8.0 \
    sampler.num_chains=16 sampler.num_traj=4000 sampler.num_therm=200 flow.checkpoint=$RUNS/fhmc_L16 \
    progress=false quiet=true hydra.run.dir=$RUNS/imh_L16
  keep $RUNS/imh_L16 imh_L16
  # L = 20, beta = 12.5 and L = 24, beta = 18: a flow trained there (500 steps, batch 32) with the
  # step-size check, 16 x 20 trajectories after 5 in 25 steps (epsilon = 1/25; acceptance 0.891 at
  # L = 20 and 0.888 at L = 24, both >= 0.8, so 40 steps were not tried; these runs stay in scratch,
  # not in runs/, and hold the trained flow and its training seconds); then FHMC with that flow
  # (flow.checkpoint, so the fhmc rows' results.json carry no training time), 16 x 200 trajectories
  # after 40 in 25 steps, and independence MH with it, 16 x 4000 steps after 200
  for point in 20:12.5 24:18.0; do
    set -- ${point%%:*} ${point#*:}
    nice -n 19 $PY -m trivflow.run experiment=u1_topology 'baselines=[]' lattice.L=$1 lattice.beta=$2 \
      sampler.num_chains=16 sampler.num_traj=20 sampler.num_therm=5 sampler.num_steps=25 \
      train.steps=500 train.batch_size=32 train.log_every=50 progress=false hydra.run.dir=$RUNS/fhmc-short25_L$1
    nice -n 19 $PY -m trivflow.run experiment=u1_topology 'baselines=[]' lattice.L=$1 lattice.beta=$2 \
      sampler.num_chains=16 sampler.num_traj=200 sampler.num_therm=40 sampler.num_steps=25 \
      flow.checkpoint=$RUNS/fhmc-short25_L$1 progress=false quiet=true hydra.run.dir=$RUNS/fhmc_L$1
    keep $RUNS/fhmc_L$1 fhmc_L$1
    nice -n 19 $PY -m trivflow.run experiment=u1_topology sampler=imh 'baselines=[]' lattice.L=$1 lattice.beta=$2 \
      sampler.num_chains=16 sampler.num_traj=4000 sampler.num_therm=200 flow.checkpoint=$RUNS/fhmc-short25_L$1 \
      progress=false quiet=true hydra.run.dir=$RUNS/imh_L$1
    keep $RUNS/imh_L$1 imh_L$1
  done
fi
if [ "${DEPTH:-0}" = 1 ]; then
  # (added later, with the rate of changes of Q) deeper gauge flows at L = 12, beta = 4.5: 16 and 24 coupling
  # layers instead of 8 (each plaquette moved by 4 or 6 layers instead of 2, so the composed circle map may
  # reach h' = 2.62^4 ~ 47 or 2.62^6 ~ 320 instead of 6.9), trained as fhmc_L12 (500 steps x 32); FHMC
  # 16 x 400 after 50. The 16-layer flow at eps = 1/20 accepted 0.34, so it was rerun at eps = 1/40 from
  # its checkpoint, and the 24-layer flow was run at eps = 1/40 only (its run at 1/20 was stopped in training)
  nice -n 19 $PY -m trivflow.run experiment=u1_topology 'baselines=[]' lattice.L=12 lattice.beta=4.5 \
    flow.num_layers=16 sampler.num_chains=16 sampler.num_traj=400 sampler.num_therm=50 sampler.num_steps=20 \
    train.steps=500 train.batch_size=32 train.log_every=50 progress=false hydra.run.dir=$RUNS/fhmc-depth16_L12
  keep $RUNS/fhmc-depth16_L12 fhmc-depth16_L12
  nice -n 10 $PY -m trivflow.run experiment=u1_topology 'baselines=[]' lattice.L=12 lattice.beta=4.5 \
    sampler.num_chains=16 sampler.num_traj=400 sampler.num_therm=50 sampler.num_steps=40 \
    flow.checkpoint=$RUNS/fhmc-depth16_L12 progress=false quiet=true hydra.run.dir=$RUNS/fhmc-depth16-eps40_L12
  keep $RUNS/fhmc-depth16-eps40_L12 fhmc-depth16-eps40_L12
  nice -n 10 $PY -m trivflow.run experiment=u1_topology 'baselines=[]' lattice.L=12 lattice.beta=4.5 \
    flow.num_layers=24 sampler.num_chains=16 sampler.num_traj=400 sampler.num_therm=50 sampler.num_steps=40 \
    train.steps=500 train.batch_size=32 train.log_every=50 progress=false hydra.run.dir=$RUNS/fhmc-depth24-eps40_L12
  keep $RUNS/fhmc-depth24-eps40_L12 fhmc-depth24-eps40_L12
fi
if [ "${L16LONG:-0}" = 1 ]; then
  # (added later, after LONG=1, which made $RUNS/fhmc_L16) FHMC at L = 16, beta = 8 with the flow trained
  # there, 32 chains x 1000 trajectories after 50 in 25 steps (eps = 1/25, as fhmc_L16): enough
  # chain-trajectories to count a few changes of Q (fhmc_L16 saw 1 in 16 x 600); replaces it in the fits
  nice -n 10 $PY -m trivflow.run experiment=u1_topology 'baselines=[]' lattice.L=16 lattice.beta=8.0 \
    sampler.num_chains=32 sampler.num_traj=1000 sampler.num_therm=50 sampler.num_steps=25 \
    flow.checkpoint=$RUNS/fhmc_L16 progress=false quiet=true hydra.run.dir=$RUNS/fhmc-long_L16
  keep $RUNS/fhmc-long_L16 fhmc-long_L16
fi
# the changes of Q of every kept run, from its chains file in $RUNS (runs/<name>/changes.json; added later:
# the runs of this record were made in several scratch directories, all given to changes.py)
$PY $HERE/changes.py $RUNS
$PY $HERE/analyze.py $HERE/runs > $HERE/table.md
