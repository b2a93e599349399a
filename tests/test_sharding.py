"""Chains sharded over several (forced host) devices give the same numbers as one device.

Each case runs a small script in a subprocess, since the device count is fixed when JAX
starts: ``XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu`` versus one
device. HMC, FHMC (flow params replicated) and independence MH are compared bit for bit: every
device runs the same per-chain program on its slice of the chains, and nothing is reduced
across chains inside the compiled chunks (step-size adaptation's mean acceptance over the chains
is gathered onto every device first, so it is summed in one device's order). Adapted and
Fourier-accelerated HMC are compared too. The one exception is the slice correlator ``C``, a
measurement that never feeds back into the chain: XLA:CPU computes its FFT for a sharded batch
in another layout and rounds differently in the last bit (seen: 5.6e-17 absolute with jax
0.10.2), so it is compared to 1e-14 relative; the chains themselves (positions, ΔH, accepted,
M, |M|, M², G0) stay bit for bit equal.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import sys, json
    import jax, numpy as np
    jax.config.update("jax_enable_x64", True)
    from trivflow import hmc
    from trivflow.flows import Flow, build_flow, split_flow
    from trivflow.hmc.flowed import fhmc_kernel, pulled_back_measure
    from trivflow.lattice.theory import Phi4Theory

    out = sys.argv[1]
    th = Phi4Theory(L=4, d=2, beta=0.576, lam=0.5)
    pos = hmc.random_positions(jax.random.key(0), 8, th.shape)
    tp = hmc.phi4_params(th, pos.dtype)
    kw = dict(step_size=0.2, num_traj=12, num_therm=4, chunk_size=6, progress=False)
    res = {}
    r = hmc.run_chains(jax.random.key(1), hmc.phi4_kernel(5), pos, tp, measure_fn=hmc.phi4_measure, **kw)
    res["hmc"] = r
    # step-size adaptation (its chain mean is gathered first) and Fourier acceleration
    res["hmc_adapt"] = hmc.run_chains(jax.random.key(1), hmc.phi4_kernel(5), pos, tp, measure_fn=hmc.phi4_measure,
                                      adapt=hmc.DualAveraging(0.8), **kw)
    metric = hmc.FourierMetric(hmc.lattice_mass(th.shape, th.beta, 0.5), th.shape)
    fa = hmc.build_kernel(hmc.phi4_potential, num_steps=5, value_and_grad_fn=hmc.phi4_value_and_grad, metric=metric)
    res["hmc_fa"] = hmc.run_chains(jax.random.key(1), fa, pos, tp, measure_fn=hmc.phi4_measure, **kw)
    flow = Flow.from_module(*split_flow(build_flow(kernel_size=3, num_layers=1, seed=3)))
    kernel = fhmc_kernel(hmc.phi4_potential, num_steps=5, force_fn=hmc.phi4_force_fn)
    params = {"flow": flow, "theory": tp}
    res["fhmc"] = hmc.run_chains(jax.random.key(2), kernel, pos, params,
                                 measure_fn=pulled_back_measure(hmc.phi4_measure), **kw)
    from trivflow.samplers import run_imh

    def propose(key, p):  # a Gaussian proposal N(0, 0.9²), w = log q + S
        phi = 0.9 * jax.random.normal(key, th.shape, dtype=pos.dtype)
        return phi, -0.5 * (phi**2).sum() / 0.81 + hmc.phi4_potential(phi, p)

    res["imh"] = run_imh(jax.random.key(3), propose, tp, num_chains=8, num_steps=12, num_therm=2, batch_size=6,
                         measure_fn=hmc.phi4_measure, progress=False)
    arrays = {}
    for name, r in res.items():
        for k, v in r.observables.items():
            arrays[f"{name}/{k}"] = v
        arrays[f"{name}/accepted"] = r.accepted
        if r.delta_H is not None:
            arrays[f"{name}/delta_H"] = r.delta_H
            arrays[f"{name}/position"] = np.asarray(r.final_state.position)
    info = {"devices": jax.device_count(),
            "position_devices": len(res["fhmc"].final_state.position.sharding.device_set)}
    try:
        hmc.run_chains(jax.random.key(1), hmc.phi4_kernel(5), pos[:6], tp, **kw)
        info["error"] = None
    except ValueError as err:
        info["error"] = str(err)
    np.savez(out, **arrays)
    print("INFO" + json.dumps(info))
    """
)


def _run(tmp_path, n_devices: int):
    script = tmp_path / "shard.py"
    script.write_text(SCRIPT)
    out = tmp_path / f"out{n_devices}.npz"
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={n_devices}"}
    proc = subprocess.run([sys.executable, str(script), str(out)], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    info = json.loads(proc.stdout.split("INFO", 1)[1])
    return dict(np.load(out)), info


@pytest.mark.slow
def test_sharded_chains_equal_one_device_bit_for_bit(tmp_path):
    one, info1 = _run(tmp_path, 1)
    four, info4 = _run(tmp_path, 4)
    assert info1 == {"devices": 1, "position_devices": 1, "error": None}
    assert info4["devices"] == 4 and info4["position_devices"] == 4
    assert info4["error"].startswith("num_chains=6 must be a multiple of the number of devices (4)")
    assert one.keys() == four.keys() and len(one) > 10
    for k in one:
        if k.endswith("/C"):  # FFT rounding (module docstring)
            np.testing.assert_allclose(one[k], four[k], rtol=1e-14, atol=1e-16, err_msg=k)
        else:
            np.testing.assert_array_equal(one[k], four[k], err_msg=k)
