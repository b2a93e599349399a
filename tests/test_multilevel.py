"""Multilevel flows to any depth (issue 15 §1; docs/theory.md#priors): ``prior=multilevel
prior.levels=N`` is the tower mechanism of which interp4 (N = 1) and interp4_x2 (N = 2) are presets,
bit for bit; its lattices are refused before compute when odd or smaller than the kernel; the whole
tower is one checkpoint (round trip, resume after a kill, reuse at another L); a 3-level tower at
L = 16 samples the same physics as HMC (slow)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from checks import assert_layers_in_turn
from hydra import compose, initialize_config_dir

import trivflow
from trivflow import state
from trivflow.app.config import register_configs, validate
from trivflow.app.experiment import make_plan, run, tower_cost
from trivflow.priors.factory import max_tower_levels, tower_lattice_problem, tower_levels

CONF = str(Path(trivflow.__file__).parent / "conf")
register_configs()

#: a tiny FHMC run (the numbers only have to be reproducible, not precise)
TINY = ["experiment=coarse_interp", "baselines=[]", "sampler=fhmc", "sampler.num_chains=2", "sampler.num_traj=100",
        "sampler.num_therm=10", "train.steps=10", "train.batch_size=8", "train.log_every=5",
        "train.checkpoint_every=1", "progress=false", "plots=false", "prior.ensemble_size=40", "prior.chains=8",
        "prior.therm=20", "prior.spacing=2"]
#: the β of the coarse lattices L = 4 and L = 2 of the tiny towers (the table has no β(2))
X2_L8 = ["lattice=L8", "prior.beta_coarse=0.45", "prior.beta_coarser=0.3"]
ML2_L8 = ["lattice=L8", "prior.betas=[0.45,0.3]"]


def compose_cfg(overrides):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        return compose(config_name="config", overrides=overrides)


#: results.json keys that hold timings, paths or the config (everything else must be equal)
_NOT_NUMBERS = ("seconds", "traj_per_second", "versions", "command", "config", "memory_estimate")


def numbers(tree, path="") -> dict:
    """Every number of a results.json tree by its path, timings and the config left out."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() if not any(s in key for s in _NOT_NUMBERS)
                for k, v in numbers(sub, f"{path}/{key}").items()}
    if isinstance(tree, list):
        return {k: v for i, sub in enumerate(tree) for k, v in numbers(sub, f"{path}[{i}]").items()}
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return {path: tree}
    return {}


def assert_same_numbers(a: dict, b: dict, *, at_least: int):
    na, nb = numbers(a), numbers(b)
    assert na.keys() == nb.keys()
    diff = {k: (na[k], nb[k]) for k in na if not (na[k] == nb[k] or (na[k] != na[k] and nb[k] != nb[k]))}
    assert not diff, diff
    assert len(na) >= at_least  # the comparison covers the chains' numbers, not only a header


def assert_same_chains(dir_a: Path, dir_b: Path):
    """The main run's chains (every stored series, every group of chains.nc) are identical."""
    from trivflow.io import load_chains

    a, b = load_chains(dir_a), load_chains(dir_b)
    assert a.groups() == b.groups()
    compared = 0
    for group in a.groups():
        for name, var in getattr(a, group).data_vars.items():
            np.testing.assert_array_equal(var.values, getattr(b, group)[name].values, err_msg=f"{group}/{name}")
            compared += var.size
    assert compared > 0


_RUNS: dict = {}


def run_once(name: str, overrides, tmp_path_factory) -> tuple[Path, dict]:
    """A tiny run shared by the tests of one worker: ``(run dir, results)``."""
    if name not in _RUNS:
        where = tmp_path_factory.mktemp(name)
        _RUNS[name] = (where, run(compose_cfg([*TINY, *overrides]), where))
    return _RUNS[name]


# ------------------------------------------------------------------------------------------------
# the tower's plan and lattices (no compute)
# ------------------------------------------------------------------------------------------------


