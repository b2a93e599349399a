"""Generate the configuration reference (Markdown) from trivflow's schemas and YAML options.

Nothing here is written by hand per key, so keys added to ``trivflow.app.config`` appear on the next
build:

* keys, types and schema defaults come from the dataclasses of :mod:`trivflow.app.config` (walked
  recursively from ``Config``); the descriptions from their docstrings and trailing ``#``
  comments;
* the default-job values from composing ``config.yaml`` with Hydra's compose API, exactly as
  ``python -m trivflow.run`` does;
* valid ranges from :func:`trivflow.app.config.validate` itself: every key is set, one at a time, to
  a few out-of-range probe values (in a config that also runs a flow sampler, so the flow and
  training checks are active) and the ``ValueError`` messages that name the key are collected;
* groups and options from the YAML files shipped in ``trivflow/conf`` (header comment and the
  values each option sets).

Usage: ``python docs/gen_config_reference.py > configuration.md`` (the build hook
``docs/hooks.py`` calls :func:`render` and serves the page without writing it into docs/).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import io
import math
import re
import tokenize
import typing
from importlib import resources
from typing import Any

import yaml

SKIP_GROUPS = {"hydra"}


@dataclasses.dataclass
class Key:
    """One leaf config key: dotted path, annotation, schema default, description."""

    path: str
    annotation: Any
    schema_default: Any
    comment: str
    group_doc: str


def _field_comments(cls) -> dict[str, str]:
    """Trailing ``# comment`` of each ``name: type = default`` line of a dataclass body."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    comments: dict[str, str] = {}
    line_names: dict[int, str] = {}
    for line_no, line in enumerate(source.splitlines(), 1):
        m = re.match(r"\s+([A-Za-z_]\w*)\s*:", line)
        if m:
            line_names[line_no] = m.group(1)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and tok.start[0] in line_names:
            comments[line_names[tok.start[0]]] = tok.string.lstrip("#").strip()
    return comments


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def schema_keys(cls, prefix: str = "") -> list[Key]:
    """Leaf keys of a dataclass schema, recursing into nested dataclasses (the groups)."""
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    doc = inspect.cleandoc(cls.__doc__ or "") if prefix else ""
    keys: list[Key] = []
    for f in dataclasses.fields(cls):
        ann = hints.get(f.name, f.type)
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(ann):
            keys.extend(schema_keys(ann, prefix=f"{path}."))
        else:
            keys.append(Key(path, ann, _default(f), comments.get(f.name, ""), doc))
    return keys


def type_name(ann: Any) -> str:
    """Readable annotation: ``int``, ``Optional[str]``, ``list[int]``, ``Any``."""
    if ann is typing.Any:
        return "any"
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Union and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return f"{' | '.join(type_name(a) for a in inner)} | null"
    if origin in (list, tuple):
        return f"list[{', '.join(type_name(a) for a in args if a is not Ellipsis)}]"
    return getattr(ann, "__name__", str(ann))


def _scalar_probes(ann: Any) -> list[Any]:
    if ann is bool:
        return []
    if ann is int:
        return [-1, 0, 1, 3, 10**9]
    if ann is float:
        return [-1.0, 0.0, 1.0, 10.0, math.nan]
    if ann is str:
        return ["not-an-option"]
    if ann is typing.Any:
        return [-1, 0, 2, "not-an-option"]
    return []


def probe_values(ann: Any) -> list[Any]:
    """Out-of-range candidates for a key of annotation ``ann``."""
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Union:
        return [v for a in args if a is not type(None) for v in probe_values(a)]
    if origin in (list, tuple):
        elem = args[0] if args else typing.Any
        singles = [[v] for v in _scalar_probes(elem)]
        pairs = [[v, w] for v in _scalar_probes(elem) for w in _scalar_probes(elem)[:3]]
        return singles + pairs
    return _scalar_probes(ann)


