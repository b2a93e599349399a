"""Count the changes of the integer charge along every kept run's chains: runs/<name>/changes.json.

    python experiments/u1_topology/changes.py <scratch RUNS dir> [<scratch RUNS dir> ...]

runs/ keeps only each run's results.json (the chains files are large); the runs made before
results.json had ``Q_change_rate`` (docs/theory.md#u1-tunnelling) have no count of the changes of
Q. For every runs/<name>/results.json this finds <scratch>/<name>/chains.nc in the given
directories (the first that has it), checks that it is that run's (the mean of its Q² series equals
results.json's ⟨Q²⟩ to 1e-9 relative, and the shapes are num_chains × num_traj), and writes
runs/<name>/changes.json: the per-chain counts of :func:`trivflow.gauge.tunnelling.charge_changes`,
the steps per chain, and the rate with its error (:func:`~trivflow.gauge.tunnelling.change_rate`).
Runs whose chains file is not found are listed and left without one. analyze.py reads the files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import arviz as az
import numpy as np

from trivflow.gauge.tunnelling import change_rate, charge_changes

HERE = Path(__file__).parent


def count(chains: Path, results: dict) -> dict:
    """changes.json of one run from its chains file, after checking the file is the run's."""
    (label, block), = results["runs"].items()
    post = az.from_netcdf(chains).posterior
    q, q2 = post["Q"].values, post["Q2"].values
    if q.shape != (block["num_chains"], block["num_traj"]):
        raise ValueError(f"{chains}: Q has shape {q.shape}, the run has {block['num_chains']} x {block['num_traj']}")
    mean = block["observables"]["Q2"][0]
    if not np.isclose(q2.mean(), mean, rtol=1e-9, atol=0):
        raise ValueError(f"{chains}: mean Q2 {q2.mean()!r} is not the run's {mean!r}: another run's chains")
    per_chain = charge_changes(q)
    return {"run": label, "per_chain": per_chain.tolist(), "steps_per_chain": int(q.shape[1] - 1),
            "changes": int(per_chain.sum()), "chain_steps": int(per_chain.size * (q.shape[1] - 1)),
            "rate": list(change_rate(q))}


def main(scratch: list[str]) -> None:
    missing = []
    for res in sorted((HERE / "runs").glob("*/results.json")):
        name = res.parent.name
        found = [Path(d) / name / "chains.nc" for d in scratch if (Path(d) / name / "chains.nc").exists()]
        if not found:
            missing.append(name)
            continue
        out = count(found[0], json.loads(res.read_text()))
        (res.parent / "changes.json").write_text(json.dumps(out) + "\n")
        print(f"{name}: {out['changes']} changes in {out['chain_steps']} chain-steps")
    if missing:
        print(f"no chains file for: {', '.join(missing)}")


if __name__ == "__main__":
    main(sys.argv[1:])
