"""Priors r(z) of the trivial variable (physics.md §5): a common interface and the Gaussian.

Coarse-theory, interpolation and 4-config priors implement the same :class:`Prior` protocol.
"""

from .base import GaussianPrior, Prior

__all__ = ["GaussianPrior", "Prior"]
