"""``qstar search``: run one strategy at one budget on a checkpoint and write what it bought.

OUT/summary.json: ``qstar.search.run.summarize``'s summary (accuracy with a 95% bootstrap CI, tokens, FLOPs, seconds,
scorer, oracle, ...) plus task, split, checkpoint and seed.
OUT/results.jsonl: one line per problem: question, gold, answer, correct, chain, score, ledger, info, tree.

Accuracy always uses the task's exact verifier; that is evaluation, not selection. Selection by the "oracle" scorer
reads the gold answer: such runs carry ``"oracle": true`` and a label ending in "[ORACLE selection]".

``--reasoning-effort LEVEL`` runs that level of the effort table (``qstar.search.effort``) instead of
--strategy/--budget/--scorer; ``--max-thinking-tokens N`` runs ``think`` at N thinking tokens (clamped to the
model's context, with a note on stderr and in the summary's ``notes``).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qstar.search.effort import Effort, capped, effort_of
from qstar.search.options import SearchOptions
from qstar.search.registry import strategy_spec
from qstar.search.run import Row, run_strategy
from qstar.search.thinking import context_length, thinking_budget

__all__ = ["SearchConfig", "run_search", "write_outputs", "chosen_effort"]


@dataclass
class SearchConfig:
    """Run a test-time search strategy on a checkpoint and report accuracy against compute."""

    checkpoint: str = ""
    """Checkpoint: a run dir (with checkpoint/) or a Hugging Face model dir."""
    task: str = ""
    """Task name (see `qstar tasks`); empty: the task the checkpoint was trained on, else mult."""
    strategy: str = "majority"
    """greedy, majority, best_of_n, weighted_best_of_n, until_verified, beam, dvts, mcts, sequential, think or
    compute_optimal."""
    budget: int = 4
    """N: full-chain samples worth of compute per problem (beams, subtrees, simulations, forced continuations;
    think: thinking tokens)."""
    reasoning_effort: str = ""
    """Run an effort level instead of --strategy/--budget/--scorer: none, minimal, low, medium, high or xhigh (the
    table in qstar.search.effort; e.g. medium = think with 128 thinking tokens)."""
    max_thinking_tokens: int | None = None
    """Run think with this thinking budget in tokens instead of --strategy/--budget (with --reasoning-effort: that
    level's think knobs, e.g. xhigh's 4 chains); clamped to the model's context, with a note."""
    problems: int = 50
    """How many problems of the split to solve."""
    out: str = "runs/search"
    """Output directory for summary.json and results.jsonl."""
    scorer: str = "checker"
    """Verifier guiding selection: none, cheap (checks that verify without solving again), checker (a solver on most
    tasks: it recomputes the answer from the question, a ceiling), oracle (reads the gold answer: analysis only),
    orm, prm; summary.json's scorer_kind says which kind it was on this task."""
    scorer_checkpoint: str = ""
    """Checkpoint of a learned scorer (orm, prm or value; with checker+prm, cheap+prm, ... the learned part)."""
    seed: int = 0
    """Seed for problem generation and sampling."""
    temperature: float = 0.8
    """Sampling temperature (greedy and sequential default to 0)."""
    split: str = "test"
    """Problem split: train, test or ood."""
    max_tokens: int = 256
    """Token cap per chain (steps of tree strategies are capped separately)."""
    options: str = ""
    """Extra strategy options as JSON, e.g. '{"aggregation": "min", "width": 4}'."""
    decode_dtype: str = "float32"
    """Sampling dtype: float32 or bfloat16 (bf16 weights and KV cache: faster at large batch on CPUs with native bf16,
    with logprobs slightly off fp32's; benchmarks/sampler.py, LOG.md)."""


def run_search(cfg: SearchConfig) -> dict:
    """Run ``cfg`` and write OUT/summary.json + OUT/results.jsonl; returns the summary."""
    from qstar.model.checkpoint import task_for
    from qstar.model.policy import load_policy
    from qstar.scorers import get_scorer, learned_kind
    from qstar.tasks import get_task

    effort = chosen_effort(cfg)
    strategy, budget, scorer_name = (effort.strategy, effort.budget, effort.scorer) if effort else \
        (cfg.strategy, cfg.budget, cfg.scorer)
    spec = strategy_spec(strategy)
    if (budget < 1 and strategy != "think") or cfg.problems < 1:
        raise ValueError(f"--budget and --problems must be >= 1 (got {budget}, {cfg.problems})")
    if not cfg.checkpoint:
        raise ValueError("--checkpoint is required (a run dir or a Hugging Face model dir)")
    try:
        options = json.loads(cfg.options) if cfg.options else {}
    except json.JSONDecodeError as e:
        raise ValueError(f"--options must be a JSON object: {e}") from None
    if not isinstance(options, dict):
        raise ValueError("--options must be a JSON object")
    scorer = get_scorer(scorer_name, **({"checkpoint": cfg.scorer_checkpoint} if learned_kind(scorer_name) else {}))
    task_name = task_for(cfg.task, [cfg.checkpoint], default="mult")
    problems = get_task(task_name).generate(cfg.problems, seed=cfg.seed, split=cfg.split)
    policy = load_policy(cfg.checkpoint, seed=cfg.seed, dtype=cfg.decode_dtype)
    note = None
    if cfg.max_thinking_tokens is not None:  # checked before the load; clamped now that the context is known
        budget, note = thinking_budget(budget, context_length(policy))
    if note:
        print(f"qstar search: note: {note}", file=sys.stderr)
    # --temperature is for the strategies that sample; greedy, sequential and think keep their temperature 0
    sampling = SearchOptions(temperature=None if spec.deterministic else cfg.temperature, max_tokens=cfg.max_tokens)
    knobs = {**(effort.options if effort else {}), **options}
    if strategy == "compute_optimal" and "table" not in knobs:  # a table fitted for this checkpoint, when present
        from qstar.search.compute_optimal import table_path

        if table_path(cfg.checkpoint).is_file():
            knobs["table"] = str(table_path(cfg.checkpoint))
    summary, rows = run_strategy(policy, scorer, problems, strategy=strategy, budget=budget, options=sampling,
                                 **knobs)
    summary |= {"task": task_name, "split": cfg.split, "checkpoint": str(cfg.checkpoint), "seed": cfg.seed}
    if cfg.reasoning_effort:
        summary["reasoning_effort"] = cfg.reasoning_effort
    if note:
        summary["notes"] = [note]
    write_outputs(Path(cfg.out), summary, rows)
    print(json.dumps(summary))
    return summary


def chosen_effort(cfg: SearchConfig) -> Effort | None:
    """What --reasoning-effort / --max-thinking-tokens run (None: neither is set, --strategy runs). ValueError
    listing the levels for an unknown one, or for a thinking budget below 1."""
    effort = effort_of(cfg.reasoning_effort) if cfg.reasoning_effort else None
    if cfg.max_thinking_tokens is None:
        return effort
    tokens, _ = thinking_budget(cfg.max_thinking_tokens)
    return capped(effort or Effort("think", tokens), tokens)


def jsonable(x):
    """``x`` with NaN/inf floats replaced by None, so the output is strict JSON."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x


def write_outputs(out: Path, summary: dict, rows: Sequence[Row]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(jsonable(summary), indent=2) + "\n")
    with open(out / "results.jsonl", "w") as f:
        for p, r, c in rows:
            row = {"question": p.question, "gold": p.answer, "key": p.key, "correct": c, **r.to_json()}
            f.write(json.dumps(jsonable(row)) + "\n")
