"""Test-time scaling curves: every strategy at budgets 1, 2, 4, ..., 64 on one checkpoint.

    .venv/bin/python benchmarks/search.py --checkpoint runs/demo [--task mixture --problems 24 --budgets 1 2 4 8]

Without --task the checkpoint's own task is evaluated (a note on stderr says when --task names another one).

Prints one JSON line per (strategy, budget, seed): strategy, label, budget, seed, accuracy, ci_low, ci_high,
tokens_per_problem, flops_per_problem, seconds, scorer, oracle, scorer_kind, and nodes_per_second for tree
strategies. ``mcts_gumbel`` is mcts with the Gumbel + Sequential Halving root rule (``root="gumbel"``);
``until_verified_one`` is until_verified drawing one chain per round (``batch=1``: no chain drawn past the accepted
one, at the price of a round per chain).
The last line is the verdict: efficiency_vs_best_of_n (how many times fewer generated tokens per problem the best
strategy needs to reach best-of-N's top accuracy, best-of-N using the same scorer kind), ci_low and ci_high (its 95%
paired bootstrap interval over problems), strategy, scorer_kind (only verifier and learned scorers make this verdict:
with an oracle or solver scorer the factor is null and the note says so), and mcts_falls (per MCTS root rule, whether
accuracy at the largest budget is below the curve's peak beyond the paired interval), tree_vs_best_of_n (each tree
search minus best-of-N with the same scorer at best-of-N's token levels, with 95% paired intervals) and
tree_beats_best_of_n (per tree search: some level's interval lies above 0).
Without --checkpoint it trains a tiny model for --train-steps updates first (so the script always runs; a step
budget, so every host gets the same checkpoint; --max-seconds is only a safety cap, and a checkpoint it cut short
is flagged with "cut_short": true on every line).

Defaults are sized to separate strategies (100 problems, 2 seeds: a cell's interval is about +-10 points), which
takes hours on a 2-core CPU; pass --problems 24 --seeds 0 --budgets 1 2 4 8 or fewer strategies for a quick look.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass

from bench_common import SAFETY_SECONDS, sft_warmup

from qstar.config import parse_config


@dataclass
class BenchConfig:
    """Accuracy against test-time compute for every search strategy."""

    checkpoint: str = ""
    """Checkpoint (run dir or HF dir); empty: train a tiny one for --train-seconds."""
    task: str = ""
    """Task to evaluate on; empty: the one the checkpoint was trained on, else the demo's default mixture (five of its
    six families have a programmatic checker; multiplication has none, so on mult alone only the unscored strategies
    and learned scorers apply)."""
    problems: int = 100
    """Problems per (strategy, budget); fewer than 100 cannot separate strategies (+-20 points at 24)."""
    seeds: tuple[int, ...] = (0, 1)
    """Sampling seeds per cell (the problems stay the same; results pool per problem)."""
    budgets: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    """Budgets N (chains worth of compute per problem)."""
    extra_budgets: tuple[int, ...] = ()
    """Budgets beyond those that every strategy but best_of_n also runs: best-of-N's top accuracy is reached at its
    own largest budget, so a strategy that spends fewer tokens per budget needs a larger cap to reach it (the
    comparison is tokens at equal accuracy, not equal budgets)."""
    strategies: tuple[str, ...] = ()
    """Strategies to run (default: all but think, whose budget is thinking tokens rather than chains, plus
    mcts_gumbel; until_verified only with a scorer that judges something on the task)."""
    scorer: str = "cheap"
    """Scorer for the strategies that use one: none, cheap (a verifier on every task), checker (a solver on most
    tasks: a ceiling), oracle, orm, prm (learned ones need --scorer-checkpoint)."""
    scorer_checkpoint: str = ""
    """Checkpoint of a learned scorer (orm/prm/value)."""
    split: str = "test"
    """Problem split."""
    seed: int = 0
    """Seed for the problems (and the fallback checkpoint)."""
    temperature: float = 0.8
    """Sampling temperature for the sampling and tree strategies."""
    max_tokens: int = 128
    """Token cap per chain."""
    train_steps: int = 500
    """SFT updates for the fallback tiny checkpoint (only without --checkpoint; a minute or two on a 2-core machine,
    where the demo's tiny model made 2000 updates in 247 s)."""
    max_seconds: float = SAFETY_SECONDS
    """Safety cap in seconds on that fallback training (a run it stops is cut_short)."""


def tiny_checkpoint(task: str, steps: int, seed: int, max_seconds: float = SAFETY_SECONDS) -> tuple[str, dict]:
    """Train a tiny model on ``task`` for ``steps`` updates; its checkpoint dir and the warm-up's report."""
    out = tempfile.mkdtemp(prefix="qstar-bench-search-")
    return out, sft_warmup(task, out, steps=steps, max_seconds=max_seconds, preset="tiny", seed=seed,
                           eval_problems=50)


#: the strategies that search over steps (the ones a learned value guides)
TREES = ("beam", "dvts", "mcts", "mcts_gumbel")
#: pseudo-strategies: (strategy, knobs)
VARIANTS = {"mcts_gumbel": ("mcts", {"root": "gumbel"}), "until_verified_one": ("until_verified", {"batch": 1})}


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(BenchConfig, argv, prog="benchmarks/search.py")
    from qstar.lab import analysis
    from qstar.model.checkpoint import task_for
    from qstar.model.policy import load_policy
    from qstar.scorers import get_scorer, learned_kind
    from qstar.search import STRATEGIES, get_strategy, strategy_spec
    from qstar.search.options import SearchOptions
    from qstar.search.run import run_strategy
    from qstar.search.sampling import judges
    from qstar.tasks import get_task

    # think's budget is thinking tokens, not chains: its rows would sit on another scale (--strategies think runs it)
    names = list(cfg.strategies) or [s for s in STRATEGIES if s != "think"] + list(VARIANTS)
    for name in names:
        get_strategy(VARIANTS.get(name, (name,))[0])  # fail fast on a typo
    task = task_for(cfg.task, [cfg.checkpoint], default="mixture")
    checkpoint, trained = cfg.checkpoint, {}
    if not checkpoint:
        checkpoint, trained = tiny_checkpoint(task, cfg.train_steps, cfg.seed, cfg.max_seconds)
        trained = {"cut_short": trained["sft_cut_short"], "train_steps": trained["sft_steps"]}
    policy = load_policy(checkpoint, seed=cfg.seed)
    scorer = get_scorer(cfg.scorer, **({"checkpoint": cfg.scorer_checkpoint} if learned_kind(cfg.scorer) else {}))
    problems = get_task(task).generate(cfg.problems, seed=cfg.seed, split=cfg.split)
    if not cfg.strategies and not judges(scorer, problems):  # it would refuse a scorer that can accept nothing
        dropped = [n for n in names if VARIANTS.get(n, (n,))[0] == "until_verified"]
        names = [n for n in names if n not in dropped]
        print(f"note: {', '.join(dropped)} left out: scorer {cfg.scorer} judges nothing on {task}", file=sys.stderr)
    records = []
    for seed in cfg.seeds:
        for name in names:
            strategy, knobs = VARIANTS.get(name, (name, {}))
            for budget in [*cfg.budgets, *(cfg.extra_budgets if strategy != "best_of_n" else ())]:
                # --temperature is for the strategies that sample; greedy and sequential keep their temperature 0
                options = SearchOptions(temperature=None if strategy_spec(strategy).deterministic else cfg.temperature,
                                        max_tokens=cfg.max_tokens, seed=seed)
                row, rows = run_strategy(policy, scorer, problems, strategy=strategy, budget=budget, options=options,
                                         **knobs)
                print(json.dumps(row | {"strategy": name, "seed": seed, "task": task} | trained), flush=True)
                records.append(record(name, budget, seed, row, rows))
    print(json.dumps(verdict(analysis, records) | {"task": task} | trained), flush=True)
    return 0


def record(name: str, budget: int, seed: int, summary: dict, rows) -> dict:
    """One (strategy, budget, seed) run as a metrics ``test`` record (``qstar.lab.metrics``), for the analysis."""
    return {"kind": "test", "key": f"{name}/{budget}/{seed}", "model": "m", "strategy": name, "budget": budget,
            "seed": seed, "scorer": summary["scorer"], "oracle": summary["oracle"],
            "scorer_kind": summary["scorer_kind"], "problems": [f"{p.task}:{p.key}" for p, _, _ in rows],
            "outcomes": [int(bool(c)) for _, _, c in rows], "tokens": [r.ledger.generated_tokens for _, r, _ in rows],
            "flops": [r.ledger.flops for _, r, _ in rows]}


def verdict(analysis, records: list[dict]) -> dict:
    """The last line: the efficiency factor with its interval (deployable scorers only), MCTS's trend, and each tree
    search against best-of-N with the same scorer at best-of-N's token levels (a paired interval per level; a tree
    beats best-of-N where an interval lies above 0)."""
    curves = analysis.test_curves(records)
    eff = analysis.efficiency(curves)
    mcts = {label: analysis.falls(pts) for label, pts in curves.items() if pts[0]["strategy"] in ("mcts",
                                                                                                 "mcts_gumbel")}
    paired = analysis.paired_vs_baseline(curves, analysis.matched_compute(curves))
    trees = {label: [d and {k: round(d[k], 4) for k in ("tokens", "diff", "ci_low", "ci_high")} for d in diffs]
             for label, diffs in paired.items() if curves[label][0]["strategy"] in TREES}
    return {"efficiency_vs_best_of_n": eff["factor"], "ci_low": eff["ci_low"], "ci_high": eff["ci_high"],
            "strategy": eff["strategy"], "scorer_kind": eff["scorer_kind"] or records[0]["scorer_kind"],
            "target_accuracy": eff["target_accuracy"], "baseline_tokens": eff["baseline_tokens"],
            "strategy_tokens": eff["strategy_tokens"], "tokens": "generated per problem, prompt prefills not counted",
            "note": eff.get("note"), "mcts_falls": mcts,
            "tree_vs_best_of_n": trees,
            "tree_beats_best_of_n": {label: any(d and d["ci_low"] > 0 for d in ds) for label, ds in trees.items()}}


if __name__ == "__main__":
    sys.exit(main())
