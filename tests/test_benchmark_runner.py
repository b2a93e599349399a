"""benchmarks/run_all runs each part as its own process; with ``--device-memory`` through a wrapper
that must behave as ``python script`` does (the script's directory on sys.path, so that
benchmarks/harness.py imports). The slow GPU-script test found this broken; this one is fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("device_memory", [False, True])
def test_run_all_part_with_and_without_device_memory(tmp_path, device_memory):
    parts = tmp_path / "parts.json"
    parts.write_text(json.dumps([["hmc_tiny", "hmc.py", ["--L", "4", "--chains", "2", "--backends", "jax",
                                                          "--repeats", "1", "--target-seconds", "0.01",
                                                          "--therm", "1"]]]))
    out = tmp_path / "report.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "run_all"), "--parts", str(parts), "--out", str(out),
           *(["--device-memory"] if device_memory else [])]
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    part = json.loads(out.read_text())["parts"]["hmc_tiny"]
    assert part["wall_seconds"] > 0
    assert ("device_memory" in part) == device_memory


@pytest.mark.slow  # six compiled samplers: ~25 s on 2 shared cores
def test_multilevel_cost_benchmark_runs_every_sampler(tmp_path):
    """benchmarks/multilevel_cost.py times HMC, FA-HMC and FHMC towers of each depth side by side and
    writes each one's cost per trajectory relative to HMC (experiments/multilevel/analyze.py reads it)."""
    out = tmp_path / "m.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "multilevel_cost.py"), "--L", "4", "--depths", "1", "2",
           "--chains", "2", "--repeats", "1", "--target-seconds", "0.01", "--therm", "1", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["cost_ratio"]) == {"hmc@L4", "fa_hmc@L4", "fhmc_d1@L4", "fhmc_d2@L4"}
    assert report["cost_ratio"]["hmc@L4"] == 1.0
    assert [p["depth"] for p in report["points"]] == [None, None, 1, 2]
    assert all(p["traj_per_second"] > 0 for p in report["points"])
    assert out.with_suffix(".md").read_text().startswith("| L | hmc traj/s")


@pytest.mark.slow  # ≈ 30 s: nine programs compiled
def test_u1_benchmark_times_the_hmc_and_fhmc_forces(tmp_path):
    """benchmarks/u1.py writes, per L, the HMC and FHMC force and the flow forward, and their ratio."""
    out = tmp_path / "u1.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "u1.py"), "--L", "4", "--chains", "2", "--rounds", "1",
           "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (point,) = json.loads(out.read_text())["points"]
    assert point["L"] == 4 and set(point["pieces"]) == {"hmc force (S and dS)", "flow forward g and log-det",
                                                        "fhmc force (S~ and dS~)"}
    assert all(v["ms"] > 0 for v in point["pieces"].values()) and point["fhmc_over_hmc_force"] > 1
    assert out.with_suffix(".md").read_text().startswith("| L | HMC force")
