"""trivflow.report: the z fit against independent fitters and known truth; collect/write on a sweep tree."""

import csv
import json
import warnings

import numpy as np
import pytest
import yaml

from trivflow import report


def test_fit_z_without_xi_errors_equals_weighted_polyfit():
    xi = np.array([2.0, 3.0, 4.0, 6.0, 8.0])
    rng = np.random.default_rng(3)
    tau = 0.7 * xi**2.2 * np.exp(rng.normal(0, 0.03, xi.size))
    tau_err = 0.03 * tau
    fit = report.fit_z(xi, np.zeros_like(xi), tau, tau_err)
    (z, log_c), cov = np.polyfit(np.log(xi), np.log(tau), 1, w=tau / tau_err, cov="unscaled")
    assert fit.z == pytest.approx(z, rel=1e-10) and fit.log_c == pytest.approx(log_c, rel=1e-10)
    assert fit.z_err == pytest.approx(np.sqrt(cov[0, 0]), rel=1e-8)
    assert fit.log_c_err == pytest.approx(np.sqrt(cov[1, 1]), rel=1e-8)
    residual = (np.log(tau) - log_c - z * np.log(xi)) * tau / tau_err
    assert fit.dof == 3 and fit.chi2 == pytest.approx(np.sum(residual**2))


def test_fit_z_with_xi_errors_is_the_effective_variance_fixed_point():
    from scipy.optimize import curve_fit

    xi = np.array([1.5, 2.0, 3.0, 4.0])
    tau = np.array([4.1, 8.3, 17.0, 33.0])
    xi_err, tau_err = 0.05 * xi, 0.04 * tau
    fit = report.fit_z(xi, xi_err, tau, tau_err)
    sigma = np.sqrt((tau_err / tau) ** 2 + fit.z**2 * (xi_err / xi) ** 2)
    popt, pcov = curve_fit(lambda x, a, b: a + b * x, np.log(xi), np.log(tau), sigma=sigma, absolute_sigma=True)
    assert [fit.log_c, fit.z] == pytest.approx(popt, rel=1e-8)
    np.testing.assert_allclose(fit.cov, pcov, rtol=1e-6)
    # x errors inflate the slope error relative to ignoring them
    assert fit.z_err > report.fit_z(xi, 0 * xi, tau, tau_err).z_err


def test_fit_z_recovers_known_z_with_calibrated_errors():
    rng = np.random.default_rng(4)
    xi_true = np.array([2.0, 3.0, 4.0, 6.0, 8.0])
    z_true, c = 1.8, 1.3
    rel_xi, rel_tau = 0.02, 0.05
    pulls = []
    for _ in range(1500):
        xi = xi_true * np.exp(rng.normal(0, rel_xi, xi_true.size))
        tau = c * xi_true**z_true * np.exp(rng.normal(0, rel_tau, xi_true.size))
        fit = report.fit_z(xi, rel_xi * xi, tau, rel_tau * tau)
        pulls.append((fit.z - z_true) / fit.z_err)
    pulls = np.array(pulls)
    assert abs(pulls.mean()) < 0.1  # unbiased to a tenth of its error (MC error of the mean ≈ 0.026)
    assert 0.9 < pulls.std() < 1.1  # the quoted error is the actual spread


@pytest.mark.parametrize("args,message", [
    (([2.0, 2.0], [0, 0], [1.0, 2.0], [0.1, 0.1]), "2 distinct xi"),
    (([1.0, 2.0], [0, 0], [-1.0, 2.0], [0.1, 0.1]), "must be positive"),
    (([1.0, 2.0], [0, 0], [1.0, 2.0], [0.0, 0.1]), "tau_err > 0"),
    (([1.0, 2.0, 3.0], [0, 0], [1.0, 2.0, 3.0], [0.1, 0.1, 0.1]), "xi_err has 2 values"),
])
def test_fit_z_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        report.fit_z(*args)


