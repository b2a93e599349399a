"""Samplers beyond plain HMC: independence Metropolis–Hastings (a kernel of the chain driver
:func:`trivflow.hmc.run_chains`) and NUTS (NumPyro)."""

from .imh import IMHInfo, IMHState, flow_proposal, imh_kernel, run_imh
from .nuts import run_nuts

__all__ = ["IMHInfo", "IMHState", "flow_proposal", "imh_kernel", "run_imh", "run_nuts"]
