"""The Theory interface: φ⁴ and the free theory implement it, and a theory written here (a
Gaussian field that is not φ⁴, with its own observables and exact values) runs through the kernel,
the driver, the summary and the chains files without any change to them."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trivflow import hmc, io
from trivflow.gauge import U1Theory
from trivflow.lattice import FreeTheory, Phi4Theory
from trivflow.summary import summarize_run
from trivflow.theory import THEORIES, Theory, make_theory


@dataclasses.dataclass(frozen=True)
class Oscillators:
    """V independent oscillators, S = ½ m² Σ_x φ_x² on a 1D lattice: ⟨φ²⟩ = 1/m² exactly."""

    L: int
    mass: float = 1.5

    name = "oscillators"
    primary_observable = "X"
    tau_observables = ("X", "X2")
    headline = ("X2",)
    observable_dims = {"profile": ("x",)}

    @property
    def shape(self):
        return (self.L,)

    @property
    def volume(self):
        return self.L

    def params(self, dtype=None):
        return {"m2": jnp.asarray(self.mass**2, dtype)}

    @staticmethod
    def potential_fn(phi, params):
        return 0.5 * params["m2"] * jnp.sum(phi * phi)

    value_and_grad_fn = None  # autodiff
    force_fn = None

    @staticmethod
    def measure_fn(phi, params):
        return {"X": jnp.mean(phi), "X2": jnp.mean(phi * phi), "profile": phi * phi}

    def analyse(self, observables, gammas, *, s_tau=4.0):
        return {k: gammas[k].mean_err() for k in ("X", "X2")}

    def exact(self):
        return {"X2": 1.0 / self.mass**2}

    def random_field(self, key, num_chains, dtype=None):
        return jax.random.normal(key, (num_chains, *self.shape), dtype or jnp.float64)

    def with_extent(self, L):
        return dataclasses.replace(self, L=L)

    def to_dict(self):
        return {"L": self.L, "mass": self.mass}


def test_phi4_and_free_implement_the_interface():
    for theory in (Phi4Theory(L=4), FreeTheory(L=4, beta=0.2), Oscillators(L=3)):
        assert isinstance(theory, Theory)
    assert THEORIES == {"phi4": Phi4Theory, "free": FreeTheory, "u1": U1Theory}
    assert make_theory("free", L=6, d=2, beta=0.2, lam=0.0).exact()["chi"] == pytest.approx(1 / (2 - 4 * 0.2))
    assert make_theory("phi4", L=6, beta=0.5).exact() is None
    assert Phi4Theory(L=6, beta=0.5).with_extent(8) == Phi4Theory(L=8, beta=0.5)
    with pytest.raises(ValueError, match="action='u2' is invalid"):
        make_theory("u2", L=4)
    with pytest.raises(ValueError, match="lam must be 0 in the free theory"):
        FreeTheory(L=4, beta=0.2, lam=0.5)


def test_phi4_theory_functions_match_the_lattice_action():
    theory = Phi4Theory(L=4, beta=0.5, lam=0.7)
    phi = jax.random.normal(jax.random.key(0), theory.shape, jnp.float64)
    params = theory.params(jnp.float64)
    assert theory.potential_fn(phi, params) == pytest.approx(float(theory.action(phi)), rel=1e-14)
    value, force = theory.value_and_grad_fn(phi, params)
    np.testing.assert_allclose(force, jax.grad(theory.potential_fn)(phi, params), rtol=1e-12)
    np.testing.assert_allclose(theory.force_fn(phi, params), force)


def test_a_new_theory_runs_through_driver_summary_and_chains_files(tmp_path):
    theory = Oscillators(L=3)
    kernel = hmc.build_kernel(theory.potential_fn, num_steps=5, value_and_grad_fn=theory.value_and_grad_fn)
    positions = theory.random_field(jax.random.key(1), 8)
    result = hmc.run_chains(jax.random.key(2), kernel, positions, theory.params(jnp.float64), step_size=0.3,
                            num_traj=2000, num_therm=100, measure_fn=theory.measure_fn, progress=False)
    block = summarize_run(result, theory, sampler="hmc")
    assert set(block["observables"]) == {"X", "X2"} and set(block["tau_int"]) == {"X", "X2"}
    assert set(block["diagnostics"]["rhat"]) == {"X", "X2"} and block["diagnostics"]["reliable"]
    assert set(block["diagnostics"]["ess_bulk"]) == set(block["diagnostics"]["ess_tail"]) == {"X", "X2"}
    mean, err = block["observables"]["X2"]
    assert abs(mean - block["exact"]["X2"]) < 4 * err, (mean, err)  # ⟨φ²⟩ = 1/m², Γ-method error
    assert abs(block["observables"]["X"][0]) < 4 * block["observables"]["X"][1]
    json.dumps(block)  # results.json material

    paths = io.write_chains(tmp_path, {"hmc": (result, "hmc", theory)}, "hmc")
    (tmp_path / "results.json").write_text(json.dumps({"runs": {"hmc": block}}))
    idata = io.load_chains(tmp_path)
    assert paths["hmc"].name == "chains.nc"
    assert idata.posterior.attrs["action"] == "oscillators" and idata.posterior.attrs["primary_observable"] == "X"
    assert idata.posterior["profile"].dims == ("chain", "draw", "x")
    np.testing.assert_array_equal(idata.posterior["X2"].values, result.observables["X2"])
