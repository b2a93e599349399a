"""Library calls given no dtype warn when JAX's x64 mode is off (trivflow.dtypes); deliberate
float32 (an explicit dtype, or the command line's precision=float32) does not."""

import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import pytest

from trivflow import hmc
from trivflow.dtypes import Float32Default
from trivflow.flows import build_flow
from trivflow.lattice import Phi4Theory


@pytest.fixture
def x64_off():
    jax.config.update("jax_enable_x64", False)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", True)


def test_calls_without_a_dtype_warn_when_x64_is_off(x64_off):
    key = jax.random.key(0)
    with pytest.warns(Float32Default, match=r"hmc.random_positions uses float32 because JAX's x64 mode is off"):
        x = hmc.random_positions(key, 2, (4, 4))
    assert x.dtype == jnp.float32
    with pytest.warns(Float32Default, match="Phi4Theory.random_field"):
        Phi4Theory(L=4, beta=0.5, lam=0.5).random_field(key, 2)
    with pytest.warns(Float32Default, match="build_flow"):
        build_flow(kernel_size=3)


def test_an_explicit_float32_does_not_warn(x64_off):
    key = jax.random.key(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Float32Default)
        assert hmc.random_positions(key, 2, (4, 4), dtype=jnp.float32).dtype == jnp.float32
        Phi4Theory(L=4, beta=0.5, lam=0.5).random_field(key, 2, jnp.float32)
        build_flow(kernel_size=3, dtype=jnp.float32)


def test_no_warning_under_x64():
    with warnings.catch_warnings():
        warnings.simplefilter("error", Float32Default)
        assert hmc.random_positions(jax.random.key(0), 2, (4, 4)).dtype == jnp.float64
        build_flow(kernel_size=3)


def test_a_precision_float32_run_does_not_warn(tmp_path):
    """The command line passes the dtype of `precision`: a float32 FHMC job (flow, sampler) is silent."""
    proc = subprocess.run(
        [sys.executable, "-m", "trivflow.run", "precision=float32",
         "sampler=fhmc", "lattice=L4", "sampler.num_chains=2", "sampler.num_traj=100", "sampler.num_therm=10",
         "train.steps=10", "train.batch_size=8", "train.log_every=5", "progress=false", "plots=false",
         f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "x64 mode is off" not in proc.stderr + proc.stdout
    assert '"precision": "float32"' in (tmp_path / "results.json").read_text()
