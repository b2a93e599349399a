"""Checkpoint and resume: atomic state files, bit-for-bit continuation of HMC, IMH and training,
fingerprint refusal, the Hydra ``resume=`` resolution, and a real SIGKILL of ``python -m trivflow.run``."""

import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import jax
import numpy as np
import pytest
from omegaconf import OmegaConf

from trivflow import hmc, state
from trivflow.hmc import driver, series
from trivflow.lattice.theory import Phi4Theory
from trivflow.samplers import run_imh

THEORY = Phi4Theory(L=4, d=2, beta=0.576, lam=0.5)


class Killed(Exception):
    """Stands for a kill right after the n-th state save."""


def die_after(module, monkeypatch, n: int):
    """Make ``module.save_state`` raise :class:`Killed` right after its ``n``-th successful save
    of a state file (the driver's append-only series parts, ``*.series/part*.npz``, written just
    before each state, are not counted)."""
    calls = [0]

    def save(path, *args, **kwargs):
        state.save_state(path, *args, **kwargs)
        if Path(path).parent.suffix == ".series":
            return
        calls[0] += 1
        if calls[0] == n:
            raise Killed

    monkeypatch.setattr(module, "save_state", save)


def assert_same_result(a, b):
    assert a.observables.keys() == b.observables.keys()
    for name in a.observables:
        np.testing.assert_array_equal(a.observables[name], b.observables[name], err_msg=name)
    for name in ("delta_H", "accepted", "acceptance_prob", "divergent"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=name)
    if a.final_state is not None:
        for x, y in zip(a.final_state, b.final_state):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ---------------------------------------------------------------------------------------------
# state files


def test_state_round_trip_with_keys_and_fingerprint(tmp_path):
    tree = {"x": np.arange(6.0).reshape(2, 3), "keys": jax.random.split(jax.random.key(3), 4),
            "nested": (np.int32(7), {"b": np.array([True, False])})}
    path = tmp_path / "state" / "s.npz"
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / ".s.npz.123.tmp").write_bytes(b"torn")  # left by a killed writer
    state.save_state(path, tree, fingerprint={"lattice.L": 8, "seed": 0}, meta={"t": 5})
    assert not list((tmp_path / "state").glob("*.tmp"))
    back, meta = state.load_state(path, like=tree, fingerprint={"seed": 0, "lattice.L": 8})
    assert meta == {"t": 5}
    np.testing.assert_array_equal(back["x"], tree["x"])
    assert back["keys"].dtype == tree["keys"].dtype
    np.testing.assert_array_equal(jax.random.key_data(back["keys"]), jax.random.key_data(tree["keys"]))
    np.testing.assert_array_equal(jax.random.normal(back["keys"][2]), jax.random.normal(tree["keys"][2]))
    assert back["nested"][0] == 7 and back["nested"][1]["b"].tolist() == [True, False]
    with pytest.raises(state.StateMismatchError) as err:
        state.load_state(path, fingerprint={"lattice.L": 16, "seed": 0, "sampler.name": "hmc"})
    assert str(err.value) == ("state/s.npz was written for lattice.L=8, sampler.name='<unset>', this run has "
                              "lattice.L=16, sampler.name='hmc': delete it or use a new run directory")
    assert isinstance(err.value, ValueError)


def test_config_fingerprint_leaves_out_bookkeeping():
    cfg = OmegaConf.create({"lattice": {"L": 8}, "sampler": {"chunk_size": 10, "num_traj": 5,
                            "checkpoint_every": 1}, "resume": True, "progress": False, "seed": 1})
    assert state.config_fingerprint(cfg) == {"lattice.L": 8, "sampler.num_traj": 5, "seed": 1}


# ---------------------------------------------------------------------------------------------
# library-level resume


def _hmc_run(key=1, **kw):
    pos = hmc.random_positions(jax.random.key(0), 2, THEORY.shape)
    return hmc.run_chains(jax.random.key(key), hmc.phi4_kernel(5), pos, hmc.phi4_params(THEORY, pos.dtype),
                          step_size=0.2, num_traj=16, num_therm=8, measure_fn=hmc.phi4_measure, chunk_size=4,
                          progress=False, **kw)


