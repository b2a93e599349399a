"""Samplers beyond plain HMC: NUTS (NumPyro) and independence Metropolis–Hastings."""

from .imh import run_imh
from .nuts import run_nuts

__all__ = ["run_imh", "run_nuts"]
