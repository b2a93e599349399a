"""The repository stands alone: code and docs cite docs/theory.md (stable anchors), never files
outside it, and every cited anchor exists."""

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
SOURCES = [p for d in ("src", "docs", "tests", "benchmarks", "experiments") for p in (ROOT / d).rglob("*")
           if p.is_file() and p.suffix in (".py", ".md", ".yaml") and p.name != Path(__file__).name]


def test_nothing_cites_the_shared_folder():
    bad = [f"{p.relative_to(ROOT)}:{i}" for p in SOURCES for i, line in enumerate(p.read_text().splitlines(), 1)
           if re.search(r"physics\.md|design\.md|\.\./shared", line)]
    assert not bad, bad


def test_every_cited_theory_anchor_exists():
    anchors = set(re.findall(r"\{#([a-z0-9-]+)\}", (ROOT / "docs" / "theory.md").read_text()))
    assert {"action", "observables", "line-of-constant-physics", "flows", "priors", "gamma-method"} <= anchors
    cited = {(str(p.relative_to(ROOT)), a) for p in SOURCES
             for a in re.findall(r"theory\.md#([a-z0-9-]+)", p.read_text())}
    assert cited, "no citations found: the pattern is wrong"
    missing = sorted(c for c in cited if c[1] not in anchors)
    assert not missing, missing
