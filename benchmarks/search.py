"""Test-time scaling curves: every strategy at budgets 1, 2, 4, ..., 64 on one checkpoint.

    .venv/bin/python benchmarks/search.py --checkpoint runs/demo [--task mixture --problems 24 --budgets 1 2 4 8]

Without --task the checkpoint's own task is evaluated (a note on stderr says when --task names another one).

Prints one JSON line per (strategy, budget): strategy, label, budget, accuracy, ci_low, ci_high,
tokens_per_problem, flops_per_problem, seconds, scorer, oracle, and nodes_per_second for tree strategies.
Without --checkpoint it trains a tiny model for --train-steps updates first (so the script always runs; a step
budget, so every host gets the same checkpoint; --max-seconds is only a safety cap, and a checkpoint it cut short
is flagged with "cut_short": true on every line).

Defaults are sized for a 2-core CPU: 24 problems x 9 strategies x 7 budgets with a ~0.2-1M-parameter model takes
roughly 10-20 minutes; pass --budgets 1 2 4 8 or fewer strategies for a quick look.
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
    problems: int = 24
    """Problems per (strategy, budget); 24 keeps the full sweep to minutes on 2 cores."""
    budgets: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    """Budgets N (chains worth of compute per problem)."""
    strategies: tuple[str, ...] = ()
    """Strategies to run (default: all but think, whose budget is thinking tokens rather than chains)."""
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


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(BenchConfig, argv, prog="benchmarks/search.py")
    from qstar.model.checkpoint import task_for
    from qstar.model.policy import load_policy
    from qstar.scorers import get_scorer
    from qstar.search import STRATEGIES, get_strategy, strategy_spec
    from qstar.search.options import SearchOptions
    from qstar.search.run import run_strategy
    from qstar.tasks import get_task

    # think's budget is thinking tokens, not chains: its rows would sit on another scale (--strategies think runs it)
    names = list(cfg.strategies) or [s for s in STRATEGIES if s != "think"]
    for name in names:
        get_strategy(name)  # fail fast on a typo
    task = task_for(cfg.task, [cfg.checkpoint], default="mixture")
    checkpoint, trained = cfg.checkpoint, {}
    if not checkpoint:
        checkpoint, trained = tiny_checkpoint(task, cfg.train_steps, cfg.seed, cfg.max_seconds)
        trained = {"cut_short": trained["sft_cut_short"], "train_steps": trained["sft_steps"]}
    policy = load_policy(checkpoint, seed=cfg.seed)
    scorer = get_scorer(cfg.scorer)
    problems = get_task(task).generate(cfg.problems, seed=cfg.seed, split=cfg.split)
    for name in names:
        for budget in cfg.budgets:
            # --temperature is for the strategies that sample; greedy and sequential keep their temperature 0
            options = SearchOptions(temperature=None if strategy_spec(name).deterministic else cfg.temperature,
                                    max_tokens=cfg.max_tokens)
            row, _ = run_strategy(policy, scorer, problems, strategy=name, budget=budget, options=options)
            print(json.dumps(row | {"task": task} | trained), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