def test_tower_levels_of_the_presets_and_of_three_levels():
    cfg = {"name": "multilevel", "levels": 3, "betas": [None, None, 0.3], "ensembles": [None, "e4.npz", None]}
    lv = tower_levels(cfg, 16, 0.634)
    # g_j at L/2^(N-j), coarsest first; each from interp4 of the ensemble one level below
    assert [x["L"] for x in lv] == [4, 8, 16]
    assert [x["beta"] for x in lv] == [0.45, 0.576, 0.634]
    assert [x["prior"]["beta_coarse"] for x in lv] == [0.3, 0.45, 0.576]
    assert [x["prior"]["ensemble"] for x in lv] == [None, "e4.npz", None]
    assert {x["prior"]["name"] for x in lv} == {"interp4"}
    # the presets are the same mechanism with N = 1 and N = 2
    assert tower_levels({"name": "interp4", "beta_coarse": 0.5}, 8, 0.576) == \
        tower_levels({"name": "multilevel", "levels": 1, "betas": [0.5]}, 8, 0.576)
    x2 = {"name": "interp4_x2", "beta_coarse": 0.45, "beta_coarser": 0.3, "ensemble": "a", "ensemble_coarser": "b"}
    assert tower_levels(x2, 8, 0.576) == tower_levels(
        {"name": "multilevel", "levels": 2, "betas": [0.45, 0.3], "ensembles": ["a", "b"]}, 8, 0.576)


def test_plan_of_levels_1_and_2_is_the_plan_of_interp4_and_interp4_x2(tmp_path):
    """Same lattices, couplings, directories and interp4 prior keys per level: the presets and
    multilevel run the same trainings (the bit-for-bit runs below check the numbers)."""
    def plan(overrides):
        cfg = compose_cfg([*TINY, *overrides])
        (fp,) = make_plan(cfg, validate(cfg), tmp_path).flows.values()
        keys = ("name", "beta_coarse", "ensemble", "ensemble_size", "spacing", "therm", "chains", "seed", "noise")
        return [(lv.directory, lv.L, lv.beta, {k: lv.prior[k] for k in keys}) for lv in fp.levels]

    assert plan(["prior=interp4", "lattice=L8"]) == plan(["prior=multilevel", "prior.levels=1", "lattice=L8"])
    assert plan(["prior=interp4_x2", *X2_L8]) == plan(["prior=multilevel", *ML2_L8])
    three = plan(["prior=multilevel", "prior.levels=3", "lattice=L16", "prior.betas=[null,null,0.3]"])
    assert [d for d, *_ in three] == [tmp_path / "coarse" / "coarse", tmp_path / "coarse", tmp_path]


@pytest.mark.parametrize("L,levels,kernel,problem", [
    (16, 3, 3, None), (32, 4, 3, None), (12, 2, 3, None), (8, 2, 3, None), (4, 1, 3, None),
    (12, 3, 3, "L/4 = 3 is odd"), (10, 2, 3, "L/2 = 5 is odd"), (7, 1, 3, "L=7 is odd"),
    (16, 3, 5, "g1 would be trained at L/4 = 4, smaller than the flow's kernel_size=5"),
    (16, 4, 3, "g1 would be trained at L/8 = 2, smaller"), (8, 3, 1, "coarsest ensemble lattice L/8 = 1"),
])
def test_tower_lattice_problem(L, levels, kernel, problem):
    got = tower_lattice_problem(L, levels, kernel)
    assert got is None if problem is None else problem in got
    assert max_tower_levels(L, kernel) >= levels if problem is None else max_tower_levels(L, kernel) < levels


@pytest.mark.parametrize("overrides,message", [
    (["prior.levels=3", "lattice=L12"],
     r"^prior.levels=3 is invalid for lattice.L=12: the coarse lattice L/4 = 3 is odd .*at most prior.levels=2 fits$"),
    (["prior.levels=3", "lattice=L16", "flow.kernel_size=5", "prior.betas=[null,null,0.3]"],
     r"^prior.levels=3 is invalid for lattice.L=16: the flow g1 would be trained at L/4 = 4, smaller than the "
     r"flow's kernel_size=5"),
    (["prior.levels=5", "lattice=L16", "train.L=8", "train.beta=0.576"], r"^prior.levels=5 is invalid for train.L=8"),
    (["prior.levels=0"], r"^prior.levels=0 is invalid: expected an integer >= 1"),
    (["prior.levels=3", "lattice=L16"],
     r"^prior.betas\[2\] is null .* no beta for L=2 .*set prior.betas=\[null,null,<beta with xi = 0.5 at L=2>\]"),
    (["prior.levels=3", "prior.betas=[0.5,0.4]"], r"^prior.betas=\[0.5, 0.4\] is invalid: expected null or a list"),
    (["prior.ensembles=[/nonexistent.npz,null]"], r"^prior.ensembles\[0\]='/nonexistent.npz'"),
    (["prior.beta_coarse=0.5"], r"^prior.beta_coarse=0.5 is set but prior.name='multilevel' reads prior.betas"),
    (["prior.levels=3", "lattice=L16", "prior.betas=[null,null,0.3]", "baselines=[imh]"],
     r"^baselines='imh' is invalid: expected fhmc with prior multilevel"),
])
def test_bad_multilevel_configs_are_refused_before_compute(overrides, message):
    with pytest.raises(ValueError, match=message):
        validate(compose_cfg(["experiment=coarse_interp", "prior=multilevel", *overrides]))