def test_run_chains_resume_is_bit_for_bit(tmp_path, monkeypatch, caplog):
    ref = _hmc_run()
    # killed after save 1 (in thermalization), 2 (its end), 4 (in measurement); chunks of 4
    for n_saves, phase, t, logged in ((1, "therm", 4, "thermalization step 4 of 8"),
                                      (2, "therm", 8, "measurement step 0 of 16"),
                                      (4, "measure", 16, "measurement step 8 of 16")):
        path = tmp_path / f"hmc{n_saves}.npz"
        die_after(series, monkeypatch, n_saves)
        with pytest.raises(Killed):
            _hmc_run(state_path=path)
        meta = state.read_meta(path)
        assert (meta["phase"], meta["t"]) == (phase, t)
        monkeypatch.setattr(series, "save_state", state.save_state)
        with caplog.at_level("INFO", logger="trivflow"):
            res = _hmc_run(state_path=path, save_every=2)
        # the log counts per phase, as the progress bars do
        assert f"resuming from {path} at {logged}" in caplog.text
        caplog.clear()
        assert res.extra["resumed_at"] == t
        assert_same_result(res, ref)
        assert state.read_meta(path)["phase"] == "done"

    def no_compute(*a, **k):
        raise AssertionError("a completed state must not compute")

    monkeypatch.setattr(driver, "_run_phase", no_compute)
    assert_same_result(_hmc_run(state_path=path), ref)


def test_run_chains_refuses_another_runs_state(tmp_path):
    path = tmp_path / "hmc.npz"
    _hmc_run(state_path=path, fingerprint={"lattice.L": 4})
    with pytest.raises(ValueError, match="was written for lattice.L=4, this run has lattice.L=6"):
        _hmc_run(state_path=path, fingerprint={"lattice.L": 6})
    with pytest.raises(ValueError, match="run_chains.chain_keys="):  # another key, same fingerprint
        _hmc_run(key=2, state_path=path, fingerprint={"lattice.L": 4})


def _gaussian_proposal(key, params):
    phi = 0.9 * jax.random.normal(key, THEORY.shape, dtype=params["beta"].dtype)
    log_q = -0.5 * jax.numpy.sum(phi**2) / 0.81
    return phi, log_q + hmc.phi4_potential(phi, params)


def test_run_imh_resume_is_bit_for_bit(tmp_path, monkeypatch):
    params = hmc.phi4_params(THEORY)
    kw = dict(num_chains=2, num_steps=48, measure_fn=hmc.phi4_measure, batch_size=8, progress=False)
    ref = run_imh(jax.random.key(4), _gaussian_proposal, params, **kw)
    path = tmp_path / "imh.npz"
    # saves: the start (thermalization step 0, the unconditional first proposal), then chunks of 8
    die_after(series, monkeypatch, 3)
    with pytest.raises(Killed):
        run_imh(jax.random.key(4), _gaussian_proposal, params, state_path=path, **kw)
    assert state.read_meta(path)["t"] == 1 + 16
    monkeypatch.setattr(series, "save_state", state.save_state)
    res = run_imh(jax.random.key(4), _gaussian_proposal, params, state_path=path, **kw)
    assert res.extra["resumed_at"] == 1 + 16
    assert_same_result(res, ref)
    assert_same_result(run_imh(jax.random.key(4), _gaussian_proposal, params, state_path=path, **kw), ref)


