"""Resumable state files: a pytree of arrays plus JSON metadata, written atomically.

Layout of one state file (a NumPy ``.npz``, no pickles)::

    __meta__        0-d unicode array: JSON {"version", "fingerprint", "names", "keys", "meta"}
    <name>          one array per pytree leaf; ``<name>`` is the leaf's path, e.g.
                    ``states/position`` or ``opt_state/0/mu/layers/0/...``

Crash safety: :func:`save_state` writes a temporary file in the same directory, flushes and
``fsync``\\ s it, then ``os.replace``\\ s it over the target and ``fsync``\\ s the directory. The
replace is atomic on POSIX file systems, so after a ``kill -9`` at any moment the target is
either the old complete file or the new complete file, never a torn one. A leftover temporary
file ``.<name>.<host>.<pid>.<random>.tmp`` may remain; the next save removes it once its
writer (that process on this host) is gone, never while another job may still be writing it.

Damage: a file that cannot be read (truncated, empty, random bytes, pickled data, a missing
header) raises :class:`DamagedFileError` naming the file, what is wrong and what to do, never a
bare ``BadZipFile``/``EOFError``.

PRNG keys (typed key arrays, ``jax.random.key``) are stored as ``jax.random.key_data`` and
rewrapped with their implementation on load, so they come back bit for bit.

Fingerprints: a flat dict of the settings the state depends on (e.g. ``{"lattice.L": 8, ...}``,
see :func:`config_fingerprint`). Loading with a different fingerprint raises
:class:`StateMismatchError` naming every differing key with both values.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import socket
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

#: 2: series part files carry their label, index and trajectory range (trivflow.hmc.series).
FORMAT_VERSION = 2
META = "__meta__"

#: Config keys that never change the numbers of a run, left out of :func:`config_fingerprint`:
#: bookkeeping (resume, progress, platform, experiment name), checkpoint cadence, and the
#: host-visit granularity of the HMC driver and the training loop (``sampler.chunk_size``:
#: trajectory t always uses fold_in(chain_key, t), and chunks are separate compiled scans of the
#: same per-trajectory step, so results agree bit for bit for any chunk size, which
#: tests/test_resume.py checks; ``train.log_every``: only when metrics are fetched).
#: ``sampler.batch_size`` (IMH's chunk size) no longer changes the numbers either (IMH runs in the
#: same driver), but stays in the fingerprint so that state files written before keep resuming.
NON_NUMERIC_KEYS = frozenset({
    "resume", "progress", "quiet", "platform", "experiment", "plots", "keep_state", "sampler.shard",
    "sampler.checkpoint_every", "train.checkpoint_every", "sampler.chunk_size", "train.log_every",
    "compile_cache", "compile_cache_max_gb", "cpu_devices",
})


#: Fingerprint keys that the library functions add themselves (see :func:`check_fingerprint`).
DERIVED_PREFIXES = ("run_chains.", "run_imh.", "train_flow.")


class StateMismatchError(ValueError):
    """A state file was written for other settings than the current run's."""


class DamagedFileError(ValueError):
    """A file of a run cannot be used: truncated, not what its name says, or inconsistent with
    the files beside it. The message names the file, what is wrong and what to do."""

    def __init__(self, path, problem: str, remedy: str):
        self.path = Path(path)
        super().__init__(f"{self.path} {problem}: {remedy}")


#: What to do with a damaged state file: its stage simply reruns without it.
STATE_REMEDY = "delete it to rerun that stage from the start (or use a new run directory)"

#: Exceptions that reading a damaged .npz raises (np.load, zipfile, the JSON header).
READ_ERRORS = (OSError, EOFError, ValueError, KeyError, IndexError, zipfile.BadZipFile)


def disk_full(err: BaseException) -> OSError | None:
    """The ``ENOSPC``/``EDQUOT`` ``OSError`` in ``err``'s chain of causes, or None."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return err
        err = err.__cause__ or err.__context__
    return None


def _jsonable(value):
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def _normalise(d: Mapping | None) -> dict:
    """JSON round trip, so that tuples/lists and NumPy scalars compare like the stored values."""
    return json.loads(json.dumps(_jsonable(dict(d or {})), sort_keys=True))


def flatten_config(cfg, prefix: str = "") -> dict[str, Any]:
    """Dotted-key view of a nested mapping (an OmegaConf container or dicts):
    ``{"lattice": {"L": 8}} -> {"lattice.L": 8}``."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(cfg):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten_config(v, key + "."))
        else:
            out[key] = v
    return out


