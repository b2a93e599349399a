"""trivflow: learning trivializing flows for lattice field theory, in JAX.

The library: ``theory`` (the :class:`~trivflow.theory.Theory` interface every theory implements),
``lattice`` (φ⁴ and the free theory), ``hmc`` (integrators, kernels, multi-chain driver),
``analysis`` (Γ-method), ``flows``, ``priors``, ``training``, ``samplers``. The application on top of
it (config, tasks, run directory) is :mod:`trivflow.app`, with the command lines
``python -m trivflow.run`` and ``python -m trivflow.report`` (docs/architecture.md).

The subpackages are imported on first access (``trivflow.flows``, ``from trivflow import hmc``):
importing all of them with the package pulled JAX, Flax, NumPyro and SciPy into every process,
≈ 2 s before a job could start, most of it for modules the job never uses.
"""

import importlib

__version__ = "0.1.0"

__all__ = ["analysis", "flows", "hmc", "lattice", "priors", "samplers", "theory", "training", "__version__"]


def __getattr__(name: str):
    """PEP 562: import the subpackage ``name`` of :data:`__all__` on first access."""
    if name in __all__:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
