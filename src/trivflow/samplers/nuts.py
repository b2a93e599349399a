"""NUTS through NumPyro, on any potential U(x, params) — S for plain sampling, S̃ for flowed.

An adapter at the edge (docs/conventions.md): NumPyro wants ``potential_fn(position)``, so the
params are bound here; the output is reshaped into trivflow's per-chain series so the same
analysis and summary apply. NumPyro's NUTS also serves as an independent oracle in tests.
"""

from __future__ import annotations

import time
from typing import Callable

import jax
import numpy as np
from numpyro.infer import MCMC, NUTS

from ..errors import must_be
from ..hmc.driver import ChainResult


def run_nuts(
    key,
    potential_fn: Callable,
    positions,
    params=None,
    *,
    num_warmup: int,
    num_samples: int,
    measure_fn: Callable | None = None,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    progress: bool = True,
) -> ChainResult:
    """Run NumPyro's NUTS on ``potential_fn(position, params)`` with vectorized chains.

    Args:
        positions: initial configurations, shape ``(num_chains, *lattice)``.
        num_warmup: adaptation steps (step size and diagonal mass matrix), discarded.
        num_samples: kept samples per chain.
        measure_fn: ``(position, params) -> pytree`` applied to every kept sample.

    Returns:
        :class:`~trivflow.hmc.ChainResult`, the type :func:`trivflow.hmc.run_chains` returns:
        ``delta_H``/``accepted`` are ``None`` (NUTS has no single Metropolis step);
        ``acceptance_prob`` holds NumPyro's mean tree acceptance, ``divergent`` its divergence
        flags, ``final_state`` NumPyro's last state (its ``z``: positions of shape
        (num_chains, *lattice)), ``seconds`` the whole NumPyro run (warmup and compilation
        included, so ``therm_seconds`` and ``compile_seconds`` are 0), ``extra["num_steps"]``
        the leapfrog steps per sample (the cost in force evaluations) and ``extra["samples"]``
        the kept configurations.
    """
    for name, value in (("num_warmup", num_warmup), ("num_samples", num_samples)):
        if not isinstance(value, int) or value < (0 if name == "num_warmup" else 1):
            raise must_be(name, value, "a non-negative integer (num_samples >= 1)")
    positions = jax.numpy.asarray(positions)
    num_chains = positions.shape[0]
    kernel = NUTS(potential_fn=lambda x: potential_fn(x, params), target_accept_prob=target_accept_prob,
                  max_tree_depth=max_tree_depth)
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                chain_method="vectorized", progress_bar=progress)
    t0 = time.perf_counter()
    mcmc.run(key, init_params=positions, extra_fields=("accept_prob", "diverging", "num_steps"))
    samples = mcmc.get_samples(group_by_chain=True)  # (C, S, *lattice)
    seconds = time.perf_counter() - t0
    extra = mcmc.get_extra_fields(group_by_chain=True)
    observables = {}
    if measure_fn is not None:
        measure = jax.jit(jax.vmap(jax.vmap(measure_fn, (0, None)), (0, None)))
        observables = jax.tree_util.tree_map(np.asarray, measure(samples, params))
    return ChainResult(
        observables=observables,
        delta_H=None,
        accepted=None,
        acceptance_prob=np.asarray(extra["accept_prob"]),
        divergent=np.asarray(extra["diverging"]),
        final_state=mcmc.last_state,
        num_chains=num_chains,
        num_traj=num_samples,
        num_therm=num_warmup,
        meas_every=1,
        seconds=seconds,
        therm_seconds=0.0,
        compile_seconds=0.0,
        extra={"num_steps": np.asarray(extra["num_steps"]), "samples": samples},
    )
