"""Resumable state files: a pytree of arrays plus JSON metadata, written atomically.

Layout of one state file (a NumPy ``.npz``, no pickles)::

    __meta__        0-d unicode array: JSON {"version", "fingerprint", "names", "keys", "meta"}
    <name>          one array per pytree leaf; ``<name>`` is the leaf's path, e.g.
                    ``states/position`` or ``opt_state/0/mu/layers/0/...``

Crash safety: :func:`save_state` writes a temporary file in the same directory, flushes and
``fsync``\\ s it, then ``os.replace``\\ s it over the target and ``fsync``\\ s the directory. The
replace is atomic on POSIX file systems, so after a ``kill -9`` at any moment the target is
either the old complete file or the new complete file, never a torn one (a leftover
``.<name>.*.tmp`` file may remain; it is ignored and removed by the next save).

PRNG keys (typed key arrays, ``jax.random.key``) are stored as ``jax.random.key_data`` and
rewrapped with their implementation on load, so they come back bit for bit.

Fingerprints: a flat dict of the settings the state depends on (e.g. ``{"lattice.L": 8, ...}``,
see :func:`config_fingerprint`). Loading with a different fingerprint raises
:class:`StateMismatchError` naming every differing key with both values.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

FORMAT_VERSION = 1
META = "__meta__"

#: Config keys that never change the numbers of a run, left out of :func:`config_fingerprint`:
#: bookkeeping (resume, progress, platform, experiment name), checkpoint cadence, and the
#: host-visit granularity of the HMC driver and the training loop (``sampler.chunk_size``:
#: trajectory t always uses fold_in(chain_key, t), and chunks are separate compiled scans of the
#: same per-trajectory step, so results agree bit for bit for any chunk size, which
#: tests/test_resume.py checks; ``train.log_every``: only when metrics are fetched).
#: ``sampler.batch_size`` (IMH) is NOT here: it fixes how proposal keys are split.
NON_NUMERIC_KEYS = frozenset({
    "resume", "progress", "quiet", "platform", "experiment", "plots", "keep_state", "sampler.shard",
    "sampler.checkpoint_every", "train.checkpoint_every", "sampler.chunk_size", "train.log_every",
})


#: Fingerprint keys that the library functions add themselves (see :func:`check_fingerprint`).
DERIVED_PREFIXES = ("run_chains.", "run_imh.", "train_flow.")


class StateMismatchError(ValueError):
    """A state file was written for other settings than the current run's."""


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


def atomic_savez(path, arrays: Mapping[str, np.ndarray]) -> Path:
    """``np.savez(path, **arrays)`` that survives ``kill -9`` at any moment: written to a
    temporary file in the same directory, fsynced, renamed over ``path`` (``os.replace``), the
    directory fsynced; the old file or the new one is there, never a torn one. Temporary files
    left by a killed writer are removed. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed writer
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


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
        raise StateMismatchError(
            f"{where} was written for {was}, this run has {now}: delete it or use a new run directory"
        )


def load_state(path, *, like=None, fingerprint: Mapping | None = None) -> tuple[Any, dict]:
    """Read a state written by :func:`save_state`.

    Args:
        path: the ``.npz`` file.
        like: optional pytree with the structure of the saved ``tree`` (leaf shapes may differ):
            the arrays are returned in that structure. Without it, a flat dict ``name -> array``.
        fingerprint: when given, it must equal the stored one (else :class:`StateMismatchError`).

    Returns:
        ``(tree, meta)``; arrays are NumPy arrays, PRNG keys typed JAX key arrays.

    Raises:
        FileNotFoundError: no file. StateMismatchError: fingerprint or structure differs.
    """
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(str(data[META][()]))
        if header.get("version") != FORMAT_VERSION:
            raise StateMismatchError(f"{_describe(path)} has state format {header.get('version')}, "
                                     f"this trivflow writes {FORMAT_VERSION}: delete it or use a new run directory")
        if fingerprint is not None:
            check_fingerprint(path, header["fingerprint"], fingerprint)
        names = header["names"]
        out = {}
        for name in names:
            a = data[name]
            if name in header["keys"]:
                a = jax.random.wrap_key_data(a, impl=header["keys"][name])
            out[name] = a
    meta = header["meta"]
    if like is None:
        return out, meta
    like_names, _, treedef = _leaves_with_names(like)
    if like_names != names:
        raise StateMismatchError(f"{_describe(path)} holds {names}, expected {like_names}: "
                                 "delete it or use a new run directory")
    return jax.tree_util.tree_unflatten(treedef, [out[n] for n in names]), meta


def read_meta(path) -> dict:
    """The ``meta`` dict of a state file (no arrays are read)."""
    with np.load(Path(path), allow_pickle=False) as data:
        return json.loads(str(data[META][()]))["meta"]
