"""The options every strategy shares: sampling settings and length limits, in one ``SearchOptions``.

A strategy is called as ``f(policy, scorer, problems, budget, options=SearchOptions(...), **knobs)``; its own knobs
(beam's ``width``, mcts's ``c_puct``, sequential's ``mode``, ...) stay keyword arguments and the registry says which
a strategy takes (``qstar.search.registry.strategy_knobs``). The shared fields may also be given as plain keywords
(``max_tokens=64``): they override the matching ``options`` fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

#: sampling temperature of the strategies that sample, when the options leave it unset
DEFAULT_TEMPERATURE = 0.8


@dataclass(frozen=True)
class SearchOptions:
    """Sampling and limits of one search.

    temperature: sampling temperature; None = the strategy's default (0 for the deterministic ones, greedy and
        sequential; ``DEFAULT_TEMPERATURE`` for the rest). Greedy decodes at 0 whatever it is given.
    top_p: nucleus sampling mass (greedy ignores it too).
    max_tokens: token cap per chain (sequential: per continuation; mcts: rollouts and the final completion; beam and
        dvts cap steps instead).
    max_step_tokens: token cap per step of the step-level searches (beam, dvts, mcts); a longer step is a dead end.
    max_steps: depth cap (steps per chain) of the step-level searches.
    seed: when set, ``qstar.search.run.run_strategy`` restarts the policy's own generator and seeds torch's and
        Python's global RNGs with it right before the strategy runs; None leaves them all.
    """

    temperature: float | None = None
    top_p: float = 1.0
    max_tokens: int = 256
    max_step_tokens: int = 96
    max_steps: int = 24
    seed: int | None = None

    def split(self, keywords: Mapping[str, object]) -> tuple[SearchOptions, dict]:
        """(these options with the shared fields named in ``keywords`` replaced, the other keywords: the knobs).

        >>> options, knobs = SearchOptions().split({"max_tokens": 64, "width": 2})
        >>> options.max_tokens, knobs
        (64, {'width': 2})
        """
        shared = {k: v for k, v in keywords.items() if k in FIELDS}
        return dataclasses.replace(self, **shared), {k: v for k, v in keywords.items() if k not in FIELDS}


#: names of the shared fields, in order (no strategy knob has one of them)
FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SearchOptions))
