"""Does training on check-and-retry chains help, and do more thinking tokens (budget forcing) buy accuracy?

    python benchmarks/retry.py --task mult [--steps 600] [--quick]

Two models get the same training budget of ``--steps`` updates (never seconds: a slow host trains the same two
models; ``--max-seconds`` is only a safety cap, and an arm it stops early says ``"cut_short": true``), from scratch
or both from the same --init checkpoint: "plain" on
reference chains only, "retry" on reference chains mixed with ``--retry-fraction`` check-and-retry chains
(qstar.learn.retry: inline retries, Wait + re-check passes, and backtracking traces for Countdown). Both are
evaluated on the same held-out problems with the sequential strategy (mode "wait" = budget forcing, and mode
"check") at budgets 1, 2, 4 (budget 1 = plain greedy): accuracy, generated tokens per problem, and how often a
chain contains a check line.
JSON lines on stdout and OUT/results.jsonl; checkpoints in OUT/<arm>/checkpoint (reused on rerun).
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import qstar  # noqa: F401  (thread env before torch)

# isort: split
import torch
from bench_common import SAFETY_SECONDS, warn

from qstar.config import parse_config
from qstar.learn.evaluate import chain_budget
from qstar.learn.retry import mixed, parse_check, retry_examples
from qstar.learn.sft import fit
from qstar.model.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from qstar.model.model import ModelConfig, Transformer
from qstar.model.perf import configure_threads
from qstar.model.tokenizer import CharTokenizer
from qstar.runio import append_jsonl
from qstar.tasks import get_task
from qstar.tasks.format import WAIT_STEP


@dataclass
class Args:
    """With vs without check-and-retry training data, and thinking-budget scaling."""

    task: str = "mult"
    """Task name (mult, countdown, ...)."""
    out: str = "runs/bench-retry"
    """Output directory."""
    init: str = ""
    """Start both arms from this checkpoint (e.g. an SFT run) instead of fresh --preset models."""
    preset: str = "small"
    """Model size of both arms when training from scratch."""
    steps: int = 600
    """Training updates per arm. From scratch on 3x3 multiplication, Muon SFT crossed its phase change at 335-506
    updates of 32 sequences (0% -> 87%, LOG.md), so 600 updates of 64 put both arms past it."""
    max_seconds: float = SAFETY_SECONDS
    """Safety cap in seconds per arm's training (an arm it stops is cut_short)."""
    batch_size: int = 64
    """Sequences per update."""
    optimizer: str = "muon"
    """Optimizer of both arms (as `qstar train sft`; AdamW was still at 0% on 3x3 multiplication after 707
    updates, LOG.md)."""
    lr: float = 3e-3
    """Peak learning rate."""
    retry_fraction: float = 0.3
    """Share of retry chains in the "retry" arm's data."""
    eval_problems: int = 300
    """Held-out problems."""
    budgets: tuple[int, ...] = (1, 2, 4)
    """Sequential-strategy budgets (1 = no forcing)."""
    seed: int = 0
    """Seed (same initial weights and problem stream for both arms)."""
    quick: bool = False
    """Toy size for a smoke test (tiny preset, 20 updates, 20 problems, budgets 1 and 2): no figure to read."""


#: what ``--quick`` changes
QUICK = {"preset": "tiny", "steps": 20, "batch_size": 16, "eval_problems": 20, "budgets": (1, 2)}


def log(rec: dict, out: Path) -> None:
    rec = {"bench": "retry", **rec}
    print(json.dumps(rec), flush=True)
    append_jsonl(out / "results.jsonl", rec)


def reference_source(task, seed: int):
    buf: list = []
    state = [seed * 7919]

    def draw(rng: random.Random):
        if not buf:
            state[0] += 1
            buf.extend(task.generate(512, seed=state[0], split="train"))
        p = buf.pop()
        return p.question, task.reference(p)

    return draw


def train_arm(args: Args, task, arm: str, out: Path):
    ckpt = out / arm / "checkpoint"
    if (ckpt / "config.json").exists():
        return load_checkpoint(ckpt)[:2]
    torch.manual_seed(args.seed)
    if args.init:
        model, tok, _ = load_checkpoint(resolve_checkpoint(args.init))
    else:
        model, tok = Transformer(ModelConfig.preset(args.preset)), CharTokenizer()
    source = reference_source(task, args.seed)
    if arm == "retry":
        kinds = ("retry", "wait_ok", "wait_fix") + (("backtrack",) if task.name == "countdown" else ())
        source = mixed(source, retry_examples(task, kinds=kinds, seed=args.seed), args.retry_fraction)
    stats = fit(model, tok, source, seconds=args.max_seconds, steps=args.steps, lr=args.lr,
                batch_size=args.batch_size, seed=args.seed, optimizer=args.optimizer)
    stats.pop("optimizer", None)
    if stats["cut_short"]:
        warn(f"arm {arm}: training stopped at its safety cap after {stats['steps']} of {args.steps} updates")
    save_checkpoint(ckpt, model, tok, meta={"stage": f"retry-bench-{arm}", "metrics": stats})
    log({"what": "train", "arm": arm, **stats}, out)
    return model, tok


def main(args: Args) -> None:
    from qstar.model.policy import ModelPolicy
    from qstar.scorers import get_scorer
    from qstar.search import get_strategy

    configure_threads()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task = get_task(args.task)
    problems = task.generate(args.eval_problems, seed=args.seed, split="test")
    max_tokens = chain_budget(task, problems) * 2  # room for check lines
    for arm in ("plain", "retry"):
        model, tok = train_arm(args, task, arm, out)
        policy = ModelPolicy(model, tok)
        for mode in ("wait", "check"):
            for budget in args.budgets:
                if mode == "check" and budget == 1:
                    continue  # identical to wait at budget 1 (no forcing)
                res = get_strategy("sequential")(policy, get_scorer("none"), problems, budget, mode=mode,
                                                  max_tokens=max_tokens)
                right = [bool(task.verify(p, r.answer)) for p, r in zip(problems, res)]
                verdicts = [[parse_check(line) for line in r.chain.split("\n")] for r in res]
                checks = [any(v is not None for v in vs) for vs in verdicts]
                caught = [any(v is not None and not v[1] for v in vs) for vs in verdicts]
                log({"what": "eval", "arm": arm, "mode": mode, "budget": budget,
                     "accuracy": sum(right) / len(right),
                     "tokens_per_problem": sum(r.ledger.generated_tokens for r in res) / len(res),
                     "chains_with_check": sum(checks) / len(res), "chains_with_failed_check": sum(caught) / len(res),
                     "chains_with_wait": sum(WAIT_STEP + "\n" in r.chain for r in res) / len(res),
                     "problems": len(res)}, out)


if __name__ == "__main__":
    a = parse_config(Args, sys.argv[1:], prog="benchmarks/retry.py")
    a = replace(a, **QUICK) if a.quick else a
    if a.steps < 1:
        raise SystemExit("benchmarks/retry.py: --steps must be >= 1 (both arms train for a number of updates)")
    main(a)
