"""Beyond one machine: a Hydra multirun through hydra-submitit-launcher's ``submitit_local``
launcher (the same code path as ``hydra/launcher=submitit_slurm`` on a cluster, with jobs as
local subprocesses). The launcher is in the ``cluster`` and ``test`` extras."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the cluster extra")


def test_submitit_local_multirun_of_two_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "trivflow.run", "-m", "hydra/launcher=submitit_local", "lattice=L6,L8",
           "sampler.num_traj=200", "sampler.num_chains=2", "sampler.num_therm=10", "quiet=true",
           f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads((sweep / str(n) / "results.json").read_text()) for n in (0, 1)]
    assert sorted(r["lattice"]["L"] for r in results) == [6, 8]
    for r in results:
        assert r["runs"]["hmc"]["num_traj"] == 200
        assert r["lattice"]["beta"] == {6: 0.537, 8: 0.576}[r["lattice"]["L"]]
    # submitit ran each job in its own process and kept its logs
    assert list((sweep / ".submitit").glob("*/*_0_log.out"))
