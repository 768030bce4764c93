"""Parallel-sampling strategies: greedy, majority vote, best-of-N and weighted best-of-N.

Budget mapping: ``budget`` = N full chains per problem, drawn in ONE ``policy.sample`` call over all problems with
``n=N`` (the model backend shares each prompt's KV cache across the N samples). Greedy always draws one chain.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from qstar.model.types import Policy, Prompt
from qstar.search.common import Meter, rank, strategy
from qstar.search.options import SearchOptions
from qstar.search.types import Scorer, SearchResult
from qstar.tasks import extract_answer
from qstar.tasks.base import Problem


def vote(answers: Sequence[str | None], weights: Sequence[float] | None = None) -> str | None:
    """Answer with the largest total weight (default 1 each); None answers never win; NaN weights count 0.

    Ties break by vote count, then by first appearance, so the result is deterministic.

    >>> vote(["7", "5", "5", None])
    '5'
    >>> vote(["7", "5", "5"], [0.9, 0.2, 0.3])
    '7'
    """
    weights = [1.0] * len(answers) if weights is None else weights
    total: dict[str, list] = {}
    for i, (a, w) in enumerate(zip(answers, weights)):
        if a is None:
            continue
        t = total.setdefault(a, [0.0, 0, -i])
        t[0] += 0.0 if w is None or math.isnan(w) else float(w)
        t[1] += 1
    return max(total, key=lambda a: tuple(total[a])) if total else None


def draw(meter: Meter, problems: Sequence[Problem], n: int, options: SearchOptions):
    """N full chains per problem in one batched call: (chains [P][N], answers [P][N])."""
    comps = meter.sample(range(len(problems)), [Prompt(p.question) for p in problems], n=n,
                         temperature=options.temperature, top_p=options.top_p, max_tokens=options.max_tokens)
    chains = [[c.text for c in row] for row in comps]
    answers = [[extract_answer(p, t) for t in row] for p, row in zip(problems, chains)]
    return chains, answers


def _pick(problem_chains: list[str], answers: list[str | None], answer: str | None, scores: list[float]) -> int:
    """Index of the best-scoring chain that gives ``answer`` (first chain when there is no answer)."""
    idx = [i for i, a in enumerate(answers) if a == answer] or [0]
    return max(idx, key=lambda i: (rank(scores[i]), -i))


@strategy(deterministic=True)
def greedy(policy: Policy, scorer: Scorer, problems: list[Problem], budget: int,
           options: SearchOptions) -> list[SearchResult]:
    """One chain at temperature 0 per problem, whatever the budget (temperature/top_p are ignored)."""
    meter = Meter(policy, scorer, problems)
    chains, answers = draw(meter, problems, 1, dataclasses.replace(options, temperature=0.0, top_p=1.0))
    return [SearchResult(a[0], c[0], math.nan, meter.ledger(i)) for i, (c, a) in enumerate(zip(chains, answers))]


@strategy
def majority(policy: Policy, scorer: Scorer, problems: list[Problem], budget: int,
             options: SearchOptions) -> list[SearchResult]:
    """Self-consistency: N samples, the most frequent extracted answer wins. The scorer is not used."""
    meter = Meter(policy, scorer, problems)
    chains, answers = draw(meter, problems, budget, options)
    out = []
    for i, (cs, ans) in enumerate(zip(chains, answers)):
        win = vote(ans)
        j = _pick(cs, ans, win, [math.nan] * len(cs))
        out.append(SearchResult(win, cs[j], math.nan, meter.ledger(i), info={"answers": ans}))
    return out


@strategy
def best_of_n(policy: Policy, scorer: Scorer, problems: list[Problem], budget: int,
              options: SearchOptions) -> list[SearchResult]:
    """N samples, the chain with the highest outcome score wins (NaN scores rank last; ties -> first sample)."""
    return _scored(policy, scorer, problems, budget, options, weighted=False)


@strategy
def weighted_best_of_n(policy: Policy, scorer: Scorer, problems: list[Problem], budget: int,
                       options: SearchOptions) -> list[SearchResult]:
    """N samples, each votes for its answer with weight = its score; the answer with the largest sum wins
    (NaN weighs 0; all-zero weights fall back to plain majority). Chain = best-scoring chain with that answer."""
    return _scored(policy, scorer, problems, budget, options, weighted=True)


def _scored(policy, scorer, problems, budget, options: SearchOptions, *, weighted: bool) -> list[SearchResult]:
    meter = Meter(policy, scorer, problems)
    chains, answers = draw(meter, problems, budget, options)
    flat = meter.score([i for i, cs in enumerate(chains) for _ in cs], [c for cs in chains for c in cs])
    out = []
    for i, (cs, ans) in enumerate(zip(chains, answers)):
        scores, flat = flat[: len(cs)], flat[len(cs):]
        if weighted:
            win = vote(ans, scores)
            j = _pick(cs, ans, win, scores)
        else:
            j = max(range(len(cs)), key=lambda k: (rank(scores[k]), -k))
            win = ans[j]
        out.append(SearchResult(win, cs[j], scores[j], meter.ledger(i), info={"answers": ans, "scores": scores}))
    return out
