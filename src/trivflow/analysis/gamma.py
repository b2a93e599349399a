r"""Wolff's Γ-method for Monte Carlo error analysis (host-side NumPy).

Reference: U. Wolff, "Monte Carlo errors with less errors", Comput. Phys. Commun. 156 (2004)
143, hep-lat/0306017 (below: "Wolff eq. (n)"). Conventions follow docs/theory.md#gamma-method and, where
that leaves a choice, pyerrors / ADerrors.

Conventions (``data`` of shape ``(R, N_r)``: R replicas / chains of equal length N_r)
-----------------------------------------------------------------------------------
* N = R·N_r measurements in all; ā = (1/N) Σ_r Σ_i a_{r,i} (mean over *all* data) and
  δa_{r,i} = a_{r,i} − ā (``center="global"``, the default).
* Autocovariance, summed over replicas with no cross-replica pairs::

      Γ(t) = 1/(N − R t) · Σ_r Σ_{i=1}^{N_r−t} δa_{r,i} δa_{r,i+t},      t = 0 … w_max,

  computed by FFT (each replica zero-padded to ≥ N_r + w_max, power spectra summed over replicas,
  one inverse transform), O(R N_r log N_r).
* ρ(t) = Γ(t)/Γ(0);  τ_int(W) = ½ + Σ_{t=1}^{W} ρ(t)   (τ = ½: uncorrelated; unit: measurements).
* Automatic window (Wolff §3.3): W is the first W ≥ 1 with::

      g(W) = exp(−W/τ̂(W)) − τ̂(W)/√(W N) < 0,    τ̂(W) = S_τ / ln[(2τ_int(W)+1)/(2τ_int(W)−1)];

  if τ_int(W) ≤ ½, τ̂ is taken → 0⁺ and that W is chosen at once (as Wolff's UWerr does).
  If no W ≤ w_max satisfies the criterion, W = w_max and a ``RuntimeWarning`` is issued.
  ``s_tau=0`` means "assume no autocorrelation": W = 0.
* Bias correction for the subtraction of the estimated mean, Wolff eq. (49), exactly as pyerrors
  applies it: with C_F(W) = Γ(0) + 2 Σ_{t=1}^{W} Γ(t) = 2 τ_int(W) Γ(0),

      C̄_F = C_F(W) (1 + (2W+1)/N),   Γ̄(0) = Γ(0) (1 + 1/N),
      τ_int = C̄_F / (2 Γ̄(0)) = τ_int(W) (1 + (2W+1)/N) / (1 + 1/N),
      σ²(ā) = C̄_F / N = 2 τ_int Γ̄(0) / N.

  (τ_int(W) is first clipped from below at ½, as pyerrors does: anticorrelated data are given the
  naive error, never a smaller one.) The returned arrays ``gamma``, ``rho`` and ``tau_int_of_w`` are
  the *uncorrected* estimators defined above.
* Errors: δτ_int = τ_int √((4W+2)/N) (Wolff eq. (42), as stated in docs/theory.md#gamma-method; note that
  pyerrors uses the Madras–Sokal variant τ_int(W)·2√(|W+½−τ_int(W)|/N), smaller by a factor
  ≈ √(1 − τ/(W+½))), and the error of the error δσ = σ √((W+½)/N) (Wolff eq. (44)/pyerrors).

``center="replica"`` subtracts each replica's own mean instead of the global one (what pyerrors
does); it exists to compare with pyerrors and is *not* recommended for many short chains: it
removes the between-replica fluctuations, biasing Γ(t) low by O(τ/N_r) for every t, which the
eq. (49) correction (O(W/N)) does not undo.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["GammaResult", "Primaries", "gamma_method", "derived", "tau_int", "MIN_TOTAL", "MIN_PER_REPLICA"]

#: Minimum number of measurements in all, and per replica.
MIN_TOTAL = 10
MIN_PER_REPLICA = 2

_EPS = float(np.finfo(np.float64).eps)
_CENTERS = ("global", "replica")


# ----------------------------------------------------------------------------------------------
# Result container
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class GammaResult:
    """Result of a Γ-method analysis (see module docstring for all formulas).

    Attributes
    ----------
    mean : float
        ā (``gamma_method``) or f(ā₁, …, ā_n) (``derived``).
    err : float
        σ(ā) = √(2 τ_int Γ̄(0)/N), bias-corrected (Wolff eq. (49)).
    tau_int : float
        Bias-corrected τ_int at the chosen window, in units of measurements.
    tau_int_err : float
        δτ_int = τ_int √((4W+2)/N).
    window : int
        Chosen summation window W (0 for a constant series or ``s_tau=0``).
    gamma : ndarray, shape (w_max+1,)
        Γ(t), t = 0 … w_max (uncorrected). Read-only.
    rho : ndarray, shape (w_max+1,)
        ρ(t) = Γ(t)/Γ(0); for a constant series [1, 0, 0, …]. Read-only.
    tau_int_of_w : ndarray, shape (w_max+1,)
        τ_int(W) = ½ + Σ_{t=1}^{W} ρ(t) for W = 0 … w_max (uncorrected). Read-only.
    n_total : int
        N = R·N_r.
    s_tau : float
        S_τ used for the window.
    n_replicas : int
        R.
    err_err : float
        Error of the error, σ √((W+½)/N).
    """

    mean: float
    err: float
    tau_int: float
    tau_int_err: float
    window: int
    gamma: np.ndarray
    rho: np.ndarray
    tau_int_of_w: np.ndarray
    n_total: int
    s_tau: float
    n_replicas: int = 1
    err_err: float = 0.0

    @property
    def w_max(self) -> int:
        """Largest lag t for which Γ(t) was computed."""
        return int(self.gamma.shape[0] - 1)

    def to_dict(self, arrays: bool = False) -> dict[str, Any]:
        """JSON-serialisable dict of the scalars (Python floats/ints); ``arrays=True`` adds Γ(t),
        ρ(t) and τ_int(W) as lists (w_max + 1 values each: tens of thousands of characters for a
        long run, hence off by default)."""
        out: dict[str, Any] = {
            "mean": float(self.mean),
            "err": float(self.err),
            "err_err": float(self.err_err),
            "tau_int": float(self.tau_int),
            "tau_int_err": float(self.tau_int_err),
            "window": int(self.window),
            "w_max": self.w_max,
            "n_total": int(self.n_total),
            "n_replicas": int(self.n_replicas),
            "s_tau": float(self.s_tau),
        }
        if arrays:
            out["gamma"] = [float(v) for v in self.gamma]
            out["rho"] = [float(v) for v in self.rho]
            out["tau_int_of_w"] = [float(v) for v in self.tau_int_of_w]
        return out

    def mean_err(self) -> list[float | None]:
        """``[mean, err]`` as results.json stores it (NaN/inf as None: :func:`json_float`)."""
        return [json_float(self.mean), json_float(self.err)]

    def __str__(self) -> str:
        return (
            f"{self.mean:.8g} ± {self.err:.3g}  (τ_int = {self.tau_int:.4g} ± {self.tau_int_err:.2g},"
            f" W = {self.window}, N = {self.n_total}, R = {self.n_replicas}, S_τ = {self.s_tau:g})"
        )


def json_float(x) -> float | None:
    """A float for JSON: NaN and ±inf become None, so that results.json stays valid JSON."""
    x = float(x)
    return x if math.isfinite(x) else None


# ----------------------------------------------------------------------------------------------
# Input validation
# ----------------------------------------------------------------------------------------------


def _as_replica_array(data: Any, name: str = "data") -> np.ndarray:
    """Validate ``data`` and return it as a float64 array of shape (R, N_r)."""
    try:
        arr = np.asarray(data)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(
            f"{name} must be a rectangular array of shape (R, N_r) (replicas of equal length): {exc}"
        ) from None
    if arr.dtype == object:
        raise ValueError(
            f"{name} must be a rectangular numeric array of shape (R, N_r) (replicas of equal length)"
        )
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real, got dtype {arr.dtype}")
    try:
        arr = arr.astype(np.float64, copy=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}: {exc}") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    elif arr.ndim != 2:
        raise ValueError(f"{name} must be 1-D (one replica) or 2-D (R, N_r), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    n_rep, n_r = arr.shape
    if n_r < MIN_PER_REPLICA:
        raise ValueError(
            f"{name}: each replica needs at least {MIN_PER_REPLICA} measurements, got N_r = {n_r}"
        )
    if arr.size < MIN_TOTAL:
        raise ValueError(f"{name}: need at least {MIN_TOTAL} measurements in all, got {arr.size}")
    n_bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    if n_bad:
        raise ValueError(
            f"{name} contains {n_bad} non-finite value(s) (NaN/inf) out of {arr.size}"
        )
    return arr


def _check_s_tau(s_tau: float) -> float:
    s = float(s_tau)
    if not math.isfinite(s) or s < 0:
        raise ValueError(f"s_tau must be finite and >= 0, got {s_tau!r}")
    return s


def _check_w_max(w_max: int | None, n_r: int) -> int:
    if w_max is None:
        return max(1, n_r // 2)
    if isinstance(w_max, bool) or int(w_max) != w_max:
        raise ValueError(f"w_max must be an integer, got {w_max!r}")
    w = int(w_max)
    if not 1 <= w <= n_r - 1:
        raise ValueError(f"w_max must satisfy 1 <= w_max <= N_r - 1 = {n_r - 1}, got {w}")
    return w


def _check_center(center: str) -> str:
    if center not in _CENTERS:
        raise ValueError(f"center must be one of {_CENTERS}, got {center!r}")
    return center


# ----------------------------------------------------------------------------------------------
# Core
# ----------------------------------------------------------------------------------------------


def _next_fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (fast size for pocketfft)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def autocovariance(deltas: np.ndarray, w_max: int) -> np.ndarray:
    """Γ(t) = 1/(N − R t) Σ_r Σ_i δ_{r,i} δ_{r,i+t} for t = 0 … w_max, by FFT.

    ``deltas`` has shape (R, N_r) and is used as given (no centering); requires w_max ≤ N_r − 1.
    Returns an array of shape (w_max+1,).
    """
    n_rep, n_r = deltas.shape
    length = _next_fast_len(n_r + w_max)  # no circular wrap-around for lags <= w_max
    spec = np.fft.rfft(deltas, n=length, axis=-1)
    power = (spec.real**2 + spec.imag**2).sum(axis=0)
    num = np.fft.irfft(power, n=length)[: w_max + 1]
    pairs = n_rep * (n_r - np.arange(w_max + 1, dtype=np.float64))
    return num / pairs


def _auto_window(tau_w: np.ndarray, n_total: int, s_tau: float) -> tuple[int, bool]:
    """First W ≥ 1 with g(W) < 0 (see module docstring). Returns (W, found)."""
    w_max = tau_w.shape[0] - 1
    ws = np.arange(1, w_max + 1, dtype=np.float64)
    t = tau_w[1:]
    ok = t > 0.5
    with np.errstate(divide="ignore", over="ignore", invalid="ignore", under="ignore"):
        tau_hat = np.where(ok, s_tau / np.log((2.0 * t + 1.0) / np.where(ok, 2.0 * t - 1.0, 1.0)), 1.0)
        g = np.exp(-ws / tau_hat) - tau_hat / np.sqrt(ws * n_total)
    stop = ~ok | (g < 0)
    idx = int(np.argmax(stop))
    if stop[idx]:
        return idx + 1, True
    return w_max, False


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.setflags(write=False)
    return a


def _analyse(
    fluct: np.ndarray, mean: float, s_tau: float, w_max: int, scale: float, center: str
) -> GammaResult:
    """Γ-method on fluctuations ``fluct`` (R, N_r) about the global mean; ``mean`` is reported.

    ``scale`` sets the round-off floor below which the series counts as constant:
    Γ(0) ≤ (64 ε scale)².
    """
    n_rep, n_r = fluct.shape
    n_total = n_rep * n_r
    if center == "replica":
        fluct = fluct - fluct.mean(axis=1, keepdims=True)
    gamma = autocovariance(fluct, w_max)
    g0 = float(gamma[0])

    if not g0 > (64.0 * _EPS * scale) ** 2:  # constant series (up to round-off)
        rho = np.zeros(w_max + 1)
        rho[0] = 1.0
        return GammaResult(
            mean=float(mean), err=0.0, tau_int=0.5, tau_int_err=0.0, window=0,
            gamma=_readonly(np.zeros(w_max + 1)), rho=_readonly(rho),
            tau_int_of_w=_readonly(np.full(w_max + 1, 0.5)), n_total=n_total, s_tau=s_tau,
            n_replicas=n_rep, err_err=0.0,
        )

    rho = gamma / g0
    tau_w = np.empty(w_max + 1)
    tau_w[0] = 0.5
    np.cumsum(rho[1:], out=tau_w[1:])
    tau_w[1:] += 0.5

    if s_tau == 0.0:
        window = 0
    else:
        window, found = _auto_window(tau_w, n_total, s_tau)
        if not found:
            warnings.warn(
                f"Γ-method: automatic window criterion (S_τ = {s_tau:g}) not met for W <= w_max = "
                f"{w_max}; using W = w_max (τ_int(w_max) = {tau_w[w_max]:.4g}). The series is too "
                "short for its autocorrelation time; τ_int and the error are unreliable.",
                RuntimeWarning,
                stacklevel=3,
            )

    tau_raw = max(float(tau_w[window]), 0.5)
    bias = 1.0 + (2 * window + 1) / n_total
    tau = tau_raw * bias / (1.0 + 1.0 / n_total)
    var_mean = 2.0 * tau_raw * bias * g0 / n_total  # = 2 τ_int Γ(0)(1 + 1/N) / N
    err = math.sqrt(var_mean)
    return GammaResult(
        mean=float(mean),
        err=err,
        tau_int=tau,
        tau_int_err=tau * math.sqrt((4 * window + 2) / n_total),
        window=int(window),
        gamma=_readonly(gamma),
        rho=_readonly(rho),
        tau_int_of_w=_readonly(tau_w),
        n_total=n_total,
        s_tau=s_tau,
        n_replicas=n_rep,
        err_err=err * math.sqrt((window + 0.5) / n_total),
    )


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def gamma_method(
    data: Any, s_tau: float = 4.0, w_max: int | None = None, *, center: str = "global"
) -> GammaResult:
    r"""Γ-method error analysis of a primary observable.

    Parameters
    ----------
    data : array_like, shape (R, N_r) or (N_r,)
        R replicas (independent chains) of N_r consecutive measurements each; a 1-D array is one
        replica. Must be real and finite, with N_r ≥ 2 and N = R·N_r ≥ 10.
    s_tau : float
        Wolff's S_τ for the automatic window (ADerrors/paper: 4, Wolff: 1.5). 0 means "no
        autocorrelation" (W = 0, τ_int = ½).
    w_max : int, optional
        Largest lag computed, 1 ≤ w_max ≤ N_r − 1 (default N_r // 2, as pyerrors). The window is
        searched in 1 … w_max.
    center : {"global", "replica"}
        Subtract the mean of all data (default, docs/theory.md#gamma-method) or each replica's mean (pyerrors).

    Returns
    -------
    GammaResult
        mean ā, err = √(2 τ_int Γ̄(0)/N), bias-corrected τ_int (Wolff eq. (49)), δτ_int =
        τ_int √((4W+2)/N), window W, and Γ(t), ρ(t), τ_int(W) for 0 … w_max. See module docstring.
    """
    arr = _as_replica_array(data)
    s = _check_s_tau(s_tau)
    w = _check_w_max(w_max, arr.shape[1])
    center = _check_center(center)
    if arr.max() == arr.min():  # exactly constant: exact mean, no round-off noise
        mean = float(arr.flat[0])
        fluct = np.zeros_like(arr)
    else:
        mean = float(arr.mean())
        fluct = arr - mean
    scale = float(np.max(np.abs(arr)))
    return _analyse(fluct, mean, s, w, scale, center)


def tau_int(data: Any, s_tau: float = 4.0) -> tuple[float, float, int]:
    """Convenience: ``(tau_int, tau_int_err, window)`` of :func:`gamma_method` ``(data, s_tau)``."""
    res = gamma_method(data, s_tau=s_tau)
    return res.tau_int, res.tau_int_err, res.window


def _as_observable_stack(data_list: Any) -> np.ndarray:
    """Return primaries as float64 array of shape (n_obs, R, N_r)."""
    if isinstance(data_list, np.ndarray):
        items = list(data_list) if data_list.ndim >= 2 else None
        if items is None:
            raise ValueError(
                "data_list must be a sequence of arrays of equal shape or an array (n_obs, R, N_r); "
                f"got an array of shape {data_list.shape}"
            )
    elif isinstance(data_list, Sequence) and not isinstance(data_list, (str, bytes)):
        items = list(data_list)
    else:
        raise ValueError("data_list must be a sequence of arrays or an array (n_obs, R, N_r)")
    if not items:
        raise ValueError("data_list is empty: need at least one primary observable")
    arrs = [_as_replica_array(a, name=f"data_list[{k}]") for k, a in enumerate(items)]
    shapes = {a.shape for a in arrs}
    if len(shapes) != 1:
        raise ValueError(
            "all primary observables must have the same shape (same samples); got shapes "
            + ", ".join(str(a.shape) for a in arrs)
        )
    return np.stack(arrs)


def _call_scalar(f: Callable[[np.ndarray], Any], x: np.ndarray) -> float:
    val = np.asarray(f(x.copy()), dtype=np.float64)
    if val.size != 1:
        raise ValueError(f"f must return a scalar, got shape {val.shape}")
    return float(val.reshape(()))


def numerical_gradient(
    f: Callable[[np.ndarray], Any], x: np.ndarray, scale: np.ndarray | None = None
) -> np.ndarray:
    """Central-difference gradient of scalar ``f`` at ``x`` (shape (n,)).

    Step per component: h_α = max(10⁻² s_α, ε^{1/3} |x_α|), or ε^{1/3} if both vanish, where
    s_α = ``scale[α]`` (typically the standard error of x_α). The step is re-read as the exactly
    representable difference (x+h) − (x−h).
    """
    x = np.asarray(x, dtype=np.float64)
    s = np.zeros_like(x) if scale is None else np.asarray(scale, dtype=np.float64)
    cube = _EPS ** (1.0 / 3.0)
    grad = np.empty_like(x)
    for k in range(x.shape[0]):
        h = max(1e-2 * float(s[k]), cube * abs(float(x[k])))
        if not h > 0:
            h = cube
        xp = x.copy()
        xm = x.copy()
        xp[k] = x[k] + h
        xm[k] = x[k] - h
        fp = _call_scalar(f, xp)
        fm = _call_scalar(f, xm)
        grad[k] = (fp - fm) / (xp[k] - xm[k])
    if not np.all(np.isfinite(grad)):
        raise ValueError(f"numerical gradient of f at the means is not finite: {grad}")
    return grad


class Primaries:
    """Primary observables a_α measured on the same samples, prepared once for several
    :func:`derived` quantities: the means ā_α (exact for constant primaries), the naive standard
    errors σ_α = std(a_α)/√N that size the finite-difference steps, max |a_α| and the centred
    samples a_α − ā_α (n_obs, R, N_r). One ``Primaries`` passed to many :func:`derived` calls gives
    the same numbers, bit for bit, as passing the data to each; it saves stacking and scanning all of
    it per call (a 64 × 10⁵ run's correlator has 18 primaries of 6.4·10⁶ samples each)."""

    def __init__(self, data_list: Any):
        stack = _as_observable_stack(data_list)  # a fresh array: centred in place below
        n_obs, n_rep, n_r = stack.shape
        self.means = stack.mean(axis=(1, 2))
        const = stack.max(axis=(1, 2)) == stack.min(axis=(1, 2))
        self.means[const] = stack[const, 0, 0]  # exact means of constant primaries
        self.stderr = stack.reshape(n_obs, -1).std(axis=1) / math.sqrt(n_rep * n_r)
        self.max_abs = np.max(np.abs(stack), axis=(1, 2))
        stack -= self.means[:, None, None]
        self.centred = stack
        for a in (self.means, self.stderr, self.max_abs, self.centred):  # shared by every derived call
            a.setflags(write=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(n_obs, R, N_r)."""
        return self.centred.shape


def derived(
    f: Callable[[np.ndarray], Any],
    data_list: Any,
    s_tau: float = 4.0,
    *,
    w_max: int | None = None,
    grad: Any = None,
    center: str = "global",
) -> GammaResult:
    r"""Γ-method for a derived quantity F = f(ā_1, …, ā_n) (Wolff §3.1, linear propagation).

    Parameters
    ----------
    f : callable
        f(means) with ``means`` a 1-D float array of shape (n_obs,); returns a scalar.
    data_list : sequence of array_like of equal shape (R, N_r) or (N_r,), or array (n_obs, R, N_r)
        The primaries a_α measured on the same samples; or a :class:`Primaries` of them, when many
        derived quantities share them.
    s_tau, w_max, center :
        As in :func:`gamma_method`.
    grad : array_like, shape (n_obs,), optional
        ∂f/∂ā_α at the means. Default: central finite differences with step
        h_α = max(10⁻² σ_α, ε^{1/3}|ā_α|) (σ_α the naive standard error of ā_α; see
        :func:`numerical_gradient`).

    Returns
    -------
    GammaResult
        Analysis of the projected fluctuations a_F = Σ_α f_α (a_α − ā_α) (Wolff eq. (32)), with
        ``mean = f(ā)``. The O(1/N) bias of f(ā) from the curvature of f (Wolff §3.4 / eq. (33))
        is *not* removed (as in pyerrors); only the Γ bias correction of eq. (49) is applied.
    """
    if not callable(f):
        raise ValueError("f must be callable: f(means: ndarray of shape (n_obs,)) -> float")
    prim = data_list if isinstance(data_list, Primaries) else Primaries(data_list)
    means = prim.means
    s = _check_s_tau(s_tau)
    w = _check_w_max(w_max, prim.shape[2])
    center = _check_center(center)
    n_obs = prim.shape[0]

    value = _call_scalar(f, means)
    if not math.isfinite(value):
        raise ValueError(f"f(means) is not finite ({value}) at means = {means}")

    if grad is None:
        g = numerical_gradient(f, means, prim.stderr)
    else:
        g = np.asarray(grad, dtype=np.float64).reshape(-1)
        if g.shape != (n_obs,):
            raise ValueError(f"grad must have shape ({n_obs},), got {np.shape(grad)}")
        if not np.all(np.isfinite(g)):
            raise ValueError(f"grad contains non-finite values: {g}")

    fluct = np.tensordot(g, prim.centred, axes=1)  # (R, N_r)
    scale = float(np.sum(np.abs(g) * prim.max_abs))
    return _analyse(fluct, value, s, w, scale, center)
