"""Run-directory artifacts: experiment.run writes them, trivflow.io reads them back unchanged."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import trivflow
from trivflow import io
from trivflow.analysis import gamma_method
from trivflow.app.config import register_configs
from trivflow.app.experiment import run
from trivflow.lattice import Phi4Theory

CONF = str(Path(trivflow.__file__).parent / "conf")
# FHMC and an extra volume: two run labels (chains.nc, chains_fhmc_L4.nc), meas_every = 2
TINY = ["sampler=fhmc", "lattice=L6", "volumes=[4]", "sampler.num_chains=3",
        "sampler.num_traj=60", "sampler.num_therm=10", "sampler.meas_every=2", "sampler.chunk_size=30",
        "train.steps=10", "train.batch_size=8", "train.log_every=5", "progress=false"]
register_configs()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        cfg = compose(config_name="config", overrides=TINY)
    out = tmp_path_factory.mktemp("io") / "run0"  # alone in its parent (find_runs of the parent)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 60 trajectories: Γ window not found
        run(cfg, out)
    return out


def test_results_and_chains_round_trip(run_dir):
    results = io.load_results(run_dir)
    assert results == json.loads((run_dir / "results.json").read_text())
    assert io.run_labels(run_dir) == ["fhmc", "fhmc_L4"]
    assert results["chains"] == {"fhmc": "chains.nc", "fhmc_L4": "chains_fhmc_L4.nc"}
    for label, L in (("fhmc", 6), ("fhmc_L4", 4)):
        idata = io.load_chains(run_dir, label)
        post, stats = idata.posterior, idata.sample_stats
        assert post["M"].shape == (3, 30) and post["C"].shape == (3, 30, L // 2 + 1)
        assert list(post["draw"].values) == list(range(2, 61, 2))
        assert stats["delta_H"].shape == stats["accepted"].shape == (3, 60)
        assert list(stats["draw"].values) == list(range(1, 61))
        assert post.attrs["run_label"] == label and post.attrs["L"] == L and post.attrs["meas_every"] == 2
        assert post.attrs["sampler"] == label.split("_")[0] and post.attrs["trivflow_version"]
        block = results["runs"][label]
        # the stored chains reproduce results.json: acceptance, <|M|> and its Γ-method error
        assert float(stats["accepted"].mean()) == pytest.approx(block["acceptance"], abs=1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            g = gamma_method(post["absM"].values, s_tau=block["s_tau"])
        assert [g.mean, g.err] == pytest.approx(block["observables"]["absM"], rel=1e-12)
        np.testing.assert_array_equal(post["M2"].values, post["M"].values ** 2)
    main = io.load_chains(run_dir)  # default: the main run, chains.nc, readable by plain ArviZ
    assert main.posterior.attrs["run_label"] == "fhmc"
    assert set(main.groups()) == {"posterior", "sample_stats"}


def test_flow_history_and_config(run_dir):
    import jax

    from trivflow.flows import flow_forward

    graphdef, params, flow_config = io.load_flow(run_dir, shape=(4, 4))
    assert flow_config["kernel_size"] == 3 and flow_config["lattice"]["L"] == 6
    _, params_again, config_again = io.load_flow(run_dir / "flow")  # a flow directory works too
    assert config_again == flow_config
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: bool((a == b).all()), params, params_again))
    z = jax.random.normal(jax.random.key(0), (4, 4))  # the trained flow is Z2-equivariant and finite
    phi, log_det = flow_forward(graphdef, params, z)
    phi_m, log_det_m = flow_forward(graphdef, params, -z)
    np.testing.assert_allclose(phi_m, -phi, atol=1e-12)
    assert np.isfinite(float(log_det)) and float(log_det_m) == pytest.approx(float(log_det))
    history = io.load_training_history(run_dir)
    assert list(history["step"]) == list(range(1, 11))
    assert history["loss"].shape == history["ess"].shape == history["mh_acceptance"].shape == (10,)
    assert np.all((history["ess"] > 0) & (history["ess"] <= 1))
    cfg = io.load_config(run_dir)  # library run: no .hydra/, from results.json
    assert cfg.sampler.name == "fhmc" and cfg.lattice.L == 6 and cfg.sampler.meas_every == 2
    assert io.load_overrides(run_dir) == []
    assert io.find_runs(run_dir) == [run_dir]
    assert io.find_runs(run_dir.parent) == [run_dir]


def test_plots_are_written(run_dir):
    plots = run_dir / "plots"
    kinds = ("autocorr_M", "M_history", "M_hist", "thermalisation", "delta_H", "correlator")
    expected = {"training.png"} | {f"{label}_{kind}.png" for label in ("fhmc", "fhmc_L4") for kind in kinds}
    assert {p.name for p in plots.glob("*.png")} == expected
    for name in expected:
        data = (plots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name


def test_missing_files_raise_naming_the_path_and_writer(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        io.load_results(tmp_path / "nowhere")
    for fn, what in ((io.load_results, "results.json.*trivflow.run"), (io.load_chains, "chains.nc.*trivflow.run"),
                     (io.load_training_history, "training_history.npz.*trains a flow"),
                     (io.load_flow, "flow.*checkpoint"), (io.load_log, r"\*.log.*Hydra")):
        with pytest.raises(FileNotFoundError, match=what):
            fn(tmp_path)
    assert io.find_runs(tmp_path) == []


def test_unknown_label_lists_the_runs(run_dir):
    with pytest.raises(KeyError, match=r"'nuts' not in .*runs: \['fhmc', 'fhmc_L4'\]"):
        io.load_chains(run_dir, "nuts")


def _fake_result(rng, *, R=2, N=12, every=3, metropolis=True):
    n = N // every
    m = rng.normal(size=(R, n))
    return trivflow.hmc.driver.ChainResult(
        observables={"M": m, "absM": np.abs(m), "M2": m**2, "G0": 1 + m**2, "C": rng.normal(size=(R, n, 3))},
        delta_H=rng.normal(size=(R, N)) if metropolis else None,
        accepted=rng.random((R, N)) < 0.5 if metropolis else None,
        acceptance_prob=rng.random((R, N)), divergent=np.zeros((R, N), bool), final_state=None,
        num_chains=R, num_traj=N, num_therm=4, meas_every=every, seconds=1.0, therm_seconds=0.0,
        compile_seconds=0.0, extra={} if metropolis else {"num_steps": rng.integers(1, 8, size=(R, N))})


def test_write_chains_without_metropolis_step_and_values_exact(tmp_path):
    rng = np.random.default_rng(0)
    hmc_like, nuts_like = _fake_result(rng), _fake_result(rng, metropolis=False)
    lattice = Phi4Theory(L=4, d=2, beta=0.5, lam=0.5)
    paths = io.write_chains(tmp_path, {"hmc": (hmc_like, "hmc", lattice), "nuts": (nuts_like, "nuts", lattice)}, "hmc")
    assert [p.name for p in paths.values()] == ["chains.nc", "chains_nuts.nc"]
    (tmp_path / "results.json").write_text(json.dumps({"runs": {"hmc": {}, "nuts": {}}}))
    a, b = io.load_chains(tmp_path, "hmc"), io.load_chains(tmp_path, "nuts")
    np.testing.assert_array_equal(a.posterior["C"].values, hmc_like.observables["C"])
    np.testing.assert_array_equal(a.sample_stats["delta_H"].values, hmc_like.delta_H)
    np.testing.assert_array_equal(a.sample_stats["accepted"].values, hmc_like.accepted)
    assert list(a.posterior["draw"].values) == [3, 6, 9, 12]
    assert set(b.sample_stats.data_vars) == {"acceptance_rate", "diverging", "n_steps"}
    np.testing.assert_array_equal(b.sample_stats["n_steps"].values, nuts_like.extra["num_steps"])
    assert io.chains_path(tmp_path, "fhmc@interp4", "hmc").name == "chains_fhmc@interp4.nc"  # sampler@prior
    for bad in ("../x", ".hidden", "a b"):
        with pytest.raises(ValueError, match="not a safe file-name part"):
            io.chains_path(tmp_path, bad, "hmc")
