"""Training budgets: what decides how much a model learns is counted in updates, never in seconds.

A trainer given ``steps`` trains exactly that many updates on every machine, and its learning-rate schedule follows
the updates, so a fast and a slow host train the same model. ``seconds`` is either the budget itself (when no step
budget is given: an interactive "train for five minutes") or, next to ``steps``, a safety cap for a slow or busy
machine. A run the cap stops before its step budget is *cut short*: its summary says so, and so do the verdicts built
on it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Budget"]


@dataclass(frozen=True)
class Budget:
    """``steps`` updates (None: no step budget) and/or ``seconds`` of training (None: no time cap)."""

    steps: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.steps is None and self.seconds is None:
            raise ValueError("a training budget needs a number of updates (steps) or a time budget (seconds)")

    @classmethod
    def of(cls, steps: float | None, seconds: float | None) -> Budget:
        """From config fields where 0 (or None) means "not set"."""
        return cls(int(steps) if steps and steps > 0 else None, float(seconds) if seconds and seconds > 0 else None)

    def running(self, step: int, seconds: float) -> bool:
        """True while neither the step budget nor the time cap is spent."""
        return (self.steps is None or step < self.steps) and (self.seconds is None or seconds < self.seconds)

    def progress(self, step: int, seconds: float) -> float:
        """Fraction of the budget done, in [0, 1], for schedules and progress bars: updates when there is a step
        budget (a time cap then only stops early, it never bends the schedule), else seconds."""
        frac = step / self.steps if self.steps is not None else seconds / self.seconds  # type: ignore[operator]
        return min(1.0, max(0.0, frac))

    def cut_short(self, step: int) -> bool:
        """True when a step budget was given and the run stopped before it (the time cap, or a callback)."""
        return self.steps is not None and step < self.steps
