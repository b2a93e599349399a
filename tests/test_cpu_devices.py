"""The application's ``cpu_devices`` key: one CPU device per core, the hmc/fhmc chains split over them.

The count is resolved before JAX starts (:func:`trivflow.app.environment.cpu_device_count`), so
the end-to-end check runs the command line in a subprocess and compares its chains with the same
job run here, in this test process, on its single CPU device.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import arviz as az
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import trivflow
from trivflow.app.config import register_configs, validate
from trivflow.app.environment import MIN_SITES_PER_DEVICE, MIN_SITES_PER_DEVICE_FHMC, cpu_device_count, usable_cores
from trivflow.app.experiment import run

CONF = str(Path(trivflow.__file__).parent / "conf")
register_configs()


def compose_cfg(overrides):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        return compose(config_name="config", overrides=overrides)


@pytest.mark.parametrize(
    "setting,num_chains,volume,samplers,cores,expected",
    [
        (3, 64, 256, {"hmc"}, 2, 3),  # an explicit count is taken as given
        ("auto", 64, 256, {"hmc"}, 2, 2),  # 32 · 256 sites per device
        ("auto", 64, 256, {"hmc", "fhmc"}, 4, 4),
        ("auto", 32, 64, {"hmc"}, 2, 1),  # the default job: 1024 sites per device would be too few
        ("auto", 7, 4096, {"fhmc"}, 4, 1),  # 7 chains divide over no device count but 1 (or 7)
        ("auto", 6, 4096, {"fhmc"}, 4, 3),  # the largest divisor up to the cores
        ("auto", 64, 4096, set(), 8, 1),  # nothing split (imh, nuts, sampler.shard=false)
        ("auto", 8, 1024, {"hmc"}, 8, 2),  # 4 devices would leave 2048 sites each
        ("auto", 64, 64, {"fhmc", "hmc"}, 2, 2),  # fhmc: 2048 sites per device suffice
        ("auto", 64, 64, {"hmc"}, 2, 1),  # hmc alone: not
        ("auto", 8, 256, {"fhmc"}, 2, 1),  # 1024 sites per device: too few for fhmc too
    ],
)
def test_auto_splits_chains_where_every_device_has_enough_sites(setting, num_chains, volume, samplers, cores,
                                                                 expected):
    n = cpu_device_count(setting, num_chains, volume, samplers, cores=cores)
    assert n == expected
    if setting == "auto" and n > 1:
        least = MIN_SITES_PER_DEVICE_FHMC if "fhmc" in samplers else MIN_SITES_PER_DEVICE
        assert num_chains % n == 0 and num_chains // n * volume >= least


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["cpu_devices=0"], "cpu_devices=0 is invalid: expected auto"),
        (["cpu_devices=many"], "cpu_devices='many' is invalid: expected auto"),
        (["cpu_devices=1.5"], "cpu_devices=1.5 is invalid"),
        (["cpu_devices=3"], "cpu_devices=3 is invalid: expected a divisor of sampler.num_chains=32"),
    ],
)
def test_bad_cpu_devices_fail_before_compute(overrides, message):
    with pytest.raises(ValueError, match=message):
        validate(compose_cfg(overrides))


def test_cpu_devices_that_split_nothing_are_accepted():
    validate(compose_cfg(["cpu_devices=3", "sampler.shard=false"]))
    validate(compose_cfg(["cpu_devices=3", "sampler=nuts"]))


JOB = ["lattice=L16", "sampler.num_chains=32", "sampler.num_traj=100", "sampler.num_therm=10", "progress=false",
       "plots=false", "compile_cache=null"]


@pytest.mark.filterwarnings("ignore:Γ-method")
def test_chains_split_over_two_cpu_devices_equal_one_device(tmp_path):
    """The same job with ``cpu_devices=2`` (a subprocess: the count is fixed when JAX starts) and
    on this process's one device: the chains are the same numbers (the slice correlator C to
    1e-14, its FFT rounds differently for a split batch: tests/test_sharding.py)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    split_dir = tmp_path / "split"
    proc = subprocess.run([sys.executable, "-m", "trivflow.run", *JOB, "cpu_devices=2", f"hydra.run.dir={split_dir}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((split_dir / "results.json").read_text())["device"]["devices"] == ["cpu:0", "cpu:1"]
    one_dir = tmp_path / "one"
    run(compose_cfg([*JOB, "cpu_devices=1"]), one_dir)
    split, one = az.from_netcdf(split_dir / "chains.nc"), az.from_netcdf(one_dir / "chains.nc")
    compared = 0
    for group in one.groups():
        for name in one[group].data_vars:
            a, b = np.asarray(one[group][name]), np.asarray(split[group][name])
            if name == "C":
                np.testing.assert_allclose(b, a, rtol=1e-14, atol=1e-16, err_msg=name)
            else:
                np.testing.assert_array_equal(b, a, err_msg=f"{group}/{name}")
            compared += 1
    assert compared >= 5


def test_usable_cores_respect_a_cgroup_quota(tmp_path):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")  # 1.5 CPUs: two devices at most
    assert usable_cores(cpu_max) == min(2, usable_cores(tmp_path / "missing"))
    cpu_max.write_text("max 100000\n")
    assert usable_cores(cpu_max) == usable_cores(tmp_path / "missing") >= 1
