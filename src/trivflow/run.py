"""Hydra entry point: ``python -m trivflow.run [overrides]`` or the ``trivflow`` console script.

Composes the config, takes the run directory for this job (:mod:`trivflow.app.rundir`: a lock, and a
finished run is never modified), writes ``.hydra/`` and calls :func:`trivflow.app.experiment.run`;
everything else is library code usable without Hydra.

Failing: every error — bad input, a damaged file, a diverged training, frozen chains, a busy run
directory, a full disk, a bad override caught by Hydra, or a bug — ends the job with ONE line
``trivflow: error: …`` on stderr (also in the run's log file) and a non-zero exit status, no
traceback. ``TRIVFLOW_TRACEBACK=1`` (or ``HYDRA_FULL_ERROR=1``, or ``hydra.verbose=true``)
shows the traceback as well.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .app import rundir
from .app.config import register_configs
from .state import NON_NUMERIC_KEYS, atomic_write_text, disk_full

register_configs()

log = logging.getLogger("trivflow")
#: :func:`main` sets HYDRA_FULL_ERROR for itself and says so here (inherited by sweep jobs)
_OWN_HYDRA_FULL_ERROR = "TRIVFLOW_SET_HYDRA_FULL_ERROR"
#: set when the user asked for tracebacks
_WANT_TRACEBACK = bool(os.environ.get("TRIVFLOW_TRACEBACK")
                       or (os.environ.get("HYDRA_FULL_ERROR") and not os.environ.get(_OWN_HYDRA_FULL_ERROR)))

#: Overrides that may differ between a run and its resumption: the keys that do not change the
#: numbers (:data:`trivflow.state.NON_NUMERIC_KEYS`, which the state fingerprints leave out too),
#: except ``experiment``, which as an override selects a whole experiment config.
RESUME_IGNORED = NON_NUMERIC_KEYS - {"experiment"}
#: Written into a run directory whose job resumed another one (never a resume candidate itself).
RESUMED_MARKER = "resumed_in.txt"


def _override_key(override: str) -> str:
    return override.lstrip("+~").partition("=")[0]


def comparable_overrides(overrides) -> list[str]:
    """Sorted task overrides without the keys in :data:`RESUME_IGNORED`."""
    return sorted(o for o in overrides if _override_key(o) not in RESUME_IGNORED)


def find_resumable_run(output_dir, overrides, *, multirun: bool = False) -> Path:
    """The run that ``resume=true`` continues.

    ``output_dir`` itself when an earlier job ran there (a fixed ``hydra.run.dir``: it holds
    ``state/`` or the ``.hydra/`` that job wrote, even if it was killed before its first state);
    else the latest earlier run directory of the same experiment with the same overrides
    (:func:`comparable_overrides` of ``.hydra/overrides.yaml``) that is unfinished (no
    ``results.json``) and did not itself resume another run, searched among the siblings of
    ``output_dir`` (``outputs/<experiment>/<time>``), or with ``multirun`` the jobs of every
    sweep beside this one (``multirun/<experiment>/<time>/<num>``). Raises ``ValueError`` when
    nothing matches.
    """
    out = Path(output_dir).resolve()
    if (out / "state").is_dir() or (out / ".hydra" / "overrides.yaml").is_file():
        return out
    want = comparable_overrides(overrides)
    parent = out.parent.parent if multirun else out.parent
    candidates = []
    for d in (p for s in parent.iterdir() if s.is_dir() for p in (s.iterdir() if multirun else [s])):
        file = d / ".hydra" / "overrides.yaml"
        if d.resolve() == out or not file.is_file() or (d / "results.json").exists() or (d / RESUMED_MARKER).exists():
            continue
        try:
            theirs = comparable_overrides(OmegaConf.to_container(OmegaConf.load(file)))
        except Exception:  # noqa: BLE001 - a damaged overrides.yaml is no candidate
            continue
        if theirs == want:
            candidates.append((file.stat().st_mtime, d.name, d))
    if not candidates:
        raise ValueError(
            f"resume=true: no unfinished run (without results.json) with the overrides {want} in {parent}; "
            f"pass resume=<run directory> or start a new run"
        )
    return max(candidates)[2]


def _fixed_run_dir(hc) -> bool:
    """Whether the user fixed this job's directory (``hydra.run.dir=…``, e.g. a cluster job that
    is requeued with the same command)."""
    return hc.mode != RunMode.MULTIRUN and any(o.startswith("hydra.run.dir=") for o in hc.overrides.hydra)


def resume_target(resume, here: Path) -> Path:
    """The run directory that ``resume`` (true or a path) continues from this job's ``here``.

    ``resume=true`` searches (:func:`find_resumable_run`); when nothing is found and the user
    fixed ``hydra.run.dir``, the run starts there from the beginning — a job killed before it
    wrote anything, then requeued with the same command, must not be refused."""
    if resume is True:
        hc = HydraConfig.get()
        try:
            return find_resumable_run(here, hc.overrides.task, multirun=hc.mode == RunMode.MULTIRUN)
        except ValueError:
            if not _fixed_run_dir(hc):
                raise
            log.info("resume=true: nothing to resume, the run starts in %s", here)
            return here
    target = Path(str(resume)).expanduser().resolve()
    if not target.is_dir():
        raise ValueError(f"resume={resume!r} is invalid: expected an existing run directory")
    if not (target / ".hydra").is_dir() and not (target / "state").is_dir() \
            and not (target / "results.json").is_file():
        raise ValueError(f"resume={resume!r} is invalid: expected a run directory (with .hydra/ or state/)")
    return target


def _log_into(target: Path) -> None:
    """From now on, log into ``target``'s log file too (a resume continues that run's log)."""
    hc = HydraConfig.get()
    handler = logging.FileHandler(target / f"{hc.job.name}.log")
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler) and h.formatter is not None:
            handler.setFormatter(h.formatter)
    logging.getLogger().addHandler(handler)


def write_hydra_files(here: Path, cfg: DictConfig) -> None:
    """``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml`` as Hydra writes them, but
    only once this job holds the directory (``hydra.output_subdir`` is null in config.yaml, so
    that a refused second job never overwrites the first one's record)."""
    hc = HydraConfig.get()
    out = here / ".hydra"
    atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(cfg))
    atomic_write_text(out / "hydra.yaml", OmegaConf.to_yaml(OmegaConf.create({"hydra": hc})))
    atomic_write_text(out / "overrides.yaml", OmegaConf.to_yaml(hc.overrides.task))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def error_message(err: BaseException, run_dir: Path | None = None) -> str:
    """The one-line message for an exception that ends a job."""
    full = disk_full(err)
    if full is not None:
        where = f" while writing {full.filename}" if full.filename else ""
        resume = f"; then continue with resume={run_dir}" if run_dir is not None else ""
        return f"no space left on the disk holding {run_dir or 'the run directory'}{where}: free some space{resume}"
    if isinstance(err, (ValueError, FileNotFoundError, FloatingPointError, OSError)):
        return _one_line(err)
    # anything else is a bug in trivflow or a library
    return (f"internal error {type(err).__name__}: {_one_line(err)[:500]} (rerun with TRIVFLOW_TRACEBACK=1 for the "
            "traceback, and please report it)")


