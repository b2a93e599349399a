"""Hydra entry point: ``python -m trivflow.run [overrides]`` or the ``trivflow`` console script.

Only composes the config and calls :func:`trivflow.experiment.run` with the Hydra output
directory; everything else is library code usable without Hydra.
"""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from .config import register_configs

register_configs()


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from .experiment import run

    logging.getLogger("jax").setLevel(logging.WARNING)  # backend probing is noise for users
    if cfg.quiet:  # batch jobs: no bars, console shows warnings and errors; the log file keeps INFO
        cfg.progress = False
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.WARNING)
    try:
        run(cfg, HydraConfig.get().runtime.output_dir)
    except ValueError as err:  # bad input: a clear one-line message, not a traceback
        logging.getLogger("trivflow").error("%s", err)
        sys.exit(f"trivflow: error: {err}")


if __name__ == "__main__":
    main()
