"""Read (and write the chains of) a trivflow run directory (docs/results.md).

A run directory, written by :func:`trivflow.app.experiment.run` (``python -m trivflow.run``)::

    results.json            summary: lattice, versions, config, runs.<label>, training, flow
    chains.nc               ArviZ InferenceData of the MAIN run (label = ``sampler.name``)
    chains_<label>.nc       the same for every other run label (baselines, e.g. ``hmc`` or
                            ``fhmc@interp4``; extra volumes, e.g. ``fhmc_L16``)
    training_history.npz    per-step training metrics (when a flow was trained)
    flow/                   flow checkpoint (orbax params + flow_config.json)
    plots/                  PNG figures (:mod:`trivflow.plots`)
    state/                  resumable sampler state
    .hydra/                 Hydra's config.yaml, overrides.yaml, hydra.yaml (CLI runs only)
    <job name>.log          Hydra's log file (CLI runs only), e.g. ``run.log``

Chains file layout (one InferenceData per run label)
----------------------------------------------------
ArviZ has a fixed set of group names, so several runs cannot share one ``posterior``; each run
label gets its own file with the standard groups, and ``az.from_netcdf("chains.nc")`` gives the
main run directly. Every file has:

* ``posterior`` — per-chain, per-measurement observables of the theory (its ``measure_fn``) on the
  flowed field, dims ``(chain, draw)`` plus the theory's ``observable_dims``. For φ⁴
  (docs/theory.md#observables): ``M`` (= (1/V)Σφ), ``absM``, ``M2``, ``G0`` (= (1/V)Σφ²), and ``C`` with
  dims ``(chain, draw, t)``, t = 0 … L/2: the per-configuration slice correlator
  c(t) = (1/L)Σ_{x₀} s(x₀)s(x₀+t), symmetrised, NOT connected (C(t) = ⟨c(t)⟩ − ⟨M⟩²).
* ``sample_stats`` — per trajectory (every trajectory of the measurement phase, not only the
  measured ones), dims ``(chain, draw)``: ``delta_H`` (ΔH = H(end) − H(start) of the proposal;
  absent for NUTS and independence MH, which have none), ``accepted`` (bool; absent for NUTS),
  ``acceptance_rate`` (min(1, e^{−ΔH}) or the sampler's acceptance probability; ArviZ's name),
  ``diverging`` (bool, ArviZ's name), and ``n_steps`` (NUTS leapfrog steps).
* coords: ``chain`` = 0 … num_chains−1; ``draw`` = the number of trajectories completed after
  thermalisation, 1-based. The posterior is measured every ``meas_every`` trajectories, so its
  draws are meas_every, 2·meas_every, …, num_traj, and posterior draw d is the configuration
  left by the trajectory whose ``sample_stats`` draw is d (``idata.sample_stats.sel(draw=
  idata.posterior.draw)`` aligns them).
* attributes (of every group): ``run_label``, ``sampler``, ``action`` (the theory's name),
  ``primary_observable`` (``M`` for φ⁴), the theory's geometry and couplings (φ⁴: ``L``, ``d``,
  ``beta``, ``lam``), ``num_therm``, ``meas_every``, ``trivflow_version``, plus ArviZ's own.

Every loader raises ``FileNotFoundError`` naming the missing path and what writes it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

import numpy as np

__all__ = [
    "CHAINS_FILE",
    "chains_path",
    "chains_to_inference_data",
    "find_runs",
    "load_chains",
    "load_config",
    "load_flow",
    "load_log",
    "load_results",
    "load_training_history",
    "run_labels",
    "write_chains",
]

RESULTS_FILE = "results.json"
CHAINS_FILE = "chains.nc"
HISTORY_FILE = "training_history.npz"
FLOW_DIR = "flow"
_WRITER = "python -m trivflow.run (trivflow.app.experiment.run)"


def _run_dir(run_dir) -> Path:
    p = Path(run_dir)
    if not p.is_dir():
        raise FileNotFoundError(f"run directory {str(p)!r} does not exist")
    return p


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{str(path)!r} not found: {what}")
    return path


# ---------------------------------------------------------------------------------------------
# Writing the chains
# ---------------------------------------------------------------------------------------------


def _version() -> str:
    try:
        return metadata.version("trivflow")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        from . import __version__

        return __version__


def chains_to_inference_data(result, *, label: str, sampler: str, theory):
    """One run's :class:`~trivflow.hmc.driver.ChainResult` as an ArviZ InferenceData.

    Args:
        result: the ChainResult (observables of shape ``(num_chains, num_meas, ...)``,
            ΔH/accepted/… of shape ``(num_chains, num_traj)``).
        label: the run label (``runs.<label>`` in results.json).
        sampler: ``hmc`` | ``fhmc`` | ``imh`` | ``nuts``.
        theory: the run's :class:`trivflow.theory.Theory`: its ``to_dict()`` (geometry and
            couplings) and ``name`` become attributes, its ``observable_dims`` name the extra
            dimensions of non-scalar observables (φ⁴'s ``C``: ``t``).

    Returns:
        ``az.InferenceData`` with groups ``posterior`` and ``sample_stats`` (layout in the module
        docstring).
    """
    import arviz as az

    every = int(result.meas_every)
    obs = {k: np.asarray(v) for k, v in result.observables.items()}
    primary = theory.primary_observable
    num_chains, num_meas = np.shape(obs[primary])[:2]
    if num_meas * every != result.num_traj:
        raise ValueError(f"{label}: {num_meas} measurements x meas_every={every} != num_traj={result.num_traj}")
    attrs = {
        "run_label": label,
        "sampler": sampler,
        "action": theory.name,
        "primary_observable": primary,
        **theory.to_dict(),
        "num_therm": int(result.num_therm),
        "meas_every": every,
        "trivflow_version": _version(),
    }
    chain = np.arange(num_chains)
    first = [primary, *theory.tau_observables]  # the headline series first, then the others
    posterior = {k: obs[k] for k in sorted(obs, key=lambda k: (k not in first, first.index(k) if k in first else 0))}
    dims = {k: list(theory.observable_dims.get(k, [f"{k}_dim_{i}" for i in range(obs[k].ndim - 2)]))
            for k in obs if obs[k].ndim > 2}
    extra = {name: np.arange(obs[k].shape[2 + i]) for k, names in dims.items() for i, name in enumerate(names)}
    post_ds = az.dict_to_dataset(
        posterior, attrs=attrs, library=None,
        coords={"chain": chain, "draw": every * np.arange(1, num_meas + 1), **extra},
        dims=dims,
    )
    stats = {}
    if result.delta_H is not None:
        stats["delta_H"] = np.asarray(result.delta_H)
    if result.accepted is not None:
        stats["accepted"] = np.asarray(result.accepted, dtype=bool)
    stats["acceptance_rate"] = np.asarray(result.acceptance_prob)
    stats["diverging"] = np.asarray(result.divergent, dtype=bool)
    if "num_steps" in result.extra:
        stats["n_steps"] = np.asarray(result.extra["num_steps"])
    stats_ds = az.dict_to_dataset(
        stats, attrs=attrs, library=None,
        coords={"chain": chain, "draw": np.arange(1, result.num_traj + 1)},
    )
    return az.InferenceData(posterior=post_ds, sample_stats=stats_ds)


def chains_path(run_dir, label: str, main_label: str) -> Path:
    """``run_dir/chains.nc`` for the main run label, ``run_dir/chains_<label>.nc`` otherwise."""
    if not re.fullmatch(r"[A-Za-z0-9_.@+-]+", label) or label.startswith("."):
        raise ValueError(f"run label {label!r} is not a safe file-name part")
    return Path(run_dir) / (CHAINS_FILE if label == main_label else f"chains_{label}.nc")


def write_chains(run_dir, runs: Mapping[str, tuple], main_label: str) -> dict[str, Path]:
    """Write every run's chains (netCDF4 via h5netcdf, uncompressed: float64 Monte Carlo series
    do not compress — zlib saved 4 % of the size and cost 12× the writing time).

    Args:
        run_dir: the run directory.
        runs: ``label -> (ChainResult, sampler name, theory)`` (:func:`chains_to_inference_data`).
        main_label: the label written to ``chains.nc``.

    Returns:
        ``label -> path written``.
    """
    out = {}
    for label, (result, sampler, theory) in runs.items():
        idata = chains_to_inference_data(result, label=label, sampler=sampler, theory=theory)
        path = chains_path(run_dir, label, main_label)
        _write_netcdf(idata, path)
        out[label] = path
    return out


def _netcdf_bytes(idata) -> int:
    """Bytes of the arrays in ``idata``: an uncompressed netCDF file is this plus headers."""
    return sum(int(v.nbytes) for g in idata.groups() for v in idata[g].variables.values())


def _write_netcdf(idata, path: Path) -> None:
    """``idata.to_netcdf`` into a temporary file renamed over ``path`` (readers never see a
    half-written file; a failed write leaves no temporary behind).

    The free space is checked first: HDF5 can crash the process (SIGSEGV) instead of raising
    when the disk fills up under it, so a write that cannot fit is refused with ``ENOSPC``."""
    from .state import _fsync_dir, _temp_name, remove_stale_temporaries

    need = int(_netcdf_bytes(idata) * 1.05) + 2**20
    free = shutil.disk_usage(path.parent).free
    if need > free:
        raise OSError(errno.ENOSPC, f"No space left on device: {path.name} needs about {need / 2**20:.1f} MiB, "
                      f"{free / 2**20:.1f} MiB are free", str(path))
    remove_stale_temporaries(path)
    path.with_name(path.name + ".tmp").unlink(missing_ok=True)  # left by trivflow < 0.2
    tmp = _temp_name(path)
    try:
        idata.to_netcdf(str(tmp), compress=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def _damaged(path: Path, err: BaseException, remedy: str):
    from .state import DamagedFileError

    detail = " ".join(str(err).split())[:200]
    return DamagedFileError(path, f"cannot be read ({type(err).__name__}: {detail}; truncated or damaged)", remedy)


def load_results(run_dir) -> dict:
    """The parsed ``results.json`` of a run directory (docs/results.md).

    Raises ``FileNotFoundError`` (missing) or :class:`trivflow.state.DamagedFileError`."""
    path = _need(_run_dir(run_dir) / RESULTS_FILE, f"results.json is written by {_WRITER} when a run finishes")
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise _damaged(path, err, "the run's summary is lost; its chains_*.nc still hold the data") from None
    if not isinstance(results, dict):
        raise _damaged(path, ValueError("not a JSON object"), "rerun the job into a new directory")
    return results


def run_labels(run_dir) -> list[str]:
    """Run labels of a run directory, the main one first (from results.json)."""
    return list(load_results(run_dir)["runs"])


def load_chains(run_dir, label: str | None = None):
    """The chains of one run label as ``az.InferenceData`` (loaded into memory, file closed).

    Args:
        run_dir: a run directory.
        label: a run label of ``results.json["runs"]``; ``None`` is the main run (``chains.nc``).

    Raises:
        KeyError: ``label`` is not a run of this directory (the message lists those that are).
        FileNotFoundError: the chains file is missing.
    """
    import arviz as az

    run_dir = _run_dir(run_dir)
    if label is None:
        path = run_dir / CHAINS_FILE
    else:
        labels = run_labels(run_dir)
        if label not in labels:
            raise KeyError(f"run label {label!r} not in {str(run_dir / RESULTS_FILE)!r}; runs: {labels}")
        path = chains_path(run_dir, label, labels[0])
    _need(path, f"chains files are written by {_WRITER} after sampling")
    try:
        with az.rc_context({"data.load": "eager"}):
            return az.from_netcdf(str(path))
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise _damaged(path, err, "rerun the job into a new directory (with keep_state=true a run keeps state/ "
                       "to rebuild it by resuming)") from None


def load_training_history(run_dir) -> dict[str, np.ndarray]:
    """Per-step training metrics: ``step``, ``loss``, ``ess``, ``mh_acceptance``, ``lr`` (arrays of
    the number of steps) and 0-d ``seconds``, ``compile_seconds``
    (:func:`trivflow.training.train_flow`)."""
    path = _need(_run_dir(run_dir) / HISTORY_FILE,
                 f"{HISTORY_FILE} is written by {_WRITER} when it trains a flow (not when flow.checkpoint is set)")
    from .state import READ_ERRORS

    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except READ_ERRORS as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise _damaged(path, err, "the training curves are lost; results.json keeps the final figures") from None


def load_flow(run_dir, *, shape=None, dtype=None):
    """The run's flow as ``(graphdef, params, flow_config)`` (:func:`trivflow.training.load_flow`).

    ``run_dir`` may be a run directory (its ``flow/`` is read) or a flow checkpoint directory.
    ``shape``: the lattice to run the flow on, checked now (any even L).
    """
    from .training import load_flow as _load

    p = _run_dir(run_dir)
    path = p if (p / "flow_config.json").exists() else p / FLOW_DIR
    _need(path, f"the flow checkpoint is written by {_WRITER} when a flow sampler (fhmc, imh) trains a flow")
    return _load(path, shape=shape, dtype=dtype)


def load_config(run_dir):
    """The run's config as an OmegaConf ``DictConfig``: ``.hydra/config.yaml`` when present (CLI
    runs), else the resolved ``config`` block of results.json (library runs)."""
    from omegaconf import OmegaConf

    p = _run_dir(run_dir)
    hydra_cfg = p / ".hydra" / "config.yaml"
    if hydra_cfg.is_file():
        return OmegaConf.load(hydra_cfg)
    results = load_results(p)
    if "config" not in results:
        raise KeyError(f"{str(p / RESULTS_FILE)!r} has no 'config' block and {str(hydra_cfg)!r} is missing")
    return OmegaConf.create(results["config"])


def load_overrides(run_dir) -> list[str]:
    """The command-line overrides of a CLI run (``.hydra/overrides.yaml``); ``[]`` for library runs."""
    from omegaconf import OmegaConf

    path = _run_dir(run_dir) / ".hydra" / "overrides.yaml"
    return [str(o) for o in OmegaConf.load(path)] if path.is_file() else []


def load_log(run_dir) -> str:
    """The text of Hydra's log file ``<job name>.log`` in the run directory (CLI runs only)."""
    p = _run_dir(run_dir)
    logs = sorted(p.glob("*.log"))
    if not logs:
        raise FileNotFoundError(f"no *.log file in {str(p)!r}: Hydra writes <job name>.log for CLI runs "
                                "(python -m trivflow.run), library calls of experiment.run do not")
    return "\n".join(f.read_text() for f in logs)


def _natural_key(path: Path):
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", str(path))]


def find_runs(sweep_dir) -> list[Path]:
    """Every run directory (one holding ``results.json``) at or below ``sweep_dir``, in natural
    order (job 2 before job 10). Works for a single run, a Hydra multirun
    (``multirun/<exp>/<date>/<job num>/``) or any tree of them; ``[]`` when there is none."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"directory {str(root)!r} does not exist")
    return sorted((f.parent for f in root.rglob(RESULTS_FILE)), key=_natural_key)
