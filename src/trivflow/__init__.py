"""trivflow: learning trivializing flows for lattice field theory, in JAX.

Subpackages: ``lattice`` (φ⁴ physics), ``hmc`` (integrators, kernels, multi-chain driver),
``analysis`` (Γ-method), ``flows``, ``priors``, ``training``, ``samplers``.
"""

__version__ = "0.1.0"

from . import analysis, hmc, lattice  # noqa: E402

__all__ = ["analysis", "hmc", "lattice", "__version__"]
