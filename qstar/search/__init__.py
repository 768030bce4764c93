"""Test-time compute: every strategy is ``f(policy, scorer, problems, budget, **options) -> list[SearchResult]``.

``budget`` is N, the number of full-chain samples worth of compute per problem; each strategy's module docstring
says how it maps N (samples, beams, subtrees, simulations, forced continuations). Each result carries a ``Ledger``
(tokens, FLOPs, seconds) and, for tree strategies, the tree as JSON (``qstar.search.nodes``).

    from qstar.search import get_strategy
    from qstar.scorers import get_scorer
    results = get_strategy("beam")(policy, get_scorer("checker"), problems, 8, aggregation="min")
"""

from __future__ import annotations

from collections.abc import Callable

from qstar.search.compute_optimal import compute_optimal
from qstar.search.estimators import bootstrap_ci, maj_at_k, pass_at_k
from qstar.search.mcts import mcts
from qstar.search.nodes import SearchTree, tree_from_json, tree_to_json
from qstar.search.sampling import best_of_n, greedy, majority, weighted_best_of_n
from qstar.search.sequential import sequential
from qstar.search.tree import beam, dvts
from qstar.search.types import Ledger, Scorer, SearchResult

#: name -> strategy function
STRATEGIES: dict[str, Callable[..., list[SearchResult]]] = {
    "greedy": greedy,
    "majority": majority,
    "best_of_n": best_of_n,
    "weighted_best_of_n": weighted_best_of_n,
    "beam": beam,
    "dvts": dvts,
    "mcts": mcts,
    "sequential": sequential,
    "compute_optimal": compute_optimal,
}

#: strategies that grow a search tree (they report nodes per second)
TREE_STRATEGIES = ("beam", "dvts", "mcts")


def get_strategy(name: str) -> Callable[..., list[SearchResult]]:
    """The strategy registered as ``name``; ValueError listing the names otherwise."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


__all__ = [
    "STRATEGIES", "TREE_STRATEGIES", "get_strategy", "Ledger", "Scorer", "SearchResult", "SearchTree",
    "tree_to_json", "tree_from_json", "pass_at_k", "maj_at_k", "bootstrap_ci",
]
