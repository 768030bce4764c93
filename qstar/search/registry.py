"""The strategy registry: name -> ``StrategySpec``, the function and what it takes.

``qstar.search`` registers every strategy when it is imported (so the registry is complete before any strategy
runs); this module imports no strategy, so a strategy that runs others by name (compute_optimal) can use it.
Ask it, not the function's signature, which knobs a strategy takes and whether it grows a tree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from qstar.search.options import FIELDS
from qstar.search.types import SearchResult


@dataclass(frozen=True)
class StrategySpec:
    """A strategy and what it takes (built by the ``qstar.search.common.strategy`` decorator).

    name: registry name (the function's). fn: the strategy, ``fn(policy, scorer, problems, budget, *, options,
    **knobs) -> list[SearchResult]``. knobs: its own keyword options, SearchOptions fields excluded. tree: it grows
    a search tree per problem (results carry ``tree`` and ``info["nodes"]``). deterministic: it decodes at
    temperature 0 unless the options set one. forwards: it passes further keywords on to the tree strategies it
    runs, so it takes their knobs too.
    """

    name: str
    fn: Callable[..., list[SearchResult]]
    knobs: tuple[str, ...] = ()
    tree: bool = False
    deterministic: bool = False
    forwards: bool = False


#: name -> spec, in registration order
STRATEGIES: dict[str, StrategySpec] = {}


def register(fn: Callable[..., list[SearchResult]]) -> StrategySpec:
    """Add a decorated strategy (it carries its ``spec``) under its name; returns the spec."""
    spec = fn.spec
    STRATEGIES[spec.name] = spec
    return spec


def strategy_spec(name: str) -> StrategySpec:
    """The spec registered as ``name``; ValueError listing the names otherwise."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def get_strategy(name: str) -> Callable[..., list[SearchResult]]:
    """The strategy function registered as ``name``; ValueError listing the names otherwise."""
    return strategy_spec(name).fn


def strategy_knobs(name: str) -> tuple[str, ...]:
    """The keyword options ``name`` takes besides the SearchOptions fields (``("width", "aggregation", ...)``)."""
    spec = strategy_spec(name)
    passed_on = [k for s in STRATEGIES.values() if s.tree for k in s.knobs] if spec.forwards else []
    return tuple(dict.fromkeys([*spec.knobs, *passed_on]))


def check_knobs(name: str, knobs: Iterable[str]) -> None:
    """ValueError naming the keywords strategy ``name`` does not take, and the ones it does."""
    takes = strategy_knobs(name)
    unknown = [k for k in knobs if k not in takes]
    if unknown:
        raise ValueError(f"strategy {name!r} takes no option {', '.join(map(repr, unknown))}; its own options: "
                         f"{', '.join(takes) or 'none'}; every strategy's: {', '.join(FIELDS)}")