def _log_to_files(message: str) -> None:
    """The error line into the run's log file(s) only: the console gets it once, from sys.exit."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            record = logging.LogRecord("trivflow", logging.ERROR, __file__, 0, message, None, None)
            try:
                handler.handle(record)
            except Exception:  # noqa: BLE001 - e.g. a full disk: the console still gets the line
                pass


def _fail(err: BaseException, run_dir: Path | None, *, log_files: bool = True):
    verbose = _WANT_TRACEBACK
    try:
        verbose = verbose or bool(HydraConfig.get().verbose)
    except ValueError:  # no Hydra config (composition failed)
        pass
    if verbose:
        traceback.print_exception(err)
    message = error_message(err, run_dir)
    if log_files:
        _log_to_files(message)
    sys.exit(f"trivflow: error: {message}")


@hydra.main(version_base=None, config_path="conf", config_name="config")
def _job(cfg: DictConfig) -> None:
    from .app.config import refuse_unread_overrides
    from .app.experiment import format_summary, run

    logging.getLogger("jax").setLevel(logging.WARNING)  # backend probing is noise for users
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every checkpoint step at INFO
    logging.getLogger("arviz").setLevel(logging.WARNING)  # "arviz_stats not installed" etc. at import
    logging.raiseExceptions = False  # a log write failing (full disk) must not print tracebacks
    hydra_cfg = cfg.copy()  # as composed, for .hydra/config.yaml
    if cfg.quiet:  # batch jobs: no bars, console shows warnings and errors; the log file keeps INFO
        cfg.progress = False
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.WARNING)
    here = Path(HydraConfig.get().runtime.output_dir).resolve()
    target = None
    try:
        refuse_unread_overrides(cfg, HydraConfig.get().overrides.task)  # before compute and before the run dir
        with rundir.locked(here):
            target = resume_target(cfg.resume, here) if cfg.get("resume", False) else here
            with rundir.locked(target):
                rundir.check_unfinished(target, cfg, resuming=bool(cfg.get("resume", False)))
                write_hydra_files(here, hydra_cfg)
                if target != here:
                    atomic_write_text(here / RESUMED_MARKER, f"{target}\n")
                    _log_into(target)
                if cfg.get("resume", False):
                    log.info("resuming the run in %s: results go there", target)
                run(cfg, target)
    except rundir.RunAlreadyFinished as done:
        log.info("%s\n%s", done, format_summary(done.results))
    except rundir.RunDirectoryBusy as err:
        _fail(err, None, log_files=False)  # the directory and its log belong to the other job
    except KeyboardInterrupt:
        where = target or here
        sys.exit(f"trivflow: interrupted: the run in {where} can be continued with resume={where}")
    except Exception as err:  # noqa: BLE001 - one line for every failure (module docstring)
        _fail(err, target)


def main() -> None:
    """Console entry point (``trivflow``, ``python -m trivflow.run``). Hydra's own errors (a bad
    override, an unknown config group) are turned into the same one line as trivflow's."""
    if not os.environ.get("HYDRA_FULL_ERROR"):  # Hydra raises instead of printing; reported below
        os.environ["HYDRA_FULL_ERROR"] = os.environ[_OWN_HYDRA_FULL_ERROR] = "1"
    try:
        _job()
    except Exception as err:  # noqa: BLE001 - composition errors, raised before the job runs
        if _WANT_TRACEBACK:
            raise
        cause = err.__cause__
        detail = f": {_one_line(str(cause).splitlines()[0])}" if cause is not None and str(cause) else ""
        sys.exit(f"trivflow: error: {_one_line(err)}{detail}")


if __name__ == "__main__":
    main()
