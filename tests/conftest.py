"""Tests run in float64 (physics.md conventions are checked to 1e-10); float32 paths opt in."""

import jax

jax.config.update("jax_enable_x64", True)
