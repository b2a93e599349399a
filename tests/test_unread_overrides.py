"""Overrides that no stage of a run reads are refused before compute (issue 13, §1)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import trivflow
from trivflow.app.config import refuse_unread_overrides, register_configs

CONF = str(Path(trivflow.__file__).parent / "conf")
register_configs()


def refuse(overrides):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        cfg = compose(config_name="config", overrides=overrides)
    refuse_unread_overrides(cfg, overrides)


@pytest.mark.parametrize("overrides,message", [
    (["flow.kernel_size=5"], re.escape("flow.kernel_size=5 is read by no stage of this run, so it is refused: no "
                                       "sampler of this run uses a flow (sampler=hmc); it counts with a flow sampler, "
                                       "e.g. sampler=fhmc")),
    (["prior=interp4"], "prior=interp4 is read by no stage"),
    (["sampler=nuts", "train.steps=10"], r"train.steps=10 .*\(sampler=nuts\)"),
    (["baselines=[nuts]", "flow.num_layers=2"], r"\(sampler=hmc, baselines=\['nuts'\]\)"),
    (["tune.max_iter=3"], "only task=tune_beta reads it"),
    (["target_xi=3"], "only task=tune_beta reads it"),
    (["sampler.batch_size=10"], "it counts with sampler=imh"),
    (["sampler=fhmc", "sampler.target_accept=0.9"], "it counts with sampler=nuts"),
])
def test_overrides_no_stage_reads_are_refused_naming_key_and_remedy(overrides, message):
    with pytest.raises(ValueError, match=message):
        refuse(overrides)


@pytest.mark.parametrize("overrides", [
    ["sampler=fhmc", "flow.kernel_size=5", "prior=interp4", "train.steps=10"],
    ["baselines=[fhmc@interp4]", "flow.kernel_size=5"],  # a flow baseline reads the flow
    ["sampler=imh", "sampler.batch_size=10"],
    ["baselines=[nuts]", "sampler.target_accept=0.9"],
    ["experiment=tune_beta", "tune.max_iter=3", "target_xi=3"],
    ["experiment=minimal_network", "flow.kernel_size=5"],  # the preset's sampler is a flow sampler
    ["lattice=L10", "sampler.num_traj=100", "seed=3", "analysis.s_tau=2"],
])
def test_overrides_that_a_stage_reads_pass(overrides):
    refuse(overrides)


def test_cli_refuses_the_kernel_size_sweep_without_a_flow_sampler_before_compute(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "trivflow.run", "flow.kernel_size=3",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "trivflow: error: flow.kernel_size=3 is read by no stage of this run, so it is refused")
    assert not (tmp_path / "run" / "results.json").exists() and not (tmp_path / "run" / "chains.nc").exists()
