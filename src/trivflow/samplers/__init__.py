"""Samplers beyond plain HMC: independence Metropolis–Hastings (a kernel of the chain driver
:func:`trivflow.hmc.run_chains`) and NUTS (NumPyro).

:func:`~trivflow.samplers.nuts.run_nuts` is imported on first use: NumPyro (with SciPy) takes ≈ 0.4–1 s to import, which
a job that does not run NUTS should not pay."""

from .imh import IMHInfo, IMHState, flow_proposal, imh_kernel, run_imh

__all__ = ["IMHInfo", "IMHState", "flow_proposal", "imh_kernel", "run_imh", "run_nuts"]


def __getattr__(name: str):
    """PEP 562: ``run_nuts`` from :mod:`trivflow.samplers.nuts`, imported when first asked for."""
    if name == "run_nuts":
        from .nuts import run_nuts

        return run_nuts
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
