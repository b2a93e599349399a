"""trivflow: learning trivializing flows for lattice field theory, in JAX.

The library: ``theory`` (the :class:`~trivflow.theory.Theory` interface every theory implements),
``lattice`` (φ⁴ and the free theory), ``hmc`` (integrators, kernels, multi-chain driver),
``analysis`` (Γ-method), ``flows``, ``priors``, ``training``, ``samplers``. The application on top of
it (config, tasks, run directory) is :mod:`trivflow.app`, with the command lines
``python -m trivflow.run`` and ``python -m trivflow.report`` (docs/architecture.md).
"""

__version__ = "0.1.0"

from . import analysis, flows, hmc, lattice, priors, samplers, theory, training  # noqa: E402

__all__ = ["analysis", "flows", "hmc", "lattice", "priors", "samplers", "theory", "training", "__version__"]
