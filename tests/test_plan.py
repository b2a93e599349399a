"""Plan, then execute: ``sampler@prior``, ``baselines``, ``volumes`` and the coarse-level tower are
parsed once into a Plan (no compute), and old states are removed up front, not by getters."""

from pathlib import Path

from hydra import compose, initialize_config_dir

import trivflow
from trivflow.app.config import register_configs, validate
from trivflow.app.experiment import make_plan, remove_old_states

CONF = str(Path(trivflow.__file__).parent / "conf")
register_configs()


def compose_cfg(overrides):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        return compose(config_name="config", overrides=overrides)


def test_plan_of_a_tower_with_baselines_and_volumes(tmp_path):
    cfg = compose_cfg(["experiment=coarse_interp", "prior=interp4_x2", "lattice=L16",
                       "baselines=[hmc,fhmc@gaussian,imh@gaussian]", "volumes=[32]"])
    theory = validate(cfg)
    plan = make_plan(cfg, theory, tmp_path)
    assert list(plan.flows) == ["interp4_x2", "gaussian"]  # one flow per prior, in order of first use
    tower = plan.flows["interp4_x2"]
    assert tower.checkpoint is None
    assert [(lv.directory, lv.L, lv.prior["name"]) for lv in tower.levels] == [
        (tmp_path / "coarse", 8, "interp4"), (tmp_path, 16, "interp4")]
    coarse, fine = tower.levels
    assert coarse.beta == 0.576 and coarse.prior["beta_coarse"] == 0.45  # β(L/2) trained from β(L/4)
    assert fine.beta == theory.beta and fine.prior["beta_coarse"] == 0.576
    assert coarse.prior["beta_coarser"] is None and coarse.prior["ensemble_coarser"] is None
    (gauss,) = plan.flows["gaussian"].levels
    assert gauss.directory == tmp_path / "trainings" / "gaussian" and gauss.prior["name"] == "gaussian"
    assert [(j.label, j.sampler, j.prior, j.theory.L) for j in plan.jobs] == [
        ("fhmc", "fhmc", "interp4_x2", 16), ("hmc", "hmc", None, 16), ("fhmc@gaussian", "fhmc", "gaussian", 16),
        ("imh@gaussian", "imh", "gaussian", 16), ("fhmc_L32", "fhmc", "interp4_x2", 32)]
    assert plan.jobs[-1].theory == theory.with_extent(32)


def test_a_checkpoint_is_loaded_not_trained_and_old_states_go_up_front(tmp_path):
    cfg = compose_cfg(["sampler=hmc", "baselines=[fhmc]"])
    loaded = make_plan(compose_cfg(["sampler=fhmc", f"flow.checkpoint={tmp_path / 'old'}"]), validate(cfg), tmp_path)
    assert loaded.flows["gaussian"].levels == () and loaded.flows["gaussian"].checkpoint == tmp_path / "old"
    assert loaded.state_paths(tmp_path) == [tmp_path / "state" / "fhmc.npz"]
    plan = make_plan(cfg, validate(cfg), tmp_path)
    assert [lv.directory for lv in plan.flows["gaussian"].levels] == [tmp_path]
    paths = plan.state_paths(tmp_path)
    assert paths == [tmp_path / "state" / "train.npz", tmp_path / "state" / "hmc.npz",
                     tmp_path / "state" / "fhmc.npz"]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("old")
    keep = tmp_path / "state" / "other.npz"
    keep.write_text("not this plan's")
    remove_old_states(plan, tmp_path, resume=True)
    assert all(p.exists() for p in paths)
    remove_old_states(plan, tmp_path, resume=False)
    assert not any(p.exists() for p in paths) and keep.exists()
    # hmc alone needs no flow at all
    assert make_plan(compose_cfg([]), validate(compose_cfg([])), tmp_path).flows == {}
