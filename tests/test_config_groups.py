"""Config groups beyond the core ones: action (phi4 | free), analysis (default | wolff), quiet
mode, and the --help text listing every group and option."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import trivflow
from trivflow.app.config import register_configs, validate
from trivflow.app.experiment import run
from trivflow.lattice import free

CONF = Path(trivflow.__file__).parent / "conf"
TINY = ["sampler.num_chains=4", "sampler.num_traj=400", "sampler.num_therm=50", "progress=false"]
register_configs()


def compose_cfg(overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(config_name="config", overrides=overrides)


def test_action_free_sets_lambda_zero_and_reports_exact_values(tmp_path):
    cfg = compose_cfg(["action=free", *TINY])
    assert (cfg.action.name, cfg.lattice.lam, cfg.lattice.beta) == ("free", 0.0, 0.45)
    block = run(cfg, tmp_path)["runs"]["hmc"]
    exact = block["exact"]
    assert exact["chi"] == pytest.approx(1.0 / (2.0 - 4 * 0.45))
    assert exact["G0"] == pytest.approx(free.phi2(8, 2, 0.45))
    assert exact["xi"] == pytest.approx(1.0 / free.mass(2, 0.45))
    # the measured G0 agrees with the exact one (a short run: 5σ, σ from the Γ-method)
    g0, err = block["observables"]["G0"]
    assert abs(g0 - exact["G0"]) < 5 * err


def test_phi4_runs_have_no_exact_block(tmp_path):
    assert "exact" not in run(compose_cfg(TINY), tmp_path)["runs"]["hmc"]


def test_action_free_with_interaction_is_refused():
    with pytest.raises(ValueError, match=r"lattice.lam=0.5 is invalid: expected 0 with action=free"):
        validate(compose_cfg(["action=free", "lattice.lam=0.5"]))


def test_unknown_action_is_refused():
    with pytest.raises(ValueError, match=r"action.name='sine_gordon' is invalid"):
        validate(compose_cfg(["action.name=sine_gordon"]))


def test_analysis_options():
    assert compose_cfg([]).analysis.s_tau == 4.0
    assert compose_cfg(["analysis=wolff"]).analysis.s_tau == 1.5


def _cli(*args, timeout=300):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "trivflow.run", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_help_lists_every_group_and_option():
    out = _cli("--help").stdout
    for group in ("action", "analysis", "experiment", "flow", "lattice", "prior", "sampler", "train"):
        options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
        line = next(row for row in out.splitlines() if row.startswith(f"{group}:"))
        assert all(o in line for o in options), (group, options, line)
    assert "Stable keys" in out


def test_quiet_mode_prints_nothing_but_logs_to_the_run_dir(tmp_path):
    proc = _cli("sampler.num_traj=100", "sampler.num_chains=2", "sampler.num_therm=0", "quiet=true",
                f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == "" and "it/s" not in proc.stderr and "INFO" not in proc.stderr
    assert "results written" in (tmp_path / "run.log").read_text()


def test_help_lists_presets_in_natural_order_and_a_line_per_key():
    import re

    import yaml
    from omegaconf import OmegaConf

    from trivflow.app.config import Config
    from trivflow.state import flatten_config

    help_cfg = yaml.safe_load((CONF / "hydra" / "help" / "trivflow.yaml").read_text())
    lattice = next(row for row in help_cfg["groups"].splitlines() if row.startswith("lattice:"))
    presets = re.findall(r"\bL(\d+)\b", lattice)
    on_disk = sorted(int(p.stem[1:]) for p in (CONF / "lattice").glob("L*.yaml"))
    assert [int(n) for n in presets] == on_disk  # L4, L6, …, L80: natural order, every preset
    keys = help_cfg["keys"]
    listed = set(re.findall(r"[a-z_]+(?:\.[A-Za-z_]+)?", keys))
    for key in flatten_config(OmegaConf.structured(Config)):
        group = key.split(".")[0]
        assert key in listed or f"{group}.*" in keys, f"--help has no line for {key}"
