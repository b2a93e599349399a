"""MkDocs build hooks: pages generated from the repository at every build.

* ``reference/configuration.md`` — from the config schemas, the Hydra options and the validator
  (``docs/gen_config_reference.py``);
* ``records.md`` — the recorded reproduction runs, one section per ``experiments/<name>/README.md``
  (plus the benchmark records ``benchmarks/README.md`` on ``performance.md``'s sibling page);
  ``reproduction.md`` itself is hand-written (the paper's numbers beside ours) and links here;
* ``experiments/<name>/*.png`` — the plots of the records, so that pages can show them.

The pages exist only in the build (``File.generated``); nothing is written into ``docs/``.
Tutorials (``docs/tutorials/*.py``) are executed by the mkdocs-jupyter plugin, not here.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from mkdocs.structure.files import File, Files

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS))

import gen_config_reference  # noqa: E402

# Tutorials run with small sizes in the docs build unless the caller asks otherwise.
os.environ.setdefault("TRIVFLOW_DOCS_SMALL", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _shift_headings(text: str, by: int) -> str:
    """Demote Markdown ATX headings by ``by`` levels (outside fenced code)."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,6} ", line):
            line = "#" * by + line
        out.append(line)
    return "\n".join(out)


def records_page() -> str:
    """All ``experiments/*/README.md`` records on one page, with the command that made each."""
    parts = [
        "# Reproduction records\n",
        "The records kept in the repository under `experiments/<name>/`, each with its exact command\n"
        "and beside its `results.json` (or a `runs/` tree of them); this page is assembled from them\n"
        "at every build. [Reproduction](reproduction.md) sets the paper's numbers beside ours and\n"
        "says which claims hold; the physics targets are listed in\n"
        "[Theory](theory.md#what-the-paper-reports); [Performance](performance.md) has the cost per\n"
        "trajectory. To rerun one record, run its command from a checkout (sizes and times are stated\n"
        "in each record) and compare the new `results.json` with the recorded one.\n",
    ]
    for readme in sorted((ROOT / "experiments").glob("*/README.md")):
        name = readme.parent.name
        body = readme.read_text(encoding="utf-8")
        body = re.sub(r"\A# .*\n", "", body)  # the record's own title becomes the section title
        # the record's plots, linked relative to its directory, are served under experiments/<name>/
        body = re.sub(r"\]\((?![a-z]+:|/)([^)#\s]+\.png)\)", rf"](experiments/{name}/\1)", body)
        title = re.match(r"# (.*)", readme.read_text(encoding="utf-8"))
        parts.append(f"\n## `{name}`{': ' + title.group(1) if title else ''}\n")
        results = "results.json" if (readme.parent / "results.json").is_file() else "*.json, runs/"
        parts.append(f"Record: `experiments/{name}/README.md`, results: `experiments/{name}/{results}`.\n")
        parts.append(_shift_headings(body, 1) + "\n")
    return "\n".join(parts)


def benchmarks_page() -> str:
    """``benchmarks/README.md`` (how speed is measured) as a page."""
    text = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    return ("Included from `benchmarks/README.md` at build time.\n\n" + text) if not text.startswith("#") else (
        text.split("\n", 1)[0] + "\n\nIncluded from `benchmarks/README.md` at build time.\n\n"
        + (text.split("\n", 1)[1] if "\n" in text else ""))


def _modules(package_dir: Path, prefix: str) -> list[str]:
    """Public modules of a package directory (not starting with ``_``), sorted."""
    return sorted(f"{prefix}.{p.stem}" for p in package_dir.glob("*.py") if not p.stem.startswith("_"))


def _first_line(path: Path) -> str:
    import ast

    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except SyntaxError:
        return ""
    return doc.strip().split("\n\n")[0].replace("\n", " ")


def api_pages() -> dict[str, tuple[str, str]]:
    """``{uri: (nav title, markdown)}``: one page per subpackage of trivflow, one for the
    top-level modules, and an index. Every public module is rendered once, under its own path;
    objects re-exported by a package are found by cross-references through their aliases."""
    src = ROOT / "src" / "trivflow"
    pages: dict[str, tuple[str, str]] = {}
    rows = []
    for pkg in sorted(p for p in src.iterdir() if (p / "__init__.py").is_file() and not p.name.startswith("_")):
        name = f"trivflow.{pkg.name}"
        body = [f"# `{name}`\n", f"::: {name}\n    options:\n      show_root_heading: false\n"
                "      show_root_toc_entry: false\n      members: false\n"]
        for mod in _modules(pkg, name):
            body.append(f"::: {mod}\n    options:\n      heading_level: 2\n")
        pages[f"reference/api/{pkg.name}.md"] = (name, "\n".join(body))
        rows.append((name, f"{pkg.name}.md", _first_line(pkg / "__init__.py")))
    top = [m for m in _modules(src, "trivflow") if m != "trivflow.run"] + ["trivflow.run"]
    body = ["# Pipeline and top-level modules\n",
            "The Hydra-free pipeline, config schemas and validation, results files, reports and tools.\n"]
    for mod in top:
        body.append(f"::: {mod}\n    options:\n      heading_level: 2\n")
        rows.append((mod, f"pipeline.md#{mod}", _first_line(src / f"{mod.split('.')[-1]}.py")))
    pages["reference/api/pipeline.md"] = ("Pipeline and top-level modules", "\n".join(body))
    index = ["# API reference\n",
             "Generated at every build from the docstrings of `src/trivflow` (mkdocstrings + griffe). The\n"
             "conventions throughout: the generator convention φ = g(z); `log_det` is log|det ∂out/∂in| of\n"
             "the call direction; actions, flows and potentials act on one configuration of shape\n"
             "`(*lattice)`, batches and chains add leading axes; keys come first and are explicit.\n"
             "Objects re-exported by a package (`trivflow.hmc.run_chains`) are documented in the module\n"
             "that defines them (`trivflow.hmc.driver`).\n",
             "| module | summary |", "|---|---|"]
    for name, link, line in rows:
        index.append(f"| [`{name}`]({link}) | {line.replace('|', '/')} |")
    pages["reference/api/index.md"] = ("API", "\n".join(index) + "\n")
    return pages


def on_config(config):
    """Fill the nav's "API" section with the generated API pages."""
    pages = api_pages()

    def fill(items):
        for item in items or []:
            if isinstance(item, dict):
                for key, value in item.items():
                    if key == "API":
                        item[key] = ["reference/api/index.md"] + [
                            {title: uri} for uri, (title, _) in pages.items() if not uri.endswith("index.md")]
                    elif isinstance(value, list):
                        fill(value)

    fill(config.nav)
    return config


def on_files(files: Files, config) -> Files:
    generated = {
        "reference/configuration.md": gen_config_reference.render(),
        "records.md": records_page(),
        "benchmarks.md": benchmarks_page(),
        **{uri: text for uri, (_, text) in api_pages().items()},
    }
    for png in sorted((ROOT / "experiments").glob("*/*.png")):  # the records' plots, shown by pages
        generated[f"experiments/{png.parent.name}/{png.name}"] = png.read_bytes()
    for uri, content in generated.items():
        existing = files.get_file_from_path(uri)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, uri, content=content))
    return files
