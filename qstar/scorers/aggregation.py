"""How per-step scores become one chain (or path) score: the table the learned PRM scorer, the tree searches and
reward-model training share.

Step scores are nominally probabilities. No scores, or a NaN among them (a broken scorer), aggregate to NaN, which
every ranking puts last, rather than to whatever ``min`` happens to return for NaN in that position.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

Aggregation = Callable[[Sequence[float]], float]


def _nan_guard(f: Callable[[Sequence[float]], float]) -> Aggregation:
    return lambda s: math.nan if not s or any(math.isnan(x) for x in s) else float(f(s))


#: name -> step scores -> one score. min: the weakest step (Let's Verify's and the PRM's default).
AGGREGATIONS: dict[str, Aggregation] = {
    "min": _nan_guard(min),
    "prod": _nan_guard(math.prod),
    "last": _nan_guard(lambda s: s[-1]),
    "mean": _nan_guard(lambda s: sum(s) / len(s)),
}


#: the ones a tree search ranks partial paths by (mean is for whole chains: it is not offered there)
PATH_AGGREGATIONS = ("min", "prod", "last")


def get_aggregation(name: str, among: tuple[str, ...] | None = None) -> Aggregation:
    """The aggregation registered as ``name`` (one of ``among``, default all); ValueError listing them otherwise."""
    names = tuple(AGGREGATIONS) if among is None else among
    if name not in names:
        raise ValueError(f"unknown aggregation {name!r}; choose from {', '.join(names)}")
    return AGGREGATIONS[name]
