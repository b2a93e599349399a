"""Tests run in float64 (the conventions of docs/theory.md are checked to 1e-10); float32 paths opt in."""

import jax

jax.config.update("jax_enable_x64", True)
