"""Test-time compute: every strategy is ``f(policy, scorer, problems, budget, **options) -> list[SearchResult]``.

``budget`` is N, the number of full-chain samples worth of compute per problem; each strategy's module docstring
says how it maps N (samples, beams, subtrees, simulations, forced continuations; ``think``: thinking tokens, see
``qstar.search.effort`` for the reasoning-effort levels built on it). Each result carries a ``Ledger``
(tokens, FLOPs, seconds) and, for tree strategies, the tree as JSON (``qstar.search.nodes``).

The options are the sampling settings and limits every strategy shares (``SearchOptions``: temperature, top_p,
max_tokens, max_step_tokens, max_steps, seed; as ``options=`` or as plain keywords) and the strategy's own knobs
(``strategy_knobs(name)``). ``run_strategy`` runs one on problems and returns a summary and per-problem rows.

    from qstar.search import SearchOptions, get_strategy
    from qstar.scorers import get_scorer
    results = get_strategy("beam")(policy, get_scorer("checker"), problems, 8, options=SearchOptions(max_steps=12),
                                   aggregation="min")
"""

from __future__ import annotations

from qstar.search.compute_optimal import compute_optimal
from qstar.search.estimators import bootstrap_ci, maj_at_k, pass_at_k
from qstar.search.mcts import mcts
from qstar.search.nodes import SearchTree, tree_from_json, tree_to_json
from qstar.search.options import SearchOptions
from qstar.search.registry import STRATEGIES, StrategySpec, get_strategy, register, strategy_knobs, strategy_spec
from qstar.search.sampling import best_of_n, greedy, majority, until_verified, weighted_best_of_n
from qstar.search.sequential import sequential
from qstar.search.thinking import think
from qstar.search.tree import beam, dvts
from qstar.search.types import Ledger, Scorer, SearchResult

# the registry, in this order (names in error messages, default benchmark order)
for _fn in (greedy, majority, best_of_n, weighted_best_of_n, until_verified, beam, dvts, mcts, sequential, think,
            compute_optimal):
    register(_fn)

__all__ = [
    "STRATEGIES", "StrategySpec", "SearchOptions", "get_strategy", "strategy_spec", "strategy_knobs", "Ledger",
    "Scorer", "SearchResult", "SearchTree", "tree_to_json", "tree_from_json", "pass_at_k", "maj_at_k", "bootstrap_ci",
]
