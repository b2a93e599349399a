"""Gauge-equivariant flows for 2D U(1) (issue 16, Kanwar et al. arXiv:2003.06413): log|det J| against
``jax.jacobian``, gauge equivariance of g and invariance of S̃ and of the flow's log-density, the
masks, and FHMC / independence MH with an untrained flow against the exact plaquette (4σ)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trivflow import hmc
from trivflow.gauge import U1Theory, gauge_transform, plaquette_angles, topological_charge
from trivflow.gauge.flows import (
    GaugeFlowConfig,
    HaarPrior,
    active_lines,
    circular_conv,
    gauge_flow,
    layer_masks,
    ncp_log_slope_bound,
    ncp_mixture,
    ncp_parameters,
)
from trivflow.hmc.flowed import fhmc_kernel, pulled_back_measure, pulled_back_potential
from trivflow.samplers import flow_proposal, run_imh
from trivflow.summary import summarize_run


@pytest.fixture(scope="module")
def flow():
    return gauge_flow(num_layers=8, hidden_channels=(4,), components=3, seed=1)


def random_links(key, L, scale=7.0):
    return jax.random.uniform(key, (2, L, L), jnp.float64, -scale, scale)


@pytest.mark.parametrize("nu", [0, 1])
@pytest.mark.parametrize("offset", [0, 1, 2, 3])
def test_output_layer_on_the_active_lines_equals_the_full_convolution_there(nu, offset):
    """The conditioner's output layer is evaluated only at x_ν ≡ offset (mod 4), as a stride-4
    convolution: the same values as the full circular convolution read there (to rounding)."""
    kx, kk, kb = jax.random.split(jax.random.key(offset + 4 * nu), 3)
    x = jax.random.normal(kx, (12, 12, 3), jnp.float64)
    kernel = jax.random.normal(kk, (3, 3, 3, 5), jnp.float64)
    bias = jax.random.normal(kb, (5,), jnp.float64)
    full = circular_conv(x, kernel, bias)
    lines = circular_conv(x, kernel, bias, (nu, offset))
    assert lines.shape == ((3, 12, 5) if nu == 0 else (12, 3, 5))
    np.testing.assert_allclose(lines, active_lines(full, nu, offset), rtol=1e-13, atol=1e-13)


def test_masks_touch_each_active_plaquette_through_one_updated_link():
    L = 8
    for mu in (0, 1):
        for offset in range(4):
            active, frozen = layer_masks(L, mu, offset)
            assert not np.any(active & frozen) and int(active.sum()) == L * L // 4
            # perturb the updated links: active plaquettes move, frozen ones do not
            theta = jnp.zeros((2, L, L))
            moved = theta.at[mu].set(jnp.where(active, 0.3, 0.0))
            dp = np.asarray(plaquette_angles(moved) - plaquette_angles(theta))
            np.testing.assert_allclose(np.abs(dp[np.asarray(active)]), 0.3)
            np.testing.assert_allclose(dp[np.asarray(frozen)], 0.0)


def test_log_det_matches_jax_jacobian_on_4x4(flow):
    theta = random_links(jax.random.key(0), 4)
    y, log_det = flow.forward(theta)
    jac = jax.jacobian(lambda x: flow.forward(x)[0])(theta).reshape(32, 32)
    sign, logabs = np.linalg.slogdet(np.asarray(jac))
    assert sign > 0 and float(log_det) == pytest.approx(logabs, abs=1e-10)
    assert abs(float(log_det)) > 1e-3  # the untrained flow is not the identity


def test_flow_is_gauge_equivariant_and_its_density_and_pulled_back_action_are_invariant(flow):
    k1, k2 = jax.random.split(jax.random.key(2))
    theta = random_links(k1, 8)
    alpha = jax.random.uniform(k2, (8, 8), jnp.float64, -5.0, 5.0)
    moved = gauge_transform(theta, alpha)
    y, ld = flow.forward(theta)
    y2, ld2 = flow.forward(moved)
    np.testing.assert_allclose(np.cos(y2 - gauge_transform(y, alpha)), 1.0, atol=1e-12)  # g(Ωθ) = Ω g(θ)
    assert float(ld2) == pytest.approx(float(ld), abs=1e-10)  # log q = log r − log|det| is invariant
    theory = U1Theory(L=8, beta=2.0)
    s_tilde = pulled_back_potential(theory.potential_fn)
    params = {"flow": flow, "theory": theory.params(jnp.float64)}
    assert float(s_tilde(moved, params)) == pytest.approx(float(s_tilde(theta, params)), abs=1e-10)
    assert round(float(topological_charge(y2))) == round(float(topological_charge(y)))


def test_flow_is_periodic_in_every_link_and_refuses_bad_shapes(flow):
    theta = random_links(jax.random.key(3), 4)
    y, ld = flow.forward(theta)
    y2, ld2 = flow.forward(theta.at[1, 2, 3].add(2 * math.pi))
    np.testing.assert_allclose(np.cos(y2 - y), 1.0, atol=1e-12)
    assert float(ld2) == pytest.approx(float(ld), abs=1e-10)
    with pytest.raises(ValueError, match="L must be a multiple of 4"):
        flow.forward(jnp.zeros((2, 6, 6)))
    with pytest.raises(ValueError, match=r"shape \(2, L, L\)"):
        flow.forward(jnp.zeros((4, 4)))
    with pytest.raises(ValueError, match="components must be an integer >= 1"):
        GaugeFlowConfig(components=0)


def test_haar_prior():
    prior = HaarPrior((2, 4, 4))
    z = prior.sample(jax.random.key(0), 1000)
    assert z.shape == (1000, 2, 4, 4) and float(z.min()) >= -math.pi and float(z.max()) < math.pi
    assert float(prior.log_prob(z[0])) == pytest.approx(-32 * math.log(2 * math.pi))


@pytest.mark.slow  # ~30 s on a shared 2-core CPU (compilation of the flowed kernel)
def test_fhmc_with_an_untrained_flow_reproduces_the_exact_plaquette(flow):
    theory = U1Theory(L=4, beta=2.0)
    kernel = fhmc_kernel(theory.potential_fn, num_steps=10, force_fn=theory.force_fn)
    params = {"flow": flow, "theory": theory.params(jnp.float64)}
    result = hmc.run_chains(jax.random.key(1), kernel, theory.random_field(jax.random.key(0), 8, jnp.float64),
                            params, step_size=0.1, num_traj=600, num_therm=100,
                            measure_fn=pulled_back_measure(theory.measure_fn), progress=False)
    q = result.observables["Q"]
    np.testing.assert_allclose(q, np.round(q), atol=1e-10)
    block = summarize_run(result, theory, sampler="fhmc")
    for name in ("plaquette", "Q2"):
        mean, err = block["observables"][name]
        assert abs(mean - block["exact"][name]) < 4 * err, (name, mean, err, block["exact"][name])
    assert block["acceptance"] > 0.5


@pytest.mark.slow  # ~20 s on a shared 2-core CPU
def test_imh_with_an_untrained_flow_reproduces_the_exact_plaquette(flow):
    theory = U1Theory(L=4, beta=1.0)
    params = {"flow": flow, "theory": theory.params(jnp.float64)}
    propose = flow_proposal(HaarPrior(theory.shape), theory.potential_fn)
    result = run_imh(jax.random.key(2), propose, params, num_chains=8, num_steps=2000, num_therm=100,
                     measure_fn=theory.measure_fn, batch_size=1000, progress=False)
    block = summarize_run(result, theory, sampler="imh")
    mean, err = block["observables"]["plaquette"]
    assert abs(mean - block["exact"]["plaquette"]) < 4 * err, (mean, err, block["exact"]["plaquette"])
    assert 0.01 < block["acceptance"] < 0.9


# --- checkpoints and the application ----------------------------------------------------------

import json  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

from hydra import compose, initialize_config_dir  # noqa: E402

import trivflow  # noqa: E402
from trivflow.app.config import refuse_unread_overrides, register_configs, validate  # noqa: E402
from trivflow.gauge.flows import U1_FLOWS  # noqa: E402

CONF = str(Path(trivflow.__file__).parent / "conf")
register_configs()


def composed(overrides):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        return compose(config_name="config", overrides=overrides)


def test_gauge_checkpoint_round_trip_keeps_trained_parameters(tmp_path):
    config = GaugeFlowConfig(num_layers=2, hidden_channels=(4,), components=2)
    flow = U1_FLOWS.build(config)
    trained = jax.tree_util.tree_map(lambda p: p + 0.1, flow)  # parameters unlike any initialisation
    U1_FLOWS.save(tmp_path / "flow", trained, config, {"lattice": {"L": 4, "d": 2, "beta": 2.0}, "prior": "haar"})
    loaded, stored = U1_FLOWS.load(tmp_path / "flow")
    assert stored["family"] == "u1_equivariant" and stored["lattice"]["L"] == 4
    theta = random_links(jax.random.key(5), 8)  # another L than the training one
    for a, b in zip(trained.forward(theta), loaded.forward(theta)):
        np.testing.assert_allclose(b, a, rtol=1e-14)
    assert float(flow.forward(theta)[1]) != pytest.approx(float(trained.forward(theta)[1]))


def test_action_u1_selects_gauge_flow_and_haar_prior_and_refuses_bad_flow_input(tmp_path):
    cfg = composed(["action=u1", "sampler=fhmc"])
    assert cfg.flow.num_layers == 8 and cfg.flow.components == 4 and cfg.prior.name == "haar"
    assert (cfg.flow.ncp_alpha_min, cfg.flow.ncp_alpha_max, cfg.flow.ncp_shift_max) == (0.5, 2.0, 0.5)
    validate(cfg)
    bad = [
        (["lattice.L=6"], "lattice.L=6 is invalid: expected a multiple of 4 for action=u1 with a flow sampler"),
        (["prior=gaussian"], "prior.name='gaussian' is invalid: expected one of ['haar'] for action=u1"),
        (["flow.components=0"], "flow.components must be an integer >= 1, got components=0"),
        (["flow.kernel_size=4"], "flow.kernel_size must be an odd integer >= 1"),
        (["flow.ncp_alpha_min=0"], "flow.ncp_alpha_min must be a finite number > 0, got ncp_alpha_min=0"),
        (["flow.ncp_alpha_max=0.1"], "flow.ncp_alpha_max must be null or a finite number > ncp_alpha_min = 0.5"),
        (["flow.ncp_shift_max=-1"], "flow.ncp_shift_max must be null or a finite number > 0, got ncp_shift_max=-1"),
        (["volumes=[4,10]"], "volumes=10 is invalid: expected a multiple of 4"),
    ]
    for overrides, message in bad:
        with pytest.raises(ValueError, match=re.escape(message)):
            validate(composed(["action=u1", "sampler=fhmc", *overrides]))
    for overrides, message in [(["action=u1", "sampler=fhmc", "flow.output_activation=relu"],
                                "the u1_equivariant flows of action=u1 do not read it"),
                               (["action=u1", "sampler=fhmc", "prior.noise=0.5"],
                                "the u1_equivariant flows of action=u1 do not read it (they read prior.name)"),
                               (["sampler=fhmc", "flow.components=3"], "only the gauge flows of action=u1 read it"),
                               (["sampler=fhmc", "flow.ncp_shift_max=1"], "only the gauge flows of action=u1 read it")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            refuse_unread_overrides(composed(overrides), overrides)
    refuse_unread_overrides(composed(["action=u1", "sampler=fhmc", "flow.components=3"]),
                            ["action=u1", "sampler=fhmc", "flow.components=3"])


def test_flow_checkpoints_of_the_other_theory_are_refused(tmp_path):
    from trivflow.flows import build_flow, split_flow
    from trivflow.training import save_flow

    config = GaugeFlowConfig(num_layers=1, hidden_channels=(2,), components=1)
    U1_FLOWS.save(tmp_path / "gauge", U1_FLOWS.build(config), config)
    _, params = split_flow(build_flow(kernel_size=3))
    save_flow(tmp_path / "phi4", params, {"kernel_size": 3, "num_layers": 1})
    with pytest.raises(ValueError, match=re.escape("expected a u1_equivariant flow for action=u1 (the checkpoint")):
        validate(composed(["action=u1", "sampler=fhmc", f"flow.checkpoint={tmp_path / 'phi4'}"]))
    with pytest.raises(ValueError, match=re.escape("expected a phi4 coupling flow for action=phi4 (the checkpoint")):
        validate(composed(["sampler=fhmc", f"flow.checkpoint={tmp_path / 'gauge'}"]))
    validate(composed(["action=u1", "sampler=fhmc", f"flow.checkpoint={tmp_path / 'gauge'}"]))


@pytest.mark.slow  # ~90 s on a shared 2-core CPU: trains a flow, runs fhmc, imh and hmc, reuses the flow at L=8
def test_app_trains_a_gauge_flow_samples_with_fhmc_and_imh_and_reuses_the_checkpoint(tmp_path):
    from trivflow.app.experiment import run

    tiny = ["action=u1", "lattice.L=4", "lattice.beta=2", "sampler.num_traj=200", "sampler.num_chains=4",
            "sampler.num_therm=20", "train.steps=40", "train.batch_size=32", "train.log_every=10",
            "flow.hidden_channels=[4]", "sampler.batch_size=100", "progress=false", "compile_cache=null"]
    results = run(composed([*tiny, "sampler=fhmc", "baselines=[imh]"]), tmp_path / "a")
    assert results["training"]["steps"] == 40 and results["flow"]["family"] == "u1_equivariant"
    for label in ("fhmc", "imh"):
        block = results["runs"][label]
        assert list(block["tau_int"]) == ["Q", "Q2", "plaquette"] and "plaquette" in block["exact"]
    assert results["runs"]["fhmc"]["acceptance"] > 0.5
    stored = json.loads((tmp_path / "a" / "flow" / "flow_config.json").read_text())
    assert stored["lattice"] == {"L": 4, "d": 2, "beta": 2.0} and stored["prior"] == "haar"
    reused = run(composed([*tiny, "sampler=fhmc", "lattice.L=8", f"flow.checkpoint={tmp_path / 'a'}"]), tmp_path / "b")
    assert "training" not in reused and reused["runs"]["fhmc"]["lattice"]["L"] == 8


def test_ncp_slope_formula_is_attained_by_one_component():
    """One NCP is a Möbius map of the circle: max h' = λ, min h' = 1/λ, λ + 1/λ = (1 + α² + β²)/α."""
    x = jnp.linspace(-math.pi, math.pi, 200001)[1:]
    for a, b in [(0.25, 1.0), (4.0, -1.0), (1.0, 0.0), (0.7, 0.3)]:
        _, log_dh = ncp_mixture(x, jnp.full(x.shape + (1,), a), jnp.full(x.shape + (1,), b), jnp.zeros(x.shape + (1,)))
        bound = ncp_log_slope_bound(a, a * (1 + 1e-12), abs(b))  # the box {α} × [−|β|, |β|]: λ(α, |β|)
        assert float(log_dh.max()) == pytest.approx(bound, abs=1e-6)
        assert float(log_dh.min()) == pytest.approx(-bound, abs=1e-6)


@pytest.mark.parametrize("bounds", [(0.5, 2.0, 0.5), (0.25, 4.0, 1.0), (0.1, 3.0, 2.0)])
def test_circle_map_slope_stays_within_the_documented_bound_for_extreme_conditioner_outputs(bounds):
    """|log h'(x)| ≤ log λ* (ncp_log_slope_bound) whatever the conditioner outputs (raw values up to
    ±10³, x up to ±π), and the bound is nearly attained (it is the tight one); the unbounded
    parametrisation of the flows trained before it exceeds it by far."""
    K, n = 4, 20000
    keys = jax.random.split(jax.random.key(5), 5)
    scale = jnp.exp(jax.random.uniform(keys[0], (n, 1), jnp.float64, -3.0, 7.0))  # raw outputs 0.05 .. 10³
    raw_a, raw_b, logits = (scale * jax.random.normal(k, (n, K), jnp.float64) for k in keys[1:4])
    x = jnp.concatenate([jax.random.uniform(keys[4], (n - 4,), jnp.float64, -math.pi, math.pi),
                         jnp.array([math.pi, -math.pi + 1e-9, 1e-9, 0.0])])
    alpha, beta = ncp_parameters(raw_a, raw_b, *bounds)
    assert float(alpha.min()) >= bounds[0] * (1 - 1e-12) and float(alpha.max()) <= bounds[1] * (1 + 1e-12)
    assert float(jnp.abs(beta).max()) <= bounds[2]
    h, log_dh = ncp_mixture(x, alpha, beta, logits)
    bound = ncp_log_slope_bound(*bounds)
    assert bool(jnp.all(jnp.isfinite(log_dh))) and bool(jnp.all(jnp.abs(h) <= math.pi + 1e-12))
    assert float(jnp.abs(log_dh).max()) <= bound + 1e-12
    assert float(jnp.abs(log_dh).max()) > 0.9 * bound
    _, log_dh_free = ncp_mixture(x, *ncp_parameters(raw_a, raw_b, 1e-3, None, None), logits)
    assert float(jnp.abs(log_dh_free).max()) > 3 * bound


def test_flow_log_det_per_layer_is_bounded_with_huge_parameters():
    """Every layer's log|det| = Σ_active log h' stays within (number of active plaquettes) × log λ*
    even when the conditioner's weights are blown up 100×, on a random configuration."""
    config = GaugeFlowConfig(num_layers=8, hidden_channels=(4,), components=3, seed=3)
    module = config.build(jnp.float64)
    for layer in module.layers:
        for kernel in layer.kernels:
            kernel[...] = 100.0 * kernel[...]
    theta = random_links(jax.random.key(6), 8)
    bound = config.log_slope_bound()
    assert bound == pytest.approx(math.log((3 + math.sqrt(5)) / 2), rel=1e-12)  # the flow=u1_equivariant defaults
    lds = []
    for layer in module.layers:
        theta, ld = layer.forward_and_log_det(theta)
        lds.append(abs(float(ld)))
        assert abs(float(ld)) <= 16 * bound + 1e-9  # 16 active plaquettes per layer at L = 8
    assert max(lds) > 2 * bound  # the blown-up conditioners do push h' towards its bound


