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

Fitted tables (``fit_table``, ``qstar fit compute-optimal``): a sweep of candidate (strategy, budget) cells on a
validation set (the train split: disjoint from the test problems by construction) picks, per difficulty bin, the
cheapest candidate (fewest generated tokens per problem) within ``tolerance`` of the bin's best validation accuracy,
the probe's own vote ("stop") included. The table is saved as ``compute_optimal.json`` in the checkpoint directory
(``table_path``) and ``qstar search`` loads it when present; its budgets become the weights the spare budget is split
by (a table fitted at one average budget carries its proportions to another). A table fitted on another task, or
malformed, is a clear error, said once on stderr, and the hand-written ``TABLE`` is used instead.

Budget mapping: ``budget`` = N chains per problem ON AVERAGE over the batch; the ledger shows what each problem
actually got (probe included). Snell et al. find beam search better on hard problems at small budgets and best-of-N
(here: weighted best-of-N) better on easier ones, which is what the default table encodes.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qstar.model.types import Policy
from qstar.search.common import Meter, rank, strategy
from qstar.search.options import SearchOptions
from qstar.search.registry import strategy_spec
from qstar.search.sampling import draw, vote
from qstar.search.types import Scorer, SearchResult
from qstar.tasks.base import Problem

BINS = ("easy", "medium", "hard")
TABLE_FILE = "compute_optimal.json"
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
    source = "hand" if table is None else "fitted" if isinstance(table, (str, Path)) else "given"
    if isinstance(table, (str, Path)):
        table = load_table_or_hand(table, {p.task for p in problems})
    table = TABLE if table is None else table
    for b in BINS:
        if b not in table:
            raise ValueError(f"compute_optimal table needs bins easy, medium, hard; got {sorted(table)}")
    n_probe = max(1, min(probe, budget // 2 or 1))
    meter = Meter(policy, scorer, problems)
    chains, answers, scores, graded = _probe(meter, problems, n_probe, options, easy_at=easy_at,
                                             hard_below=hard_below)
    extra = allocate([g for g, _ in graded], (budget - n_probe) * len(problems), budget, table=table,
                     max_factor=max_factor)
    out: list[SearchResult] = []
    for i in range(len(problems)):
        win = vote(answers[i], scores[i])
        j = max((k for k in range(n_probe) if answers[i][k] == win), key=lambda k: rank(scores[i][k]), default=0)
        out.append(SearchResult(win, chains[i][j], scores[i][j], meter.ledger(i), info={
            "strategy": "compute_optimal", "difficulty": graded[i][0], "confidence": round(graded[i][1], 4),
            "chosen": "stop", "extra_budget": 0, "probe": n_probe,
            "table": source if table is not TABLE or source == "hand" else "hand (fallback)"}))
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


def _probe(meter: Meter, problems: Sequence[Problem], n_probe: int, options: SearchOptions, *, easy_at: float,
           hard_below: float):
    """The probe: (chains [P][n], answers [P][n], scores [P][n], (bin, confidence) [P])."""
    chains, answers = draw(meter, problems, n_probe, options)
    flat = meter.score([i for i, cs in enumerate(chains) for _ in cs], [c for cs in chains for c in cs])
    scores = [flat[i * n_probe:(i + 1) * n_probe] for i in range(len(problems))]
    graded = [difficulty(a, s, easy_at=easy_at, hard_below=hard_below) for a, s in zip(answers, scores)]
    return chains, answers, scores, graded


# ----------------------------------------------------------------------------------------------- fitted tables


def fit_table(bins: Sequence[str], stop: Sequence[bool], cells: dict[tuple[str, int], tuple[Sequence[bool],
              Sequence[float]]], *, tolerance: float = 0.02) -> dict:
    """Fit bin -> (strategy, budget) from a validation sweep.

    bins: each validation problem's difficulty bin (from the probe, as at test time). stop: whether the probe's vote
    was right per problem (the "stop" candidate, no extra tokens). cells: (strategy, budget) -> (right per problem,
    generated tokens per problem). Per bin, the candidate with the fewest mean tokens among those within
    ``tolerance`` of the bin's best accuracy (ties: smaller budget, then name). A bin without validation problems
    keeps the hand table's entry. Returns {"table": {bin: [strategy, budget]}, "fit": {bin: what was measured}}.

    >>> fit_table(["easy", "hard"], [True, False], {("beam", 4): ([True, True], [80.0, 90.0])})["table"]
    {'easy': ['stop', 0], 'medium': ['weighted_best_of_n', 1.0], 'hard': ['beam', 4]}
    """
    table, fit = {}, {}
    for b in BINS:
        idx = [i for i, x in enumerate(bins) if x == b]
        if not idx:
            table[b] = list(TABLE[b])
            fit[b] = {"problems": 0, "note": "no validation problem fell in this bin: the hand table's entry"}
            continue
        cands = [("stop", 0, sum(stop[i] for i in idx) / len(idx), 0.0)]
        for (name, budget), (right, tokens) in sorted(cells.items()):
            cands.append((name, budget, sum(right[i] for i in idx) / len(idx), sum(tokens[i] for i in idx) / len(idx)))
        best = max(c[2] for c in cands)
        name, budget, acc, tok = min((c for c in cands if c[2] >= best - tolerance), key=lambda c: (c[3], c[1], c[0]))
        table[b] = [name, budget]
        fit[b] = {"problems": len(idx), "accuracy": acc, "tokens_per_problem": tok, "best_accuracy": best,
                  "candidates": {f"{n}/{k}": {"accuracy": a, "tokens_per_problem": t} for n, k, a, t in cands}}
    return {"table": table, "fit": fit}


class TableError(ValueError):
    """A fitted compute-optimal table that cannot be used here (another task, a malformed file)."""


def table_path(checkpoint: str | Path) -> Path:
    """Where a checkpoint's fitted table lives: ``compute_optimal.json`` in its checkpoint directory."""
    from qstar.model.checkpoint import resolve_checkpoint

    return resolve_checkpoint(checkpoint) / TABLE_FILE


def load_table(path: str | Path, tasks: set[str]) -> dict[str, tuple[str, float]]:
    """The fitted table at ``path`` for problems of ``tasks``; TableError saying why it does not fit them."""
    from qstar.scorers.kinds import components

    try:
        doc = json.loads(Path(path).read_text())
        fitted_on, raw = doc["task"], doc["table"]
        table = {b: (str(raw[b][0]), float(raw[b][1])) for b in BINS}
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise TableError(f"{path}: not a fitted compute-optimal table ({type(e).__name__}: {e})") from None
    stray = sorted(t for t in tasks if t not in components(fitted_on))
    if stray:
        raise TableError(f"{path}: fitted on task {fitted_on!r}, not on {', '.join(stray)}")
    for name, weight in table.values():
        try:
            nested = name != "stop" and strategy_spec(name).forwards  # compute_optimal inside itself
        except ValueError as e:
            raise TableError(f"{path}: {e}") from None
        if nested or weight < 0:
            raise TableError(f"{path}: entry ({name!r}, {weight}) cannot run inside compute_optimal")
    return table


_SAID: set[str] = set()


def load_table_or_hand(path: str | Path, tasks: set[str]) -> dict[str, tuple[str, float]]:
    """``load_table``, or the hand-written TABLE with the reason on stderr (once per reason per process)."""
    try:
        return load_table(path, tasks)
    except TableError as e:
        if str(e) not in _SAID:
            _SAID.add(str(e))
            print(f"compute_optimal: {e}; using the hand-written table", file=sys.stderr)
        return TABLE


@dataclass
class FitConfig:
    """Fit compute_optimal's difficulty-bin -> (strategy, budget) table on validation problems and save it beside
    the checkpoint."""

    checkpoint: str = ""
    """Checkpoint (run dir or HF dir) whose table is fitted; the table is written into its checkpoint directory."""
    task: str = ""
    """Task; empty: the checkpoint's own, else mult."""
    scorer: str = "cheap"
    """Scorer compute_optimal will run with (the probe's scores decide the bins)."""
    scorer_checkpoint: str = ""
    """Checkpoint of a learned scorer (orm/prm/value only)."""
    problems: int = 100
    """Validation problems (the train split, disjoint from the test problems)."""
    seed: int = 1
    """Seed of the validation problems and of sampling."""
    strategies: list[str] = field(default_factory=lambda: ["majority", "weighted_best_of_n", "beam"])
    """Candidate strategies per bin (besides stopping at the probe's vote)."""
    budgets: list[int] = field(default_factory=lambda: [2, 4, 8, 16])
    """Candidate budgets per strategy."""
    probe: int = 4
    """Probe samples per problem (as compute_optimal's --options probe)."""
    tolerance: float = 0.02
    """A cheaper candidate wins when its bin accuracy is within this of the best."""
    temperature: float = 0.8
    """Sampling temperature."""
    max_tokens: int = 256
    """Token cap per chain."""
    out: str = ""
    """Where to write the table; empty: compute_optimal.json in the checkpoint directory."""


def fit_compute_optimal(cfg: FitConfig) -> dict:
    """Run the probe and every candidate cell on the validation problems, fit, write the table atomically."""
    from qstar.model.checkpoint import task_for
    from qstar.model.policy import load_policy
    from qstar.runio import atomic_write_json
    from qstar.scorers import get_scorer, kind_over, learned_kind
    from qstar.search.run import run_strategy, verify
    from qstar.tasks import get_task

    if not cfg.checkpoint or cfg.problems < 1:
        raise ValueError("--checkpoint is required and --problems must be >= 1")
    task = task_for(cfg.task, [cfg.checkpoint], default="mult")
    problems = get_task(task).generate(cfg.problems, seed=cfg.seed, split="train")
    policy = load_policy(cfg.checkpoint, seed=cfg.seed)
    scorer = get_scorer(cfg.scorer, **({"checkpoint": cfg.scorer_checkpoint} if learned_kind(cfg.scorer) else {}))
    options = SearchOptions(temperature=cfg.temperature, max_tokens=cfg.max_tokens, seed=cfg.seed)
    _, answers, scores, graded = _probe(Meter(policy, scorer, problems), problems, cfg.probe, options,
                                        easy_at=0.75, hard_below=0.4)
    stop = [verify(p, vote(a, s)) for p, a, s in zip(problems, answers, scores)]
    cells = {}
    for name in cfg.strategies:
        for budget in cfg.budgets:
            _, rows = run_strategy(policy, scorer, problems, strategy=name, budget=budget, options=options)
            cells[(name, budget)] = ([bool(c) for _, _, c in rows], [r.ledger.generated_tokens for _, r, _ in rows])
    doc = fit_table([g for g, _ in graded], stop, cells, tolerance=cfg.tolerance)
    doc = {"task": task, "scorer": cfg.scorer, "scorer_kind": kind_over(scorer, {p.task for p in problems}),
           "probe": cfg.probe, "validation": {"split": "train", "problems": cfg.problems, "seed": cfg.seed}, **doc}
    out = Path(cfg.out) if cfg.out else table_path(cfg.checkpoint)
    atomic_write_json(out, doc)
    print(json.dumps({"table": doc["table"], "out": str(out)}))
    return doc
