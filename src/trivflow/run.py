"""Hydra entry point: ``python -m trivflow.run [overrides]`` or the ``trivflow`` console script.

Only composes the config and calls :func:`trivflow.experiment.run` with the Hydra output
directory; everything else is library code usable without Hydra.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .config import register_configs

register_configs()


#: Overrides that may differ between a run and its resumption (they do not change the numbers;
#: the state files' fingerprints check the rest).
RESUME_IGNORED = frozenset({"resume", "progress", "quiet", "plots", "keep_state", "platform", "sampler.checkpoint_every",
                            "train.checkpoint_every"})
#: Written into a run directory whose job resumed another one (never a resume candidate itself).
RESUMED_MARKER = "resumed_in.txt"


def _override_key(override: str) -> str:
    return override.lstrip("+~").partition("=")[0]


def comparable_overrides(overrides) -> list[str]:
    """Sorted task overrides without the keys in :data:`RESUME_IGNORED`."""
    return sorted(o for o in overrides if _override_key(o) not in RESUME_IGNORED)


def find_resumable_run(output_dir, overrides, *, multirun: bool = False) -> Path:
    """The latest earlier run directory of the same experiment with the same overrides
    (:func:`comparable_overrides` of ``.hydra/overrides.yaml``) that is unfinished (no
    ``results.json``) and did not itself resume another run.

    Searched: the siblings of ``output_dir`` (``outputs/<experiment>/<time>``), or with
    ``multirun`` the jobs of every sweep beside this one (``multirun/<experiment>/<time>/<num>``).
    If ``output_dir`` itself holds a ``state/`` directory (a fixed ``hydra.run.dir``), it is
    the answer. Raises ``ValueError`` when nothing matches.
    """
    from omegaconf import OmegaConf

    out = Path(output_dir).resolve()
    if (out / "state").is_dir():
        return out
    want = comparable_overrides(overrides)
    parent = out.parent.parent if multirun else out.parent
    candidates = []
    for d in (p for s in parent.iterdir() if s.is_dir() for p in (s.iterdir() if multirun else [s])):
        file = d / ".hydra" / "overrides.yaml"
        if d.resolve() == out or not file.is_file() or (d / "results.json").exists() or (d / RESUMED_MARKER).exists():
            continue
        if comparable_overrides(OmegaConf.to_container(OmegaConf.load(file))) == want:
            candidates.append((file.stat().st_mtime, d.name, d))
    if not candidates:
        raise ValueError(
            f"resume=true: no unfinished run (without results.json) with the overrides {want} in {parent}; "
            f"pass resume=<run directory> or start a new run"
        )
    return max(candidates)[2]


def resolve_resume(resume) -> Path:
    """The run directory that ``resume`` (true or a path) continues; logs into it from now on and
    marks this job's own directory as resumed elsewhere."""
    hc = HydraConfig.get()
    here = Path(hc.runtime.output_dir).resolve()
    if resume is True:
        target = find_resumable_run(here, hc.overrides.task, multirun=hc.mode == RunMode.MULTIRUN)
    else:
        target = Path(str(resume)).expanduser().resolve()
        if not (target / ".hydra").is_dir() and not (target / "state").is_dir():
            raise ValueError(f"resume={resume!r} is invalid: expected a run directory (with .hydra/ or state/)")
    if target != here:
        (here / RESUMED_MARKER).write_text(f"{target}\n")
        handler = logging.FileHandler(target / f"{hc.job.name}.log")
        for h in logging.getLogger().handlers:
            if isinstance(h, logging.FileHandler) and h.formatter is not None:
                handler.setFormatter(h.formatter)
        logging.getLogger().addHandler(handler)
    logging.getLogger("trivflow").info("resuming the run in %s: results go there", target)
    return target


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from .experiment import run

    logging.getLogger("jax").setLevel(logging.WARNING)  # backend probing is noise for users
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every checkpoint step at INFO
    logging.getLogger("arviz").setLevel(logging.WARNING)  # "arviz_stats not installed" etc. at import
    if cfg.quiet:  # batch jobs: no bars, console shows warnings and errors; the log file keeps INFO
        cfg.progress = False
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.WARNING)
    try:
        out_dir = HydraConfig.get().runtime.output_dir
        if cfg.get("resume", False):
            out_dir = resolve_resume(cfg.resume)
        run(cfg, out_dir)
    except ValueError as err:  # bad input: a clear one-line message, not a traceback
        logging.getLogger("trivflow").error("%s", err)
        sys.exit(f"trivflow: error: {err}")


if __name__ == "__main__":
    main()
