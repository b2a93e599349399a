"""The measured series of :func:`trivflow.hmc.run_chains` and the files that make a run resumable.

Resume: the driver saves (atomically, :mod:`trivflow.state`) the batched state, keys, step
counter and phase, and continues from such a file at its step; chunk boundaries stay those of an
uninterrupted run, so the result is the same bit for bit. The measured series go to append-only
part files beside it (``<state>.series/part00000.npz`` …, each holding the chunks since the
previous save; the state names how many parts are valid), so a run of N chunks writes O(N)
bytes, not O(N²). Each part carries the run's fingerprint, its label (the state file's stem), its
index and the range of measured steps it holds, so a part that is missing, damaged, swapped with
another or copied from another sampler's series is refused (:class:`trivflow.state.DamagedFileError`).
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import jax
import numpy as np

from ..state import DamagedFileError, StateMismatchError, load_state, save_state


def hash_tree(tree) -> str:
    """Short SHA-1 of a pytree's leaves (values, shapes, dtypes): identifies initial positions,
    chain keys and params in a state's fingerprint without storing them there."""
    h = hashlib.sha1()
    for leaf in jax.tree_util.tree_leaves(tree):
        if hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _cat(*a):
    return np.concatenate(a, axis=1)


class Series:
    """Per-chunk series collected on the host; concatenated along the step axis."""

    def __init__(self):
        self.infos, self.obs = [], []
        self.pending = []  # (infos, obs) added since the last take_pending(): not yet in a part file

    def add(self, infos, obs, *, pending: bool = True):
        infos = jax.tree_util.tree_map(np.asarray, infos)
        obs = None if obs is None else jax.tree_util.tree_map(np.asarray, obs)
        self.infos.append(infos)
        if obs is not None:
            self.obs.append(obs)
        if pending:
            self.pending.append((infos, obs))

    def take_pending(self):
        """``(infos, observables)`` of the chunks added since the last call (concatenated, the
        observables ``{}`` without a measure_fn), or ``None`` if there are none."""
        if not self.pending:
            return None
        infos = jax.tree_util.tree_map(_cat, *(i for i, _ in self.pending))
        obs = [o for _, o in self.pending if o is not None]
        self.pending = []
        return infos, (jax.tree_util.tree_map(_cat, *obs) if obs else {})

    def concat(self):
        """``(infos, observables)``: the kernel's info of (C, n) arrays (None if empty) and a
        dict of (C, n_meas, ...) arrays."""
        infos = jax.tree_util.tree_map(_cat, *self.infos) if self.infos else None
        obs = jax.tree_util.tree_map(_cat, *self.obs) if self.obs else {}
        if len(self.infos) > 1:  # keep one concatenated block: cheaper next time
            self.infos, self.obs = [infos], ([obs] if self.obs else [])
        return infos, obs


class RunFiles:
    """The state file of one run and its series parts (module docstring).

    Args:
        state_path: ``<dir>/<label>.npz``; the parts go to ``<dir>/<label>.series/``.
        fingerprint: stored in the state and every part, checked when they are read.
    """

    def __init__(self, state_path: str | Path, fingerprint: dict):
        self.state_path = Path(state_path)
        self.parts_dir = self.state_path.with_suffix(".series")
        self.fingerprint = fingerprint
        self.n_parts = 0  # valid parts (named by the last state written or read)
        self.measured = 0  # measured steps they hold
        self.seconds = 0.0  # spent writing

    @property
    def remedy(self) -> str:
        return f"delete {self.state_path} and {self.parts_dir}/ to rerun this sampler from the start"

    def exists(self) -> bool:
        """Whether a state to continue from exists; if not, parts of an earlier run are removed."""
        if self.state_path.exists():
            return True
        if self.parts_dir.exists():
            shutil.rmtree(self.parts_dir)  # parts of an earlier run whose state is gone
        return False

    def read(self, like: dict, part_like: dict, series: Series, expected_measured) -> tuple[dict, dict]:
        """Read the state (``like``: its tree's structure) and its parts into ``series``.

        ``part_like``: shape-only ``{"infos", "observables"}`` of the series;
        ``expected_measured(meta)``: the measured steps the state's parts must hold.
        Returns ``(tree, meta)`` of the state."""
        tree, meta = load_state(self.state_path, like=like, fingerprint=self.fingerprint)
        self.n_parts = int(meta.get("series_parts", 0))
        self.measured = self._read_parts(part_like, series)
        if self.measured != expected_measured(meta):
            raise DamagedFileError(
                self.state_path, f"is at step {int(meta['t'])} but its {self.n_parts} series parts hold "
                f"{self.measured} measured steps (expected {expected_measured(meta)})", self.remedy)
        return tree, meta

    def _read_parts(self, part_like, series: Series) -> int:
        """Read the ``n_parts`` series parts into ``series``; each must be this run's
        (fingerprint), of this label, at its index, and continue the previous one. Returns the
        number of measured steps they hold. Parts beyond ``n_parts`` (written after the last
        state) are ignored and later overwritten."""
        label, measured = self.state_path.stem, 0
        for i in range(self.n_parts):
            path = self.parts_dir / f"part{i:05d}.npz"
            try:
                part, meta = load_state(path, like=part_like, fingerprint=self.fingerprint, remedy=self.remedy)
            except FileNotFoundError:
                raise DamagedFileError(path, f"is missing ({self.state_path.name} counts {self.n_parts} series "
                                       "parts)", self.remedy) from None
            except StateMismatchError as err:
                why = getattr(err, "differences", None) or str(err)
                raise DamagedFileError(path, f"belongs to another run or sampler ({why})", self.remedy) from None
            where = (meta.get("label"), meta.get("index"), meta.get("first"))
            if where != (label, i, measured):
                raise DamagedFileError(
                    path, f"holds part {where[1]} of the {where[0]!r} series from measured step {where[2]}, "
                    f"expected part {i} of {label!r} from step {measured} (moved or swapped)", self.remedy)
            series.add(part["infos"], part["observables"] or None, pending=False)
            measured += int(meta["count"])
        return measured

    def write(self, tree, series: Series, meta: dict) -> None:
        """Write the series added since the last write as the next part, then the state that makes
        it valid (``meta`` gets ``series_parts``)."""
        t0 = time.perf_counter()
        new = series.take_pending()
        if new is not None:  # first the part, then the state that makes it valid
            count = int(np.shape(new[0].accepted)[1])
            part_meta = {"label": self.state_path.stem, "index": self.n_parts, "first": self.measured,
                         "count": count}
            save_state(self.parts_dir / f"part{self.n_parts:05d}.npz", {"infos": new[0], "observables": new[1]},
                       fingerprint=self.fingerprint, meta=part_meta)
            self.n_parts += 1
            self.measured += count
        save_state(self.state_path, tree, fingerprint=self.fingerprint, meta={**meta, "series_parts": self.n_parts})
        self.seconds += time.perf_counter() - t0
