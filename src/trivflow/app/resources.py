"""Will a run fit in memory? A lower-bound estimate, checked before any compute.

A run too big for the machine otherwise dies inside XLA (``Check failed:
buffer_.IsConcrete()``, a SIGABRT) or is killed by the kernel's OOM killer, with nothing said.
The estimate counts only arrays that certainly exist at once, so a refusal is never wrong by
more than the factor of the intermediates left out:

* device (on the CPU backend: host memory too), per sampler: the batched chain state — position,
  momentum and force, their proposals and the donated copies — for hmc/fhmc/nuts,
  :data:`STATE_ARRAYS` (hmc) or :data:`FLOW_STATE_ARRAYS` (fhmc, whose pullback keeps the flow's
  activations) fields of ``num_chains · V`` floats; independence MH's
  :data:`IMH_STATE_ARRAYS` of ``num_chains · V``; the training batch with its gradient; the prior ensemble;
* host: the measured series (ΔH, acceptance probability as floats and two flags per trajectory;
  M, |M|, M², G0 and C(t), t = 0…L/2, per measurement), held twice while they are concatenated
  and written.
"""

from __future__ import annotations

import math
import os

#: Arrays of num_chains · V floats alive in one HMC trajectory (lower bound).
STATE_ARRAYS = 6
#: The same for flowed HMC: the flow's forward activations and their vjp (lower bound).
FLOW_STATE_ARRAYS = 12
#: The same for an independence-MH step: φ, its donated copy, the proposal z and φ′ (lower bound).
IMH_STATE_ARRAYS = 4
#: Arrays of batch · V floats in a training step: z, φ and their gradients (lower bound).
TRAIN_ARRAYS = 4

GiB = 1024**3


def available_memory() -> int | None:
    """Bytes of host memory available now (Linux ``MemAvailable``; else physical memory), or
    None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def device_memory(device) -> int | None:
    """Bytes an accelerator may allocate (``memory_stats()["bytes_limit"]``), None for the CPU."""
    if device.platform == "cpu":
        return None
    try:
        return int((device.memory_stats() or {}).get("bytes_limit")) or None
    except (TypeError, ValueError, AttributeError, RuntimeError):
        return None


def estimate(cfg, theory, *, float_bytes: int) -> dict[str, dict[str, tuple[str, float]]]:
    """``{"device": {part: (keys, bytes)}, "host": {part: (keys, bytes)}}`` of the run ``cfg`` on
    ``theory`` (module docstring); ``keys`` are the config keys that set the part's size."""
    from .config import needs_flow, sampler_specs

    s, t = cfg.sampler, cfg.train
    # reals per configuration (φ⁴: L^d sites; u1: 2 L² links)
    volumes = [math.prod(theory.shape)] + [math.prod(theory.with_extent(L).shape) for L in cfg.volumes]
    samplers = {spec.sampler for spec in sampler_specs(cfg)}
    device: dict[str, tuple[str, float]] = {}
    for name in samplers:
        vol = max(volumes) if name in ("fhmc", "imh") else volumes[0]
        if name == "imh":
            device["imh chain states"] = ("sampler.num_chains", s.num_chains * vol * float_bytes * IMH_STATE_ARRAYS)
        else:
            arrays = FLOW_STATE_ARRAYS if name == "fhmc" else STATE_ARRAYS
            device[f"{name} chain states"] = ("sampler.num_chains", s.num_chains * vol * float_bytes * arrays)
    if needs_flow(cfg) and not cfg.flow.checkpoint:
        V_train = math.prod(theory.with_extent(t.L or theory.L).shape)
        device["training batch"] = ("train.batch_size", t.batch_size * V_train * float_bytes * TRAIN_ARRAYS)
        if cfg.prior.name != "gaussian" and not cfg.prior.ensemble:
            device["prior ensemble"] = ("prior.ensemble_size", cfg.prior.ensemble_size * V_train * float_bytes)
    n_meas = s.num_traj // s.meas_every
    per_traj = 2 * float_bytes + 2  # ΔH, acceptance probability, accepted, divergent
    per_meas = (4 + theory.L // 2 + 1) * float_bytes
    runs = len(samplers) + len(volumes) - 1
    series = 2 * runs * s.num_chains * (s.num_traj * per_traj + n_meas * per_meas)
    return {"device": device, "host": {"measured series": ("sampler.num_chains or sampler.num_traj", series)}}


def _gib(x: float) -> str:
    return f"{x / GiB:.3g} GiB"


def check_memory(cfg, theory, device, *, float_bytes: int) -> dict:
    """Refuse (``ValueError`` with the estimate and the keys to lower) a run whose estimate
    exceeds what the machine has; return ``{"device_bytes", "host_bytes"}`` otherwise."""
    est = estimate(cfg, theory, float_bytes=float_bytes)
    limit = device_memory(device)
    host = available_memory()
    dev_total = sum(b for _, b in est["device"].values())
    host_total = sum(b for _, b in est["host"].values())
    if limit is None:  # CPU backend: the device arrays live in host memory too
        checks = [("host memory", dev_total + host_total, host, {**est["device"], **est["host"]})]
    else:
        checks = [(f"{device.device_kind} memory", dev_total, limit, est["device"]),
                  ("host memory", host_total, host, est["host"])]
    for what, need, have, parts in checks:
        if have is not None and need > have:
            ranked = sorted(parts.items(), key=lambda kv: -kv[1][1])
            detail = ", ".join(f"{part} {_gib(b)}" for part, (_, b) in ranked if b)
            raise ValueError(
                f"this run needs at least {_gib(need)} of {what} ({detail}), the machine has {_gib(have)} available: "
                f"lower {ranked[0][1][0]} (now sampler.num_chains={cfg.sampler.num_chains}, "
                f"sampler.num_traj={cfg.sampler.num_traj}, lattice.L={theory.L})")
    return {"device_bytes": dev_total, "host_bytes": host_total}
