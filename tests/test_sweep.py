"""A real Hydra multirun (2 lattices × 2 kernel sizes) aggregated by ``python -m trivflow.report``.

Slow: four jobs each compile a flow's training step and an FHMC chunk (≈ 1–4 min on 2 CPU cores).
"""

import csv
import os
import subprocess
import sys

import pytest

from trivflow import io, report

SWEEP = ["sampler=fhmc", "flow.kernel_size=3,5", "lattice=L6,L8", "train.steps=20", "train.batch_size=16",
         "train.log_every=10", "sampler.num_chains=4", "sampler.num_traj=200", "sampler.num_therm=20",
         "sampler.chunk_size=100", "progress=false"]


def _python(args, cwd):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900, check=False)


@pytest.mark.slow
def test_multirun_sweep_and_report(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _python(["-m", "trivflow.run", "-m", *SWEEP, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = io.find_runs(sweep)
    assert [r.name for r in runs] == ["0", "1", "2", "3"]
    for r in runs:
        cfg = io.load_config(r)  # from .hydra/config.yaml
        assert cfg.sampler.name == "fhmc" and f"flow.kernel_size={cfg.flow.kernel_size}" in io.load_overrides(r)
        assert "results written to" in io.load_log(r)
        assert io.load_chains(r).posterior["M"].shape == (4, 200)
        assert (r / "plots" / "fhmc_autocorr_M.png").stat().st_size > 0

    out = tmp_path / "report"
    proc = _python(["-m", "trivflow.report", str(sweep), "--out", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "table.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and list(rows[0]) == report.COLUMNS
    assert sorted((int(r["L"]), int(r["kernel_size"])) for r in rows) == [(6, 3), (6, 5), (8, 3), (8, 5)]
    for r in rows:
        assert r["sampler"] == "fhmc" and float(r["tau_M"]) > 0 and float(r["cost_per_indep"]) > 0
        assert "lattice=L" in r["overrides"] and "flow.kernel_size=" in r["overrides"]
    assert len((out / "table.md").read_text().strip().splitlines()) == 2 + 4
    # ξ is measured in each job (L = 6, 8 give distinct ξ) and there are two kernel sizes
    assert (out / "tau_vs_xi.png").stat().st_size > 0
    assert (out / "tau_vs_kernel_size.png").stat().st_size > 0
