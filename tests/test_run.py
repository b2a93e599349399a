"""Entry point and configuration: composition, validation before compute, the results.json contract."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

import trivflow
from trivflow.app.config import register_configs, validate
from trivflow.app.experiment import run
from trivflow.lattice import Phi4Theory
from trivflow.theory import THEORIES, coupling_names

CONF = str(Path(trivflow.__file__).parent / "conf")
TINY = ["sampler.num_chains=2", "sampler.num_traj=200", "sampler.num_therm=10", "sampler.batch_size=100",
        "train.steps=20", "train.batch_size=16", "train.log_every=10", "progress=false",
        # coarse priors: a small prior ensemble (every prior schema has these keys)
        "prior.ensemble_size=64", "prior.chains=4", "prior.therm=20", "prior.spacing=2"]
#: TINY without the keys a plain-HMC job does not read: the command line refuses those
#: (trivflow.app.config.refuse_unread_overrides); library calls of run() accept TINY whole
TINY_HMC = [o for o in TINY if not o.startswith(("train.", "prior.", "sampler.batch_size="))]
register_configs()


def compose_cfg(overrides):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        return compose(config_name="config", overrides=overrides)


def test_default_config_is_the_small_l8_job():
    cfg = compose_cfg([])
    assert (cfg.lattice.L, cfg.lattice.beta, cfg.lattice.lam) == (8, 0.576, 0.5)
    assert cfg.sampler.name == "hmc" and cfg.precision == "float64"


#: experiments whose tiny run still takes minutes on 2 CPU cores (compiling an 8-layer gauge flow three
#: times: training, evaluation, FHMC); the same path runs by default at small size in tests/test_u1_flows.py
SLOW_EXPERIMENTS = ("u1_topology",)


@pytest.mark.parametrize("experiment", [
    pytest.param(e, marks=pytest.mark.slow) if e in SLOW_EXPERIMENTS else e
    for e in sorted(p.stem for p in (Path(CONF) / "experiment").glob("*.yaml"))])
def test_every_experiment_composes_and_runs_with_tiny_overrides(experiment, tmp_path):
    cfg = compose_cfg([f"experiment={experiment}", *TINY])
    results = run(cfg, tmp_path)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["experiment"] == experiment == results["experiment"]
    assert set(on_disk["lattice"]) == set(coupling_names(cfg.action.name))  # φ⁴: L, d, beta, lam
    assert on_disk["runs"], "no sampler ran"
    for hmc in on_disk["runs"].values():
        check_run_block(hmc, THEORIES[cfg.action.name])
    if "training" in on_disk:
        assert on_disk["training"]["steps"] == 20
        assert (tmp_path / "flow" / "flow_config.json").exists()
    if cfg.task == "sample":
        check_artifacts(tmp_path, on_disk, cfg)


def check_artifacts(run_dir, results, cfg):
    """Every artifact of docs/results.md, read back through trivflow.io."""
    from trivflow import io

    assert io.load_results(run_dir) == results
    primary = THEORIES[cfg.action.name].primary_observable  # φ⁴: M
    for label, block in results["runs"].items():
        data = io.load_chains(run_dir, label)
        n_meas = block["num_traj"] // block["meas_every"]
        assert data.posterior[primary].shape == (block["num_chains"], n_meas)
        assert data.posterior.attrs["sampler"] == block["sampler"]
        if block["sampler"] != "nuts":
            assert data.sample_stats["accepted"].shape == (block["num_chains"], block["num_traj"])
            assert not (run_dir / "state").exists()  # removed once finished (keep_state=false)
        assert list((run_dir / "plots").glob(f"{label}_*.png")), f"no plots of {label}"
    for label, block in results["runs"].items():
        check_cost(block, results, cfg)
    if "training" in results and "family" in results["flow"]:  # a theory's own flows (u1: gauge flows)
        stored = json.loads((run_dir / "flow" / "flow_config.json").read_text())
        assert stored["family"] == results["flow"]["family"] and stored["kernel_size"] == cfg.flow.kernel_size
    elif "training" in results:
        graphdef, params, flow_config = io.load_flow(run_dir)
        assert flow_config["kernel_size"] == cfg.flow.kernel_size
        history = io.load_training_history(run_dir)
        assert len(history["loss"]) == 20
        assert (run_dir / "plots" / "training.png").is_file()
    assert io.load_config(run_dir).experiment == cfg.experiment


def _hand_setup_seconds(training):
    """Training seconds of every level plus each level's prior-ensemble generation seconds."""
    if not training:
        return 0.0
    ens = training.get("prior", {}).get("ensemble_meta", {}).get("seconds", 0.0)
    return training["seconds"] + ens + _hand_setup_seconds(training.get("coarse"))