def _fake_job(path, *, L, beta, k, tau, xi, tps=1000.0, sampler="fhmc", overrides=(), layers=1):
    runs = {sampler: {"sampler": sampler, "acceptance": 0.9, "lattice": {"L": L, "d": 2, "beta": beta, "lam": 0.5},
                      "tau_int": {"M": [tau, 0.1 * tau, 30], "absM": [1, 0.1, 3], "M2": [1, 0.1, 3]},
                      "observables": {"xi": [xi, 0.02 * xi]}, "traj_per_second": tps,
                      "num_chains": 10, "num_traj": 100, "seconds": 1000 / tps, "therm_seconds": 0.0}}
    if sampler in report.FLOW_SAMPLERS:
        runs[sampler]["prior"] = "gaussian"
    results = {"experiment": "sweep", "config": {"sampler": {"num_steps": 10, "integrator": "leapfrog"}},
               "lattice": {"L": L, "d": 2, "beta": beta, "lam": 0.5}, "runs": runs,
               "flow": {"kernel_size": k, "num_layers": layers}, "training": {"seconds": 12.5, "mh_acceptance": 0.4}}
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps(results))
    (path / ".hydra").mkdir()
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))


def test_collect_and_write_report_on_a_multirun_tree(tmp_path):
    sweep = tmp_path / "multirun" / "sweep" / "2026-01-01_00-00-00"
    jobs = [(L, k) for k in (3, 5) for L in (8, 16)]  # Hydra's job order: last override varies fastest
    for num, (L, k) in enumerate(jobs):
        _fake_job(sweep / str(num), L=L, beta={8: 0.576, 16: 0.634}[L], k=k, xi=L / 4, tau=0.5 * (L / 4) ** 2 / k * 3,
                  overrides=[f"flow.kernel_size={k}", f"lattice=L{L}"])
    (sweep / "10").mkdir()  # natural order: a job without results is skipped, job 10 would sort after 2
    rows = report.collect(tmp_path)
    assert [r["job"] for r in rows] == [f"multirun/sweep/2026-01-01_00-00-00/{n}" for n in range(4)]
    assert [set(r) for r in rows] == [set(report.COLUMNS)] * 4
    r = rows[1]
    assert (r["L"], r["kernel_size"], r["num_layers"], r["prior"], r["sampler"]) == (16, 3, 1, "gaussian", "fhmc")
    assert r["overrides"] == "flow.kernel_size=3 lattice=L16"
    assert r["cost_per_indep"] == pytest.approx(2 * r["tau_M"] / 1000.0)
    assert r["cost_per_indep_err"] == pytest.approx(2 * r["tau_M_err"] / 1000.0)
    assert (r["training_seconds"], r["flow_mh_acceptance"]) == (12.5, 0.4)
    report.add_ratios(rows)  # public: works on collect()'s rows (no reference HMC here: None)
    assert r["tau_M_ratio_hmc"] is None
    # no results.json "cost" (written before it existed): rebuilt from the config, 10 leapfrog steps
    # of S̃ per trajectory, each one flow pass
    assert r["force_evals_per_indep"] == pytest.approx(2 * r["tau_M"] * 10)
    assert r["force_evals_per_indep_err"] == pytest.approx(2 * r["tau_M_err"] * 10)
    assert r["flow_evals_per_indep"] == r["force_evals_per_indep"]

    out = tmp_path / "rep"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        written = report.write_report(sweep, out)
    assert set(written) == {"table.md", "table.csv", "fits.json", "tau_vs_xi.png", "tau_vs_kernel_size.png"}
    with open(out / "table.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and list(table[0]) == report.COLUMNS
    md = (out / "table.md").read_text().splitlines()
    assert len(md) == 2 + 4 and "tau_int(M)" in md[0] and "`flow.kernel_size=3 lattice=L8`" in md[2]
    fits = json.loads((out / "fits.json").read_text())
    assert set(fits) == {"fhmc k=3 layers=1 prior=gaussian", "fhmc k=5 layers=1 prior=gaussian"}
    for f in fits.values():  # τ ∝ ξ² exactly: z = 2 with zero residual
        assert f["z"] == pytest.approx(2.0, abs=1e-10) and f["chi2"] == pytest.approx(0, abs=1e-15)
        assert f["z_err"] > 0
    for name in ("tau_vs_xi.png", "tau_vs_kernel_size.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_single_run_has_no_sweep_plots_and_cli_errors(tmp_path, capsys):
    _fake_job(tmp_path / "run", L=8, beta=0.576, k=3, xi=2.0, tau=5.0, sampler="hmc")
    assert report.main([str(tmp_path / "run")]) == 0
    out = tmp_path / "run" / "report"
    assert sorted(p.name for p in out.iterdir()) == ["fits.json", "table.csv", "table.md"]
    rows = report.collect(tmp_path / "run")
    assert rows[0]["job"] == "." and rows[0]["kernel_size"] is None  # HMC uses no flow
    assert "| . | sweep | hmc | 8 | 0.576 |  |  |  | hmc | 0.9 | 5.0(5) | 2.00(4) |" in capsys.readouterr().out
    assert report.main([str(tmp_path / "empty_missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert report.main([str(tmp_path / "empty")]) == 1
    assert "no results.json" in capsys.readouterr().err


def test_rows_without_an_automatic_window_are_kept_in_the_table_but_not_fitted(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for num, L in enumerate((8, 12, 16)):
        _fake_job(sweep / str(num), L=L, beta=0.6, k=3, xi=L / 4, tau=2.0 * (L / 4) ** 2)
    # job 2's τ is flagged: the Γ-method found no window (e.g. independence MH at large volume)
    blob = json.loads((sweep / "2" / "results.json").read_text())
    blob["runs"]["fhmc"]["tau_int"]["M"][0] = 1e4
    blob["runs"]["fhmc"]["warnings"] = ["tau_int(M): no automatic window up to W = 100: ..."]
    (sweep / "2" / "results.json").write_text(json.dumps(blob))
    rows = report.collect(sweep)
    assert [r["tau_M_reliable"] for r in rows] == [True, True, False]
    report.write_report(sweep)
    fits = json.loads((sweep / "report" / "fits.json").read_text())
    (fit,) = fits.values()
    assert fit["points"]["xi"] == [2.0, 3.0] and fit["z"] == pytest.approx(2.0, abs=1e-9)
    assert "left out of fits and plots: 2:fhmc" in capsys.readouterr().err


def test_ratios_to_hmc_at_the_same_lattice_point_with_propagated_errors(tmp_path):
    sweep = tmp_path / "sweep"
    _fake_job(sweep / "0", L=8, beta=0.576, k=3, xi=2.0, tau=20.0, tps=1000.0, sampler="hmc")
    _fake_job(sweep / "1", L=8, beta=0.576, k=3, xi=2.0, tau=10.0, tps=250.0)  # τ halved, 4× slower
    _fake_job(sweep / "2", L=16, beta=0.634, k=3, xi=4.0, tau=10.0)  # no HMC at L=16: no ratio
    rows = report.collect(sweep)
    hmc, fhmc, other = rows
    assert hmc["tau_M_ratio_hmc"] is None and other["tau_M_ratio_hmc"] is None
    # δr/r = √(0.1² + 0.1²): both τ carry a 10 % error
    assert fhmc["tau_M_ratio_hmc"] == pytest.approx(0.5)
    assert fhmc["tau_M_ratio_hmc_err"] == pytest.approx(0.5 * np.sqrt(0.02))
    assert fhmc["cost_ratio_hmc"] == pytest.approx(2.0)
    assert fhmc["cost_ratio_hmc_err"] == pytest.approx(2.0 * np.sqrt(0.02))
    md = report.markdown_table(rows)
    assert "| 0.50(7) | 2.00(28) |" in md  # τ and cost ratios in parenthesis notation


def test_report_refuses_to_fit_jobs_with_equal_effective_configurations(tmp_path, capsys):
    """The --help sweep `flow.kernel_size=3,5 lattice=L8,L10` with the default sampler=hmc: four
    plain-HMC jobs, two of each lattice; the kernel size is read by no stage."""
    sweep = tmp_path / "sweep"
    for num, (k, L) in enumerate((k, L) for k in (3, 5) for L in (8, 10)):
        _fake_job(sweep / str(num), L=L, beta={8: 0.576, 10: 0.6}[L], k=k, xi=L / 4, tau=2.0 * (L / 4) ** 2,
                  sampler="hmc", overrides=[f"flow.kernel_size={k}", f"lattice=L{L}"])
    rows = report.collect(sweep)
    assert [r["duplicate_of"] for r in rows] == [None, None, "0:hmc", "1:hmc"]
    written = report.write_report(sweep)
    fits = json.loads(written["fits.json"].read_text())
    assert fits == {"hmc": {"refused": "2:hmc duplicates 0:hmc: same effective configuration"}}
    assert "tau_vs_xi.png" not in written
    assert "refusing to fit hmc: 2:hmc ran the same effective configuration as 0:hmc" in capsys.readouterr().err
    # a flow sampler reads the kernel size: the same sweep with sampler=fhmc has four distinct points
    for num, (k, L) in enumerate((k, L) for k in (3, 5) for L in (8, 10)):
        _fake_job(tmp_path / "fhmc" / str(num), L=L, beta=0.6, k=k, xi=L / 4, tau=2.0 * (L / 4) ** 2)
    assert all(r["duplicate_of"] is None for r in report.collect(tmp_path / "fhmc"))


def test_sampler_settings_make_jobs_distinct(tmp_path):
    """experiments/multilevel: HMC and FA-HMC (sampler.fourier_mass) at the same lattice point are two
    measurements, not duplicates: the run block's sampler name must not hide the sampler settings."""
    for name, mass in (("plain", None), ("fa", 0.144)):
        _fake_job(tmp_path / name, L=8, beta=0.576, k=3, xi=2.0, tau=4.0, sampler="hmc")
        path = tmp_path / name / "results.json"
        results = json.loads(path.read_text())
        results["config"]["sampler"]["fourier_mass"] = mass
        path.write_text(json.dumps(results))
    assert [r["duplicate_of"] for r in report.collect(tmp_path)] == [None, None]


def test_flows_of_different_depth_are_different_series(tmp_path, monkeypatch):
    """experiments/kernel_size: a 2-layer k = 3 flow beside 1-layer k = 5, 7 flows. The depth
    separates series, so the 2-layer flow is neither the k = 3 point of the 1-layer τ-vs-k line nor
    a point of the 1-layer k = 3 z fit."""
    from trivflow import plots

    for num, (L, k, layers) in enumerate([(8, 3, 2), (8, 5, 1), (8, 7, 1), (16, 3, 2), (16, 3, 1), (8, 3, 1)]):
        _fake_job(tmp_path / str(num), L=L, beta={8: 0.576, 16: 0.634}[L], k=k, xi=L / 4,
                  tau=(2.0 if layers == 2 else 1.0) * (L / 4) ** 2, layers=layers)
    drawn = {}
    real = plots.plot_tau_vs_kernel_size
    monkeypatch.setattr(plots, "plot_tau_vs_kernel_size", lambda p: (drawn.update(p), real(p))[1])
    written = report.write_report(tmp_path, tmp_path / "rep")
    fits = json.loads(written["fits.json"].read_text())
    assert set(fits) == {"fhmc k=3 layers=1 prior=gaussian", "fhmc k=3 layers=2 prior=gaussian"}
    for f in fits.values():  # each depth alone: τ ∝ ξ² exactly
        assert f["z"] == pytest.approx(2.0, abs=1e-10) and f["chi2"] == pytest.approx(0, abs=1e-15)
    assert set(drawn) == {"fhmc L=8 layers=1 prior=gaussian"}
    assert drawn["fhmc L=8 layers=1 prior=gaussian"]["k"] == [3, 5, 7]


def test_trajectory_lengths_are_different_series(tmp_path):
    """experiments/tau_md: HMC at τ_MD = 1 and 2 at L = 8 and 16 are two samplers, each fitted on its
    own (τ_int in trajectories depends on τ_MD), not one series with two τ at each ξ."""
    for num, (L, tau_md) in enumerate([(8, 1.0), (16, 1.0), (8, 2.0), (16, 2.0)]):
        _fake_job(tmp_path / str(num), L=L, beta={8: 0.576, 16: 0.634}[L], k=3, xi=L / 4,
                  tau=(L / 4) ** 2 / tau_md**2, sampler="hmc")
        path = tmp_path / str(num) / "results.json"
        results = json.loads(path.read_text())
        results["config"]["sampler"]["traj_length"] = tau_md
        path.write_text(json.dumps(results))
    fits = json.loads(report.write_report(tmp_path, tmp_path / "rep")["fits.json"].read_text())
    assert set(fits) == {"hmc tau_MD=1.0", "hmc tau_MD=2.0"}
    for f in fits.values():  # each τ_MD alone: τ ∝ ξ² exactly
        assert f["z"] == pytest.approx(2.0, abs=1e-10) and f["chi2"] == pytest.approx(0, abs=1e-15)