def config_fingerprint(cfg, *, exclude=NON_NUMERIC_KEYS) -> dict[str, Any]:
    """The resolved config as a flat dotted-key dict minus ``exclude`` (keys that do not change
    the numbers, :data:`NON_NUMERIC_KEYS`). Stored with every state of an experiment run."""
    return {k: v for k, v in flatten_config(cfg).items() if k not in exclude}


def _key_name(entry) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _leaves_with_names(tree) -> tuple[list[str], list[Any], Any]:
    with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    names = ["/".join(_key_name(e) for e in path) or "leaf" for path, _ in with_path]
    if len(set(names)) != len(names):  # e.g. a dict key containing "/": fall back to indices
        names = [f"{i:05d}" for i in range(len(names))]
    return names, [leaf for _, leaf in with_path], treedef


def _is_key_array(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_state(path, tree, *, fingerprint: Mapping | None = None, meta: Mapping | None = None) -> Path:
    """Atomically write the pytree ``tree`` (arrays, typed PRNG keys, Python scalars) with
    JSON-serialisable ``meta`` and ``fingerprint`` to ``path`` (a ``.npz`` file; parents created).

    Sharded arrays are gathered to the host. Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names, leaves, _ = _leaves_with_names(tree)
    arrays, keys = {}, {}
    for name, leaf in zip(names, leaves):
        if _is_key_array(leaf):
            keys[name] = str(jax.random.key_impl(leaf))
            leaf = jax.random.key_data(leaf)
        arrays[name] = np.asarray(leaf)
    header = {"version": FORMAT_VERSION, "fingerprint": _normalise(fingerprint), "names": names,
              "keys": keys, "meta": _normalise(meta)}
    arrays[META] = np.asarray(json.dumps(header, sort_keys=True))
    return atomic_savez(path, arrays)


_HOST = socket.gethostname().replace(".", "_")


def _temp_name(path: Path) -> Path:
    """``.<name>.<host>.<pid>.<random>.tmp`` beside ``path``: the writer is named, so that a
    cleanup removes only files whose writer is gone."""
    return path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _writer_alive(temp: Path, name: str) -> bool:
    """Whether the process that created the temporary file ``temp`` (of target ``name``) may
    still be writing it: a live PID on this host, or a file of another host (unknowable)."""
    parts = temp.name[len(name) + 2:].split(".")  # host, pid, random, "tmp"
    if len(parts) != 4 or not parts[1].isdigit():
        return False  # not a name this module writes (e.g. an older trivflow's): stale
    if parts[0] != _HOST:
        return True
    pid = int(parts[1])
    if pid == os.getpid():
        return True  # this process's own (another thread's) write
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path) -> None:
    """Remove the temporary files (or directories) of ``path`` left by writers that were killed."""
    path = Path(path)
    for temp in path.parent.glob(f".{path.name}.*.tmp"):
        if not _writer_alive(temp, path.name):
            if temp.is_dir() and not temp.is_symlink():
                shutil.rmtree(temp, ignore_errors=True)
            else:
                temp.unlink(missing_ok=True)


def temporary_dir(target) -> Path:
    """A new empty directory beside ``target`` to build its replacement in (then
    :func:`replace_dir`); stale ones of killed writers are removed first."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    tmp = _temp_name(target)
    tmp.mkdir()
    return tmp


def atomic_write(path, write: Callable, *, binary: bool = True) -> Path:
    """Write ``path`` through ``write(file)`` so that it survives ``kill -9`` and a full disk at
    any moment: into a temporary file in the same directory, fsynced, renamed over ``path``
    (``os.replace``), the directory fsynced. Afterwards the old file or the new one is there,
    never a torn one; on any failure (e.g. ``ENOSPC``) the temporary file is removed and the
    error propagates. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = _temp_name(path)
    try:
        with open(tmp, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None:  # e.g. ENOSPC inside np.savez
            err.filename = str(path)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path, text: str) -> Path:
    """:func:`atomic_write` of a text file (e.g. results.json)."""
    return atomic_write(path, lambda f: f.write(text), binary=False)


def atomic_savez(path, arrays: Mapping[str, np.ndarray]) -> Path:
    """``np.savez(path, **arrays)`` through :func:`atomic_write` (kill- and disk-full-safe)."""
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def replace_dir(new, target) -> Path:
    """Put the complete directory ``new`` at ``target`` (same file system), replacing what is there.

    Two renames: ``target`` → a temporary name, then ``new`` → ``target``; the old copy is
    removed last. A kill between them leaves no ``target`` (readers see none and rebuild it),
    never a half-written one."""
    new, target = Path(new), Path(target)
    old = None
    if target.exists():
        old = _temp_name(target)
        os.replace(target, old)
    os.replace(new, target)
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _describe(path: Path) -> str:
    parts = path.parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else str(path)


def check_fingerprint(path, stored: Mapping, expected: Mapping) -> None:
    """Raise :class:`StateMismatchError` naming every key whose value differs (or that only one
    side has) between the ``stored`` and the ``expected`` fingerprint.

    Keys under :data:`DERIVED_PREFIXES` (the samplers' own arguments and hashes of positions,
    keys and params) are named only when no other key differs: a different ``lattice.L``
    implies a different ``run_chains.shape``, and the config key is the one to act on."""
    stored, expected = _normalise(stored), _normalise(expected)
    diffs = []
    for k in sorted(set(stored) | set(expected)):
        a, b = stored.get(k, "<unset>"), expected.get(k, "<unset>")
        if a != b:
            diffs.append((k, a, b))
    primary = [d for d in diffs if not d[0].startswith(DERIVED_PREFIXES)]
    diffs = primary or diffs
    if diffs:
        where = _describe(Path(path))
        was = ", ".join(f"{k}={a!r}" for k, a, _ in diffs)
        now = ", ".join(f"{k}={b!r}" for k, _, b in diffs)
        err = StateMismatchError(
            f"{where} was written for {was}, this run has {now}: delete it or use a new run directory"
        )
        err.differences = f"written for {was}, this run has {now}"
        raise err


def _read_header(data, path: Path) -> dict:
    try:
        header = json.loads(str(data[META][()]))
    except KeyError:
        raise DamagedFileError(path, "is not a trivflow state file (no header)", STATE_REMEDY) from None
    if not isinstance(header, dict) or not {"version", "names", "keys", "meta"} <= set(header):
        raise DamagedFileError(path, "has a damaged header", STATE_REMEDY)
    if header.get("version") != FORMAT_VERSION:
        raise StateMismatchError(f"{_describe(path)} has state format {header.get('version')}, "
                                 f"this trivflow writes {FORMAT_VERSION}: delete it or use a new run directory")
    return header


def _damaged(path: Path, err: BaseException, remedy: str) -> DamagedFileError:
    what = "is empty" if path.is_file() and path.stat().st_size == 0 else \
        f"cannot be read ({type(err).__name__}: {err}; truncated or not a trivflow state)"
    return DamagedFileError(path, what, remedy)


def load_state(path, *, like=None, fingerprint: Mapping | None = None,
               remedy: str = STATE_REMEDY) -> tuple[Any, dict]:
    """Read a state written by :func:`save_state`.

    Args:
        path: the ``.npz`` file.
        like: optional pytree with the structure of the saved ``tree`` (leaf shapes may differ):
            the arrays are returned in that structure. Without it, a flat dict ``name -> array``.
        fingerprint: when given, it must equal the stored one (else :class:`StateMismatchError`).
        remedy: what the :class:`DamagedFileError` message tells the user to do.

    Returns:
        ``(tree, meta)``; arrays are NumPy arrays, PRNG keys typed JAX key arrays.

    Raises:
        FileNotFoundError: no file. StateMismatchError: fingerprint or structure differs.
        DamagedFileError: the file cannot be read (truncated, empty, not a state file).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            header = _read_header(data, path)
            if fingerprint is not None:
                check_fingerprint(path, header["fingerprint"], fingerprint)
            names = header["names"]
            out = {}
            for name in names:
                a = data[name]
                if name in header["keys"]:
                    a = jax.random.wrap_key_data(a, impl=header["keys"][name])
                out[name] = a
    except (FileNotFoundError, StateMismatchError, DamagedFileError):
        raise
    except READ_ERRORS as err:
        raise _damaged(path, err, remedy) from None
    meta = header["meta"]
    if like is None:
        return out, meta
    like_names, _, treedef = _leaves_with_names(like)
    if like_names != names:
        raise StateMismatchError(f"{_describe(path)} holds {names}, expected {like_names}: "
                                 "delete it or use a new run directory")
    return jax.tree_util.tree_unflatten(treedef, [out[n] for n in names]), meta


def read_meta(path, *, remedy: str = STATE_REMEDY) -> dict:
    """The ``meta`` dict of a state file (no arrays are read); damage as in :func:`load_state`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return _read_header(data, path)["meta"]
    except (FileNotFoundError, StateMismatchError, DamagedFileError):
        raise
    except READ_ERRORS as err:
        raise _damaged(path, err, remedy) from None
