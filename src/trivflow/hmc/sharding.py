"""Sharding the chain axis over several devices (a 1-D mesh ``("chains",)``).

The vmapped step needs no communication between chains and each device runs the same per-chain
program on its slice, so the numbers equal a one-device run's (tests/test_sharding.py).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ..errors import ParameterError


def chain_shardings(devices, num_chains: int):
    """``(chain_sharding, replicated)`` over a 1-D mesh ``("chains",)`` of ``devices`` (default
    ``jax.devices()``), or ``(None, None)`` for a single device.

    Raises :class:`~trivflow.errors.ParameterError` naming ``num_chains`` (and ``devices``) when
    ``num_chains`` is not a multiple of the device count.
    """
    devs = list(jax.devices() if devices is None else devices)
    if len(devs) <= 1:
        return None, None
    if num_chains % len(devs):
        raise ParameterError(
            f"{{num_chains}}={num_chains} must be a multiple of the number of devices ({len(devs)}) to shard "
            f"the chains across them; change it, or use one device ({{devices}})", "num_chains", "devices")
    mesh = Mesh(np.asarray(devs), ("chains",))
    return NamedSharding(mesh, P("chains")), NamedSharding(mesh, P())


def put(tree, sharding):
    """``jax.device_put(tree, sharding)``, or ``tree`` unchanged without a sharding (one device)."""
    return tree if sharding is None else jax.device_put(tree, sharding)
