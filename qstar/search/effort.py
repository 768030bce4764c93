"""Reasoning effort: THE table from a ``reasoning_effort`` level to what it runs, shared by ``qstar ask``,
``qstar serve`` and ``qstar search``.

Levels, least compute first: none, minimal, low, medium, high, xhigh. By default every level runs ``think``
(``qstar.search.thinking``) at a thinking budget in tokens: none answers at once (0), minimal 16, low 48, medium 128,
high 256, and xhigh takes the majority answer of 4 chains each budgeted like high. (qstar's reference chains are
50-105 tokens, so low cuts most of them short, medium lets most finish, high lets every one finish.)

Any level can be replaced by a spec string (``Effort.parse``): ``strategy[:budget[:scorer]][:knob=value...]``, e.g.
``qstar serve --effort-high beam:16:cheap`` or ``think:256:parallel=8``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Effort", "LEVELS", "EFFORTS", "effort_of", "effort_table", "capped"]

#: the levels, least compute first (OpenAI's names plus "xhigh")
LEVELS: tuple[str, ...] = ("none", "minimal", "low", "medium", "high", "xhigh")


@dataclass(frozen=True)
class Effort:
    """What one reasoning-effort level runs.

    strategy: name in ``qstar.search.STRATEGIES``. budget: the strategy's budget (``think``: thinking tokens, 0
    allowed; the others: N, full-chain samples worth of compute). scorer: name for ``qstar.scorers.get_scorer``
    (servers refuse oracles). options: extra strategy keywords (``SearchOptions`` fields or the strategy's knobs).
    """

    strategy: str
    budget: int = 1
    scorer: str = "none"
    options: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> Effort:
        """``"strategy[:budget[:scorer]][:knob=value...]"``, e.g. ``"majority:4"``, ``"beam:16:checker"`` or
        ``"think:256:parallel=4"`` (values are JSON where they parse as JSON, else strings)."""
        parts = [p.strip() for p in str(spec).split(":")]
        cut = next((i for i, p in enumerate(parts) if "=" in p), len(parts))
        positional, knobs = parts[:cut], parts[cut:]
        if not positional[0] or len(positional) > 3 or any("=" not in k for k in knobs):
            raise ValueError(f"effort spec {spec!r} must look like strategy[:budget[:scorer]][:knob=value...], "
                             f"e.g. 'majority:4' or 'think:256:parallel=4'")
        try:
            budget = int(positional[1]) if len(positional) > 1 else 1
        except ValueError:
            raise ValueError(f"effort spec {spec!r}: budget {positional[1]!r} is not an integer") from None
        least = 0 if positional[0] == "think" else 1  # think's budget is tokens: 0 = no thinking
        if budget < least:
            raise ValueError(f"effort spec {spec!r}: budget must be >= {least}")
        options = {}
        for k in knobs:
            key, _, value = k.partition("=")
            try:
                options[key.strip()] = json.loads(value)
            except ValueError:
                options[key.strip()] = value.strip()
        return cls(positional[0], budget, positional[2] if len(positional) > 2 else "none", options)

    @property
    def spec(self) -> str:
        """The spec string ``parse`` reads back into this effort."""
        knobs = "".join(f":{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in self.options.items())
        return f"{self.strategy}:{self.budget}:{self.scorer}{knobs}"


#: level -> what it runs by default (see the module docstring)
EFFORTS: dict[str, Effort] = {
    "none": Effort("think", 0),
    "minimal": Effort("think", 16),
    "low": Effort("think", 48),
    "medium": Effort("think", 128),
    "high": Effort("think", 256),
    "xhigh": Effort("think", 256, options={"parallel": 4}),
}


def effort_of(level: str, table: Mapping[str, Effort] | None = None) -> Effort:
    """The Effort of ``level`` in ``table`` (default: ``EFFORTS``); ValueError listing the levels otherwise."""
    table = EFFORTS if table is None else table
    if not isinstance(level, str) or level not in table:
        raise ValueError(f"unknown reasoning effort {str(level)[:40]!r}; choose from {', '.join(table)}")
    return table[level]


def effort_table(overrides: Mapping[str, str] | None = None) -> dict[str, Effort]:
    """The table with levels replaced by spec strings (``{"high": "beam:16:checker"}``; an empty spec keeps the
    default). ValueError for an unknown level or a bad spec."""
    table = dict(EFFORTS)
    for level, spec in (overrides or {}).items():
        effort_of(level)
        if spec:
            table[level] = Effort.parse(spec)
    return table


def capped(effort: Effort, tokens: int) -> Effort:
    """What a level runs when the user caps the thinking at ``tokens``: ``think`` at that budget, keeping the
    level's own ``think`` knobs (xhigh stays a vote of 4 chains); a level that runs another strategy becomes one
    budgeted chain."""
    options = dict(effort.options) if effort.strategy == "think" else {}
    return Effort("think", tokens, "none", options)