def _set(cfg: Any, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = cfg
    for p in parents:
        node = getattr(node, p)
    setattr(node, leaf, value)


def _expected(message: str, key: str) -> str:
    """The 'what is valid' part of a validation message, without the probe's value."""
    message = " ".join(message.split())
    subject = re.match(r"([A-Za-z_][\w]*(?:\.\w+)*)", message)
    m = re.search(r"is invalid: expected (.*)$", message)
    if m:
        text = m.group(1)
    else:
        m = re.search(r"\bmust be (.*?)(?:, got .*)?$", message)
        text = m.group(1) if m else message
        if subject and subject.group(1) != key and m:
            text = f"{subject.group(1)} must be {text}"
    # drop the probe's own value (key=value) so that equal constraints deduplicate
    return re.sub(r"\b((?:\w+\.)+\w+)=\S+", r"\1", text).strip()


def valid_ranges(base_cfgs: list[Any], keys: list[Key], validate) -> dict[str, list[str]]:
    """Messages of ``validate`` for out-of-range probes of each key, deduplicated, in order.

    Every key is probed in each of ``base_cfgs`` (e.g. the default job with each sampler), so
    that checks that only apply to one sampler are reached.
    """
    out: dict[str, list[str]] = {}
    for key in keys:
        found: list[str] = []
        for base_cfg, value in ((b, v) for b in base_cfgs for v in probe_values(key.annotation)):
            cfg = copy.deepcopy(base_cfg)
            try:
                _set(cfg, key.path, value)
                validate(cfg)
            except ValueError as err:
                msg = str(err)
                if key.path in msg or f"{key.path.split('.')[-1]}=" in msg and key.path.split(".")[0] in msg:
                    text = _expected(msg, key.path)
                    if text not in found:
                        found.append(text)
            except Exception:  # a probe of the wrong type for a check: not a range statement
                continue
        out[key.path] = found
    return out


def compose_default(overrides: list[str] | None = None):
    """The composed config of ``python -m trivflow.run [overrides]`` (Hydra compose API)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from trivflow.app.config import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    conf_dir = str(resources.files("trivflow") / "conf")
    with initialize_config_dir(config_dir=conf_dir, version_base=None):
        return compose(config_name="config", overrides=overrides or [])


def _fmt(value: Any) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (list, tuple)):
        return f"`{list(value)}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _header_comment(text: str) -> str:
    lines = []
    for line in text.splitlines():
        s = line.strip()
        if not s.startswith("#"):
            break
        s = s.lstrip("#").strip()
        if s.startswith("@package"):
            continue
        lines.append(s)
    return " ".join(lines)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(d, dict):
        return out
    for k, v in d.items():
        if k == "defaults" and not prefix:
            continue
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, prefix=f"{path}."))
        else:
            out[path] = v
    return out


def yaml_options() -> dict[str, list[tuple[str, str, dict[str, Any], list]]]:
    """``{group: [(option, header comment, values it sets, its defaults list)]}`` from trivflow/conf."""
    root = resources.files("trivflow") / "conf"
    groups: dict[str, list] = {}
    for group in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name):
        if group.name in SKIP_GROUPS or group.name.startswith("_"):
            continue
        opts = []
        for f in sorted((p for p in group.iterdir() if p.name.endswith(".yaml")), key=lambda p: p.name):
            text = f.read_text(encoding="utf-8")
            data = yaml.safe_load(text) or {}
            defaults = data.get("defaults", []) if isinstance(data, dict) else []
            opts.append((f.name[:-5], _header_comment(text), _flatten(data), defaults))
        groups[group.name] = opts
    return groups


def render() -> str:
    """The whole configuration reference page as Markdown."""
    from omegaconf import OmegaConf

    from trivflow.app import config as tcfg

    keys = schema_keys(tcfg.Config)
    default_cfg = compose_default()
    default_obj = OmegaConf.to_object(default_cfg)
    options = yaml_options()
    probe_bases = [OmegaConf.to_object(compose_default([f"sampler={o[0]}"])) for o in options.get("sampler", [])]
    ranges = valid_ranges(probe_bases or [default_obj], keys, tcfg.validate)
    defaults_flat = _flatten(OmegaConf.to_container(default_cfg, resolve=False))
    main_yaml = (resources.files("trivflow") / "conf" / "config.yaml").read_text(encoding="utf-8")
    main_defaults = yaml.safe_load(main_yaml).get("defaults", [])
    chosen = {}
    for item in main_defaults:
        if isinstance(item, dict):
            for g, o in item.items():
                chosen[g.split(" ")[-1]] = o
    yaml_comments = {f"{k}": c for k, c in _yaml_trailing_comments(main_yaml).items()}
    for g, o in chosen.items():
        path = resources.files("trivflow") / "conf" / g / f"{o}.yaml"
        if o and path.is_file():
            for k, c in _yaml_trailing_comments(path.read_text(encoding="utf-8")).items():
                yaml_comments.setdefault(f"{g}.{k}", c)
    for k in keys:
        if not k.comment:
            k.comment = _attribute_doc(k) or yaml_comments.get(k.path, "")

    out = io.StringIO()
    w = out.write
    w("# Configuration reference\n\n")
    w("!!! note \"Generated\"\n"
      "    This page is generated at every docs build by `docs/gen_config_reference.py` from the\n"
      "    dataclass schemas in `trivflow.app.config`, the default job composed by Hydra, the YAML options\n"
      "    in `src/trivflow/conf/`, and the messages of `trivflow.app.config.validate` (valid ranges).\n\n")
    w("Set any key on the command line (`python -m trivflow.run sampler.num_traj=5000`), choose an\n"
      "option of a group (`lattice=L16`, `sampler=fhmc`), or an experiment (`experiment=minimal_network`),\n"
      "which sets several groups and keys at once. `python -m trivflow.run --cfg job` prints the composed\n"
      "config; bad values stop the run before any compute with a `ValueError` naming the key and value.\n\n")
    w("The **valid range** column quotes `trivflow.app.config.validate`: each key is set, alone, to\n"
      "out-of-range probe values in the default job with a flow sampler, and the messages that name the\n"
      "key are listed. A blank cell means no probe was rejected (any value of the type is accepted,\n"
      "or the constraint involves other keys). Types are checked by Hydra when the config is composed.\n\n")

    w("## Keys\n\n")
    by_group: dict[str, list[Key]] = {}
    for k in keys:
        g = k.path.split(".")[0] if "." in k.path else ""
        by_group.setdefault(g, []).append(k)
    for g, ks in by_group.items():
        title = f"`{g}`" if g else "Top level"
        w(f"### {title}\n\n")
        if g and ks[0].group_doc:
            w(_rst_to_md(ks[0].group_doc).replace("\n", " ") + "\n\n")
        if g and g in options:
            opts = ", ".join(f"`{o[0]}`" for o in options[g])
            w(f"Options: {opts} (default job: `{chosen.get(g, '—')}`; see [below](#group-{g})).\n\n")
        w("| key | type | default job | schema default | valid range | description |\n")
        w("|---|---|---|---|---|---|\n")
        for k in ks:
            dv = defaults_flat.get(k.path, _get(default_obj, k.path))
            rng = "; ".join(ranges.get(k.path, [])) or ""
            w(f"| `{k.path}` | `{type_name(k.annotation)}` | {_fmt(dv)} | {_fmt(k.schema_default)} | "
              f"{_cell(rng)} | {_cell(k.comment)} |\n")
        w("\n")

    w("## Groups and options\n\n")
    w("Each group is a directory of `src/trivflow/conf/`; an option is one YAML file in it, selected\n"
      "with `group=option`. The table lists what each option sets (on top of its group's schema\n"
      "defaults and of the options it extends).\n\n")
    for g, opts in options.items():
        w(f"### `{g}` {{#group-{g}}}\n\n")
        w("| option | description | extends | sets |\n|---|---|---|---|\n")
        for name, comment, flat, defaults in opts:
            ext = ", ".join(_cell(str(d)) for d in defaults if not str(d).startswith("base_")) or ""
            sets = ", ".join(f"`{k}={_short(v)}`" for k, v in flat.items())
            w(f"| `{name}` | {_cell(comment)} | {ext} | {_cell(sets)} |\n")
        w("\n")
    return out.getvalue()


def _rst_to_md(text: str) -> str:
    """Docstring roles and literals to Markdown: ``x`` and :class:`x` → `x`."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def _yaml_trailing_comments(text: str) -> dict[str, str]:
    """``{key: comment}`` for top-level ``key: value  # comment`` lines of a YAML file."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"([A-Za-z_]\w*):[^#]*#\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def _docstring_attributes(doc: str) -> dict[str, str]:
    """Entries of a Google-style ``Attributes:`` section: ``{name: description}``."""
    out: dict[str, str] = {}
    lines = inspect.cleandoc(doc or "").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if re.match(r"Attributes\b.*:\s*$", line.strip()))
    except StopIteration:
        return out
    name = None
    for line in lines[start + 1:]:
        if line.strip() and not line.startswith(" "):
            break
        m = re.match(r"\s{2,8}(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
        if m and len(line) - len(line.lstrip()) <= 8:
            name = m.group(1)
            out[name] = m.group(2)
        elif name and line.strip():
            out[name] += " " + line.strip()
    return out


def _attribute_doc(key: Key) -> str:
    """A key's description from the ``Attributes:`` section of its schema's docstring, or of a
    class that docstring refers to with :class:`...`."""
    leaf = key.path.split(".")[-1]
    docs = [key.group_doc]
    for ref in re.findall(r":class:`~?([\w.]+)`", key.group_doc):
        mod, _, name = ref.rpartition(".")
        try:
            import importlib

            docs.append(getattr(importlib.import_module(mod), name).__doc__ or "")
        except (ImportError, AttributeError, ValueError):
            continue
    for doc in docs:
        text = _docstring_attributes(doc).get(leaf)
        if text:
            return _rst_to_md(text)
    return ""


def _short(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ",".join(str(x) for x in v) + "]"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def _get(obj: Any, path: str) -> Any:
    for p in path.split("."):
        obj = getattr(obj, p, None)
    return obj


if __name__ == "__main__":
    print(render())
