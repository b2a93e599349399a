"""Griffe extension: Sphinx-style roles in trivflow's docstrings become mkdocstrings cross-references.

trivflow's docstrings are Google style and refer to other objects with Sphinx roles
(:func:`trivflow.hmc.build_kernel`, :class:`~trivflow.flows.FlowConfig`). mkdocstrings does not
read roles, so before rendering each role becomes an autorefs link, ``[`build_kernel`][trivflow.hmc.build_kernel]``.
A reference that does not resolve is then a warning, hence an error under ``mkdocs build --strict``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:func|class|meth|attr|mod|data|obj|exc|const):`(~?)([\w.]+)(?:\(\))?`")


def to_autorefs(text: str) -> str:
    """Replace each role by ``[`shown`][target]``; ``~`` shows only the last component.

    Targets inside trivflow (or relative names) become links; private names (a component
    starting with ``_``, not in the API reference) and other libraries' objects (no inventory is
    fetched: the build is offline) stay plain code.
    """

    def repl(m: re.Match) -> str:
        tilde, target = m.group(1), m.group(2)
        shown = target.rsplit(".", 1)[-1] if tilde else target
        private = any(part.startswith("_") for part in target.split("."))
        external = "." in target and not target.startswith("trivflow")
        if private or external:
            return f"`{shown}`"
        return f"[`{shown}`][{target}]"

    return ROLE.sub(repl, text)


SECTION = re.compile(r"^(\s*)(Args|Arguments|Parameters|Params|Attributes|Other Parameters):\s*$")
GROUPED = re.compile(r"^(\s+)(\w+(?:\s*,\s*\w+)+)(\s*\([^)]*\))?:(.*)$")


def split_grouped_params(text: str) -> str:
    """``a, b: text`` in an Args section becomes one entry per name with the same text (the
    Google parser reads one name per entry)."""
    out, in_section, indent = [], False, None
    for line in text.splitlines():
        m = SECTION.match(line)
        if m:
            in_section, indent = True, None
            out.append(line)
            continue
        if in_section and line.strip() and len(line) - len(line.lstrip()) == 0:
            in_section = False
        g = GROUPED.match(line) if in_section else None
        if g and (indent is None or len(g.group(1)) == indent):
            indent = len(g.group(1))
            names = [n.strip() for n in g.group(2).split(",")]
            for name in names:
                out.append(f"{g.group(1)}{name}{g.group(3) or ''}:{g.group(4)}")
            continue
        if in_section and indent is None and re.match(r"^\s+\w+.*:", line):
            indent = len(line) - len(line.lstrip())
        out.append(line)
    return "\n".join(out)


class SphinxRoles(griffe.Extension):
    """Rewrite roles in every docstring of the loaded package."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = split_grouped_params(to_autorefs(obj.docstring.value))
