"""The line of constant physics ξ = L/4 at λ = 0.5 (docs/theory.md#line-of-constant-physics)."""

from __future__ import annotations

from .theory import Phi4Theory

#: L → β on the line ξ = L/4, λ = 0.5 (the paper), with L = 4, 32 (not in the paper) and L = 18, 40
#: (≈ in the paper) tuned by trivflow.tuning (experiment=tune_beta, experiments/tune_beta).
LINE_OF_CONSTANT_PHYSICS: dict[int, float] = {
    4: 0.4500,  # tuned here (ξ = 1 at L = 4): 0.4500(3), experiments/tune_beta; β(L/4) at L = 16
    6: 0.537,
    8: 0.576,
    10: 0.601,
    12: 0.616,
    14: 0.626,
    16: 0.634,
    18: 0.6400,  # tuned: 0.64000(33) (experiments/tune_beta); the paper: ≈0.641
    20: 0.645,
    32: 0.6609,  # tuned here (ξ = 8): 0.6609(2), experiments/tune_beta
    40: 0.6667,  # tuned: 0.6667(5) (experiments/tune_beta); the paper: ≈0.666
    80: 0.677,
}


def preset(name: str) -> Phi4Theory:
    """The theory of a preset name ``"L16"`` etc. (2D, λ = 0.5)."""
    try:
        L = int(name.removeprefix("L"))
        beta = LINE_OF_CONSTANT_PHYSICS[L]
    except (ValueError, KeyError):
        known = ", ".join(f"L{L}" for L in LINE_OF_CONSTANT_PHYSICS)
        raise ValueError(f"unknown lattice preset {name!r}; known presets: {known}") from None
    return Phi4Theory(L=L, d=2, beta=beta, lam=0.5)