def test_multilevel_keys_with_another_prior_are_refused():
    with pytest.raises(ValueError, match=r"^prior.levels=3 is set but prior.name='interp4'"):
        validate(compose_cfg(["experiment=coarse_interp", "prior.levels=3"]))
    # ... unless a baseline trains a multilevel tower
    validate(compose_cfg(["experiment=coarse_interp", "prior.levels=2", "baselines=[fhmc@multilevel]"]))


def test_cli_refusal_is_one_line_naming_key_value_and_reason(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-m", "trivflow.run", "sampler=fhmc", "prior=multilevel", "prior.levels=3",
                          "lattice=L12", f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, timeout=300,
                         env=env, cwd=tmp_path)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.startswith("trivflow: error:")]
    assert lines == ["trivflow: error: prior.levels=3 is invalid for lattice.L=12: the coarse lattice L/4 = 3 is odd "
                     "and cannot be halved (L must be a multiple of 2^3 = 8); at most prior.levels=2 fits"]
    assert not (tmp_path / "priors").exists() and not (tmp_path / "results.json").exists()


def test_tower_cost_adds_training_and_ensemble_seconds():
    blocks = [{"seconds": 2.0, "compile_seconds": 0.5, "lattice": {"L": 4},
               "prior": {"ensemble_meta": {"seconds": 3.0}}},
              {"seconds": 5.0, "compile_seconds": 1.0, "lattice": {"L": 8}, "prior": {"ensemble_meta": {}}}]
    assert tower_cost(blocks) == {"levels": 2, "lattices": [4, 8], "train_seconds": 7.0, "compile_seconds": 1.5,
                                  "ensemble_seconds": 3.0, "ensemble_seconds_per_level": [3.0, 0.0],
                                  "total_seconds": 10.0}


# ------------------------------------------------------------------------------------------------
# bit for bit: levels = 1 is interp4, levels = 2 is interp4_x2
# ------------------------------------------------------------------------------------------------


def test_levels_1_reproduces_interp4_bit_for_bit(tmp_path_factory):
    a_dir, a = run_once("interp4_L4", ["prior=interp4", "lattice=L4", "prior.beta_coarse=0.3"], tmp_path_factory)
    b_dir, b = run_once("ml1_L4", ["prior=multilevel", "prior.levels=1", "lattice=L4", "prior.betas=[0.3]"],
                        tmp_path_factory)
    assert_same_numbers(a, b, at_least=60)
    assert_same_chains(a_dir, b_dir)
    assert b["training"]["tower"]["levels"] == 1 and b["training"]["tower"]["lattices"] == [4]


def test_levels_2_reproduces_interp4_x2_bit_for_bit(tmp_path_factory):
    a_dir, a = run_once("x2_L8", ["prior=interp4_x2", *X2_L8], tmp_path_factory)
    b_dir, b = run_once("ml2_L8", ["prior=multilevel", *ML2_L8], tmp_path_factory)
    assert_same_numbers(a, b, at_least=100)
    assert_same_chains(a_dir, b_dir)
    tower = b["training"]["tower"]
    assert tower["levels"] == 2 and tower["lattices"] == [4, 8] and b["training"]["coarse"]["lattice"]["L"] == 4
    # the cost is the sum of the levels' training seconds and of their ensembles' generation seconds
    levels = [b["training"]["coarse"], b["training"]]
    assert tower["train_seconds"] == pytest.approx(sum(tr["seconds"] for tr in levels), rel=1e-12)
    ens = [tr["prior"]["ensemble_meta"]["seconds"] for tr in levels]
    assert tower["ensemble_seconds_per_level"] == ens and all(s > 0 for s in ens)
    assert tower["total_seconds"] == pytest.approx(tower["train_seconds"] + sum(ens), rel=1e-12)
    assert b["flow"]["prior"] == "multilevel" and b["runs"]["fhmc"]["prior"] == "multilevel"


