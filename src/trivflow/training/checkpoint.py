"""Flow checkpoints: parameters with orbax, plus the JSON of the config that built the flow.

Layout of a checkpoint directory ``path``::

    path/flow_config.json   FlowConfig keys (kernel_size, num_layers, …) + metadata, e.g.
                            "lattice": {"L": 8, "d": 2, "beta": 0.576, "lam": 0.5}
    path/params/            orbax StandardCheckpointer: flat {"layers.0.net_b.kernels.0": array, …}

Loading rebuilds the flow from the JSON and fills its parameters, checking names and shapes,
so a checkpoint restores on any even L (the parameters do not depend on L).

Writing is atomic: the checkpoint is built in a temporary directory beside ``path`` and renamed
into place (:func:`trivflow.state.replace_dir`), so a kill at any moment leaves the old
checkpoint, the new one or none — never a ``flow_config.json`` without ``params/``. A checkpoint
that cannot be read raises :class:`trivflow.state.DamagedFileError` naming the file.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from ..flows.api import FlowConfig, split_flow
from ..flows.checkerboard import check_lattice_shape
from ..state import DamagedFileError, replace_dir, temporary_dir

#: What to do with a damaged flow checkpoint.
REMEDY = ("retrain the flow (rerun without flow.checkpoint; a resumed run rebuilds flow/ from state/train.npz) "
          "or restore the checkpoint from a copy")

CONFIG_FILE = "flow_config.json"
PARAMS_DIR = "params"
#: keys allowed in a flow config besides the FlowConfig fields (stored verbatim).
METADATA_KEYS = ("lattice", "name", "prior", "train", "checkpoint", "notes")


def _flatten(params) -> tuple[dict[str, Any], Any]:
    pure = nnx.to_pure_dict(params)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(pure)
    names = [".".join(str(getattr(k, "key", k)) for k in path) for path, _ in leaves]
    return dict(zip(names, (leaf for _, leaf in leaves))), treedef


def _jsonable(value):
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and not isinstance(value, (str, bytes))):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _normalise_config(flow_config: Mapping[str, Any] | FlowConfig) -> tuple[FlowConfig, dict[str, Any]]:
    if isinstance(flow_config, FlowConfig):
        cfg, meta = flow_config, {}
    else:
        cfg = FlowConfig.from_dict(flow_config, ignore=METADATA_KEYS)
        meta = {k: flow_config[k] for k in METADATA_KEYS if k in flow_config}
    full = {**cfg.to_dict(), **_jsonable(meta)}
    return cfg, full


def save_flow(path, params, flow_config: Mapping[str, Any] | FlowConfig, *, overwrite: bool = False) -> Path:
    """Write ``params`` (orbax) and ``flow_config`` (JSON) to the directory ``path``.

    Args:
        path: checkpoint directory (created; must not exist unless ``overwrite``).
        params: the flow parameters (from :func:`trivflow.flows.split_flow` or training).
        flow_config: a :class:`~trivflow.flows.FlowConfig` or a mapping of its keys, plus
            optional metadata under :data:`METADATA_KEYS`, notably ``"lattice"`` (e.g.
            ``{"L": 8, "d": 2, "beta": 0.576, "lam": 0.5}``, the lattice the flow was trained at).

    Raises:
        ValueError: if the config is invalid or does not describe ``params`` (names/shapes).
        FileExistsError: if ``path`` exists and ``overwrite`` is False.

    Returns:
        The absolute checkpoint path.
    """
    import orbax.checkpoint as ocp

    cfg, full = _normalise_config(flow_config)
    flat, _ = _flatten(params)
    _, template = split_flow(cfg.build(dtype=jax.tree.leaves(params)[0].dtype))  # a template: shapes only
    _check_match(_flatten(template)[0], flat, "params to save")
    path = Path(path).absolute()
    if path.exists() and not overwrite:
        raise FileExistsError(f"checkpoint directory {str(path)!r} exists (pass overwrite=True)")
    tmp = temporary_dir(path)
    try:
        (tmp / CONFIG_FILE).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
        ckptr = ocp.StandardCheckpointer()
        ckptr.save(tmp / PARAMS_DIR, {k: np.asarray(v) for k, v in flat.items()})
        ckptr.wait_until_finished()
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def is_complete(path) -> bool:
    """Whether ``path`` holds a whole checkpoint (``flow_config.json`` and ``params/``), as
    :func:`save_flow` leaves it."""
    path = Path(path)
    return (path / CONFIG_FILE).is_file() and (path / PARAMS_DIR).is_dir()


def read_flow_config(path) -> dict[str, Any]:
    """The stored ``flow_config.json`` of the checkpoint ``path``, checked to build a flow.

    Raises:
        FileNotFoundError: ``path`` is not a complete checkpoint (the message says what it holds).
        DamagedFileError: the JSON is not a valid flow config.
    """
    path = Path(path).absolute()
    config_file = path / CONFIG_FILE
    if not is_complete(path):
        found = sorted(p.name for p in path.iterdir()) if path.is_dir() else None
        where = "it does not exist" if found is None else f"it holds {found or 'nothing'}"
        raise FileNotFoundError(f"no flow checkpoint at {str(path)!r} (expected {CONFIG_FILE} and {PARAMS_DIR}/; "
                                f"{where})")
    try:
        stored = json.loads(config_file.read_text())
        if not isinstance(stored, dict):
            raise ValueError(f"a JSON {type(stored).__name__}, not an object")
        FlowConfig.from_dict(stored, ignore=METADATA_KEYS)
    except (ValueError, TypeError, UnicodeDecodeError) as err:
        raise DamagedFileError(config_file, f"is not a valid flow config ({err})", REMEDY) from None
    return stored


def _check_match(expected: Mapping[str, Any], found: Mapping[str, Any], what: str) -> None:
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        raise ValueError(f"{what} do not match the flow config: missing {missing}, unexpected {extra}")
    for name, ref in expected.items():
        if np.shape(found[name]) != np.shape(ref):
            raise ValueError(
                f"{what}: parameter {name!r} has shape {np.shape(found[name])}, the flow config needs "
                f"{np.shape(ref)}"
            )


def load_flow(
    path,
    *,
    shape: Sequence[int] | None = None,
    expect: Mapping[str, Any] | None = None,
    dtype=None,
) -> tuple[nnx.GraphDef, Any, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_flow`.

    Args:
        path: checkpoint directory.
        shape: optional lattice shape the flow will run on; checked now (a 2D shape with even
            extents, matching the dimension ``d`` the flow was trained at), so a wrong lattice
            fails here rather than inside a compiled loop. Any even L is accepted.
        expect: optional ``flow.*`` values the caller relies on (e.g. ``{"kernel_size": 3}``);
            a mismatch with the checkpoint raises.
        dtype: parameter dtype; ``None`` is the JAX default float.

    Returns:
        ``(graphdef, params, flow_config)``, ``flow_config`` the stored dict (FlowConfig keys
        plus metadata such as ``"lattice"``).

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        ValueError: the lattice ``shape`` does not fit, an ``expect`` value differs, or the
            stored parameters do not match the stored config.
    """
    import orbax.checkpoint as ocp

    path = Path(path).absolute()
    stored = read_flow_config(path)
    cfg = FlowConfig.from_dict(stored, ignore=METADATA_KEYS)

    for key, value in (expect or {}).items():
        if key not in stored:
            raise ValueError(f"checkpoint {str(path)!r} has no flow config key {key!r} to compare with {value!r}")
        want = _jsonable(value)
        if stored[key] != want:
            raise ValueError(
                f"checkpoint {str(path)!r} was built with {key}={stored[key]!r}, but {key}={want!r} was requested"
            )

    if shape is not None:
        shape = tuple(shape)
        lattice = stored.get("lattice") or {}
        d = lattice.get("d", 2)
        if len(shape) != d:
            raise ValueError(
                f"checkpoint {str(path)!r} holds a flow for d={d} lattices (trained at {lattice or 'unknown'}), "
                f"cannot run on shape={shape} (d={len(shape)})"
            )
        check_lattice_shape(shape, what=f"checkpoint {str(path)!r}")

    graphdef, template = split_flow(cfg.build(dtype=dtype))
    expected, treedef = _flatten(template)
    try:
        restored = ocp.StandardCheckpointer().restore(path / PARAMS_DIR)
    except Exception as err:  # orbax/tensorstore raise many types for a damaged directory
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DamagedFileError(path / PARAMS_DIR, f"cannot be restored ({type(err).__name__}: {msg[:200]})",
                               REMEDY) from None
    _check_match(expected, restored, f"parameters in {str(path)!r}")
    leaves = [np.asarray(restored[name]).astype(np.asarray(ref).dtype) for name, ref in expected.items()]
    pure = jax.tree_util.tree_unflatten(treedef, [jax.numpy.asarray(x) for x in leaves])
    nnx.replace_by_pure_dict(template, pure)
    return graphdef, template, stored
