"""β tuning on the line of constant physics: find β with ξ(β) = ξ_target at fixed L, λ.

The correlation length ξ is the exponential one of docs/theory.md#observables (ξ = 1/m̄, m̄ the mean of the
effective mass over a plateau), measured by HMC with its Γ-method error. ξ grows steeply and
smoothly with β (at λ = 0.5 roughly d log ξ / dβ ≈ 5 ξ), and log ξ is close to linear in β over
the small intervals that matter, so the search works on

    y(β) = log ξ(β),   root of  y(β) − log ξ_target.

Algorithm (:func:`tune_beta`), every step one measurement ``measure(β) -> (ξ, δξ, extra)``:

1. Measure at both ends of the initial bracket [β_lo, β_hi].
2. Until a measured point satisfies |ξ − ξ_target| ≤ max(tol_sigma · δξ, xi_rtol · ξ_target)
   or ``max_iter`` measurements are spent, propose the next β from the secant of log ξ vs β
   through the two points nearest the target in log ξ:
   * bracketed (points on both sides of the target): the secant root if it lies strictly inside the
     tightest bracket, else the bracket's midpoint (bisection);
   * not bracketed: the extrapolated root, at most ``max_step`` beyond the measured range
     (a plain step of ``max_step`` where the fitted slope is not positive), and never beyond
     the stability limits [beta_min, beta_max).
   Points where ξ is undefined (noise-dominated effective mass) are kept in the record but not
   fitted; one above every defined point counts as "ξ too large", one below as "ξ too small".
3. The result β* is the root of a weighted least-squares fit of log ξ vs β through the points
   with |log(ξ/ξ_target)| ≤ ``fit_window`` (local; at least the two nearest the target),
   linear, or quadratic once there are ≥ 4 such points (``fit_degree`` = 2: the curvature of
   log ξ, ≈ (d log ξ/dβ)² for ν = 1, would otherwise bias a line through points on both
   sides). With the coefficient covariance C (scaled by χ²/dof when that exceeds 1, the
   Birge ratio) and g = (1, x*, x*²), x* = β* − β̄:

       δβ*² = gᵀ C g / (d log ξ/dβ at β*)²,

   i.e. δ(log ξ)/|d log ξ/dβ| combined with the fit's uncertainty. Its coverage is checked in
   tests/test_tuning.py over repeated noisy searches (the noise-dependent stopping rule makes
   it approximate: ≈ 60-70 % within 1σ there).

The core is independent of how ξ is measured (:func:`tune_beta` takes a callable), so it is
tested against the free theory, where ξ(β) is exact: cosh(1/ξ) = (1 − β(d − 1))/β at any L.
:func:`hmc_xi_measure` builds the HMC measurement; the experiment (``task: tune_beta``) writing
``results.json`` with a ``tune_beta`` block is the application's :mod:`trivflow.app.tune`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from .errors import ParameterError
from .lattice.presets import LINE_OF_CONSTANT_PHYSICS

log = logging.getLogger("trivflow")

#: ``measure(beta) -> (xi, xi_err, extra)``; xi may be NaN/None where undefined.
Measure = Callable[[float], tuple]


@dataclass(frozen=True)
class TunePoint:
    """One measurement: ξ ± δξ at β (ξ None where undefined) and what the measurement reported."""

    beta: float
    xi: float | None
    xi_err: float | None
    extra: dict = field(default_factory=dict)

    @property
    def defined(self) -> bool:
        return self.xi is not None


@dataclass(frozen=True)
class LogXiFit:
    """Weighted polynomial fit log ξ = Σ_k c_k (β − β̄)^k (degree 1 or 2) and its root β*.

    β̄ is the weighted mean of the fitted β. ``cov`` is the covariance of ``coef`` (scaled by
    ``scale`` = max(1, χ²/dof), the Birge factor, when dof > 0). ``slope`` = [d log ξ/dβ, err]
    at β*. ``beta_star``/``beta_err`` are None when the fit has no root with positive slope.
    """

    beta_bar: float
    coef: tuple[float, ...]
    cov: tuple[tuple[float, ...], ...]
    chi2: float
    dof: int
    scale: float
    betas: tuple[float, ...]
    beta_star: float | None
    beta_err: float | None
    slope: tuple[float, float] | None

    @property
    def degree(self) -> int:
        return len(self.coef) - 1

    def log_xi(self, beta):
        """The fitted log ξ at ``beta`` (array-friendly)."""
        x = np.asarray(beta, dtype=float) - self.beta_bar
        return sum(c * x**k for k, c in enumerate(self.coef))


@dataclass
class TuneResult:
    """Outcome of :func:`tune_beta`: β* ± δβ*, every measured point, and how it ended."""

    target_xi: float
    beta: float | None
    beta_err: float | None
    converged: bool
    message: str
    points: list[TunePoint]
    fit: LogXiFit | None

    @property
    def dlogxi_dbeta(self) -> list[float] | None:
        return None if self.fit is None or self.fit.slope is None else list(self.fit.slope)

    def to_dict(self) -> dict:
        """JSON-ready: points as flat dicts ``{beta, xi, xi_err, **extra}``."""
        fit = None if self.fit is None else json.loads(json.dumps(asdict(self.fit)))
        return {
            "target_xi": self.target_xi,
            "beta": self.beta,
            "beta_err": self.beta_err,
            "converged": self.converged,
            "message": self.message,
            "dlogxi_dbeta": self.dlogxi_dbeta,
            "fit": fit,
            "points": [{"beta": p.beta, "xi": p.xi, "xi_err": p.xi_err, **p.extra} for p in self.points],
        }


def _clean_measurement(beta: float, out) -> TunePoint:
    """Check the measure contract; undefined ξ (None, NaN, ≤ 0) becomes ``xi=None``."""
    try:
        xi, xi_err, extra = out
    except (TypeError, ValueError):
        raise ValueError(f"measure(beta) must return (xi, xi_err, extra), got {out!r}") from None
    extra = dict(extra or {})
    if xi is None or not math.isfinite(float(xi)) or float(xi) <= 0:
        return TunePoint(float(beta), None, None, extra)
    if xi_err is None or not math.isfinite(float(xi_err)) or float(xi_err) <= 0:
        # a defined ξ without a positive error cannot be weighted; treat it as undefined
        return TunePoint(float(beta), None, None, {**extra, "note": f"xi={xi} without a positive error"})
    return TunePoint(float(beta), float(xi), float(xi_err), extra)


def _poly_root(coef: np.ndarray, y: float, x0: float) -> float | None:
    """Root of Σ c_k x^k = y by Newton from x0; None if it fails or the slope there is ≤ 0."""
    x = x0
    for _ in range(100):
        f = sum(c * x**k for k, c in enumerate(coef)) - y
        fp = sum(k * c * x ** (k - 1) for k, c in enumerate(coef) if k)
        if not fp > 0:
            return None
        step = f / fp
        x -= step
        if abs(step) <= 1e-15 * max(1.0, abs(x)):
            break
    fp = sum(k * c * x ** (k - 1) for k, c in enumerate(coef) if k)
    return float(x) if math.isfinite(x) and fp > 0 else None


def fit_log_xi(points: list[TunePoint], target_xi: float, degree: int = 1) -> LogXiFit:
    """Weighted least squares of y = log ξ on x = β − β̄, polynomial of ``degree`` (1 or 2).

    Weights 1/σ_y², σ_y = δξ/ξ; β̄ = Σwβ/Σw. Needs ≥ 2 defined points at distinct β (degree 2:
    ≥ 4 points, else degree 1 is used). The root x* of Σ c_k x^k = log ξ_target on the branch
    of the linear estimate has, by linear propagation of the coefficient covariance C,

        δβ*² = gᵀ C g / y′(x*)²,   g = (1, x*, x*²),   y′ = d log ξ/dβ at β*,

    i.e. δ(log ξ)/|d log ξ/dβ| combined with the fit's uncertainty. C is scaled by χ²/dof when
    that exceeds 1. A quadratic whose root is not found (or has y′ ≤ 0) falls back to degree 1.
    """
    if len(points) < 2 or any(not p.defined for p in points):
        raise ValueError("fit_log_xi needs at least two points with defined xi")
    beta = np.array([p.beta for p in points], dtype=float)
    if len(set(beta.tolist())) < 2:
        raise ValueError(f"fit_log_xi needs at least two distinct beta values, got {sorted(set(beta))}")
    if degree not in (1, 2):
        raise ValueError(f"degree={degree!r} is invalid: expected 1 or 2")
    if degree == 2 and len(set(beta.tolist())) < 4:
        degree = 1
    y = np.log([p.xi for p in points])
    sigma = np.array([p.xi_err / p.xi for p in points])
    w = 1.0 / sigma**2
    beta_bar = float(np.sum(w * beta) / np.sum(w))
    x = beta - beta_bar
    design = np.vander(x, degree + 1, increasing=True)
    cov = np.linalg.inv((design / sigma[:, None] ** 2).T @ design)
    coef = cov @ (design.T @ (w * y))
    chi2 = float(np.sum(w * (y - design @ coef) ** 2))
    dof = len(points) - degree - 1
    scale = max(1.0, chi2 / dof) if dof > 0 else 1.0
    cov = cov * scale
    y_target = math.log(target_xi)
    x_star = (y_target - coef[0]) / coef[1] if coef[1] > 0 else None
    if x_star is not None and degree == 2:
        x_star = _poly_root(coef, y_target, x_star)
        if x_star is None:
            return fit_log_xi(points, target_xi, degree=1)
    beta_star = beta_err = slope = None
    if x_star is not None:
        g = np.array([x_star**k for k in range(degree + 1)])
        dg = np.array([k * x_star ** (k - 1) if k else 0.0 for k in range(degree + 1)])
        yp = float(dg @ coef)
        beta_star = beta_bar + float(x_star)
        beta_err = math.sqrt(float(g @ cov @ g)) / yp
        slope = (yp, math.sqrt(float(dg @ cov @ dg)))
    return LogXiFit(beta_bar, tuple(float(c) for c in coef), tuple(tuple(float(v) for v in r) for r in cov),
                    chi2, dof, scale, tuple(float(b) for b in beta), beta_star, beta_err, slope)


def _nearest(points: list[TunePoint], target_xi: float, n: int) -> list[TunePoint]:
    """The ``n`` defined points nearest the target in log ξ (at least two distinct β if possible)."""
    defined = sorted((p for p in points if p.defined), key=lambda p: abs(math.log(p.xi / target_xi)))
    chosen = defined[:n]
    if len({p.beta for p in chosen}) < 2:  # repeated β: add the nearest point at another β
        other = next((p for p in defined[n:] if p.beta not in {q.beta for q in chosen}), None)
        if other is not None:
            chosen.append(other)
    return chosen


def select_fit_points(points: list[TunePoint], target_xi: float, fit_points: int | None,
                   fit_window: float) -> list[TunePoint]:
    """Points of the final fit: the defined points with |log(ξ/ξ_target)| ≤ ``fit_window``
    (at least the two nearest the target), at most ``fit_points`` of them, the ones nearest in
    β to the secant root of the two points nearest the target.

    The window keeps the polynomial local (far bracket ends would bias it through curvature);
    it is wide compared with the statistical errors, so selecting by the measured ξ hardly
    biases the fit.
    """
    defined = [p for p in points if p.defined]
    chosen = [p for p in defined if abs(math.log(p.xi / target_xi)) <= fit_window]
    near = _nearest(points, target_xi, 2)
    if len({p.beta for p in chosen}) < 2:
        chosen = near
    if fit_points is None or len(chosen) <= fit_points:
        return chosen
    centre = float(np.mean([p.beta for p in near]))
    if len({p.beta for p in near}) >= 2:
        root = fit_log_xi(near, target_xi).beta_star
        centre = root if root is not None else centre
    return sorted(chosen, key=lambda p: abs(p.beta - centre))[:fit_points]


def _is_close(p: TunePoint, target_xi: float, tol_sigma: float, xi_rtol: float) -> bool:
    return p.defined and abs(p.xi - target_xi) <= max(tol_sigma * p.xi_err, xi_rtol * target_xi)


def _bracket(points: list[TunePoint], target_xi: float) -> tuple[float | None, float | None]:
    """Tightest (β_below, β_above): the largest β with ξ < target, the smallest with ξ > target.

    An undefined point above every defined β counts as above the target, one below as below.
    """
    defined = [p.beta for p in points if p.defined]
    below = [p.beta for p in points if p.defined and p.xi < target_xi]
    above = [p.beta for p in points if p.defined and p.xi > target_xi]
    if defined:
        above += [p.beta for p in points if not p.defined and p.beta > max(defined)]
        below += [p.beta for p in points if not p.defined and p.beta < min(defined)]
    return (max(below) if below else None), (min(above) if above else None)


def next_beta(points: list[TunePoint], target_xi: float, *, max_step: float,
              beta_min: float, beta_max: float) -> float:
    """The next β to measure (module docstring, step 2)."""
    lo, hi = _bracket(points, target_xi)
    measured = [p.beta for p in points]
    usable = _nearest(points, target_xi, 2)  # secant through the two nearest: superlinear when smooth
    root = None
    if len({p.beta for p in usable}) >= 2:
        root = fit_log_xi(usable, target_xi).beta_star
    if lo is not None and hi is not None and lo < hi:
        if root is None or not lo < root < hi:  # safeguard: bisect
            return 0.5 * (lo + hi)
        return float(root)
    if lo is not None and hi is not None:  # inverted by noise (ξ(lo) < target < ξ(hi) with hi < lo)
        if root is None or not math.isfinite(root):
            return 0.5 * (lo + hi)
        return float(min(max(root, hi), lo))
    if lo is not None:  # everything measured is below the target
        top = max(measured)
        step = max_step if root is None else min(max(root - top, 0.05 * max_step), max_step)
        candidate = top + step
        return candidate if candidate < beta_max else 0.5 * (top + beta_max)
    if hi is not None:  # everything is above the target
        bottom = min(measured)
        step = max_step if root is None else min(max(bottom - root, 0.05 * max_step), max_step)
        candidate = bottom - step
        return candidate if candidate > beta_min else 0.5 * (bottom + beta_min)
    raise RuntimeError("next_beta: no defined measurement to step from")  # guarded by tune_beta


def tune_beta(measure: Measure, target_xi: float, beta_lo: float, beta_hi: float, *, max_iter: int = 8,
              tol_sigma: float = 1.0, xi_rtol: float = 0.0, fit_points: int | None = None, fit_degree: int = 2,
              fit_window: float = 0.3,
              max_step: float | None = None,
              beta_min: float = 0.0, beta_max: float = math.inf,
              callback: Callable[[TunePoint], None] | None = None) -> TuneResult:
    """Find β with ξ(β) = ``target_xi`` by bracketing and secant/fit steps on log ξ (module docstring).

    Args:
        measure: ``measure(beta) -> (xi, xi_err, extra)``; ``xi`` None/NaN where undefined,
            ``extra`` a dict recorded with the point (τ_int, seconds, …).
        target_xi: ξ_target > 0.
        beta_lo, beta_hi: initial bracket, beta_min ≤ beta_lo < beta_hi < beta_max. It need not
            contain the root; the search extends it.
        max_iter: most measurements in all (≥ 2; the bracket ends are the first two).
        tol_sigma, xi_rtol: stop once a point has |ξ − target| ≤ max(tol_sigma δξ, xi_rtol target).
        fit_window: the final fit uses the points with |log(ξ/ξ_target)| ≤ fit_window (at least
            the two nearest the target) ...
        fit_points: ... at most this many (≥ 2; None: no limit), the nearest in β to the root.
        fit_degree: 2 (default): quadratic in β once ≥ 4 points are fitted, linear before; 1: linear.
        max_step: longest step beyond the measured range (default 4 (beta_hi − beta_lo)).
        beta_min, beta_max: allowed range (beta_max exclusive: e.g. 1/d for the free theory).
        callback: called with each new :class:`TunePoint` (logging).

    Returns:
        :class:`TuneResult` with β* ± δβ* from the final fit (None if no fit was possible),
        ``converged`` and a message. Measurement problems do not raise; they end the search
        with ``converged=False``.
    """
    if not target_xi > 0:
        raise ValueError(f"target_xi={target_xi!r} is invalid: expected a positive number")
    if not beta_min <= beta_lo < beta_hi < beta_max:
        raise ValueError(f"bracket [{beta_lo!r}, {beta_hi!r}] is invalid: expected "
                         f"beta_min={beta_min} <= beta_lo < beta_hi < beta_max={beta_max}")
    if max_iter < 2 or (fit_points is not None and fit_points < 2) or not tol_sigma > 0 or xi_rtol < 0 \
            or fit_degree not in (1, 2) or not fit_window > 0:
        raise ValueError(f"need max_iter >= 2, fit_points >= 2 or None, fit_degree 1 or 2, fit_window > 0, "
                         f"tol_sigma > 0, xi_rtol >= 0; got fit_degree={fit_degree}, fit_window={fit_window}, "
                         f"max_iter={max_iter}, fit_points={fit_points}, tol_sigma={tol_sigma}, xi_rtol={xi_rtol}")
    max_step = 4.0 * (beta_hi - beta_lo) if max_step is None else max_step

    points: list[TunePoint] = []

    def take(beta: float) -> TunePoint:
        point = _clean_measurement(beta, measure(float(beta)))
        points.append(point)
        if callback is not None:
            callback(point)
        return point

    converged, message = False, ""
    for beta in (beta_lo, beta_hi):
        converged = _is_close(take(beta), target_xi, tol_sigma, xi_rtol) or converged
    while not converged and len(points) < max_iter:
        defined = [p for p in points if p.defined]
        if not defined:
            message = ("xi undefined at every measured beta (noise-dominated effective mass): "
                       "increase the statistics (sampler.num_traj, sampler.num_chains) or the plateau")
            break
        if len({p.beta for p in defined}) < 2:  # one defined point: bisect towards the undefined end
            undefined = [p.beta for p in points if not p.defined]
            beta = 0.5 * (defined[0].beta + undefined[-1])
        else:
            beta = next_beta(points, target_xi, max_step=max_step,
                             beta_min=beta_min, beta_max=beta_max)
        converged = _is_close(take(beta), target_xi, tol_sigma, xi_rtol)

    fit = None
    usable = select_fit_points(points, target_xi, fit_points, fit_window)
    if len({p.beta for p in usable}) >= 2:
        fit = fit_log_xi(usable, target_xi, degree=fit_degree)
    if fit is None or fit.beta_star is None:
        converged = False
        message = message or "no fit of log xi with a positive slope: measurements too noisy or too few"
    elif not message:
        last = points[-1]
        message = (f"converged: xi={last.xi:.5g}±{last.xi_err:.2g} at beta={last.beta:.6g}" if converged else
                   f"max_iter={max_iter} measurements spent before a point came within tolerance")
    return TuneResult(target_xi=float(target_xi), beta=None if fit is None else fit.beta_star,
                      beta_err=None if fit is None else fit.beta_err, converged=converged,
                      message=message, points=points, fit=fit)


# --------------------------------------------------------------------------- initial bracket

def free_beta(xi: float, d: int = 2) -> float:
    """Exact free-theory (λ = 0) β with correlation length ξ: β = 1/(cosh(1/ξ) + d − 1).

    From the free propagator's pole, cosh m = (1 − β(d − 1))/β (docs/theory.md#action); the
    zero-momentum correlator is an exact cosh at any L, so this holds in finite volume too.
    """
    return 1.0 / (math.cosh(1.0 / xi) + d - 1)


def lcp_beta_guess(target_xi: float) -> float:
    """β guess at λ = 0.5, d = 2 from the line of constant physics ξ = L/4 (docs/theory.md#line-of-constant-physics).

    Linear interpolation of the table β(L) in log L at L = 4 ξ_target (linear extrapolation in
    log L beyond the table's ends). A guess only: ξ at fixed β also depends on the volume.
    """
    Ls = np.array(sorted(LINE_OF_CONSTANT_PHYSICS), dtype=float)
    betas = np.array([LINE_OF_CONSTANT_PHYSICS[int(L)] for L in Ls])
    x, xs = math.log(4.0 * target_xi), np.log(Ls)
    if x <= xs[0]:
        return float(betas[0] + (betas[1] - betas[0]) / (xs[1] - xs[0]) * (x - xs[0]))
    if x >= xs[-1]:
        return float(betas[-1] + (betas[-1] - betas[-2]) / (xs[-1] - xs[-2]) * (x - xs[-1]))
    return float(np.interp(x, xs, betas))


def automatic_bracket_available(d: int, lam: float) -> bool:
    return lam == 0 or (lam == 0.5 and d == 2)


def initial_bracket(d: int, lam: float, target_xi: float, width: float | None = None) -> tuple[float, float]:
    """[β_lo, β_hi] around a guess: exact for λ = 0 (:func:`free_beta`), the LCP table at λ = 0.5, d = 2.

    Default width 0.12/ξ_target: at λ = 0.5, d log ξ/dβ ≈ 5ξ, so the ends sit near
    ξ_target e^{∓0.3}. For λ = 0 the upper end stays below the stability limit 1/d.
    """
    if not automatic_bracket_available(d, lam):
        raise ParameterError(f"no automatic beta bracket for {{d}}={d}, {{lam}}={lam} (known for lam=0, and for "
                             f"lam=0.5 in 2D): give the bracket explicitly", "d", "lam")
    half = 0.5 * (0.12 / target_xi if width is None else width)
    if lam == 0:
        guess = free_beta(target_xi, d)
        half = min(half, 0.5 * (1.0 / d - guess))
        return guess - half, guess + half
    guess = lcp_beta_guess(target_xi)
    return guess - half, guess + half


# --------------------------------------------------------------------------- HMC measurement

def hmc_xi_measure(key, L: int, d: int, lam: float, *, num_chains: int, num_traj: int, num_therm: int,
                   num_steps: int = 10, traj_length: float = 1.0, integrator: str = "leapfrog",
                   meas_every: int = 1, chunk_size: int = 1000, plateau: tuple[int, int] | None = None,
                   s_tau: float = 4.0, warm_dbeta: float = 0.0, warm_therm: int | None = None,
                   progress: bool = False) -> Measure:
    """``measure(beta) -> (xi, xi_err, extra)`` by HMC at (L, d, β, λ), ξ from the Γ-method.

    Measurement i uses the key ``fold_in(key, i)``. It starts hot (N(0, 1) fields) with
    ``num_therm`` thermalization trajectories, or, if some earlier measurement was at
    |β − β_prev| ≤ ``warm_dbeta``, from the final configurations of the nearest such one
    with ``warm_therm`` trajectories (default ``num_therm``): a warm start from a
    nearby equilibrium. ``extra`` holds the compact record (τ_int of M and |M|, acceptance,
    seconds, …) and, under ``"run"``, the full results.json run block.
    """
    import jax

    from . import hmc
    from .lattice.observables import default_plateau
    from .lattice.theory import Phi4Theory
    from .summary import summarize_run

    plateau = tuple(plateau) if plateau is not None else default_plateau(L)
    kernel = hmc.phi4_kernel(num_steps, integrator)
    finals: dict[float, object] = {}
    calls = [0]
    warm_therm = num_therm if warm_therm is None else warm_therm

    def measure(beta: float):
        theory = Phi4Theory(L=L, d=d, beta=float(beta), lam=lam)
        key_init, key_run = jax.random.split(jax.random.fold_in(key, calls[0]))
        calls[0] += 1
        near = min(finals, key=lambda b: abs(b - beta), default=None)
        warm = near is not None and abs(near - beta) <= warm_dbeta
        positions = finals[near] if warm else hmc.random_positions(key_init, num_chains, theory.shape,
                                                                               dtype=jax.numpy.result_type(float))
        therm = warm_therm if warm else num_therm
        started = time.perf_counter()
        result = hmc.run_chains(key_run, kernel, positions, hmc.phi4_params(theory, positions.dtype),
                                step_size=traj_length / num_steps, num_traj=num_traj, num_therm=therm,
                                meas_every=meas_every, measure_fn=hmc.phi4_measure, chunk_size=chunk_size,
                                progress=progress, desc=f"HMC L={L} beta={beta:.5f}")
        wall = time.perf_counter() - started
        finals[float(beta)] = result.final_state.position
        run = summarize_run(result, theory, sampler="hmc", s_tau=s_tau, plateau=plateau)
        run["lattice"] = theory.to_dict()
        xi, xi_err = run["observables"]["xi"]
        extra = {
            "tau_int": {k: run["tau_int"][k] for k in ("M", "absM")},
            "acceptance": run["acceptance"],
            "num_chains": num_chains, "num_traj": num_traj, "num_therm": therm,
            "warm_start_from": near if warm else None,
            "seconds": wall,
            "warnings": run["warnings"],
            "run": run,
        }
        return xi, xi_err, extra

    return measure