def check_cost(block, results, cfg):
    """results.json ``cost`` against a hand computation from the block's own numbers."""
    cost, s = block["cost"], cfg.sampler
    primary = next(iter(block["tau_int"]))  # the theory's primary observable comes first
    assert cost["observable"] == primary
    tau, tau_err = block["tau_int"][primary][:2]
    n = block["num_chains"] * block["num_traj"]
    steps = {"leapfrog": 1, "omelyan": 2}[s.integrator] * s.num_steps
    force, flow = {"hmc": (steps, 0), "fhmc": (steps, steps), "imh": (0, 1)}.get(block["sampler"], (None, 0))
    if block["sampler"] == "nuts":
        assert cost["per_traj"]["force_evals"] >= 1
        force = cost["per_traj"]["force_evals"]
    assert (cost["per_traj"]["force_evals"], cost["per_traj"]["flow_evals"]) == (force, flow)
    assert cost["per_traj"]["seconds"] == pytest.approx(block["seconds"] / n)
    if tau is None:  # no tau_int: no per-sample figures
        assert cost["per_indep"]["force_evals"] == cost["amortised_seconds_per_indep"] == [None, None]
        return
    assert cost["per_indep"]["force_evals"] == pytest.approx([2 * tau * force, 2 * tau_err * force])
    assert cost["per_indep"]["seconds"] == pytest.approx([2 * tau * block["seconds"] / n,
                                                          2 * tau_err * block["seconds"] / n])
    uses_flow = block["sampler"] in ("fhmc", "imh")
    training = (results.get("trainings", {}).get(block.get("prior")) or results.get("training")) if uses_flow else None
    setup = _hand_setup_seconds(training)
    assert cost["setup_seconds"] == pytest.approx(setup)
    total = setup + block["therm_seconds"] + block["seconds"]
    assert cost["amortised_seconds_per_indep"][0] == pytest.approx(2 * tau * total / n)


def check_run_block(hmc, theory=Phi4Theory):
    for key in ("sampler", "num_chains", "num_traj", "acceptance", "exp_minus_dH", "observables",
                "tau_int", "seconds", "traj_per_second"):
        assert key in hmc, key
    if theory is Phi4Theory:
        assert set(hmc["observables"]) >= {"M2", "absM", "chi", "G0", "xi"}
    assert set(hmc["tau_int"]) == set(theory.tau_observables)  # φ⁴: M, absM, M2
    assert len(hmc["tau_int"][theory.primary_observable]) == 3 and hmc["num_traj"] == 200
    assert 0.0 <= hmc["acceptance"] <= 1.0


def test_free_preset_and_meas_every(tmp_path):
    cfg = compose_cfg(["lattice=free", "sampler.meas_every=2", *TINY])
    results = run(cfg, tmp_path)
    assert results["lattice"]["lam"] == 0.0
    assert results["runs"]["hmc"]["meas_every"] == 2


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["lattice.L=1"], "lattice.L must be an integer >= 2, got L=1"),
        (["lattice.lam=-0.5"], "lattice.lam must be >= 0.*lam=-0.5"),
        (["lattice.lam=0", "lattice.beta=0.6"], "lattice.beta=0.6 with lam=0 is unstable"),
        (["sampler.traj_length=0"], "sampler.traj_length=0.0 is invalid"),
        (["sampler.traj_length=-1"], "sampler.traj_length=-1.0 is invalid"),
        (["sampler.num_steps=0"], "sampler.num_steps=0 is invalid"),
        (["sampler.num_traj=0"], "sampler.num_traj must be an integer >= 1, got num_traj=0"),
        (["sampler.num_chains=0"], "sampler.num_chains=0 is invalid"),
        (["sampler.num_therm=-3"], "num_therm=-3"),
        (["sampler.integrator=euler"], "sampler.integrator='euler' is invalid"),
        (["precision=float16"], "precision='float16' is invalid"),
        (["analysis.s_tau=0"], "analysis.s_tau=0.0 is invalid"),
        (["analysis.plateau=[3,9]"], r"analysis.plateau=\[3, 9\] is invalid"),
    ],
)
def test_bad_values_fail_before_compute_naming_key_and_value(overrides, message):
    cfg = compose_cfg(overrides)
    with pytest.raises(ValueError, match=message):
        validate(cfg)


