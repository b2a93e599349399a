"""trivflow.hmc.monitor: the progress bar's running τ_int is quiet."""

import functools
import warnings

import numpy as np
import pytest

import trivflow.analysis
from trivflow.hmc.monitor import running_tau_int


def test_running_tau_int_prints_no_runtime_warning_when_no_window_is_found(monkeypatch):
    rng = np.random.default_rng(0)
    x = np.zeros((2, 400))
    for t in range(1, x.shape[1]):  # AR(1) with ρ = 0.99: τ_int ≈ 100 ≫ the window cap below
        x[:, t] = 0.99 * x[:, t - 1] + rng.normal(size=2)
    # cap the window so that the automatic criterion cannot be met, as early in a long-τ run
    capped = functools.partial(trivflow.analysis.gamma_method, w_max=5)
    with pytest.warns(RuntimeWarning, match="window criterion"):
        capped(x)  # the Γ-method itself does warn here
    monkeypatch.setattr(trivflow.analysis, "gamma_method", capped)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        tau = running_tau_int(x, meas_every=2)
    assert tau is not None and tau > 2.0
    assert running_tau_int(x[:, :5]) is None  # too few points: nothing to show yet
