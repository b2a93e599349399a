"""Nothing lost, nothing silently wrong: faults, damaged files, concurrent jobs, hostile input.

One test (or more) per failure found by trying trivflow under faults (docs/troubleshooting.md);
each failed on the main branch before the fix. The kill -9 campaign is tests/test_kill_campaign.py.
"""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from test_run import TINY, TINY_HMC, compose_cfg

from trivflow import hmc, io, state
from trivflow.app import rundir
from trivflow.app.config import validate
from trivflow.app.environment import beta_source, configure_jax
from trivflow.app.experiment import run
from trivflow.hmc import driver, series
from trivflow.lattice.theory import Phi4Theory

THEORY = Phi4Theory(L=4, d=2, beta=0.45, lam=0.5)
L4 = ["lattice=L4", "plots=false", *TINY]
L4_CLI = ["lattice=L4", "plots=false", *TINY_HMC]  # the command line refuses keys an HMC job does not read
FHMC = ["sampler=fhmc", *L4]
ROOT = Path(__file__).parent.parent


def _cli(args, cwd, env=None, timeout=300):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.run([sys.executable, "-m", "trivflow.run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _one_error_line(proc) -> str:
    """The stderr of a failed CLI job: exactly one line, ``trivflow: error: …``, no traceback."""
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(errors) == 1 and errors[0].startswith("trivflow: error: "), proc.stderr[-3000:]
    return errors[0]


def _snapshot(directory: Path) -> dict:
    return {str(p.relative_to(directory)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(directory.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------
# 1. a kill inside save_flow


class Killed(BaseException):
    """Stands for a SIGKILL at this point (BaseException, as nothing may catch a kill)."""


def _small_flow():
    from trivflow.flows import FlowConfig, build_flow, split_flow

    cfg = FlowConfig(kernel_size=3, num_layers=1)
    return cfg, split_flow(build_flow(kernel_size=3, num_layers=1, seed=0))[1]


def test_save_flow_is_atomic_under_a_kill_mid_write(tmp_path, monkeypatch):
    import orbax.checkpoint as ocp

    from trivflow.training import load_flow, save_flow

    cfg, params = _small_flow()
    path = save_flow(tmp_path / "flow", params, {**cfg.to_dict(), "lattice": {"L": 4, "d": 2}})
    before = _snapshot(path)

    def killed_save(self, *args, **kwargs):
        raise Killed

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", killed_save)
    with pytest.raises(Killed):
        save_flow(path, params, {**cfg.to_dict(), "lattice": {"L": 8, "d": 2}}, overwrite=True)
    assert _snapshot(path) == before  # the old checkpoint, whole
    assert load_flow(path)[2]["lattice"]["L"] == 4
    assert not list(tmp_path.glob(".flow.*"))  # the temporary directory is gone


def test_save_flow_killed_between_its_renames_leaves_no_half_checkpoint(tmp_path, monkeypatch):
    from trivflow.training import save_flow
    from trivflow.training.checkpoint import is_complete

    cfg, params = _small_flow()
    path = save_flow(tmp_path / "flow", params, cfg)
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # after the old checkpoint moved aside, before the new one moves in
            raise Killed
        return real_replace(src, dst)

    monkeypatch.setattr(state.os, "replace", replace)
    with pytest.raises(Killed):
        save_flow(path, params, cfg, overwrite=True)
    assert not path.exists() or is_complete(path)


def test_resume_rebuilds_a_flow_directory_left_incomplete_by_a_kill(tmp_path):
    """flow/flow_config.json without flow/params/ (a kill inside the old save_flow): resume retrains
    nothing, rebuilds flow/ from state/train.npz and finishes with the uninterrupted numbers."""
    ref = run(compose_cfg([*FHMC, "keep_state=true"]), tmp_path / "ref")
    work = tmp_path / "work"
    shutil.copytree(tmp_path / "ref", work)
    for name in ("results.json", "chains.nc", "training_history.npz"):
        (work / name).unlink()
    shutil.rmtree(work / "flow" / "params")
    shutil.rmtree(work / "state")  # killed before sampling: only the training state
    (work / "state").mkdir()
    shutil.copy(tmp_path / "ref" / "state" / "train.npz", work / "state" / "train.npz")
    got = run(compose_cfg([*FHMC, f"resume={work}"]), tmp_path / "elsewhere")
    for key in ("loss", "ess", "mh_acceptance", "untrained"):
        assert got["training"][key] == ref["training"][key], key
    assert got["runs"]["fhmc"]["observables"] == ref["runs"]["fhmc"]["observables"]
    assert io.load_flow(work)[2]["kernel_size"] == 3


# ---------------------------------------------------------------------------------------------
# 2. two jobs in one run directory

HOLDER = """
import sys, time
from trivflow.app import rundir
with rundir.locked(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def held_dir(tmp_path):
    """A run directory held by another process (its PID is yielded too)."""
    d = tmp_path / "busy"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(d)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield d, proc.pid
    proc.kill()
    proc.wait()


def test_a_second_job_on_a_held_run_directory_is_refused_at_once(held_dir):
    d, pid = held_dir
    t0 = time.time()
    with pytest.raises(rundir.RunDirectoryBusy, match=rf"run directory {d} is in use by another trivflow job "
                                                      rf"\(PID {pid} on "):
        run(compose_cfg(L4), d)
    assert time.time() - t0 < 10
    assert not (d / "results.json").exists() and not (d / "state").exists()


def test_cli_second_job_is_refused_without_touching_the_first_ones_files(held_dir, tmp_path):
    d, pid = held_dir
    (d / ".hydra").mkdir()
    (d / ".hydra" / "config.yaml").write_text("seed: 0  # the first job's\n")
    before = _snapshot(d)
    proc = _cli([*L4_CLI, "seed=1", f"hydra.run.dir={d}"], tmp_path)
    line = _one_error_line(proc)
    assert f"PID {pid}" in line and str(d) in line
    after = _snapshot(d)
    assert {k: v for k, v in after.items() if k != "run.log"} == \
        {k: v for k, v in before.items() if k != "run.log"}  # .hydra/ and the owner record untouched
    if (d / "run.log").exists():  # Hydra opens this job's log file there; nothing is written into it
        assert "is in use" not in (d / "run.log").read_text()


def test_the_lock_is_reentrant_and_released(tmp_path):
    with rundir.locked(tmp_path) as a, rundir.locked(tmp_path) as b:
        assert a == b and rundir.is_locked_here(tmp_path)
    assert not rundir.is_locked_here(tmp_path)
    with rundir.locked(tmp_path):  # released: it can be taken again
        pass


def test_atomic_writes_never_remove_a_live_writers_temporary(tmp_path):
    target = tmp_path / "s.npz"
    live = state._temp_name(target).with_name(f".s.npz.{state._HOST}.{os.getppid()}.abcd.tmp")
    dead_pid = 2**22 + 12345  # above pid_max on Linux: no such process
    dead = live.with_name(f".s.npz.{state._HOST}.{dead_pid}.abcd.tmp")
    other_host = live.with_name(".s.npz.otherhost.1.abcd.tmp")
    for f in (live, dead, other_host):
        f.write_bytes(b"partial")
    state.atomic_savez(target, {"x": np.arange(3)})
    assert live.exists() and other_host.exists() and not dead.exists()


# ---------------------------------------------------------------------------------------------
# 3. diverged or useless work is not reported as physics


def test_a_diverged_training_stops_the_run_naming_train_lr(tmp_path):
    with pytest.raises(ValueError, match=r"training diverged: the flow ended worse than it started .*"
                                         r"lower train.lr=10"):
        run(compose_cfg([*FHMC, "train.lr=10"]), tmp_path)
    assert not (tmp_path / "results.json").exists() and not (tmp_path / "flow").exists()


def test_check_training_criteria():
    from trivflow.training import TrainingDivergedError, check_training

    good = {"loss": 1.0, "loss_err": 0.1, "ess": 0.5, "mh_acceptance": 0.5}
    check_training({**good, "loss": 2.0}, good, lr=0.01, steps=100)  # improved
    check_training(good, {**good, "loss": 1.2}, lr=0.01, steps=100)  # within 3 sigma: noise
    with pytest.raises(TrainingDivergedError, match="worse than it started"):
        check_training(good, {**good, "loss": 1.5}, lr=0.01, steps=100)
    with pytest.raises(TrainingDivergedError, match="non-finite"):
        check_training(good, {**good, "loss": float("nan")}, lr=0.01, steps=100)
    useless = {"loss": 1.1, "loss_err": 1.0, "ess": 1e-5, "mh_acceptance": 0.0}
    with pytest.raises(TrainingDivergedError, match="useless.*steps=100"):
        check_training(good, useless, lr=0.01, steps=100)


@pytest.mark.parametrize("override,step", [("sampler.traj_length=50", "step size 5"),
                                           ("lattice.beta=1e6", "step size 0.1")])
def test_all_divergent_chains_stop_the_run_naming_the_step_size(override, step, tmp_path):
    with pytest.raises(ValueError, match=rf"acceptance 0 in the first 10 thermalization trajectories .* {step}: the "
                                         r"chains do not move.*sampler.traj_length/sampler.num_steps"):
        run(compose_cfg([*L4, override]), tmp_path)
    assert not (tmp_path / "results.json").exists()


def test_frozen_check_in_the_measurement_phase_and_off_switch():
    pos = hmc.random_positions(jax.random.key(0), 2, THEORY.shape)
    kw = dict(step_size=5.0, num_traj=20, num_therm=0, measure_fn=hmc.phi4_measure, chunk_size=5, progress=False)
    args = (jax.random.key(1), hmc.phi4_kernel(10), pos, hmc.phi4_params(THEORY, pos.dtype))
    with pytest.raises(driver.FrozenChainsError, match="measurement trajectories") as err:
        hmc.run_chains(*args, min_acceptance=0.01, **kw)
    assert err.value.acceptance == 0 and err.value.num_traj == 20
    assert hmc.run_chains(*args, **kw).acceptance == 0  # a library call without the check still runs


def test_broken_phase_is_flagged_as_not_mixing(tmp_path):
    res = run(compose_cfg([*L4, "lattice.L=8", "lattice.beta=2.0", "sampler.num_chains=4"]), tmp_path)
    block = res["runs"]["hmc"]
    assert block["diagnostics"]["reliable"] is False and block["diagnostics"]["rhat"]["M"] > 1.1
    assert any(w.startswith("chains do not mix: R-hat(M) =") for w in block["warnings"])
    assert any(w.startswith("R-hat > 1.01 for M (") for w in block["warnings"])  # the 1.01 warning names M
    assert set(block["diagnostics"]["ess_bulk"]) == {"M", "absM", "M2"}
    from trivflow.app.experiment import format_summary

    summary = format_summary(res)
    assert "xi NOT reliable" in summary
    assert "WARNING R-hat > 1.01 for M" in summary and "R-hat (ESS bulk, tail): M " in summary


def test_mixing_chains_are_not_flagged():
    from trivflow.summary import diagnostics, rhat_warnings

    rng = np.random.default_rng(0)
    obs = {k: rng.normal(size=(4, 500)) for k in ("M", "absM", "M2")}
    diag = diagnostics(obs)
    assert diag["reliable"] is True and rhat_warnings(diag) == []
    assert all(1000 < diag[k]["M"] < 3000 for k in ("ess_bulk", "ess_tail"))  # 2000 independent draws
    obs["M"][0] += 5.0  # one chain elsewhere
    diag = diagnostics(obs)
    assert diag["reliable"] is False and rhat_warnings(diag)[0].startswith("R-hat > 1.01 for M (")


def test_rhat_between_1_01_and_1_1_warns_but_stays_reliable():
    from trivflow.summary import diagnostics, rhat_warnings

    rng = np.random.default_rng(1)
    obs = {k: rng.normal(size=(4, 2000)) for k in ("M", "absM", "M2")}
    obs["M"][0] += 0.5  # one chain slightly off: R-hat between 1.01 and 1.1
    diag = diagnostics(obs)
    assert 1.01 < diag["rhat"]["M"] < 1.1, diag["rhat"]
    assert diag["reliable"] is True and len(rhat_warnings(diag)) == 1


# ---------------------------------------------------------------------------------------------
# 4. damaged files


def _hmc_with_parts(path, **kw):
    pos = hmc.random_positions(jax.random.key(0), 2, THEORY.shape)
    return hmc.run_chains(jax.random.key(1), hmc.phi4_kernel(5), pos, hmc.phi4_params(THEORY, pos.dtype),
                          step_size=0.2, num_traj=16, num_therm=4, measure_fn=hmc.phi4_measure, chunk_size=4,
                          progress=False, state_path=path, **kw)


@pytest.mark.parametrize("damage", ["truncated", "empty", "random", "pickled", "no_header"])
def test_damaged_state_files_name_the_file_and_what_to_do(damage, tmp_path):
    path = tmp_path / "state" / "hmc.npz"
    _hmc_with_parts(path)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif damage == "pickled":
        np.save(path.with_suffix(".npy"), np.array([{"a": 1}], dtype=object), allow_pickle=True)
        path.with_suffix(".npy").replace(path)
    else:  # a valid .npz, but not a trivflow state
        np.savez(path, x=np.arange(3))
    with pytest.raises(state.DamagedFileError) as err:
        _hmc_with_parts(path)
    msg = str(err.value)
    assert msg.startswith(str(path)) and "delete it" in msg and "\n" not in msg


@pytest.mark.parametrize("damage", ["swapped", "foreign", "missing", "truncated"])
def test_damaged_or_misplaced_series_parts_are_refused(damage, tmp_path, monkeypatch):
    """Parts written every chunk, then resumed: a swapped, foreign, missing or truncated part
    would change the results (swapped and foreign ones were accepted before)."""
    path = tmp_path / "state" / "hmc.npz"
    calls = [0]

    def save_then_stop(p, *a, **k):
        state.save_state(p, *a, **k)
        calls[0] += Path(p).parent.suffix != ".series"
        if calls[0] == 3:  # states at t = 4 (therm), 8, 12: two measurement parts, not finished
            raise Killed

    monkeypatch.setattr(series, "save_state", save_then_stop)
    with pytest.raises(Killed):
        _hmc_with_parts(path)
    monkeypatch.setattr(series, "save_state", state.save_state)
    parts = path.with_suffix(".series")
    p0, p1 = parts / "part00000.npz", parts / "part00001.npz"
    assert p0.exists() and p1.exists()
    if damage == "swapped":
        tmp = parts / "x"
        p0.replace(tmp), p1.replace(p0), tmp.replace(p1)
        match = r"part00000.npz holds part 1 of the 'hmc' series"
    elif damage == "foreign":  # the same part of another sampler's series
        other = tmp_path / "state" / "fhmc.npz"
        monkeypatch.setattr(series, "save_state", save_then_stop)
        calls[0] = 0
        with pytest.raises(Killed):
            pos = hmc.random_positions(jax.random.key(0), 2, THEORY.shape)
            hmc.run_chains(jax.random.key(1), hmc.phi4_kernel(5), pos, hmc.phi4_params(THEORY, pos.dtype),
                           step_size=0.25, num_traj=16, num_therm=4, measure_fn=hmc.phi4_measure, chunk_size=4,
                           progress=False, state_path=other)
        monkeypatch.setattr(series, "save_state", state.save_state)
        shutil.copy(other.with_suffix(".series") / "part00000.npz", p0)
        match = "part00000.npz belongs to another run or sampler"
    elif damage == "missing":
        p1.unlink()
        match = r"part00001.npz is missing \(hmc.npz counts 2 series parts\)"
    else:
        p1.write_bytes(p1.read_bytes()[:100])
        match = "part00001.npz cannot be read"
    with pytest.raises(state.DamagedFileError, match=match) as err:
        _hmc_with_parts(path)
    assert str(err.value).endswith(f"delete {path} and {parts}/ to rerun this sampler from the start")


def test_damaged_flow_checkpoint_messages(tmp_path):
    from trivflow.training import load_flow, save_flow

    cfg, params = _small_flow()
    path = save_flow(tmp_path / "flow", params, cfg)
    (path / "flow_config.json").write_text("{not json")
    with pytest.raises(state.DamagedFileError, match=r"flow_config.json is not a valid flow config .*retrain"):
        load_flow(path)
    path = save_flow(tmp_path / "flow", params, cfg, overwrite=True)
    for f in (path / "params").rglob("*"):
        if f.is_file():
            f.write_bytes(b"\x00garbage")
    with pytest.raises(state.DamagedFileError, match=r"params cannot be restored"):
        load_flow(path)
    shutil.rmtree(path / "params")
    with pytest.raises(FileNotFoundError,
                       match=r"expected flow_config.json and params/; it holds \['flow_config.json'\]"):
        load_flow(path)


def test_truncated_chains_file_and_results_are_reported(tmp_path):
    run(compose_cfg(L4), tmp_path)
    chains = tmp_path / "chains.nc"
    chains.write_bytes(chains.read_bytes()[:2000])
    with pytest.raises(state.DamagedFileError, match=r"chains.nc cannot be read .*rerun the job"):
        io.load_chains(tmp_path)
    (tmp_path / "results.json").write_text('{"runs": ')
    with pytest.raises(state.DamagedFileError, match="results.json cannot be read"):
        io.load_results(tmp_path)


def test_an_ensemble_holding_nan_is_refused_before_compute(tmp_path):
    from trivflow.priors.ensemble import Ensemble, save_ensemble

    source = Phi4Theory(L=2, d=2, beta=0.45, lam=0.5)  # interp4 at L=4 needs (L/2, beta(L/2))
    configs = np.random.default_rng(0).normal(size=(8, 2, 2))
    configs[3, 1, 0] = np.nan
    meta = {**source.to_dict(), "chains": 4}
    path = save_ensemble(tmp_path / "ens.npz", Ensemble(configs, meta))
    cfg = compose_cfg([*FHMC, "prior=interp4", f"prior.ensemble={path}", "prior.beta_coarse=0.45"])
    with pytest.raises(ValueError, match=r"ens.npz holds 1 configurations with NaN or inf values \(e.g. member 3\)"):
        validate(cfg)


# ---------------------------------------------------------------------------------------------
# 5. a full disk


def test_a_full_disk_during_a_state_save_keeps_the_old_state_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "s.npz"
    state.save_state(path, {"x": np.arange(4.0)}, meta={"t": 1})

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(state.np, "savez", full)
    with pytest.raises(OSError) as err:
        state.save_state(path, {"x": np.arange(8.0)}, meta={"t": 2})
    assert state.disk_full(err.value) is not None
    assert state.read_meta(path) == {"t": 1} and list(tmp_path.iterdir()) == [path]


def test_chains_are_not_written_when_they_cannot_fit(tmp_path, monkeypatch):
    from collections import namedtuple

    result = _hmc_with_parts(None)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(io.shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(OSError, match="chains.nc needs about") as err:
        io.write_chains(tmp_path, {"hmc": (result, "hmc", THEORY)}, "hmc")
    assert err.value.errno == errno.ENOSPC and not list(tmp_path.iterdir())


def test_disk_full_message_is_one_line_with_the_directory():
    from trivflow.run import error_message

    err = OSError(errno.ENOSPC, "No space left on device", "/runs/x/chains.nc")
    wrapped = RuntimeError("orbax failed")
    wrapped.__cause__ = err  # found through the chain of causes
    for e in (err, wrapped):
        assert error_message(e, Path("/runs/x")) == (
            "no space left on the disk holding /runs/x while writing /runs/x/chains.nc: free some space; "
            "then continue with resume=/runs/x")


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    try:
        return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("size", ["64k", "120k", "200k", "300k", "400k", "600k", "1m"])
def test_a_real_full_disk_gives_one_line_and_stays_resumable(size, tmp_path):
    """The run directory on a tmpfs of ``size``: the disk fills up in some write (state, part,
    chains, results, plots, log); one line, no segfault, no temporary file, and the directory,
    copied to a big disk, resumes to the uninterrupted numbers."""
    disk = tmp_path / "disk"
    if os.geteuid() != 0 or not _mount_tmpfs(disk, size):
        pytest.skip("needs root to mount a small tmpfs (the patched-writer tests cover the logic)")
    try:
        args = [*L4_CLI, "sampler.num_traj=2000", "keep_state=true", "plots=true", f"hydra.run.dir={disk / 'run'}"]
        proc = _cli(args, tmp_path)
        if proc.returncode == 0:
            pytest.skip(f"the run fitted in {size}")
        line = _one_error_line(proc)
        print(f"{size}: {line}")
        assert line.startswith(f"trivflow: error: no space left on the disk holding {disk / 'run'}"), line
        assert proc.returncode != -signal.SIGSEGV and not list((disk / "run").rglob("*.tmp"))
        shutil.copytree(disk / "run", tmp_path / "moved")  # resumable elsewhere
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
    proc = _cli([*L4_CLI, "sampler.num_traj=2000", "keep_state=true", "plots=true", "resume=true",
                 f"hydra.run.dir={tmp_path / 'moved'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = _cli([*L4_CLI, "sampler.num_traj=2000", "plots=false", f"hydra.run.dir={tmp_path / 'ref'}"], tmp_path)
    assert ref.returncode == 0
    a, b = (json.loads((tmp_path / d / "results.json").read_text())["runs"]["hmc"] for d in ("ref", "moved"))
    assert a["observables"] == b["observables"] and a["tau_int"] == b["tau_int"]


# ---------------------------------------------------------------------------------------------
# 6. "before any compute"


@pytest.mark.parametrize("overrides,message", [
    (["baselines=[fhmc]", "flow.checkpoint=outputs/nope"],
     r"flow.checkpoint='outputs/nope' is invalid: .*no flow checkpoint at '.*outputs/nope'.*does not exist"),
    (["sampler.num_traj=2"], r"sampler.num_traj=2 is invalid: expected at least 5 .*sampler.num_chains=2"),
    (["+sampler.step_size=0.5"], r"sampler.step_size is not a trivflow setting.*traj_length / sampler.num_steps"),
    (["+sampler.num_step=5"], r"sampler.num_step is not a trivflow setting.*did you mean sampler.num_steps"),
    (["lattice.lam=1e300", "precision=float32"], r"lattice.lam=1e\+300 is invalid: expected a number that float32"),
    (["sampler.min_acceptance=1.5"], r"sampler.min_acceptance=1.5 is invalid"),
])
def test_more_bad_input_fails_before_compute(overrides, message):
    with pytest.raises(ValueError, match=message):
        validate(compose_cfg([*L4, *overrides]))


def test_a_large_but_finite_coupling_is_not_called_infinite():
    """1e300 is representable in float64: the run decides (its chains diverge). Validation runs
    before precision=float64 is applied, i.e. with JAX still in float32, as on the command line."""
    jax.config.update("jax_enable_x64", False)
    try:
        validate(compose_cfg([*L4, "lattice.lam=1e300"]))
    finally:
        jax.config.update("jax_enable_x64", True)


def test_a_flow_checkpoint_of_another_kernel_is_refused_before_the_hmc_baseline(tmp_path, monkeypatch):
    from trivflow.training import save_flow

    cfg, params = _small_flow()
    save_flow(tmp_path / "run" / "flow", params, cfg)
    with pytest.raises(ValueError, match=r"flow.kernel_size=5 is invalid: expected 3, the value of the checkpoint"):
        validate(compose_cfg([*L4, "baselines=[fhmc]", "flow.kernel_size=5", f"flow.checkpoint={tmp_path / 'run'}"]))


def test_a_run_too_big_for_memory_is_refused_with_the_estimate():
    from trivflow.app.resources import check_memory

    cfg = compose_cfg(["sampler.num_chains=10000000", "lattice.L=128", "sampler.num_traj=100"])
    with pytest.raises(ValueError, match=r"this run needs at least 8.39e\+03 GiB of host memory \(hmc chain states "
                                         r"7.32e\+03 GiB, measured series .* GiB\), the machine has .* lower "
                                         r"sampler.num_chains \(now sampler.num_chains=10000000"):
        check_memory(cfg, validate(cfg), jax.devices()[0], float_bytes=8)
    small = compose_cfg(L4)
    assert check_memory(small, validate(small), jax.devices()[0], float_bytes=8)["host_bytes"] > 0


def test_a_platform_without_devices_is_refused_listing_what_jax_sees():
    with pytest.raises(ValueError, match=r"platform='gpu' is invalid: JAX has no gpu device here \(it sees \[.*cpu"):
        configure_jax("float64", "gpu")
    assert jax.devices()[0].platform == "cpu"  # the process still works
    assert configure_jax("float64", "cpu")["platform"] == "cpu"


def test_results_say_where_beta_came_from_and_which_device_ran(tmp_path):
    res = run(compose_cfg([*TINY, "plots=false", "lattice.L=6"]), tmp_path)
    assert res["beta_source"].startswith("from the lattice=L8 preset (xi = 2 at L = 8): off the line of constant "
                                         "physics at L = 6, where beta(6) = 0.537")
    assert res["device"]["platform"] == "cpu" and res["device"]["devices"]
    assert beta_source(Phi4Theory(L=16, beta=0.634)) == "on the line of constant physics xi = L/4 (tabulated beta(16))"
    assert "no beta is tabulated" in beta_source(Phi4Theory(L=128, beta=0.576))


# ---------------------------------------------------------------------------------------------
# 7. resume


def test_a_finished_run_is_never_modified(tmp_path):
    run(compose_cfg(FHMC), tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"holds a finished run .*never modified \(resume refused; this job differs "
                                         r"in sampler.num_traj: 200 -> 400\).*flow.checkpoint="):
        run(compose_cfg([*FHMC, "sampler.num_traj=400", f"resume={tmp_path}"]), tmp_path / "x")
    with pytest.raises(ValueError, match=r"this job refused"):
        run(compose_cfg(FHMC), tmp_path)  # resume=false into a finished run
    again = run(compose_cfg([*FHMC, f"resume={tmp_path}"]), tmp_path / "y")  # identical: nothing to do
    assert again == json.loads((tmp_path / "results.json").read_text())
    bookkeeping = {".trivflow.owner"}  # who held the lock last: not part of the run
    assert {k: v for k, v in _snapshot(tmp_path).items() if k not in bookkeeping} == \
        {k: v for k, v in before.items() if k not in bookkeeping}


# ---------------------------------------------------------------------------------------------
# 8. one way to fail


def test_cli_errors_are_one_line_and_logged_once(tmp_path):
    proc = _cli([*L4_CLI, "sampler.traj_length=50", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    line = _one_error_line(proc)
    assert "the chains do not move" in line
    log = (tmp_path / "run" / "run.log").read_text()
    assert log.count("the chains do not move") == 1 and "Traceback" not in log
    proc = _cli([*L4_CLI, "lattice.L=big"], tmp_path)  # caught by Hydra at composition
    assert "lattice.L=big" in _one_error_line(proc)
    proc = _cli([*L4_CLI, "+sampler.step_size=0.5", f"hydra.run.dir={tmp_path / 'plus'}"], tmp_path)
    assert "sampler.step_size is not a trivflow setting" in _one_error_line(proc)


def test_traceback_on_request(tmp_path):
    proc = _cli([*L4_CLI, "lattice.L=1", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path,
                env={"TRIVFLOW_TRACEBACK": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith("trivflow: error: lattice.L must be")
