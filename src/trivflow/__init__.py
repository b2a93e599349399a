"""trivflow: learning trivializing flows for lattice field theory, in JAX.

Subpackages: ``lattice`` (φ⁴ physics), ``hmc`` (integrators, kernels, multi-chain driver),
``analysis`` (Γ-method), ``flows``, ``priors``, ``training``, ``samplers``.
"""

__version__ = "0.1.0"

from . import analysis, flows, hmc, lattice, priors, samplers, training  # noqa: E402

__all__ = ["analysis", "flows", "hmc", "lattice", "priors", "samplers", "training", "__version__"]