# ------------------------------------------------------------------------------------------------
# the tower as one checkpoint
# ------------------------------------------------------------------------------------------------


def test_tower_checkpoint_round_trip_and_reuse_at_another_L(tmp_path_factory, tmp_path):
    """The saved tower, loaded with flow.checkpoint, samples exactly as the trained one did (same
    seed, same chains); at L = 12 (not a multiple of 4: the tower's lattices do not apply to a
    loaded flow) it samples too, as g2 ∘ g1."""

    ml_dir, ml = run_once("ml2_L8", ["prior=multilevel", *ML2_L8], tmp_path_factory)
    assert (ml_dir / "flow" / "coarse" / "flow_config.json").is_file()
    again = run(compose_cfg([*TINY, "lattice=L8", f"flow.checkpoint={ml_dir}"]), tmp_path / "L8")
    assert again["flow"]["coarse"]["lattice"]["L"] == 4 and "training" not in again
    assert numbers(again["runs"]) == numbers(ml["runs"])  # every number of the sampler run
    assert_same_chains(ml_dir, tmp_path / "L8")

    cfg12 = compose_cfg([*TINY, "lattice=L12", f"flow.checkpoint={ml_dir}"])
    other = run(cfg12, tmp_path / "L12")
    assert other["lattice"]["L"] == 12 and other["runs"]["fhmc"]["acceptance"] > 0.5
    plan = make_plan(cfg12, validate(cfg12), tmp_path / "unused")
    from trivflow.app.experiment import prepare_flow

    loaded = prepare_flow(plan.flows["interp4"], cfg12, validate(cfg12), tmp_path / "unused", progress=False)
    assert_layers_in_turn(loaded.flow, jax.random.normal(jax.random.key(1), (12, 12)))


class Killed(Exception):
    """Stands for a kill right after a training state was saved."""


@pytest.mark.parametrize("kill_after", [1, 3])  # mid g1 (the coarse level), mid g2 (g1 complete)
def test_tower_resumes_bit_for_bit_after_a_kill(tmp_path_factory, tmp_path, monkeypatch, kill_after):
    """Killed right after the n-th save of a training state (two per level with these settings),
    the resumed run (resume=true) ends with every number and chain of the uninterrupted one."""
    ref_dir, ref = run_once("ml2_L8", ["prior=multilevel", *ML2_L8], tmp_path_factory)
    save, saves = state.save_state, []

    def save_then_die(path, *args, **kwargs):
        save(path, *args, **kwargs)
        if Path(path).name == "train.npz":
            saves.append(Path(path))
            if len(saves) == kill_after:
                raise Killed

    monkeypatch.setattr(state, "save_state", save_then_die)
    with pytest.raises(Killed):
        run(compose_cfg([*TINY, "prior=multilevel", *ML2_L8]), tmp_path)
    monkeypatch.setattr(state, "save_state", save)
    killed_in = saves[-1].parent.parent
    assert killed_in == (tmp_path / "coarse" if kill_after == 1 else tmp_path)
    assert not state.read_meta(saves[-1])["complete"]
    resumed = run(compose_cfg([*TINY, "prior=multilevel", *ML2_L8, "resume=true"]), tmp_path)
    assert_same_numbers(ref, resumed, at_least=100)
    assert_same_chains(ref_dir, tmp_path)
    assert (tmp_path / "flow" / "coarse" / "flow_config.json").is_file()


