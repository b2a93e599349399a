"""Fast checks of the documentation generators (the full build is `mkdocs build --strict` in CI)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from importlib import resources
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen():
    return _load("gen_config_reference")


@pytest.fixture(scope="module")
def page(gen):
    return gen.render()


def _leaf_paths(cls, prefix=""):
    for f in dataclasses.fields(cls):
        sub = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(sub):
            yield from _leaf_paths(type(sub), f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}"


def test_every_schema_key_is_documented(page):
    from trivflow.app.config import Config

    keys = list(_leaf_paths(Config))
    assert len(keys) > 20
    for key in keys:
        assert f"| `{key}` |" in page, key


def test_every_yaml_option_is_documented(page):
    root = resources.files("trivflow") / "conf"
    groups = [p for p in root.iterdir() if p.is_dir() and p.name != "hydra"]
    assert groups
    for group in groups:
        assert f"### `{group.name}`" in page, group.name
        for opt in group.iterdir():
            if opt.name.endswith(".yaml"):
                assert f"| `{opt.name[:-5]}` |" in page, (group.name, opt.name)


def test_valid_ranges_come_from_the_validator(gen, page):
    """The range column quotes config.validate: a value it rejects must be described there."""
    from omegaconf import OmegaConf

    from trivflow.app import config

    base = OmegaConf.to_object(gen.compose_default(["sampler=fhmc"]))
    base.sampler.num_steps = 0
    with pytest.raises(ValueError, match="num_steps") as err:
        config.validate(base)
    row = next(line for line in page.splitlines() if line.startswith("| `sampler.num_steps` |"))
    assert gen._expected(str(err.value), "sampler.num_steps") in row
    assert "an integer >= 1" in row
    row = next(line for line in page.splitlines() if line.startswith("| `sampler.name` |"))
    for name in config.SAMPLERS:
        assert name in row


def test_expected_strips_probe_values(gen):
    assert gen._expected("sampler.chunk_size=0 is invalid: expected an integer >= 1", "sampler.chunk_size") \
        == "an integer >= 1"
    assert gen._expected("lattice.L must be an integer >= 2, got L=-1", "lattice.L") == "an integer >= 2"
    assert gen._expected("sampler.num_traj=20000 must be a multiple of sampler.meas_every=3",
                         "sampler.meas_every") == "sampler.num_traj must be a multiple of sampler.meas_every"


def test_griffe_roles():
    pytest.importorskip("griffe")
    roles = _load("griffe_roles")
    assert roles.to_autorefs(":func:`trivflow.hmc.build_kernel`") == \
        "[`trivflow.hmc.build_kernel`][trivflow.hmc.build_kernel]"
    assert roles.to_autorefs(":class:`~trivflow.flows.FlowConfig`") == "[`FlowConfig`][trivflow.flows.FlowConfig]"
    assert roles.to_autorefs(":func:`trivflow.flows.layers._half_forward`") == "`trivflow.flows.layers._half_forward`"
    assert roles.to_autorefs(":class:`matplotlib.figure.Figure`") == "`matplotlib.figure.Figure`"
    doc = "Summary.\n\nArgs:\n    graphdef, params: the flow.\n    z: one field.\n\nReturns:\n    x, y: not args.\n"
    out = roles.split_grouped_params(doc)
    assert "    graphdef: the flow.\n    params: the flow.\n    z: one field." in out
    assert "    x, y: not args." in out


def test_api_pages_cover_every_public_module():
    pytest.importorskip("mkdocs")
    hooks = _load("hooks")
    pages = hooks.api_pages()
    text = "\n".join(body for _, body in pages.values())
    src = Path(hooks.ROOT) / "src" / "trivflow"
    for path in src.rglob("*.py"):
        rel = path.relative_to(src.parent).with_suffix("")
        if any(part.startswith("_") for part in rel.parts):
            continue
        assert f"::: {'.'.join(rel.parts)}\n" in text, rel


def test_tutorials_are_notebooks():
    jupytext = pytest.importorskip("jupytext")
    tutorials = sorted((DOCS / "tutorials").glob("*.py"))
    assert len(tutorials) == 6
    for path in tutorials:
        nb = jupytext.read(path)
        assert nb.metadata["kernelspec"]["language"] == "python"
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
        assert "TRIVFLOW_DOCS_SMALL" in path.read_text()