def test_bad_ncp_bounds_are_refused_and_legacy_checkpoints_load_unbounded(tmp_path):
    with pytest.raises(ValueError, match="ncp_alpha_min must be a finite number > 0"):
        GaugeFlowConfig(ncp_alpha_min=0.0)
    with pytest.raises(ValueError, match="ncp_alpha_max must be null or a finite number > ncp_alpha_min"):
        GaugeFlowConfig(ncp_alpha_min=0.5, ncp_alpha_max=0.5)
    with pytest.raises(ValueError, match="ncp_shift_max must be null or a finite number > 0"):
        GaugeFlowConfig(ncp_shift_max=-1.0)
    assert GaugeFlowConfig(ncp_alpha_max=None).log_slope_bound() == math.inf
    # a checkpoint written before the bound (no ncp_* keys) is read with the unbounded parametrisation
    import json

    from trivflow.gauge.flows import LEGACY_NCP_BOUNDS, U1_FLOWS

    config = GaugeFlowConfig(hidden_channels=(4,), components=2, **LEGACY_NCP_BOUNDS)
    flow = U1_FLOWS.build(config, jnp.float64)
    U1_FLOWS.save(tmp_path / "f", flow, config)
    stored = json.loads((tmp_path / "f" / "flow_config.json").read_text())
    for key in LEGACY_NCP_BOUNDS:
        del stored[key]
    (tmp_path / "f" / "flow_config.json").write_text(json.dumps(stored))
    loaded, _ = U1_FLOWS.load(tmp_path / "f", jnp.float64)
    theta = random_links(jax.random.key(7), 4)
    assert float(loaded.forward(theta)[1]) == pytest.approx(float(flow.forward(theta)[1]), abs=1e-12)
