"""Test-time scaling curves: every strategy at budgets 1, 2, 4, ..., 64 on one checkpoint.

    .venv/bin/python benchmarks/search.py --checkpoint runs/demo [--task mixture --problems 24 --budgets 1 2 4 8]

Without --task the checkpoint's own task is evaluated (a note on stderr says when --task names another one).

Prints one JSON line per (strategy, budget): strategy, label, budget, accuracy, ci_low, ci_high,
tokens_per_problem, flops_per_problem, seconds, scorer, oracle, and nodes_per_second for tree strategies.
Without --checkpoint it trains a tiny model for --train-seconds first (so the script always runs).

Defaults are sized for a 2-core CPU: 24 problems x 9 strategies x 7 budgets with a ~0.2-1M-parameter model takes
roughly 10-20 minutes; pass --budgets 1 2 4 8 or fewer strategies for a quick look.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass

import qstar  # noqa: F401  (thread settings before torch loads)
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
    problems: int = 24
    """Problems per (strategy, budget); 24 keeps the full sweep to minutes on 2 cores."""
    budgets: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    """Budgets N (chains worth of compute per problem)."""
    strategies: tuple[str, ...] = ()
    """Strategies to run (default: all)."""
    scorer: str = "checker"
    """Scorer for the strategies that use one: none, checker, oracle, orm, prm."""
    split: str = "test"
    """Problem split."""
    seed: int = 0
    """Seed for problems and sampling."""
    temperature: float = 0.8
    """Sampling temperature for the sampling and tree strategies."""
    max_tokens: int = 128
    """Token cap per chain."""
    train_seconds: float = 60.0
    """Training time for the fallback tiny checkpoint (only without --checkpoint)."""


def tiny_checkpoint(task: str, seconds: float, seed: int) -> str:
    """Train a tiny model on ``task`` for ``seconds`` and return its checkpoint dir."""
    from qstar.learn.sft import SFTConfig, train_sft

    out = tempfile.mkdtemp(prefix="qstar-bench-search-")
    train_sft(SFTConfig(task=task, out=out, preset="tiny", seconds=seconds, seed=seed, eval_problems=50))
    return out


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(BenchConfig, argv, prog="benchmarks/search.py")
    from qstar.model.checkpoint import task_for
    from qstar.model.policy import load_policy
    from qstar.scorers import get_scorer
    from qstar.search import STRATEGIES, get_strategy
    from qstar.search.cli import grade, summarize
    from qstar.tasks import get_task

    names = list(cfg.strategies) or list(STRATEGIES)
    for name in names:
        get_strategy(name)  # fail fast on a typo
    task = task_for(cfg.task, [cfg.checkpoint], default="mixture")
    checkpoint = cfg.checkpoint or tiny_checkpoint(task, cfg.train_seconds, cfg.seed)
    policy = load_policy(checkpoint, seed=cfg.seed)
    scorer = get_scorer(cfg.scorer)
    problems = get_task(task).generate(cfg.problems, seed=cfg.seed, split=cfg.split)
    for name in names:
        for budget in cfg.budgets:
            opts = {"max_tokens": cfg.max_tokens}
            if name not in ("greedy", "sequential"):
                opts["temperature"] = cfg.temperature
            t0 = time.perf_counter()
            results = get_strategy(name)(policy, scorer, problems, budget, **opts)
            seconds = time.perf_counter() - t0
            correct = grade(problems, results)
            row = summarize(results, correct, strategy=name, budget=budget, scorer=scorer, seconds=seconds)
            print(json.dumps(row | {"task": task}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
