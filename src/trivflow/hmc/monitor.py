"""Watching a run: progress bars, the frozen-chain check and the phase clock of :func:`run_chains`.

Nothing here touches the chains' numbers: these helpers read the per-chunk diagnostics
(``info.accepted``, ``info.divergent``) and the measured series on the host.
"""

from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

#: Steps (trajectories) per chain after which a phase's acceptance is judged (``min_acceptance``).
MIN_JUDGED = 100


class FrozenChainsError(ValueError):
    """The chains (almost) never accept a step: the run cannot sample the target.

    Attributes: ``acceptance`` (fraction accepted so far in the phase), ``num_traj``
    (steps per chain judged), ``num_divergent`` (in all chains), ``phase``, ``step_size``
    (HMC's ε, ``None`` for a kernel without one, e.g. independence MH)."""

    def __init__(self, desc: str, phase: str, acceptance: float, num_traj: int, num_chains: int,
                 num_divergent: int, step_size: float | None):
        self.acceptance, self.num_traj, self.num_divergent, self.phase = acceptance, num_traj, num_divergent, phase
        self.step_size = step_size
        at = "" if step_size is None else f" at step size {step_size:g}"
        unit = "steps" if step_size is None else "trajectories"  # independence MH has no trajectories
        super().__init__(
            f"{desc}: acceptance {acceptance:.3g} in the first {num_traj} {phase} {unit} of each of "
            f"{num_chains} chains ({num_divergent} of {num_traj * num_chains} divergent){at}: the chains do "
            "not move, so no estimate of this run could be trusted")


def check_acceptance(accepted: int, total: int, divergent: int, *, num_chains: int, phase_length: int,
                     min_acceptance: float | None, desc: str, phase: str, step_size: float | None) -> None:
    """Raise :class:`FrozenChainsError` when ``accepted/total`` < ``min_acceptance`` once
    ``total/num_chains`` ≥ min(:data:`MIN_JUDGED`, ``phase_length``) steps per chain."""
    if not min_acceptance or total == 0:
        return
    per_chain = total // num_chains
    if per_chain >= min(MIN_JUDGED, phase_length) and accepted / total < min_acceptance:
        raise FrozenChainsError(desc, phase, accepted / total, per_chain, num_chains, divergent, step_size)


class AcceptanceJudge:
    """The running phase's acceptance so far, checked by :func:`check_acceptance` after each chunk."""

    def __init__(self, *, num_chains: int, min_acceptance: float | None, desc: str, step_size: float | None):
        self.num_chains, self.min_acceptance, self.desc, self.step_size = num_chains, min_acceptance, desc, step_size
        self.reset()

    def reset(self, infos=()) -> None:
        """Start a phase; ``infos``: the diagnostics of its steps already done (a resumed run)."""
        self.accepted = int(sum(np.sum(i.accepted) for i in infos))
        self.total = int(sum(np.size(i.accepted) for i in infos))
        self.divergent = int(sum(np.sum(i.divergent) for i in infos))

    def __call__(self, infos, phase: str, length: int) -> None:
        """Add one chunk's diagnostics (``accepted``, ``divergent`` of shape (C, n)) and judge."""
        self.accepted += int(np.sum(infos.accepted))
        self.total += int(np.size(infos.accepted))
        self.divergent += int(np.sum(infos.divergent))
        check_acceptance(self.accepted, self.total, self.divergent, num_chains=self.num_chains,
                         phase_length=length, min_acceptance=self.min_acceptance, desc=self.desc, phase=phase,
                         step_size=self.step_size)


def running_tau_int(series, meas_every: int = 1) -> float | None:
    """τ_int (in steps) of a ``(num_chains, n)`` series by the Γ-method (S_τ = 4), or
    ``None`` while there are too few data. Cheap (one FFT); for progress displays only.

    Early in a run the series is shorter than the automatic window needs, and the Γ-method warns
    (RuntimeWarning) on every refresh; that warning belongs to the final analysis (results.json
    ``warnings``), not to the progress bar, so it is silenced here."""
    import warnings

    from ..analysis import gamma_method

    series = np.asarray(series)
    if series.ndim != 2 or series.shape[1] < 8:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(gamma_method(series).tau_int) * meas_every
    except ValueError:
        return None


def progress_bar(total: int, initial: int, desc: str, enabled: bool, leave: bool = True):
    """A tqdm bar over ``total`` steps per chain (disabled, but still counting, when not ``enabled``)."""
    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, leave=leave)


def set_postfix(bar, accepted, observables, meas_every) -> None:
    """Progress-bar postfix: acceptance so far and a running τ_int(M) when M is measured."""
    if bar is None or bar.disable:
        return
    post = {"acc": f"{float(np.mean(accepted)):.3f}"}
    if observables and "M" in observables:
        tau = running_tau_int(observables["M"], meas_every)
        if tau is not None:
            post["tau_M"] = f"{tau:.3g}"
    bar.set_postfix(post)


class PhaseClock:
    """Wall time per phase with compilation and state saving taken out.

    ``timing`` holds ``therm_seconds``, ``seconds`` (measurement), ``compile_seconds`` and
    ``checkpoint_seconds`` (restored from a state on resume); ``compile_times`` collects each
    compilation's seconds (:func:`trivflow.hmc.chunks.compiled`) of this process."""

    def __init__(self, timing: dict | None = None):
        self.timing = {"therm_seconds": 0.0, "seconds": 0.0, "compile_seconds": 0.0, "checkpoint_seconds": 0.0}
        self.timing.update(timing or {})
        self.compile_times: list[float] = []
        self._running: dict = {}

    def start(self, key: str) -> None:
        """Start the phase whose seconds go to ``timing[key]``."""
        self._running = dict(key=key, t0=time.perf_counter(), c0=len(self.compile_times),
                             s0=self.timing["checkpoint_seconds"])

    def elapsed(self) -> float:
        """Seconds of the running phase so far, compilation and state saving excluded."""
        r = self._running
        return (time.perf_counter() - r["t0"] - sum(self.compile_times[r["c0"]:])
                - (self.timing["checkpoint_seconds"] - r["s0"]))

    def stop(self) -> None:
        self.timing[self._running["key"]] += self.elapsed()
        self._running = {}

    def now(self) -> dict:
        """The timings as if the run stopped now (this process's compilations included)."""
        now = dict(self.timing)
        if self._running:
            now[self._running["key"]] += self.elapsed()
        now["compile_seconds"] += sum(self.compile_times)
        return now

    def finish(self) -> dict:
        """The final timings: this process's compilations added to ``compile_seconds``."""
        self.timing["compile_seconds"] += sum(self.compile_times)
        self.compile_times = []
        return self.timing
