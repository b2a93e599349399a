"""Samplers beyond plain HMC: NUTS (NumPyro) and independence Metropolis–Hastings."""

from .imh import flow_proposal, run_imh
from .nuts import run_nuts

__all__ = ["flow_proposal", "run_imh", "run_nuts"]