# ------------------------------------------------------------------------------------------------
# exactness of a 3-level tower at L = 16
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_three_level_tower_at_L16_samples_the_physics_of_hmc(tmp_path):
    """FHMC with g3 ∘ g2 ∘ g1 (trained at 4, 8, 16 from interp4 of HMC ensembles at 2, 4, 8) and
    HMC at L = 16, β = 0.634 in one run: every observable agrees within 4 combined standard
    errors (Γ-method). The tower is one checkpoint: flow/coarse/coarse holds g1."""
    from trivflow.flows import Compose

    cfg = compose_cfg(["experiment=coarse_interp", "prior=multilevel", "prior.levels=3", "lattice=L16",
                       "prior.betas=[null,null,0.3]", "baselines=[hmc]", "sampler.num_chains=16",
                       "sampler.num_traj=3000", "sampler.num_therm=200", "train.steps=200", "train.batch_size=64",
                       "prior.ensemble_size=512", "prior.chains=32", "prior.therm=100", "prior.spacing=4",
                       "progress=false", "plots=false"])
    results = run(cfg, tmp_path)
    tower = results["training"]["tower"]
    assert tower["levels"] == 3 and tower["lattices"] == [4, 8, 16]
    assert results["training"]["coarse"]["coarse"]["prior"]["source"]["L"] == 2
    assert (tmp_path / "flow" / "coarse" / "coarse" / "flow_config.json").is_file()
    fhmc, hmc_ = results["runs"]["fhmc"], results["runs"]["hmc"]
    assert fhmc["acceptance"] > 0.5
    pulls = {}
    for name, (a, da) in ((k, v[:2]) for k, v in fhmc["observables"].items()):
        b, db = hmc_["observables"][name][:2]
        if a is None or b is None or not (da and db):
            continue
        pulls[name] = (a - b) / math.hypot(da, db)
    print(json.dumps({"fhmc": fhmc["observables"], "hmc": hmc_["observables"], "pulls": pulls,
                      "tau_int": {"fhmc": fhmc["tau_int"], "hmc": hmc_["tau_int"]}, "tower": tower}))
    assert len(pulls) >= 3 and all(abs(p) < 4 for p in pulls.values()), pulls
    loaded = make_plan(compose_cfg(["lattice=L16", "sampler=fhmc", f"flow.checkpoint={tmp_path}"]),
                       validate(cfg), tmp_path / "unused")
    assert [fp.checkpoint for fp in loaded.flows.values()] == [tmp_path / "flow"]  # the whole tower, one checkpoint
    from trivflow.app.experiment import load_checkpoint

    module = load_checkpoint(tmp_path / "flow", validate(cfg), {}).flow.module()
    assert isinstance(module, Compose) and isinstance(module.layers[0], Compose)  # (g1, g2), then g3


@pytest.mark.parametrize("overrides,lattices", [
    ([], [4, 8, 16]),
    (["lattice=L8", "prior.levels=2", "prior.betas=[null,0.3]"], [2, 4, 8]),
    (["prior.levels=3", "prior.betas=[null,null,0.3]", "baselines=[hmc,fhmc@gaussian,fhmc@interp4,fhmc@interp4_x2]"],
     [2, 4, 8, 16]),
    (["lattice.L=32", "lattice.beta=0.66", "prior.levels=4", "prior.betas=[null,null,null,0.3]", "baselines=[]"],
     [2, 4, 8, 16, 32]),
])
def test_experiment_multilevel_preset_composes(tmp_path, overrides, lattices):
    """experiment=multilevel (experiments/multilevel): FHMC with a tower, HMC and the Gaussian and
    interp4 flows beside it, every sampler adapting its step size; the study's overrides validate and
    plan the tower from the coarsest ensemble lattice up to L."""
    cfg = compose_cfg(["experiment=multilevel", "progress=false", *overrides])
    assert (cfg.experiment, cfg.sampler.name, cfg.prior.name) == ("multilevel", "fhmc", "multilevel")
    assert cfg.sampler.adapt_step_size and cfg.sampler.target_accept == 0.8 and cfg.sampler.num_steps == 10
    if not overrides:
        assert list(cfg.baselines) == ["hmc", "fhmc@gaussian", "fhmc@interp4"] and cfg.prior.levels == 2
    plan = make_plan(cfg, validate(cfg), tmp_path)
    tower = plan.flows["multilevel"].levels
    assert [lv.L for lv in tower] == lattices[1:]
    assert tower[0].prior["name"] == "interp4"
