"""results.json ``cost`` (trivflow.summary.cost_block): the arithmetic against hand computations."""

import pytest

from trivflow.summary import cost_block, evaluations_per_traj, setup_seconds


@pytest.mark.parametrize("sampler,kwargs,expected", [
    ("hmc", {"num_steps": 10}, {"force_evals": 10, "flow_evals": 0}),
    ("hmc", {"num_steps": 10, "integrator": "omelyan"}, {"force_evals": 20, "flow_evals": 0}),
    ("fhmc", {"num_steps": 7}, {"force_evals": 7, "flow_evals": 7}),
    ("imh", {}, {"force_evals": 0, "flow_evals": 1}),
    ("nuts", {"nuts_steps": [[3, 7], [15, 7]]}, {"force_evals": 8.0, "flow_evals": 0}),
])
def test_evaluations_per_trajectory(sampler, kwargs, expected):
    assert evaluations_per_traj(sampler, **kwargs) == expected


def test_evaluations_refuse_an_unknown_sampler():
    with pytest.raises(ValueError, match="sampler='mala'"):
        evaluations_per_traj("mala", num_steps=3)


def test_setup_seconds_sums_every_level_and_its_ensemble():
    g1 = {"seconds": 5.0, "prior": {"name": "interp4", "ensemble_meta": {"seconds": 2.0}}}
    g2 = {"seconds": 7.5, "prior": {"name": "interp4", "ensemble_meta": {"seconds": 1.25}}, "coarse": g1}
    assert setup_seconds(g2) == 5.0 + 2.0 + 7.5 + 1.25
    assert setup_seconds({"seconds": 3.0, "prior": {"name": "gaussian"}}) == 3.0
    assert setup_seconds(None) == 0.0


def _run(tau, tau_err):
    return {"tau_int": {"M": [tau, tau_err, 40], "absM": [1.0, 0.1, 5]}, "num_chains": 4, "num_traj": 500,
            "seconds": 2.0, "therm_seconds": 0.5}


def test_cost_block_by_hand():
    cost = cost_block(_run(12.0, 1.5), {"force_evals": 10, "flow_evals": 10}, setup=37.5)
    # 2000 chain-trajectories in 2 s: 1 ms each; an independent sample is 2τ = 24 trajectories
    assert cost["observable"] == "M"
    assert cost["per_traj"] == {"force_evals": 10, "flow_evals": 10, "seconds": pytest.approx(1e-3)}
    assert cost["per_indep"]["force_evals"] == pytest.approx([240.0, 30.0])
    assert cost["per_indep"]["flow_evals"] == pytest.approx([240.0, 30.0])
    assert cost["per_indep"]["seconds"] == pytest.approx([0.024, 0.003])
    assert cost["setup_seconds"] == 37.5
    # (37.5 + 0.5 + 2) s over 2000 / 24 independent samples
    assert cost["amortised_seconds_per_indep"] == pytest.approx([40 * 24 / 2000, 40 * 3 / 2000])


def test_cost_block_without_tau_has_no_per_sample_figures():
    cost = cost_block(_run(None, None), {"force_evals": 10, "flow_evals": 0})
    assert cost["per_indep"]["force_evals"] == [None, None]
    assert cost["amortised_seconds_per_indep"] == [None, None]
    assert cost["per_traj"]["force_evals"] == 10
