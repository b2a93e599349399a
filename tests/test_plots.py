"""trivflow.plots: each figure shows the data it was given, and writes a PNG."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from trivflow import plots
from trivflow.analysis import gamma_method


def _ar1(rng, a, shape):
    x = np.empty(shape)
    x[:, 0] = rng.normal(size=shape[0]) / np.sqrt(1 - a * a)
    for i in range(1, shape[1]):
        x[:, i] = a * x[:, i - 1] + rng.normal(size=shape[0])
    return x


def _png(fig, path):
    data = plots.save(fig, path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    return data


def test_autocorrelation_marks_the_chosen_window_in_trajectories(tmp_path):
    rng = np.random.default_rng(1)
    res = gamma_method(_ar1(rng, 0.8, (4, 2000)), s_tau=4.0)  # τ_int = ½(1+a)/(1−a) = 4.5
    every = 3
    fig = plots.plot_autocorrelation(res, meas_every=every, name="M", label="hmc")
    ax_rho, ax_tau = fig.axes
    rho_line = ax_rho.lines[0]
    n = len(rho_line.get_xdata())
    np.testing.assert_array_equal(rho_line.get_xdata(), every * np.arange(n))
    np.testing.assert_array_equal(rho_line.get_ydata(), res.rho[:n])
    np.testing.assert_allclose(ax_tau.lines[0].get_ydata(), every * res.tau_int_of_w[:n])
    for ax in (ax_rho, ax_tau):  # the window W as a vertical line at W·meas_every trajectories
        xs = [line.get_xdata() for line in ax.lines if len(set(np.ravel(line.get_xdata()))) == 1]
        assert any(np.all(np.asarray(x) == every * res.window) for x in xs)
    assert res.window >= 1 and n > res.window
    assert any(f"{every * res.tau_int:.3g}" in t.get_text() for t in ax_tau.get_legend().get_texts())
    _png(fig, tmp_path / "acf.png")


def test_training_history_histograms_and_delta_h(tmp_path):
    steps = np.arange(1, 51)
    history = {"step": steps, "loss": 1 / steps, "ess": 1 - 1 / steps, "mh_acceptance": 0.5 * np.ones(50)}
    fig = plots.plot_training(history, title="flow trained at L = 8")
    assert [ax.get_xlabel() for ax in fig.axes] == ["training step"] * 3
    # ESS and acceptance on log axes: small values are visible, not flat lines at 0
    assert [ax.get_yscale() for ax in fig.axes] == ["linear", "log", "log"]
    assert "flow trained at L = 8" in fig.get_suptitle()
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), history["loss"])
    np.testing.assert_array_equal(fig.axes[2].lines[0].get_ydata(), history["mh_acceptance"])
    _png(fig, tmp_path / "training.png")

    rng = np.random.default_rng(2)
    m = rng.normal(size=(6, 100))
    fig = plots.plot_history(m, draws=2 * np.arange(1, 101), max_chains=4)
    assert len(fig.axes[0].lines) == 4
    np.testing.assert_array_equal(fig.axes[0].lines[3].get_ydata(), m[3])
    assert fig.axes[0].lines[0].get_xdata()[-1] == 200
    _png(fig, tmp_path / "history.png")
    long = rng.normal(size=(4, 20000))  # thinned to at most max_points per chain, a few chains
    fig = plots.plot_history(long, max_points=2000)
    assert len(fig.axes[0].lines) == 3 and all(len(line.get_xdata()) == 2000 for line in fig.axes[0].lines)
    np.testing.assert_array_equal(fig.axes[0].lines[1].get_ydata(), long[1, ::10])
    assert "one measurement in 10 shown" in fig.get_suptitle()

    fig = plots.plot_histogram(m, bins=20)
    (poly,) = fig.axes[0].patches  # stepfilled outline spans exactly the data range, all chains pooled
    xy = poly.get_xy()
    assert xy[:, 0].min() == pytest.approx(m.min()) and xy[:, 0].max() == pytest.approx(m.max())
    assert xy[:, 1].min() == 0 and xy[:, 1].max() > 0
    _png(fig, tmp_path / "hist.png")
    frozen = 2.0 + np.array([[0.0, 4e-16, -4e-16], [2e-16, 0.0, 0.0]])  # Q of frozen chains: one integer ± ulps
    fig = plots.plot_histogram(frozen, name="Q")  # numpy alone: "Too many bins for data range"
    (poly,) = fig.axes[0].patches
    assert poly.get_xy()[:, 0].min() == pytest.approx(1.5) and poly.get_xy()[:, 0].max() == pytest.approx(2.5)
    _png(fig, tmp_path / "hist_frozen.png")

    dh = rng.normal(0.05, np.sqrt(0.1), size=(4, 500))  # Gaussian ΔH with ⟨ΔH⟩ = σ²/2: ⟨e^{−ΔH}⟩ = 1
    fig = plots.plot_delta_h(dh)
    legend = fig.axes[0].get_legend()
    text = legend.get_texts()[0].get_text()
    g = gamma_method(np.exp(-dh))  # the Γ-method error over the chains, as results.json has it
    from trivflow.formatting import paren

    assert f"⟨e^(−ΔH)⟩ = {paren(g.mean, g.err)} (Γ-method)" in text
    assert tuple(legend.get_bbox_to_anchor().transformed(fig.axes[0].transAxes.inverted()).p0) == (1.0, 1.0)
    text = plots.plot_delta_h(dh[:, :5]).axes[0].get_legend().get_texts()[0].get_text()
    assert "(naive)" in text  # too short for the Γ-method
    _png(fig, tmp_path / "dh.png")


def test_sweep_figures(tmp_path):
    from trivflow.report import fit_z

    xi, tau = np.array([1.0, 2.0, 4.0]), np.array([3.0, 12.0, 48.0])
    pts = {"hmc": {"xi": xi, "xi_err": 0.01 * xi, "tau": tau, "tau_err": 0.05 * tau}}
    fit = fit_z(**pts["hmc"])
    fig = plots.plot_tau_vs_xi(pts, {"hmc": fit})
    ax = fig.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    line = ax.lines[-1]
    np.testing.assert_allclose(line.get_ydata(), np.exp(fit.log_c) * np.asarray(line.get_xdata()) ** fit.z)
    from trivflow.formatting import paren

    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(f"z = {paren(fit.z, fit.z_err)} (χ²/dof = " in t for t in texts) and fit.dof == 1
    _png(fig, tmp_path / "txi.png")
    # two points: dof = 0, no χ²/dof; ticks labelled inside the data's range (13–16), not 8, 9, 10
    pts = {"hmc": {"xi": [3.2, 4.0], "xi_err": [0.05, 0.05], "tau": [13.0, 16.0], "tau_err": [0.5, 0.5]}}
    fit = fit_z(**pts["hmc"])
    ax = plots.plot_tau_vs_xi(pts, {"hmc": fit}).axes[0]
    assert not any("χ²" in t.get_text() for t in ax.get_legend().get_texts())
    yticks = [t for t in ax.get_yticks() if 12 <= t <= 17]
    assert len(yticks) >= 2 and all(13 * 0.9 <= t <= 16 * 1.1 for t in ax.get_yticks())
    assert [ax.yaxis.get_major_formatter()(t) for t in yticks] == [f"{t:g}" for t in yticks]
    fig = plots.plot_tau_vs_kernel_size({"fhmc L=8": {"k": [3, 5], "tau": [10, 8], "tau_err": [1, 1],
                                                      "evals": [200, 160], "evals_err": [20, 20],
                                                      "cost": [1.0, 1.2], "cost_err": [0.1, 0.1]}})
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    # the machine-independent unit first, then seconds
    assert [ax.get_ylabel() for ax in fig.axes[1:]] == ["force evaluations per independent sample",
                                                        "seconds per independent sample"]
    for ax in fig.axes:  # integer kernel sizes only
        ticks = [t for t in ax.get_xticks() if 3 <= t <= 5]
        assert ticks and all(float(t).is_integer() for t in ticks)
    _png(fig, tmp_path / "k.png")


def test_plot_run_needs_results(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.json"):
        plots.plot_run(tmp_path)


def test_autocorrelation_error_bars_follow_wolff():
    # exact ρ of white noise: ρ(0) = 1, else 0 ⇒ the k = t term alone: δρ(t) = 1/√N
    rho = np.zeros(41)
    rho[0] = 1.0
    err = plots.rho_errors(rho, n_total=400, window=3)
    np.testing.assert_allclose(err[1:21], 1 / np.sqrt(400))
    assert err[0] == 0
    # AR(1) ρ(t) = aᵗ: the formula summed directly
    a, n, window = 0.7, 1000, 5
    rho = a ** np.arange(31)
    err = plots.rho_errors(rho, n_total=n, window=window)
    t = 4
    direct = sum((rho[k + t] + rho[abs(k - t)] - 2 * rho[k] * rho[t]) ** 2 for k in range(1, t + window + 1)) / n
    assert err[t] == pytest.approx(np.sqrt(direct))
    np.testing.assert_allclose(plots.tau_int_of_w_errors([0.5, 1.2, 1.5], 100),
                               [0.5 * np.sqrt(2 / 100), 1.2 * np.sqrt(6 / 100), 1.5 * np.sqrt(10 / 100)])
    # the figure draws them: error bars on ρ(t), a band on τ_int(W)
    rng = np.random.default_rng(3)
    res = gamma_method(_ar1(rng, 0.5, (2, 1000)))
    ax_rho, ax_tau = plots.plot_autocorrelation(res).axes
    (bars,) = [c for c in ax_rho.collections if c.get_segments()]
    segs = bars.get_segments()
    expected = plots.rho_errors(res.rho, res.n_total, res.window)[: len(segs)]
    np.testing.assert_allclose([s[1, 1] - s[0, 1] for s in segs], 2 * expected)
    band = ax_tau.collections[0].get_paths()[0].vertices
    assert band[:, 1].max() > ax_tau.lines[0].get_ydata().max()  # the band lies around τ_int(W)


def test_correlator_plot_shows_effective_mass_and_the_plateau_of_xi():
    rng = np.random.default_rng(5)
    L, mass = 8, 0.5
    t = np.arange(L // 2 + 1)
    exact = np.cosh(mass * (t - L / 2))
    c = exact * (1 + 0.01 * rng.normal(size=(4, 500, 1)))  # correlated across t, as measured
    m_series = 0.01 * rng.normal(size=(4, 500))
    C, dC, m_eff, dm = plots.correlator_with_errors(c, m_series)
    assert C.shape == (L // 2 + 1,) and m_eff.shape == (L // 2 - 1,)
    np.testing.assert_allclose(m_eff, mass, atol=5 * dm.max())
    assert np.all(dC > 0) and np.all(dm > 0)
    fig = plots.plot_correlator(c, m_series, plateau=(2, 3), xi=[2.0, 0.01], label="hmc")
    ax_c, ax_m = fig.axes
    assert ax_c.get_yscale() == "log"
    (points,) = [ln for ln in ax_m.lines if ln.get_marker() == "o"]
    np.testing.assert_array_equal(points.get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(points.get_ydata(), m_eff)
    texts = [tx.get_text() for tx in ax_m.get_legend().get_texts()]
    assert "plateau t = 2 … 3" in texts and any("ξ = 2.000(10)" in tx for tx in texts)


def test_plot_run_writes_one_training_figure_per_trained_flow(tmp_path):
    import json

    steps = np.arange(1, 21)
    history = {"step": steps, "loss": 1 / steps, "ess": 0.003 + 0 * steps, "mh_acceptance": 0.02 + 0 * steps,
               "lr": 0.01 + 0 * steps, "seconds": np.array(1.0), "compile_seconds": np.array(0.5)}
    lattice = {"L": 8, "d": 2, "beta": 0.576, "lam": 0.5}
    for where in (tmp_path, tmp_path / "coarse", tmp_path / "trainings" / "interp4"):
        where.mkdir(parents=True, exist_ok=True)
        np.savez(where / "training_history.npz", **history)
    results = {"lattice": lattice, "runs": {}, "config": {"prior": {"name": "interp4_x2"}},
               "training": {"lattice": lattice}, "trainings": {"interp4": {"lattice": {**lattice, "L": 16}}}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    written = plots.plot_run(tmp_path)
    assert [p.name for p in written] == ["training.png", "training_coarse.png", "training_interp4.png"]
    fig = plots.plot_training(history, title="x")
    assert fig.axes[1].get_ylim()[0] < 0.003  # ESS of 0.003 is inside a log axis, not a line at the bottom


def test_block_means_errors_come_from_the_spread_between_chains():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 1000))
    centres, means, errors = plots.block_means(x, 10)
    assert centres.shape == means.shape == errors.shape == (10,)
    assert centres[0] == pytest.approx(49.5) and centres[-1] == pytest.approx(949.5)
    np.testing.assert_allclose(means, x.reshape(400, 10, 100).mean(axis=(0, 2)))
    # iid N(0, 1): a block mean of one chain has variance 1/100, of 400 chains 1/40000
    assert np.mean(errors) == pytest.approx(1 / 200, rel=0.05)
    assert np.all(np.abs(means) < 5 * errors)
    assert np.isnan(plots.block_means(x[:1], 4)[2]).all()  # one chain: no between-chain error


def test_thermalisation_view_shows_a_drift_outside_the_band(tmp_path):
    rng = np.random.default_rng(5)
    n = 2000
    drifting = rng.normal(size=(16, n)) + 3.0 * np.exp(-np.arange(n) / 100)  # starts far from equilibrium
    fig = plots.plot_thermalisation({"M2": drifting, "absM": rng.normal(size=(16, n))},
                                    np.arange(1, n + 1) * 2, results={"M2": [0.0, 0.01]}, label="hmc")
    ax_m2, ax_abs = fig.axes
    assert ax_abs.get_xlabel() == "trajectory" and ax_m2.get_ylabel() == "M2"
    points = ax_m2.containers[0].lines[0].get_xydata()
    assert points.shape == (10, 2) and points[0, 0] == pytest.approx(200, abs=2)  # trajectories, not indices
    assert points[0, 1] > 0.5 > abs(points[-1, 1])  # the first block lies far above the band, the last in it
    assert any("whole run" in t.get_text() for t in ax_m2.get_legend().get_texts())
    assert not any("whole run" in t.get_text() for t in ax_abs.get_legend().get_texts())  # no results given
    _png(fig, tmp_path / "therm.png")
