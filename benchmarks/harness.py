"""Shared pieces of the benchmark scripts ``hmc.py`` and ``fhmc.py`` (both import this module).

The timing protocol (calibrate, then interleaved timed rounds: :func:`timed_rounds`), the JAX
runner of the library driver :func:`trivflow.hmc.run_chains` (:class:`JaxRunner`; ``fhmc.py``
subclasses it for FHMC), β on the line of constant physics for any L (:func:`beta_for`), the
summary row of one timed point (:func:`summarise`), the machine description and the JSON output.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

LAM = 0.5

#: Rough per-site-per-step costs used only to size the calibration runs (seconds).
_GUESS_NS = {"jax": 5e-9, "numpy": 20e-9}
_GUESS_OVERHEAD = {"jax": 2e-5, "numpy": 3e-4}  # per trajectory


def setup_jax(args):
    """Configure XLA before JAX initialises, then import it (float64 enabled, the production default)."""
    if args.host_devices > 1:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={args.host_devices}".strip()
    import jax

    jax.config.update("jax_enable_x64", True)
    if os.environ.get("TRIVFLOW_BENCH_THREEFRY") == "unrolled":
        use_unrolled_threefry_on_cpu()
    return jax


def use_unrolled_threefry_on_cpu() -> None:
    """Benchmark experiment (``TRIVFLOW_BENCH_THREEFRY=unrolled``), not a library feature: lower
    JAX's threefry hash on CPU with the unrolled rule JAX uses on other platforms instead of its
    rolled 5-round ``while`` loop. Integer arithmetic, so the same bits; it uses JAX's private
    lowering registry and changes every program of the process (benchmarks/README.md)."""
    from jax._src.interpreters import mlir
    from jax._src.random import threefry2x32

    mlir.register_lowering(threefry2x32.threefry2x32_p, threefry2x32._threefry2x32_lowering_rule, platform="cpu")


def beta_for(L: int, override: float | None) -> tuple[float, str]:
    """β on the line of constant physics (docs/theory.md#line-of-constant-physics); log-L interpolation
    between tabulated L."""
    from trivflow.lattice import LINE_OF_CONSTANT_PHYSICS as lcp

    if override is not None:
        return override, "--beta"
    if L in lcp:
        return lcp[L], "line of constant physics"
    known = sorted(lcp)
    lo = max((k for k in known if k < L), default=known[0])
    hi = min((k for k in known if k > L), default=known[-1])
    if lo == hi:
        return lcp[lo], f"nearest tabulated L={lo} (not tuned for L={L})"
    w = (math.log(L) - math.log(lo)) / (math.log(hi) - math.log(lo))
    beta = round(lcp[lo] + w * (lcp[hi] - lcp[lo]), 4)
    return beta, f"interpolated in log L between L={lo} and L={hi} (not tuned for L={L})"


def cpu_fraction(wall: float, cpu: float) -> float:
    return cpu / wall if wall > 0 else float("nan")


class JaxRunner:
    backend = "jax"

    def __init__(self, jax, L, C, dtype, beta, args):
        from trivflow import hmc, lattice

        self.jax, self.hmc = jax, hmc
        self.C, self.V = C, L**2
        self.args = args
        theory = lattice.Phi4Theory(L=L, d=2, beta=beta, lam=args.lam)
        self.kernel = hmc.phi4_kernel(num_steps=args.num_steps)
        self.params = hmc.phi4_params(theory, dtype=np.dtype(dtype))
        self.measure_fn = hmc.phi4_measure  # subclasses (benchmarks/fhmc.py) swap kernel, params, measure_fn
        self.guess_ns = _GUESS_NS["jax"]  # per site and step, sizes the calibration chunk
        impl = None if args.prng == "threefry" else args.prng
        self.key = jax.random.key(args.seed, impl=impl)
        k_pos, k_run = jax.random.split(self.key)
        self.positions = hmc.random_positions(k_pos, C, theory.shape, dtype=np.dtype(dtype))
        self.chain_keys = jax.random.split(k_run, C)
        self.start = 0  # trajectories run so far; keys fold in (start + t), so later runs differ
        self.sharded = False
        ndev = len(jax.devices())
        if ndev > 1 and C % ndev == 0:
            from jax.sharding import Mesh, NamedSharding, PartitionSpec

            mesh = Mesh(np.array(jax.devices()), ("chains",))
            self.positions = jax.device_put(self.positions, NamedSharding(mesh, PartitionSpec("chains")))
            self.params = jax.device_put(self.params, NamedSharding(mesh, PartitionSpec()))
            self.sharded = True
        self.compile_seconds = 0.0
        self.chunk = 1

    def _run(self, num_traj):
        jax = self.jax
        # distinct keys per run (the driver folds in the trajectory index from 0 on every call)
        keys = jax.vmap(jax.random.fold_in, (0, None))(self.chain_keys, self.start)
        if self.sharded:
            keys = jax.device_put(keys, self.positions.sharding)
        cpu0 = time.process_time()
        res = self.hmc.run_chains(
            self.key, self.kernel, self.positions, self.params, step_size=self.args.traj_length / self.args.num_steps,
            num_traj=num_traj, num_therm=0, measure_fn=self.measure_fn, chunk_size=self.chunk,
            progress=False, chain_keys=keys,
            devices=None if self.sharded else jax.devices()[:1],  # chains that do not divide: one device
        )
        cpu = time.process_time() - cpu0
        self.positions = res.final_state.position
        self.start += num_traj
        return res, cpu

    def calibrate(self):
        t_guess = self.C * self.V * self.args.num_steps * self.guess_ns + _GUESS_OVERHEAD["jax"]
        self.chunk = int(min(self.args.chunk_size, max(2, math.ceil(0.2 / t_guess))))
        res, _ = self._run(self.chunk)  # compiles the chunk once (cached by shape)
        self.compile_seconds = res.compile_seconds
        if self.args.therm > self.chunk:  # thermalise with the same compiled chunk
            self._run(self.chunk * math.ceil((self.args.therm - self.chunk) / self.chunk))
        res, _ = self._run(self.chunk)
        per_chunk = max(res.seconds, 1e-6)
        self.num_traj = self.chunk * max(1, round(self.args.target_seconds / per_chunk))
        self.extra_compile = 0.0

    def timed(self):
        res, cpu = self._run(self.num_traj)
        self.extra_compile += res.compile_seconds  # must stay 0: one compile per shape
        wall = res.seconds + res.compile_seconds
        return res.seconds, res.acceptance, cpu_fraction(wall, cpu), float(np.mean(res.observables["G0"]))


def summarise(runner, L, C, dtype, beta, seconds, acc, cpu, g0) -> dict:
    s_med, s_min, s_max = statistics.median(seconds), min(seconds), max(seconds)
    work = C * runner.num_traj
    row = {
        "L": L, "chains": C, "V": L * L, "dtype": dtype, "backend": runner.backend, "beta": beta,
        "num_traj": runner.num_traj,
        "seconds": [round(s, 6) for s in seconds],
        "seconds_median": s_med, "seconds_min": s_min,
        "spread": (s_max - s_min) / s_med,
        "traj_per_second": work / s_med,
        "traj_per_second_best": work / s_min,
        "ns_per_site_step": s_med / (work * L * L * runner.args.num_steps) * 1e9,
        "ns_per_site_step_best": s_min / (work * L * L * runner.args.num_steps) * 1e9,
        "acceptance": float(np.mean(acc)),
        "compile_seconds": runner.compile_seconds,
        "cpu_fraction": [round(c, 3) for c in cpu],
        "mean_G0": float(np.mean(g0)),
    }
    if runner.backend == "jax":
        row["chunk_size"] = runner.chunk
        row["recompile_seconds_in_timed_runs"] = runner.extra_compile
        row["sharded_over_devices"] = runner.sharded
    return row


def best_seconds(jax, fn, *a, rounds: int = 5, reps: int = 5) -> float:
    """Best over ``rounds`` of the mean seconds per call of ``reps`` back-to-back calls of an
    already-compiled ``fn(*a)`` (one warm-up call first; JAX's async dispatch is waited for)."""
    jax.block_until_ready(fn(*a))
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            r = fn(*a)
        jax.block_until_ready(r)
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def timed_rounds(runners, repeats: int) -> list[tuple[list, list, list, list]]:
    """The timing protocol shared by hmc.py and fhmc.py: ``repeats`` rounds, each running every
    (already calibrated) runner's ``timed()`` once, interleaved (r₀, r₁, …, r₀, r₁, …), so that load
    from other processes hits all runners alike. Returns per runner the lists (seconds,
    acceptance, cpu_fraction, mean G0) over the rounds, in the order :func:`summarise` takes."""
    results = [([], [], [], []) for _ in runners]
    for _ in range(repeats):
        for r, res in zip(runners, results):
            for lst, v in zip(res, r.timed()):
                lst.append(v)
    return results


def machine_info(jax, args) -> dict:
    import jaxlib

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
        "jax_backend": jax.default_backend(),
        "threefry_lowering_cpu": os.environ.get("TRIVFLOW_BENCH_THREEFRY") or "jax default (rolled)",
        "jax_devices": [str(d) for d in jax.devices()],
        "jax_enable_x64": bool(jax.config.jax_enable_x64),
        "float_precisions": args.dtypes,
        "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "loadavg_start": os.getloadavg(),
    }


def report_header(benchmark: str, jax, args) -> dict:
    """The keys every benchmark JSON starts with: its name, when, the command and the machine."""
    return {
        "benchmark": benchmark,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(jax, args),
    }


def write_outputs(report: dict, table: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=json_default) + "\n")
    out.with_suffix(".md").write_text(table)
    print(f"wrote {out} and {out.with_suffix('.md')}")


def json_default(x):
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)
