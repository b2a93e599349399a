"""Samplers beyond plain HMC: NUTS (NumPyro) and, with flows, independence Metropolis–Hastings."""

from .nuts import run_nuts

__all__ = ["run_nuts"]
