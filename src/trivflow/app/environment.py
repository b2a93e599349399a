"""Where a job runs and what produced its numbers: JAX's precision and platform, library
versions, the results.json header shared by every task, and where β comes from."""

from __future__ import annotations

import logging
import math
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from omegaconf import OmegaConf

#: ``platform=`` value → the ``Device.platform`` JAX reports for it
_PLATFORM_OF = {"cpu": "cpu", "gpu": "gpu", "cuda": "gpu", "tpu": "tpu"}


#: Programs that compile faster than this are not written to the persistent cache (JAX's
#: ``jax_persistent_cache_min_compile_time_secs``, 1 s by default). 0: every program. With JAX's
#: default a job still compiled ≈ 10 small programs (initial fields, key splits, the kernel's
#: init) of 0.1–0.3 s each before its first sample in every run; reading one back takes
#: milliseconds.
CACHE_MIN_COMPILE_SECONDS = 0.0


def default_compile_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/trivflow/jax`` (``~/.cache/trivflow/jax`` without XDG_CACHE_HOME)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "trivflow" / "jax"


def configure_compile_cache(compile_cache: str | None, max_gb: float | None = None) -> str | None:
    """Point JAX's persistent compilation cache at ``compile_cache`` (``"default"``:
    :func:`default_compile_cache_dir`; None: off) and return the directory used (None: off).
    ``max_gb``: bound of the directory's size in GiB (JAX's ``jax_compilation_cache_max_size``: the
    least recently used executables are deleted when a new one would exceed it); None: no bound.

    A compiled program (XLA executable) is stored there keyed by its HLO, the compile options,
    the jax/jaxlib version and the device, so a second job compiling the same program loads it
    instead. Every program is written, however fast it compiled
    (:data:`CACHE_MIN_COMPILE_SECONDS`). The numbers do not change: the executable is the one
    the compiler made. The directory is trusted code: do not share it with users you do not
    trust (JAX's warning)."""
    import jax
    from jax._src import compilation_cache

    path = None if compile_cache is None else str(
        default_compile_cache_dir() if compile_cache == "default" else Path(compile_cache).expanduser())
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
    max_size = -1 if max_gb is None else int(max_gb * 2**30)  # -1: JAX's "no limit"
    if path is not None and max_size != -1:
        _stamp_unbounded_entries(Path(path))
    if jax.config.jax_compilation_cache_max_size != max_size:
        jax.config.update("jax_compilation_cache_max_size", max_size)
        compilation_cache.reset_cache()
    if path is not None and jax.config.jax_persistent_cache_min_compile_time_secs != CACHE_MIN_COMPILE_SECONDS:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_SECONDS)
    if jax.config.jax_compilation_cache_dir != path:
        jax.config.update("jax_compilation_cache_dir", path)
        compilation_cache.reset_cache()  # JAX opens its cache once per process: reopen it at the new path
    return path


def _stamp_unbounded_entries(path: Path) -> None:
    """Give every executable in ``path`` that has no access-time file one (its modification time).

    JAX's bounded cache (jax._src.lru_cache) keeps a ``<key>-atime`` file beside each
    ``<key>-cache`` and reads it for every entry when it evicts; an unbounded cache writes none.
    A directory filled without a bound (trivflow before ``compile_cache_max_gb``, or a library
    call with ``max_gb=None``) would make every later write fail with FileNotFoundError, so the
    cache would silently stop caching. An unbounded process writing while a bounded one runs has
    the same effect on that one's writes (a warning per entry not cached): the application is
    therefore always bounded."""
    for entry in path.glob("*-cache"):
        atime = entry.with_name(entry.name.removesuffix("-cache") + "-atime")
        if not atime.exists():
            atime.write_bytes(entry.stat().st_mtime_ns.to_bytes(8, "little"))  # JAX's format: ns, little-endian


#: XLA's flag for the number of CPU devices; a user who sets it in XLA_FLAGS keeps it under ``cpu_devices=auto``
_XLA_CPU_DEVICES_FLAG = "xla_force_host_platform_device_count"


