"""Live progress for the demo: which stage runs, how long it has taken, and the ETA of the stage and the pipeline.

On a terminal a rich Live table redraws twice a second; elsewhere (pipes, CI, tests) one plain line per event.
ETA of a running stage = its expected seconds minus elapsed (or, once it reports a fraction done, elapsed scaled by
the fraction); the pipeline ETA adds the expected seconds of the stages still waiting.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


class StageProgress:
    """stages: [(name, expected seconds)] in order. Use ``with progress.stage(name): ...``."""

    def __init__(self, stages: list[tuple[str, float]], *, live: bool | None = None, stream=None) -> None:
        self.expected = dict(stages)
        self.order = [name for name, _ in stages]
        self.state = {name: "waiting" for name in self.order}
        self.started: dict[str, float] = {}
        self.elapsed: dict[str, float] = {}
        self.fraction: dict[str, float] = {}
        self.note: dict[str, str] = {}
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self._live = None

    # -- numbers ---------------------------------------------------------------------------------------------------
    def stage_eta(self, name: str) -> float | None:
        """Seconds left in a running stage; None when it is not running."""
        if self.state[name] != "running":
            return None
        spent = time.perf_counter() - self.started[name]
        frac = self.fraction.get(name)
        if frac and frac > 0.02:
            return spent * (1 - frac) / frac
        return max(0.0, self.expected[name] - spent)

    def total_eta(self) -> float:
        """Seconds left in the whole pipeline (running stage ETA + expected time of waiting stages)."""
        return sum(self.stage_eta(n) or 0.0 for n in self.order if self.state[n] == "running") + sum(
            self.expected[n] for n in self.order if self.state[n] == "waiting")

    # -- events ----------------------------------------------------------------------------------------------------
    def skip(self, name: str, note: str = "finished earlier") -> None:
        self.state[name], self.note[name] = "skipped", note
        self._event(f"{name}: skipped ({note})")

    @contextmanager
    def stage(self, name: str):
        self.state[name] = "running"
        self.started[name] = time.perf_counter()
        self._event(f"{name}: started (expected ~{_clock(self.expected[name])}, "
                    f"pipeline ETA {_clock(self.total_eta())})")
        try:
            yield self
        except BaseException:
            self.state[name] = "failed"
            self._event(f"{name}: failed after {_clock(time.perf_counter() - self.started[name])}")
            raise
        self.elapsed[name] = time.perf_counter() - self.started[name]
        self.state[name] = "done"
        self._event(f"{name}: done in {_clock(self.elapsed[name])}, pipeline ETA {_clock(self.total_eta())}")

    def update(self, name: str, *, fraction: float | None = None, note: str | None = None) -> None:
        """Report progress inside a stage (fraction in [0, 1], a short note such as 'cell 12/40')."""
        if fraction is not None:
            self.fraction[name] = min(1.0, max(0.0, fraction))
        if note is not None:
            self.note[name] = note
            if not self.live:
                print(f"[demo] {name}: {note} (stage ETA {_clock(self.stage_eta(name))})", file=self.stream,
                      flush=True)

    def _event(self, line: str) -> None:
        if not self.live:
            print(f"[demo] {line}", file=self.stream, flush=True)

    # -- rich display ----------------------------------------------------------------------------------------------
    def __rich__(self):
        from rich.table import Table

        table = Table(title=f"qstar demo - pipeline ETA {_clock(self.total_eta())}", title_justify="left")
        for col in ("stage", "status", "elapsed", "ETA", "note"):
            table.add_column(col)
        now = time.perf_counter()
        style = {"running": "bold yellow", "done": "green", "skipped": "dim", "failed": "bold red", "waiting": ""}
        for n in self.order:
            spent = self.elapsed.get(n, now - self.started[n] if n in self.started else None)
            table.add_row(n, f"[{style[self.state[n]]}]{self.state[n]}" if style[self.state[n]] else self.state[n],
                          _clock(spent), _clock(self.stage_eta(n)), self.note.get(n, ""))
        return table

    def __enter__(self) -> StageProgress:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self, console=Console(file=self.stream), refresh_per_second=2, redirect_stderr=True,
                              redirect_stdout=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None
