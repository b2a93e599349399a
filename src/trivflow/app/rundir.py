"""A run directory belongs to one job at a time, and a finished run is never modified.

* :func:`locked` holds an OS file lock (``fcntl.flock`` through the ``filelock`` package) on
  ``<run>/.trivflow.lock`` for the whole job. A second job on the same directory is refused at
  once with :class:`RunDirectoryBusy`, naming the directory and the holder's PID, host and start
  time (``<run>/.trivflow.owner``). The operating system drops the lock when the holder exits,
  even on ``kill -9``, so a killed job never leaves the directory locked. The lock is re-entrant
  within one process (the CLI takes it before writing ``.hydra/``, the pipeline again inside).
* :func:`check_unfinished` refuses a directory that holds ``results.json`` — a finished run —
  unless the job is an identical resume, which then has nothing to do
  (:class:`RunAlreadyFinished`).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from ..state import NON_NUMERIC_KEYS, atomic_write_text, config_fingerprint

LOCK_FILE = ".trivflow.lock"
OWNER_FILE = ".trivflow.owner"
RESULTS_FILE = "results.json"

_held: dict[Path, list] = {}  # resolved run dir -> [FileLock, depth]


class RunDirectoryBusy(ValueError):
    """Another job holds the run directory."""


class RunAlreadyFinished(Exception):
    """An identical resume of a finished run: nothing to do. ``results`` is its results.json."""

    def __init__(self, run_dir: Path, results: dict):
        self.run_dir, self.results = run_dir, results
        super().__init__(f"the run in {run_dir} has already finished (results.json): nothing to do")


def _owner(run_dir: Path) -> str:
    try:
        info = json.loads((run_dir / OWNER_FILE).read_text())
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["started"])))
        return f"PID {info['pid']} on {info['host']}, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a job whose PID is not recorded yet"


@contextmanager
def locked(run_dir) -> Iterator[Path]:
    """Hold the run directory ``run_dir`` (created if missing) for the duration of the block.

    Raises:
        RunDirectoryBusy: another process holds it (the message names it and the holder).
    """
    run_dir = Path(run_dir).resolve()
    if run_dir in _held:  # re-entrant within this process
        _held[run_dir][1] += 1
        try:
            yield run_dir
        finally:
            _held[run_dir][1] -= 1
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    # the lock file stays on release: deleting it would let a waiter lock a stale inode
    lock = FileLock(run_dir / LOCK_FILE, timeout=0, thread_local=False, preserve_lock_file=True)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunDirectoryBusy(
            f"run directory {run_dir} is in use by another trivflow job ({_owner(run_dir)}): wait for it to "
            "finish, or give this job its own directory (hydra.run.dir=...)") from None
    try:
        atomic_write_text(run_dir / OWNER_FILE, json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}) + "\n")
        _held[run_dir] = [lock, 1]
        yield run_dir
    finally:
        _held.pop(run_dir, None)
        lock.release()


def is_locked_here(run_dir) -> bool:
    """Whether this process holds the lock of ``run_dir``."""
    return Path(run_dir).resolve() in _held


def stored_config(run_dir: Path) -> dict | None:
    """The resolved config a run directory was made with, flattened (``.hydra/config.yaml``,
    else results.json's ``config`` block), or None when neither is readable."""
    from omegaconf import OmegaConf

    try:
        hydra_cfg = run_dir / ".hydra" / "config.yaml"
        if hydra_cfg.is_file():
            return config_fingerprint(OmegaConf.load(hydra_cfg))
        cfg = json.loads((run_dir / RESULTS_FILE).read_text()).get("config")
        return None if cfg is None else config_fingerprint(OmegaConf.create(cfg))
    except Exception:  # noqa: BLE001 - damaged: treated as unknown, the run is refused anyway
        return None


def config_differences(stored: Mapping, current: Mapping) -> list[str]:
    """``key: stored -> current`` for every key whose value differs (keys that never change the
    numbers, :data:`trivflow.state.NON_NUMERIC_KEYS`, left out)."""
    keys = sorted((set(stored) | set(current)) - NON_NUMERIC_KEYS)
    return [f"{k}: {stored.get(k, '<unset>')!r} -> {current.get(k, '<unset>')!r}" for k in keys
            if stored.get(k, "<unset>") != current.get(k, "<unset>")]


def check_unfinished(run_dir, cfg, *, resuming: bool) -> None:
    """Refuse to write into a finished run (``results.json`` present): it is never modified.

    Raises:
        RunAlreadyFinished: ``resuming`` with the configuration the run was made with.
        ValueError: otherwise, naming the keys that differ (for a resume) or the directory.
    """
    run_dir = Path(run_dir)
    results = run_dir / RESULTS_FILE
    if not results.exists():
        return
    stored = stored_config(run_dir)
    diffs = None if stored is None else config_differences(stored, config_fingerprint(cfg))
    if resuming and diffs == []:
        try:
            finished = json.loads(results.read_text())
        except (OSError, ValueError):
            finished = None  # a damaged results.json: refused below
        if isinstance(finished, dict):
            raise RunAlreadyFinished(run_dir, finished)
    how = "resume" if resuming else "this job"
    what = "" if not diffs else f"; this job differs in {', '.join(diffs)}"
    reuse = f" (flow.checkpoint={run_dir} reuses its flow)" if (run_dir / "flow").is_dir() else ""
    raise ValueError(
        f"{run_dir} holds a finished run (results.json) and a finished run is never modified ({how} refused{what}): "
        f"start a new run directory{reuse}")