def usable_cores(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The logical CPUs this process may run on: its affinity mask (``os.cpu_count()`` where the
    platform has none), at most its cgroup v2 CPU quota (``cpu.max`` = "quota period", rounded
    up; a container limited to 2 CPUs on a 64-CPU host counts 2)."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        count = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            count = min(count, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):  # no cgroup v2 limit here
        pass
    return max(1, count)


#: ``cpu_devices=auto`` splits hmc chains over CPU devices only when every device gets at least
#: this many lattice sites (chains per device × volume): below it the split chunks of HMC ran
#: slower than one device's (benchmarks/hmc.py --host-devices 2 on 2 cores: L = 8 with 8 chains
#: 3.5×, with 32 chains 1.4× slower; from 4096 sites per device equal or up to 1.8× faster).
MIN_SITES_PER_DEVICE = 4096
#: the same for jobs that split fhmc chains, ≈ 4× HMC's work per site: at 2048 sites per device
#: FHMC ran 1.65–1.75× faster split (run_all --host-devices 2: L = 8 with 64 chains, L = 16 with
#: 16), HMC beside it 0.93–1.15×; at 1024 FHMC gained 1.1×, HMC lost 0.86×
MIN_SITES_PER_DEVICE_FHMC = 2048


def cpu_device_count(setting, num_chains: int, volume: int, samplers, cores: int | None = None) -> int:
    """The number of CPU devices a job asks JAX for (the application's key ``cpu_devices``).

    ``setting`` a positive int: that many. ``"auto"``: the largest divisor d of ``num_chains``,
    at most ``cores`` (default :func:`usable_cores`), that leaves every device at least
    :data:`MIN_SITES_PER_DEVICE` sites (num_chains/d · ``volume``; :data:`MIN_SITES_PER_DEVICE_FHMC`
    when ``samplers``, those whose chains the job splits over the devices, include fhmc); 1 when
    ``samplers`` is empty.

    Why: JAX runs a CPU program on one device, whose fusions XLA splits over threads only when
    they are large; one device per core with the chains split over them
    (:mod:`trivflow.hmc.sharding`, the same numbers bit for bit) keeps every core busy at
    L = 16–64 (docs/performance.md). Work that is not split (training, imh, nuts) runs on the
    first device."""
    if setting != "auto":
        return int(setting)
    if not samplers:
        return 1
    least = MIN_SITES_PER_DEVICE_FHMC if "fhmc" in samplers else MIN_SITES_PER_DEVICE
    cores = usable_cores() if cores is None else max(1, cores)
    return max(d for d in range(1, cores + 1)
               if d == 1 or (num_chains % d == 0 and num_chains // d * volume >= least))


def configure_cpu_devices(count: int, *, auto: bool = False) -> int:
    """Ask JAX for ``count`` CPU devices (``jax_num_cpu_devices``) and return how many it has.

    This works only before JAX starts its backends (the first array or device query of the
    process); after that — a library call or a test in the same process — the devices JAX
    started with are kept, with a log line when they differ. ``auto``: the count was not asked
    for by the user, so an ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` of theirs wins."""
    import jax
    from jax._src import xla_bridge

    users_flag = auto and _XLA_CPU_DEVICES_FLAG in os.environ.get("XLA_FLAGS", "")
    if not users_flag and not xla_bridge.backends_are_initialized():
        jax.config.update("jax_num_cpu_devices", int(count))
    try:
        have = len(jax.devices("cpu"))
    except RuntimeError:  # JAX_PLATFORMS without cpu: there are no CPU devices to set
        return 0
    if have != count and not users_flag:
        log = logging.getLogger(__name__)
        (log.info if auto else log.warning)(
            "cpu_devices=%d not applied: JAX started earlier in this process with %d CPU device(s)", count, have)
    return have


def cpu_devices_options(cfg, volume: int, samplers) -> dict:
    """:func:`configure_jax`'s ``cpu_devices`` arguments from a job's config (key ``cpu_devices``,
    ``sampler.num_chains``): ``volume`` its lattice's sites, ``samplers`` those whose chains it
    splits over the devices (:func:`cpu_device_count`)."""
    setting = cfg.get("cpu_devices", "auto")
    return {"cpu_devices": cpu_device_count(setting, cfg.sampler.num_chains, volume, samplers),
            "cpu_devices_auto": setting == "auto"}


def configure_jax(precision: str = "float64", platform_name: str | None = None,
                  compile_cache: str | None = None, cache_max_gb: float | None = None,
                  cpu_devices: int | None = None, cpu_devices_auto: bool = False) -> dict:
    """Apply precision, platform and the persistent compilation cache before any JAX array exists
    (docs/reference/configuration.md), and return the devices JAX will use, ``{"platform",
    "device_kind", "devices"}`` (results.json ``device``). ``compile_cache``: as in
    :func:`configure_compile_cache` (None here leaves it off; the application's key
    ``compile_cache`` defaults to ``"default"``), bounded to ``cache_max_gb`` GiB (None: no bound;
    the application's ``compile_cache_max_gb`` defaults to 2). ``cpu_devices``: the number of
    CPU devices (:func:`configure_cpu_devices`, ``cpu_devices_auto`` its ``auto``); None leaves
    JAX's default (one).

    Raises ``ValueError`` when ``platform_name`` is set and JAX has no such device (instead of
    running elsewhere), listing the devices it sees."""
    import jax

    jax.config.update("jax_enable_x64", precision == "float64")
    configure_compile_cache(compile_cache, cache_max_gb)
    if cpu_devices is not None and platform_name in (None, "cpu"):
        configure_cpu_devices(cpu_devices, auto=cpu_devices_auto)
    if platform_name:
        previous = jax.config.jax_platforms
        jax.config.update("jax_platforms", platform_name)
        try:
            devices = jax.devices()
        except RuntimeError:  # the backend does not exist here
            devices = None
        if devices is None or devices[0].platform != _PLATFORM_OF[platform_name]:
            jax.config.update("jax_platforms", previous)
            seen = jax.devices() if devices is None else devices
            raise ValueError(
                f"platform={platform_name!r} is invalid: JAX has no {platform_name} device here (it sees "
                f"{[str(d) for d in seen]}, platform {seen[0].platform!r}; a GPU needs the CUDA build of jax, "
                f"docs/install.md): set platform=null to use what there is")
    devices = jax.devices()
    return {"platform": devices[0].platform, "device_kind": devices[0].device_kind,
            "devices": [str(d) for d in devices]}


def versions() -> dict:
    """Versions of Python and the libraries that determine the numbers."""
    out = {"python": platform.python_version()}
    for pkg in ("trivflow", "jax", "jaxlib", "numpy", "flax", "optax", "numpyro"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def beta_source(theory, action: str = "phi4") -> str:
    """Where β comes from, for the printed header and results.json ``beta_source``: the line of
    constant physics ξ = L/4 (λ = 0.5, 2D; :data:`~trivflow.lattice.presets.LINE_OF_CONSTANT_PHYSICS`),
    another preset's β (e.g. ``lattice.L=128`` keeping the L8 preset's), or set directly."""
    from ..lattice.presets import LINE_OF_CONSTANT_PHYSICS as LCP

    L, beta = theory.L, theory.beta
    if not hasattr(theory, "lam"):  # not φ⁴ (e.g. action=u1): no tabulated line of constant physics
        return f"set directly (lattice.beta; no line of constant physics is tabulated for action={theory.name})"
    if action == "free" or theory.lam == 0:
        return "set for the free theory (lambda = 0; exact results beside the measured ones)"
    if theory.lam != 0.5 or theory.d != 2:
        return "set directly (the tabulated line of constant physics is for d = 2, lambda = 0.5)"
    if LCP.get(L) == beta:
        return f"on the line of constant physics xi = L/4 (tabulated beta({L}))"
    here = f"where beta({L}) = {LCP[L]}" if L in LCP else "where no beta is tabulated (task=tune_beta finds it)"
    others = [k for k, b in LCP.items() if b == beta]
    if others:
        return (f"from the lattice=L{others[0]} preset (xi = {others[0] / 4:g} at L = {others[0]}): off the line of "
                f"constant physics at L = {L}, {here}")
    return f"set by lattice.beta: off the tabulated line of constant physics xi = L/4 at L = {L}, {here}"


def results_header(cfg, device: dict) -> dict:
    """The keys every task's results.json starts with (docs/results.md): experiment, device, seed,
    precision, versions, the command line and the resolved config."""
    return {"experiment": cfg.experiment, "device": device, "seed": cfg.seed, "precision": cfg.precision,
            "versions": versions(), "command": " ".join(sys.argv),
            "config": OmegaConf.to_container(cfg, resolve=True)}
