#!/usr/bin/env python3
"""Seconds from the command to the first Markov-chain step, for a cold and a warm compile cache.

    .venv/bin/python benchmarks/startup.py                       # the README's default job
    .venv/bin/python benchmarks/startup.py experiment=coarse_interp sampler.num_traj=2000 sampler.num_chains=8

Each repeat runs ``python -m trivflow.run <overrides>`` twice in a fresh directory with its own,
initially empty, persistent compilation cache (``XDG_CACHE_HOME``): the first run fills the cache,
the second is what a user sees when repeating a job. The child is started through a small wrapper
that prints the wall-clock time at which the first compiled sampling chunk of
:func:`trivflow.hmc.run_chains` is called (after its compilation or cache load): the time to first
sample is that minus the time the parent started the process, so it includes the interpreter's
start, imports, Hydra and everything the job does before its first chain step. The wrapper also
records the import time of ``trivflow.hmc.driver`` (JAX and the sampler) and the job's total wall time
(by default each job is stopped at its first sample: what was compiled before it is in the cache
by then; ``--full`` runs it to the end). Medians over
``--repeats``; one JSON line per run and a summary on stdout (``--out`` writes the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: run in the child: time the import of the entry point, mark the first sampling chunk, run the job
WRAPPER = r"""
import os, runpy, sys, time
STOP = os.environ.get("STARTUP_STOP") == "1"
t_import = time.time()
from trivflow.hmc import chunks, driver
print(f"@@import {time.time() - t_import:.4f}", file=sys.stderr, flush=True)
_compiled = chunks.compiled
_seen = []
def compiled(fn, args, compile_times):
    exe = _compiled(fn, args, compile_times)
    if not _seen:
        _seen.append(1)
        print(f"@@first_sample {time.time():.4f}", file=sys.stderr, flush=True)
        if STOP:  # everything compiled before the first sample is in the cache by now
            os._exit(0)
    return exe
driver.compiled = compiled
sys.argv = ["trivflow.run", *sys.argv[1:]]
runpy.run_module("trivflow.run", run_name="__main__", alter_sys=True)  # as python -m (Hydra finds conf/)
"""


def one_run(overrides: list[str], cwd: Path, cache_home: Path, src: Path, stop: bool) -> dict:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home), "PYTHONPATH": str(src), "STARTUP_STOP": str(int(stop))}
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", WRAPPER, "progress=false", *overrides], cwd=cwd, env=env,
                          capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"job failed ({proc.returncode}): {proc.stderr[-2000:]}")
    marks = dict(line[2:].split() for line in proc.stderr.splitlines() if line.startswith("@@"))
    return {"first_sample_s": float(marks["first_sample"]) - t0, "import_s": float(marks["import"]),
            "wall_s": wall}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--full", action="store_true",
                   help="run the jobs to the end (default: stop each at its first sample; wall_s is then that time)")
    p.add_argument("--src", type=Path, nargs="+", default=[ROOT / "src"],
                   help="source trees to compare (PYTHONPATH of the job), run interleaved in every repeat")
    args, overrides = p.parse_known_args(argv)
    load0 = os.getloadavg()
    runs = {f"{src}:{which}": [] for src in args.src for which in ("first", "second")}
    for _ in range(args.repeats):
        for src in args.src:
            with tempfile.TemporaryDirectory(prefix="trivflow-startup-") as tmp:
                tmp = Path(tmp)
                for which in ("first", "second"):
                    r = one_run(overrides, tmp, tmp / "cache", src, not args.full)
                    runs[f"{src}:{which}"].append(r)
                    print(json.dumps({"src": str(src), "run": which, **r}), flush=True)
    summary = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    report = {"overrides": overrides, "repeats": args.repeats, "loadavg_start": load0,
              "loadavg_end": os.getloadavg(), "runs": runs, "median": summary}
    print(json.dumps(report["median"], indent=1))
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
