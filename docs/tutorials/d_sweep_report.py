# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # (d) A sweep with Hydra, and its report
#
# Hydra's multirun (`-m`) runs one job per combination of the listed values; each job writes
# its own run directory with a `results.json`. `python -m trivflow.report <sweep dir>` then
# collects every `results.json` below that directory into one table, fits the dynamical
# exponent z of τ_int(M) ∝ ξ^z for each sampler, and plots τ against ξ.
#
# The commands, as you would type them in a shell:
#
# ```bash
# python -m trivflow.run -m lattice=L6,L8,L10 sampler.num_chains=16 sampler.num_traj=2000 \
#     hydra.sweep.dir=multirun/scan
# python -m trivflow.report multirun/scan
# ```
#
# This page runs them (through `subprocess`, with the same Python) with small sizes, so that the
# build stays short: a few thousand trajectories resolve τ_int only roughly, and the fitted z
# has a large error. Paper-sized: `sampler.num_traj=50000` and more L.

# %%
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SMALL = os.environ.get("TRIVFLOW_DOCS_SMALL", "1") == "1"
LATTICES = "L6,L8,L10" if SMALL else "L6,L8,L10,L12,L14,L16"
CHAINS, TRAJ = (16, 2000) if SMALL else (64, 50000)
sweep = Path(tempfile.mkdtemp()) / "scan"

cmd = [sys.executable, "-m", "trivflow.run", "-m", f"lattice={LATTICES}",
       f"sampler.num_chains={CHAINS}", f"sampler.num_traj={TRAJ}", "progress=false",
       f"hydra.sweep.dir={sweep}"]
print("$", " ".join(["python"] + cmd[1:]))
run = subprocess.run(cmd, capture_output=True, text=True)
print(run.stdout[-3000:])
assert run.returncode == 0, run.stderr[-3000:]

# %% [markdown]
# ## What the sweep wrote
#
# One numbered job directory per combination (`hydra.sweep.subdir`), each a complete run
# directory ([Run directory and results.json](../results.md)); `multirun.yaml` records the sweep.

# %%
for path in sorted(sweep.iterdir()):
    print(path.name + ("/" if path.is_dir() else ""))
job0 = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())[0]
print("\njob 0:", sorted(p.name for p in job0.iterdir()))
res = json.loads((job0 / "results.json").read_text())
print("lattice", res["lattice"], "| tau_int(M) [tau, err, W] =", res["runs"]["hmc"]["tau_int"]["M"])

# %% [markdown]
# ## The report

# %%
from IPython.display import Markdown, display  # noqa: E402

rep = subprocess.run([sys.executable, "-m", "trivflow.report", str(sweep)], capture_output=True, text=True)
assert rep.returncode == 0, rep.stderr
print("\n".join(line for line in rep.stdout.splitlines() if line.startswith("wrote ")))
# report/table.md rendered as a table: values with their errors in parenthesis notation, 18.5(9)
display(Markdown((sweep / "report" / "table.md").read_text()))

# %% [markdown]
# `fits.json` holds the fitted z per series (an effective-variance weighted least-squares fit of
# log τ against log ξ, errors of both included):

# %%
from trivflow.formatting import paren  # noqa: E402

fits = json.loads((sweep / "report" / "fits.json").read_text())
for series, f in fits.items():
    print(f"{series}: " + (f"fit refused: {f['refused']}" if "refused" in f else
                           f"z = {paren(f['z'], f['z_err'])}  (chi2/dof = {f['chi2']:.2f}/{f['dof']})"))

# %%
from IPython.display import Image  # noqa: E402

png = sweep / "report" / "tau_vs_xi.png"
assert png.is_file()
display(Image(filename=str(png)))

# %% [markdown]
# **Reading the result.** HMC's τ_int(M) grows with ξ; the paper finds z ≈ 2 for HMC and, with a
# fixed flow architecture, for FHMC too. With the small statistics of the docs build the error
# on z is large. Add a flow sampler to the sweep (`sampler=fhmc baselines=[hmc]`) to get one
# series per sampler, or sweep `flow.kernel_size=3,5,7` at fixed L for the
# `tau_vs_kernel_size.png` plot. For a cluster, add `hydra/launcher=submitit_slurm` (extra
# `cluster`).
