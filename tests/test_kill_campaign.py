"""The kill -9 campaign (slow): SIGKILL ``python -m trivflow.run`` at random moments and at chosen
points inside training, ``save_flow``, sampling and the final writes; resume every run with the
same command (``resume=true`` in a fixed ``hydra.run.dir``) until it finishes, and require its
results.json, chains files, training history and flow to equal an uninterrupted run's bit for bit
(timings and ArviZ's creation stamp aside).

The job trains a k = 3 flow at L = 4 and samples FHMC with an HMC baseline, so every stage and
every kind of file is in play. ``TRIVFLOW_KILLS=<n>`` sets the number of random kills (20).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent
JOB = ["sampler=fhmc", "baselines=[hmc]", "lattice=L4", "sampler.num_chains=2", "sampler.num_traj=600",
       "sampler.num_therm=20", "sampler.chunk_size=20", "train.steps=300", "train.batch_size=8",
       "train.log_every=10", "train.checkpoint_every=1", "progress=false", "resume=true"]
#: results.json keys that hold wall times or the command line, not numbers of the run
TIMINGS = {"seconds", "therm_seconds", "compile_seconds", "traj_per_second", "wall_seconds", "command",
           "checkpoint_seconds", "setup_seconds", "amortised_seconds_per_indep"}
NUM_RANDOM = int(os.environ.get("TRIVFLOW_KILLS", "20"))

#: Python run in the job's process before trivflow's CLI: a patch that SIGKILLs the process at
#: one chosen point (the code under test is unchanged).
_DIE = "import os, signal\ndef die(*a, **k):\n    os.kill(os.getpid(), signal.SIGKILL)\n"
TARGETED = {
    # inside save_flow: flow_config.json written into the temporary directory, params not yet
    "save_flow_mid_write": "import orbax.checkpoint as ocp\nocp.StandardCheckpointer.save = die\n",
    # save_flow: the new flow/ renamed into place, its directory not yet fsynced
    "save_flow_after_rename": ("import trivflow.state as st\n_r = st.os.replace\n"
                               "def rep(a, b):\n    _r(a, b)\n    if str(b).endswith('/flow'): die()\n"
                               "st.os.replace = rep\n"),
    # the training history being written
    "training_history": "import trivflow.app.experiment as ex\nex.atomic_savez = die\n",
    # after the first chains file, before the second
    "between_chains_files": ("import trivflow.io as tio\n_w = tio._write_netcdf\nn = [0]\n"
                             "def w(*a):\n    n[0] += 1\n    if n[0] == 2: die()\n    _w(*a)\n"
                             "tio._write_netcdf = w\n"),
    # results.json half written (its temporary file)
    "results_json": ("import trivflow.app.experiment as ex\nimport trivflow.state as st\n"
                     "def half(path, text):\n    st._temp_name(path).write_text(text[:100])\n    die()\n"
                     "ex.atomic_write_text = half\n"),
    # results.json written, state/ not yet removed
    "before_state_removal": ("import shutil, types\nimport trivflow.app.experiment as ex\n"
                             "ex.shutil = types.SimpleNamespace(rmtree=die, copytree=shutil.copytree)\n"),
    # while the plots are drawn
    "plots": "import trivflow.plots as pl\npl.plot_run = die\nimport trivflow.app.experiment\n",
}


def _launch(run_dir: Path, prelude: str = "") -> subprocess.Popen:
    code = _DIE + prelude + "import runpy\nrunpy.run_module('trivflow.run', run_name='__main__', alter_sys=True)\n"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen([sys.executable, "-c", code, *JOB, f"hydra.run.dir={run_dir}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout=600) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _strip(x):
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in TIMINGS}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def _outcome(run_dir: Path) -> dict:
    """Everything a run leaves that carries numbers, as comparable Python objects."""
    import arviz as az

    out = {"results": _strip(json.loads((run_dir / "results.json").read_text()))}
    for nc in sorted(run_dir.glob("chains*.nc")):
        idata = az.from_netcdf(nc)
        for group in idata.groups():
            ds = idata[group]
            out[f"{nc.name}/{group}/attrs"] = {k: v for k, v in ds.attrs.items() if k != "created_at"}
            for name, var in ds.data_vars.items():
                out[f"{nc.name}/{group}/{name}"] = np.asarray(var.values).tobytes()
    with np.load(run_dir / "training_history.npz") as h:
        out.update({f"history/{k}": h[k].tobytes() for k in h.files if k not in ("seconds", "compile_seconds")})
    from trivflow import io

    _, params, config = io.load_flow(run_dir)
    import jax

    out["flow"] = [np.asarray(x).tobytes() for x in jax.tree_util.tree_leaves(params)]
    out["flow_config"] = config
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    t0 = time.time()
    rc, err = _finish(_launch(run_dir))
    assert rc == 0, err[-3000:]
    return _outcome(run_dir), time.time() - t0


def _assert_same(got: dict, want: dict):
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == want[key], key


def _resume(run_dir: Path) -> None:
    """The same command again; it must finish."""
    rc, err = _finish(_launch(run_dir))
    assert rc == 0, f"the resumed run failed (rc {rc}):\n{err[-3000:]}"


@pytest.mark.parametrize("trial", range(NUM_RANDOM))
def test_random_kill_then_resume_equals_the_uninterrupted_run(trial, reference, tmp_path):
    want, seconds = reference
    run_dir = tmp_path / "run"
    delay = np.random.default_rng(trial).uniform(1.0, 0.95 * seconds)
    for _ in range(4):  # the reference's time is only a guide (shared cores): shorten if it finished
        proc = _launch(run_dir)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            break
        shutil.rmtree(run_dir)
        delay *= 0.6
    else:
        pytest.fail(f"the run always finished before the kill (last try at {delay:.1f} s)")
    stage = sorted(p.name for p in (run_dir / "state").glob("*.npz")) if (run_dir / "state").is_dir() else []
    print(f"killed at {delay:.1f} s of {seconds:.1f}; states: {stage}; results: {(run_dir / 'results.json').exists()}")
    _resume(run_dir)
    _assert_same(_outcome(run_dir), want)


@pytest.mark.parametrize("point", sorted(TARGETED))
def test_kill_at_a_chosen_point_then_resume_equals_the_uninterrupted_run(point, reference, tmp_path):
    want, _ = reference
    run_dir = tmp_path / "run"
    rc, err = _finish(_launch(run_dir, TARGETED[point]))
    assert rc == -signal.SIGKILL, f"the patch at {point} never fired (rc {rc}):\n{err[-2000:]}"
    _resume(run_dir)
    _assert_same(_outcome(run_dir), want)
