"""Run one strategy at one budget on problems and say what it bought: ``run_strategy`` -> (summary, rows).

``qstar search``, ``qstar sweep``, ``qstar serve`` and the benchmarks all run strategies through it. Accuracy always
uses the task's exact verifier; that is evaluation, not selection. Questions without a gold answer (served ones)
are not graded: their rows say ``correct=None`` and the summary has no accuracy.

The summary: strategy, label, budget, accuracy, ci_low, ci_high (95% bootstrap over problems), tokens_per_problem
(generated + prompt tokens the policy processed), generated_per_problem, flops_per_problem, seconds, scorer, oracle,
scorer_kind (``qstar.scorers.kinds``: oracle, solver, verifier or learned), no_answer, problems, and
nodes_per_second for tree strategies. Selection by an oracle scorer reads the gold answer: such runs carry
``"oracle": true`` and a label ending in "[ORACLE selection]".
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import NamedTuple

from qstar.model.types import Policy
from qstar.search.estimators import bootstrap_ci
from qstar.search.options import SearchOptions
from qstar.search.registry import STRATEGIES, check_knobs, strategy_spec
from qstar.search.types import Scorer, SearchResult
from qstar.tasks.base import Problem


class Row(NamedTuple):
    """One problem's outcome: the problem, the strategy's result, and whether its answer is right (None: ungraded)."""

    problem: Problem
    result: SearchResult
    correct: bool | None


def run_strategy(policy: Policy, scorer: Scorer, problems: Sequence[Problem], *, strategy: str, budget: int,
                 options: SearchOptions | None = None, graded: bool = True, **knobs) -> tuple[dict, list[Row]]:
    """Run ``strategy`` at ``budget`` on ``problems``; returns (summary, one Row per problem).

    options: sampling and limits (keywords naming SearchOptions fields override them); ``options.seed``, when set,
    restarts the policy's own sampling stream (``reseed``, where it has one) and seeds torch's and Python's global
    RNGs right before the strategy runs. knobs: the strategy's own options
    (ValueError for one it does not take, see ``strategy_knobs``). graded: grade each answer against its problem's
    gold answer; False for questions that have none.
    """
    spec = strategy_spec(strategy)
    options, knobs = (options or SearchOptions()).split(knobs)
    check_knobs(strategy, knobs)
    if options.seed is not None:
        import torch

        torch.manual_seed(options.seed)
        random.seed(options.seed)
        if hasattr(policy, "reseed"):
            policy.reseed(options.seed)
    t0 = time.perf_counter()
    results = spec.fn(policy, scorer, problems, budget, options=options, **knobs)
    seconds = time.perf_counter() - t0
    correct = [verify(p, r.answer) for p, r in zip(problems, results)] if graded else None
    summary = summarize(results, correct, strategy=strategy, budget=budget, scorer=scorer, seconds=seconds)
    summary["scorer_kind"] = scorer_kind(scorer, problems)
    kinds = {t: scorer_kind(scorer, [p for p in problems if p.task == t]) for t in {p.task for p in problems}}
    for p, r in zip(problems, results):
        r.info["scorer_kind"] = kinds[p.task]  # results.jsonl carries it per problem
    return summary, [Row(p, r, c) for p, r, c in zip(problems, results, correct or [None] * len(results))]


def scorer_kind(scorer, problems: Sequence[Problem]) -> str:
    """What the scorer knows on these problems' tasks (``qstar.scorers.kinds``): oracle, solver, verifier or learned.
    A scorer object with no declared kind (a scripted fake) is reported as "unknown"."""
    from qstar.scorers.kinds import kind_over

    try:
        return kind_over(scorer, {p.task for p in problems})
    except ValueError:
        return "unknown"


def verify(problem: Problem, answer: str | None) -> bool:
    """Exact verification of an answer (evaluation only, never selection): the task's own ``accepts``."""
    from qstar.tasks import task_of

    return task_of(problem.task).accepts(problem, answer)


def label(strategy: str, scorer) -> str:
    """Strategy label for tables and charts; oracle-selected runs say so."""
    return f"{strategy}+{scorer.name}" + (" [ORACLE selection]" if scorer.oracle else "")


def summarize(results: Sequence[SearchResult], correct: Sequence[bool] | None, *, strategy: str, budget: int, scorer,
              seconds: float) -> dict:
    """Accuracy with a bootstrap CI (none when ``correct`` is None) and compute per problem (tokens, FLOPs) for one
    (strategy, budget) run."""
    n = len(results)
    if n == 0:
        raise ValueError("no results to summarize")
    out = {"strategy": strategy, "label": label(strategy, scorer), "budget": budget}
    if correct is not None:
        acc = [float(c) for c in correct]
        lo, hi = bootstrap_ci(acc)
        out |= {"accuracy": sum(acc) / n, "ci_low": lo, "ci_high": hi}
    out |= {
        "tokens_per_problem": sum(r.ledger.generated_tokens + r.ledger.prompt_tokens for r in results) / n,
        "generated_per_problem": sum(r.ledger.generated_tokens for r in results) / n,
        "flops_per_problem": sum(r.ledger.flops for r in results) / n,
        "seconds": seconds, "scorer": scorer.name, "oracle": bool(scorer.oracle),
        "no_answer": sum(r.answer is None for r in results) / n, "problems": n,
    }
    if strategy in STRATEGIES and STRATEGIES[strategy].tree:
        nodes = sum(r.info.get("nodes", 0) for r in results)
        out["nodes_per_second"] = nodes / seconds if seconds > 0 else None
    return out
