"""Compute-optimal test-time scaling (Snell et al. 2024): spend the budget per problem where it helps.

1) Probe: ``probe`` cheap samples per problem (one batched call, scored by the scorer).
2) Difficulty from the probe alone (no gold answer): confidence = agreement (share of samples giving the most
   common answer); when the scorer discriminates (its probe scores are not all equal) confidence is the mean of
   agreement and the mode answer's mean score. confidence >= ``easy_at`` -> "easy", >= ``hard_below`` -> "medium",
   else "hard".
3) Policy table ``TABLE`` (bin -> strategy, weight): easy problems stop at the probe's (weighted) vote; the rest of
   the total budget, ``(budget - probe) * problems`` chains, is split over medium and hard problems in proportion to
   their weights, each rounded down to a power of two and capped at ``max_factor * budget`` (so one hard problem
   cannot take everything). Unspent budget is reported, never silently used.
4) Each (strategy, budget) group runs once, batched. The probe's vote stands when the strategy finds no answer.

Budget mapping: ``budget`` = N chains per problem ON AVERAGE over the batch; the ledger shows what each problem
actually got (probe included). Snell et al. find beam search better on hard problems at small budgets and best-of-N
(here: weighted best-of-N) better on easier ones, which is what the default table encodes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from qstar.model.types import Policy
from qstar.search.common import Meter, rank, strategy
from qstar.search.options import SearchOptions
from qstar.search.registry import strategy_spec
from qstar.search.sampling import draw, vote
from qstar.search.types import Scorer, SearchResult
from qstar.tasks.base import Problem

#: difficulty bin -> (strategy name or "stop", share weight of the remaining budget)
TABLE: dict[str, tuple[str, float]] = {
    "easy": ("stop", 0.0),
    "medium": ("weighted_best_of_n", 1.0),
    "hard": ("beam", 2.0),
}


def difficulty(answers: Sequence[str | None], scores: Sequence[float], *, easy_at: float = 0.75,
               hard_below: float = 0.4) -> tuple[str, float]:
    """(bin, confidence) of one problem from its probe samples' answers and scores.

    >>> difficulty(["3", "3", "3", "4"], [0.5] * 4)
    ('easy', 0.75)
    >>> difficulty(["3", None, "5", "4"], [0.25, 0.0, 0.0, 0.0])  # agreement .25, mode's score .25
    ('hard', 0.25)
    """
    mode = vote(answers)
    agree = sum(a == mode for a in answers) / len(answers) if mode is not None else 0.0
    finite = [s for s in scores if not math.isnan(s)]
    informative = len(set(finite)) > 1
    conf = agree
    if informative and mode is not None:
        mine = [0.0 if math.isnan(s) else s for a, s in zip(answers, scores) if a == mode]
        conf = 0.5 * (agree + sum(mine) / len(mine))
    return ("easy" if conf >= easy_at else "medium" if conf >= hard_below else "hard"), conf


def allocate(bins: Sequence[str], spare: int, budget: int, *, table: dict = TABLE, max_factor: int = 4) -> list[int]:
    """Extra chains per problem: ``spare`` split by table weights, floored to a power of two, capped.

    >>> allocate(["easy", "medium", "hard"], 12, 4)
    [0, 4, 8]
    """
    weights = [table[b][1] for b in bins]
    total = sum(weights)
    out = []
    for w in weights:
        share = min(spare * w / total if total else 0.0, max_factor * budget)
        out.append(2 ** int(math.log2(share)) if share >= 1 else 0)
    return out


@strategy
def compute_optimal(policy: Policy, scorer: Scorer, problems: list[Problem], budget: int, options: SearchOptions, *,
                    probe: int = 4, table: dict | None = None, easy_at: float = 0.75, hard_below: float = 0.4,
                    max_factor: int = 4, **tree_knobs) -> list[SearchResult]:
    """Probe, bin by estimated difficulty, then run the table's strategy per bin; see the module docstring.
    Every strategy it runs gets its ``options``; ``tree_knobs`` go to the tree strategies (e.g. ``width``,
    ``aggregation``)."""
    table = TABLE if table is None else table
    for b in ("easy", "medium", "hard"):
        if b not in table:
            raise ValueError(f"compute_optimal table needs bins easy, medium, hard; got {sorted(table)}")
    n_probe = max(1, min(probe, budget // 2 or 1))
    meter = Meter(policy, scorer, problems)
    chains, answers = draw(meter, problems, n_probe, options)
    flat = meter.score([i for i, cs in enumerate(chains) for _ in cs], [c for cs in chains for c in cs])
    scores = [flat[i * n_probe:(i + 1) * n_probe] for i in range(len(problems))]
    graded = [difficulty(a, s, easy_at=easy_at, hard_below=hard_below) for a, s in zip(answers, scores)]
    extra = allocate([g for g, _ in graded], (budget - n_probe) * len(problems), budget, table=table,
                     max_factor=max_factor)
    out: list[SearchResult] = []
    for i in range(len(problems)):
        win = vote(answers[i], scores[i])
        j = max((k for k in range(n_probe) if answers[i][k] == win), key=lambda k: rank(scores[i][k]), default=0)
        out.append(SearchResult(win, chains[i][j], scores[i][j], meter.ledger(i), info={
            "strategy": "compute_optimal", "difficulty": graded[i][0], "confidence": round(graded[i][1], 4),
            "chosen": "stop", "extra_budget": 0, "probe": n_probe}))
    groups: dict[tuple[str, int], list[int]] = {}
    for i, ((level, _), b) in enumerate(zip(graded, extra)):
        name = table[level][0]
        if name != "stop" and b > 0:
            groups.setdefault((name, b), []).append(i)
    for (name, b), idx in sorted(groups.items()):
        spec = strategy_spec(name)
        knobs = tree_knobs if spec.tree else {}
        for i, r in zip(idx, spec.fn(policy, scorer, [problems[i] for i in idx], b, options=options, **knobs)):
            base = out[i]
            r.ledger.add(base.ledger)
            r.info.update({k: v for k, v in base.info.items() if k != "strategy"}, chosen=name, extra_budget=b)
            r.info["strategy"] = "compute_optimal"
            if r.answer is None:  # the search found nothing: keep the probe's answer
                r.answer, r.chain, r.score = base.answer, base.chain, base.score
            out[i] = r
    spent = sum(extra[i] for idxs in groups.values() for i in idxs)
    for r in out:
        r.info["unspent_budget"] = (budget - n_probe) * len(problems) - spent
    return out
