"""Same seed ⇒ same numbers: record a fixed set of small runs, then compare after a refactor.

    python benchmarks/bit_equality.py record <dir>        # before the change
    python benchmarks/bit_equality.py record <dir2>       # after it, same machine
    python benchmarks/bit_equality.py compare <dir> <dir2>

Each run is a library call of :func:`trivflow.app.experiment.run` (HMC, FHMC with a Gaussian, an
interp4 and an interp4_x2 prior, NUTS, independence MH). What is recorded per run: results.json
without wall times, and a SHA-256 of every array of every chains file (the ArviZ creation stamp
left out), of the training history and of the flow parameters. ``compare`` prints one line per
run, ``equal`` or the keys that differ, and exits non-zero on any difference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

TIMINGS = {"seconds", "therm_seconds", "compile_seconds", "traj_per_second", "wall_seconds", "command",
           "checkpoint_seconds", "memory_estimate"}
SMALL = ["sampler.num_chains=4", "sampler.num_traj=400", "sampler.num_therm=50", "train.steps=50",
         "train.batch_size=32", "train.log_every=10", "progress=false", "plots=false",
         "prior.ensemble_size=64", "prior.chains=4", "prior.therm=20", "prior.spacing=2"]
RUNS = {
    "hmc": ["lattice=L8"],
    "fhmc_gaussian": ["lattice=L8", "sampler=fhmc", "baselines=[hmc]"],
    "fhmc_interp4": ["lattice=L8", "sampler=fhmc", "prior=interp4"],
    "fhmc_interp4_x2": ["experiment=coarse_interp", "prior=interp4_x2", "baselines=[]"],
    "nuts": ["lattice=L6", "sampler=nuts", "sampler.num_traj=200"],
    "imh": ["lattice=L6", "sampler=imh"],
}


def _is_timing(key: str) -> bool:
    """A wall-clock figure: listed in :data:`TIMINGS`, or any key naming seconds (``setup_seconds``,
    ``amortised_seconds_per_indep``, the multilevel tower's ``train_seconds`` …)."""
    return key in TIMINGS or "seconds" in key


def _strip(x):
    if isinstance(x, dict):  # "ensemble": the path of a prior ensemble, in a temporary directory
        return {k: _strip(v) for k, v in x.items()
                if not _is_timing(k) and not (k == "ensemble" and isinstance(v, str))}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def _sha(a) -> str:
    import numpy as np

    a = np.ascontiguousarray(np.asarray(a))
    return hashlib.sha256(f"{a.dtype}{a.shape}".encode() + a.tobytes()).hexdigest()[:20]


def fingerprint(run_dir: Path) -> dict:
    import arviz as az
    import jax
    import numpy as np

    from trivflow import io

    out = {"results": _strip(json.loads((run_dir / "results.json").read_text()))}
    out["results"].pop("config", None)  # keys may be added to the schema by a refactor
    for nc in sorted(run_dir.glob("chains*.nc")):
        idata = az.from_netcdf(nc)
        for group in idata.groups():
            for name, var in idata[group].data_vars.items():
                out[f"{nc.name}/{group}/{name}"] = _sha(var.values)
    if (run_dir / "training_history.npz").exists():
        with np.load(run_dir / "training_history.npz") as h:
            out.update({f"history/{k}": _sha(h[k]) for k in h.files if k not in ("seconds", "compile_seconds")})
    if (run_dir / "flow").is_dir():
        _, params, _ = io.load_flow(run_dir)
        out["flow"] = [_sha(x) for x in jax.tree_util.tree_leaves(params)]
    return out


def record(where: Path) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    from hydra import compose, initialize_config_dir

    import trivflow
    from trivflow.app.config import register_configs
    from trivflow.app.experiment import run

    register_configs()
    conf = str(Path(trivflow.__file__).parent / "conf")
    where.mkdir(parents=True, exist_ok=True)
    for name, overrides in RUNS.items():
        with initialize_config_dir(config_dir=conf, version_base=None):
            cfg = compose(config_name="config", overrides=[*SMALL, *overrides])
        with tempfile.TemporaryDirectory() as tmp:
            run(cfg, Path(tmp) / name)
            (where / f"{name}.json").write_text(json.dumps(fingerprint(Path(tmp) / name), indent=1, sort_keys=True))
        print(f"{name}: recorded", flush=True)


def _diff(a, b, prefix="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k, "<missing>"), b.get(k, "<missing>"), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def compare(a: Path, b: Path) -> int:
    bad = 0
    for f in sorted(a.glob("*.json")):
        other = b / f.name
        if not other.exists():
            print(f"{f.stem}: missing in {b}")
            bad += 1
            continue
        diffs = _diff(_strip(json.loads(f.read_text())), _strip(json.loads(other.read_text())))
        print(f"{f.stem}: " + ("equal" if not diffs else f"DIFFERENT in {len(diffs)} keys: {diffs[:8]}"))
        bad += bool(diffs)
    return bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("record").add_argument("dir", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = ap.parse_args()
    if args.cmd == "record":
        record(args.dir)
    else:
        sys.exit(1 if compare(args.a, args.b) else 0)


if __name__ == "__main__":
    main()