def test_wrong_type_fails_at_composition():
    with pytest.raises(ConfigCompositionException, match="lattice.L=big") as info:
        compose_cfg(["lattice.L=big"])
    assert isinstance(info.value.__cause__, ValidationError)
    assert "could not be converted to Integer" in str(info.value.__cause__)


def test_unknown_lattice_preset_fails_at_composition():
    with pytest.raises(ConfigCompositionException, match="L17"):
        compose_cfg(["lattice=L17"])


def _cli(args, cwd):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "trivflow.run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_writes_results_in_the_hydra_run_dir(tmp_path):
    proc = _cli([*TINY_HMC, "lattice=L6", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["lattice"]["L"] == 6
    assert (tmp_path / "run" / ".hydra" / "config.yaml").exists()


def test_cli_bad_input_exits_nonzero_with_a_one_line_message(tmp_path):
    proc = _cli(["lattice.L=1", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert proc.returncode != 0
    assert "trivflow: error: lattice.L must be an integer >= 2, got L=1" in proc.stderr
    assert not (tmp_path / "run" / "results.json").exists()
    proc = _cli(["lattice=L17"], tmp_path)
    assert proc.returncode != 0 and "L17" in proc.stderr


def test_cli_help_lists_groups(tmp_path):
    proc = _cli(["--help"], tmp_path)
    assert proc.returncode == 0
    assert "lattice: L10" in proc.stdout.replace(",", "") or "lattice:" in proc.stdout
    assert "sampler" in proc.stdout


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["sampler=fhmc", "lattice.L=7"], "lattice.L=7 is invalid: expected an even lattice extent"),
        (["sampler=imh", "flow.kernel_size=4"], "kernel_size=4"),
        (["sampler=fhmc", "flow.kernel_size=0"], "kernel_size=0"),
        (["sampler=fhmc", "flow.num_layers=0"], "num_layers=0"),
        (["sampler=fhmc", "flow.activation=relu6x"], "relu6x"),
        (["sampler=fhmc", "flow.compute_dtype=float8"], "flow.compute_dtype must be one of"),
        (["sampler=fhmc", "lattice.d=3"], "lattice.d=3 is invalid"),
        (["sampler=fhmc", "volumes=[16,17]"], "volumes=17 is invalid"),
        (["sampler=fhmc", "train.L=9"], "train.L=9 is invalid"),
        (["sampler=fhmc", "train.lr=0"], "train.lr=0.0 is invalid"),
        (["sampler=fhmc", "train.batch_size=1"], "train.batch_size=1 is invalid"),
        (["sampler=fhmc", "prior.name=uniform"], "prior.name='uniform' is invalid"),
        (["baselines=[hmc,metropolis]"], "baselines='metropolis' is invalid"),
        (["volumes=[16]"], "volumes=.* is invalid: expected empty unless sampler.name is a flow sampler"),
        (["sampler=nuts", "sampler.target_accept=1.5"], "sampler.target_accept=1.5 is invalid"),
    ],
)
def test_bad_flow_and_sampler_values_fail_before_compute(overrides, message):
    with pytest.raises(ValueError, match=message):
        validate(compose_cfg(overrides))


def test_flow_checkpoint_is_reused_at_another_volume_and_checked(tmp_path):
    """Train at L = 8, then sample with flow.checkpoint=<run dir> at L = 12 without training."""
    first = run(compose_cfg(["sampler=fhmc", "lattice=L8", *TINY]), tmp_path / "train")
    assert first["training"]["steps"] == 20 and first["flow"]["lattice"]["L"] == 8
    reused = run(compose_cfg(["sampler=fhmc", "lattice.L=12", f"flow.checkpoint={tmp_path / 'train'}", *TINY]),
                 tmp_path / "reuse")
    assert "training" not in reused and reused["flow"]["lattice"]["L"] == 8
    assert reused["runs"]["fhmc"]["lattice"]["L"] == 12
    with pytest.raises(ValueError, match="kernel_size=5"):
        run(compose_cfg(["sampler=fhmc", "flow.kernel_size=5", f"flow.checkpoint={tmp_path / 'train'}", *TINY]),
            tmp_path / "bad")
    with pytest.raises(ValueError,
                       match=r"flow.checkpoint=.*nothing.* is invalid: .*no flow checkpoint.*does not exist"):
        run(compose_cfg(["sampler=fhmc", f"flow.checkpoint={tmp_path / 'nothing'}", *TINY]), tmp_path / "bad2")
