"""The GPU script of issue 17 (experiments/gpu_h200/run.sh) end to end at --tiny sizes on the CPU.

It runs every step the GPU run will: the environment probe, ``benchmarks/run_all --parts
--device-memory`` per benchmark part, the four rows of the L = 40 table and of L = 80 through
``python -m trivflow.run`` (prior ensembles reused between rows), and the summary; each step's
JSON must be in OUTDIR. About ten XLA compilations on the CPU: minutes, hence slow.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROWS = ["hmc", "fhmc_gaussian", "fhmc_interp4", "fhmc_interp4_x2"]


@pytest.mark.slow
def test_gpu_script_tiny(tmp_path):
    out = tmp_path / "gpu_tiny"
    env = {**os.environ, "PYTHON": sys.executable, "JAX_PLATFORMS": "cpu",
           "TRIVFLOW_GPU_WORK": str(tmp_path / "work")}
    proc = subprocess.run(["bash", str(REPO / "experiments/gpu_h200/run.sh"), str(out), "--tiny"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    env_info = json.loads((out / "00_environment.json").read_text())
    assert env_info["default_backend"] == "cpu" and env_info["jax_devices"]
    assert env_info["versions"]["jax"]

    steps = {s["step"]: s for s in json.loads((out / "steps.json").read_text())["steps"]}
    failed = {k: s.get("log_tail", s.get("reason")) for k, s in steps.items() if s["status"] != "ok"}
    assert not failed, failed

    for part in ("vs_L", "hmc_dtypes"):
        bench = json.loads((out / f"a_bench_{part}.json").read_text())
        assert bench["throughput"] and all(r["traj_per_second"] > 0 for r in bench["throughput"])
        assert "--device-memory" in bench["command"]
        assert all("device_memory" in p for p in bench["parts"].values())
    # the HMC part times float64 and float32, the FHMC part trains
    dtypes = {p["dtype"] for p in json.loads((out / "a_bench_hmc_dtypes.json").read_text())["parts"]["hmc_dtypes"]
              ["result"]["points"]}
    assert dtypes == {"float64", "float32"}

    summary = json.loads((out / "summary.json").read_text())
    for L, prefix in ((40, "b"), (80, "c")):
        for row in ROWS:
            rec = json.loads((out / f"{prefix}_L{L}_{row}.json").read_text())
            assert rec["L"] == L and rec["num_steps"] == (10 if L == 40 else 18)
            assert rec["beta"] == {40: 0.6667, 80: 0.677}[L]  # the tuned presets lattice=L40, L80
            tau, dtau = rec["tau_int_M"]
            assert tau > 0 and dtau >= 0 and rec["paper"][0] > 0
        assert set(summary["tables"][str(L)]) == {r.replace("fhmc_", "fhmc@") for r in ROWS}
    # the L = 80 x2 row reused the L = 20 ensemble of the L = 40 rows as its coarser level
    assert "prior.ensemble_coarser=" in json.loads((out / "c_L80_fhmc_interp4_x2.json").read_text())["command"]
    assert (out / "summary.md").read_text().startswith("GPU run of issue 17")