def test_train_flow_resume_is_bit_for_bit(tmp_path):
    from trivflow.flows import Flow, build_flow, split_flow
    from trivflow.lattice.phi4 import phi4_action
    from trivflow.priors import GaussianPrior
    from trivflow.training import train_flow

    flow = Flow.from_module(*split_flow(build_flow(kernel_size=3, num_layers=1, seed=0)))
    args = (flow, GaussianPrior(THEORY.shape), partial(phi4_action, beta=0.576, lam=0.5))
    kw = dict(steps=30, batch_size=8, lr=0.01, log_every=5, progress=False)
    ref_params, ref_hist = train_flow(jax.random.key(3), *args, **kw)
    path = tmp_path / "train.npz"

    def kill_at_15(step, metrics, p):
        if step == 15:
            raise Killed

    with pytest.raises(Killed):
        train_flow(jax.random.key(3), *args, state_path=path, save_every=1, callback=kill_at_15, **kw)
    assert state.read_meta(path)["done"] == 15 and not state.read_meta(path)["complete"]
    got_params, hist = train_flow(jax.random.key(3), *args, state_path=path, save_every=2, **kw)
    for a, b in zip(jax.tree_util.tree_leaves(ref_params), jax.tree_util.tree_leaves(got_params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for k in ("step", "loss", "ess", "mh_acceptance", "lr"):
        np.testing.assert_array_equal(hist[k], ref_hist[k], err_msg=k)
    assert state.read_meta(path)["complete"]
    with pytest.raises(ValueError, match="train_flow.steps=30.*train_flow.steps=40"):
        train_flow(jax.random.key(3), *args, state_path=path, **{**kw, "steps": 40})


# ---------------------------------------------------------------------------------------------
# experiment and Hydra integration


def test_state_for_another_lattice_is_refused(tmp_path):
    from test_run import TINY, compose_cfg

    from trivflow.app.experiment import run

    run(compose_cfg(["lattice.L=4", "plots=false", "keep_state=true", *TINY]), tmp_path)
    assert (tmp_path / "state" / "hmc.npz").is_file()
    (tmp_path / "results.json").unlink()  # an unfinished run: a finished one is refused before its state is read
    with pytest.raises(state.StateMismatchError) as err:
        run(compose_cfg(["lattice.L=6", "resume=true", "plots=false", *TINY]), tmp_path)
    assert str(err.value) == ("state/hmc.npz was written for lattice.L=4, this run has lattice.L=6: "
                              "delete it or use a new run directory")


def _fake_run(root: Path, name: str, overrides, finished=False, marker=False, mtime=None):
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("\n".join(f"- {o}" for o in overrides) + "\n")
    if finished:
        (d / "results.json").write_text("{}")
    if marker:
        (d / "resumed_in.txt").write_text("elsewhere\n")
    if mtime is not None:
        os.utime(d / ".hydra" / "overrides.yaml", (mtime, mtime))
    return d


def test_find_resumable_run_picks_the_latest_unfinished_match(tmp_path):
    from trivflow.run import find_resumable_run

    ov = ["lattice=L16", "sampler=fhmc"]
    _fake_run(tmp_path, "a", ov, mtime=1000)
    want = _fake_run(tmp_path, "b", [*ov, "progress=false"], mtime=2000)  # progress does not count
    _fake_run(tmp_path, "c", ov, finished=True, mtime=3000)
    _fake_run(tmp_path, "d", ov, marker=True, mtime=4000)  # a job that resumed another one
    _fake_run(tmp_path, "e", ["lattice=L8", "sampler=fhmc"], mtime=5000)
    here = tmp_path / "now"  # this job's new directory: .hydra/ is written only after resolving
    here.mkdir()
    assert find_resumable_run(here, ["resume=true", *reversed(ov)]) == want
    with pytest.raises(ValueError, match=r"resume=true: no unfinished run .*'lattice=L12'"):
        find_resumable_run(here, ["resume=true", "lattice=L12"])
    (here / "state").mkdir()  # a fixed hydra.run.dir with an earlier run's state: resume in place
    assert find_resumable_run(here, ["resume=true", "lattice=L12"]) == here.resolve()
    fixed = _fake_run(tmp_path, "fixed", ov)  # a fixed hydra.run.dir whose job was killed before any state
    assert find_resumable_run(fixed, ["resume=true", *ov]) == fixed.resolve()


# ---------------------------------------------------------------------------------------------
# SIGKILL of the real command line

CLI = ["sampler=fhmc", "lattice.L=4", "sampler.num_chains=2", "sampler.num_traj=1000", "sampler.num_therm=20",
       "sampler.chunk_size=10", "train.steps=600", "train.batch_size=8", "train.log_every=10",
       "train.checkpoint_every=1", "progress=false", "plots=false", "keep_state=true"]


def _start(args, cwd):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen([sys.executable, "-m", "trivflow.run", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_when(proc, path: Path, ready, timeout=600):
    """SIGKILL ``proc`` as soon as the state file ``path`` exists and ``ready(meta)``."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the run ended before it was killed:\n{err[-3000:]}")
        if path.exists():
            try:
                meta = state.read_meta(path)
            except (OSError, ValueError, KeyError):  # pragma: no cover - atomic replace: should not happen
                meta = None
            if meta is not None and ready(meta):
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return state.read_meta(path)
        time.sleep(0.005)
    proc.kill()
    raise AssertionError(f"{path} never became ready")


def _arrays(path):
    arrays, _ = state.load_state(path)
    return arrays


@pytest.mark.slow
def test_sigkill_mid_training_and_mid_sampling_then_resume_equals_uninterrupted(tmp_path):
    cwd = Path(__file__).parent.parent
    ref = _start([*CLI, f"hydra.run.dir={tmp_path / 'ref'}"], cwd)
    out, err = ref.communicate()
    assert ref.returncode == 0, err[-3000:]
    assert "%|" not in err and "it/s" not in err, "progress=false must silence every bar"

    run1 = tmp_path / "runs" / "1"
    meta = _kill_when(_start([*CLI, f"hydra.run.dir={run1}"], cwd), run1 / "state" / "train.npz", lambda m: True)
    assert not meta["complete"] and 0 < meta["done"] < 600, meta  # killed mid-training
    assert not (run1 / "results.json").exists()

    # resume=true finds runs/1 (same overrides, unfinished) from a new directory runs/2
    proc = _start([*CLI, "resume=true", f"hydra.run.dir={tmp_path / 'runs' / '2'}"], cwd)
    meta = _kill_when(proc, run1 / "state" / "fhmc.npz", lambda m: m["phase"] == "measure")
    assert 20 < meta["t"] < 1020, meta  # killed mid-sampling, training complete
    assert state.read_meta(run1 / "state" / "train.npz")["complete"]
    assert (tmp_path / "runs" / "2" / "resumed_in.txt").read_text().strip() == str(run1.resolve())

    proc = _start([*CLI, "resume=true", f"hydra.run.dir={tmp_path / 'runs' / '3'}"], cwd)
    out, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert not (tmp_path / "runs" / "3" / "results.json").exists()

    a = json.loads((tmp_path / "ref" / "results.json").read_text())
    b = json.loads((run1 / "results.json").read_text())
    for key in ("steps", "loss", "ess", "mh_acceptance", "untrained"):
        assert a["training"][key] == b["training"][key], key
    assert a["runs"].keys() == b["runs"].keys() == {"fhmc"}
    for key in ("acceptance", "exp_minus_dH", "observables", "tau_int", "num_divergent"):
        assert a["runs"]["fhmc"][key] == b["runs"]["fhmc"][key], key
    for name in ("train.npz", "fhmc.npz"):
        x, y = _arrays(tmp_path / "ref" / "state" / name), _arrays(run1 / "state" / name)
        assert x.keys() == y.keys()
        for k in x:
            a_, b_ = (jax.random.key_data(v) if jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key) else v
                      for v in (x[k], y[k]))
            np.testing.assert_array_equal(np.asarray(a_), np.asarray(b_), err_msg=f"{name}:{k}")
    if (run1 / "chains.nc").exists():  # the raw chains as written for users
        import arviz as az

        ca, cb = az.from_netcdf(tmp_path / "ref" / "chains.nc"), az.from_netcdf(run1 / "chains.nc")
        assert ca.posterior.equals(cb.posterior) and ca.sample_stats.equals(cb.sample_stats)
