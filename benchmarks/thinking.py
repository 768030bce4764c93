"""Thinking targets: RL raises held-out pass@1 by >= 30 points over the SFT base (2 seeds, separated 95% intervals),
and one chain's accuracy at the largest thinking budget beats the smallest by >= 30 points (no oracle scorer).

    .venv/bin/python benchmarks/thinking.py [--out runs/bench_thinking] [--task parity] [--quick] [--full]

Runs the demo pipeline (``qstar demo``: SFT on a thinking corpus of short and long demonstrations, GRPO from that
base on each RL seed, the thinking-budget and parallel sweeps) with the demo's defaults and prints JSON lines side by
side: the SFT base and the RL model per seed (greedy and sampled pass@1, pass@k, response length), accuracy per
thinking budget next to the parallel strategies at equal tokens, then one line per target with its measured value,
95% interval, goal and verdict. Budgets are counted in updates, so every machine trains the same models.
``--full`` doubles the SFT and RL budgets for sharper curves.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import bench_common  # noqa: F401  (qstar's thread settings before torch)

from qstar.config import parse_config
from qstar.lab.demo import QUICK, DemoConfig, run_demo

GOAL = 0.30


@dataclass
class BenchConfig:
    """Thinking benchmark: the demo's RL and thinking spans, per seed and per budget."""

    out: str = "runs/bench_thinking"
    """Run directory (a demo run dir: re-running continues it)."""
    task: str = "parity"
    """Task (see `qstar tasks`)."""
    quick: bool = False
    """Toy sizes: a smoke test of the whole path in under a minute, not a measurement."""
    full: bool = False
    """Twice the demo's SFT and RL update budgets."""
    force: bool = False
    """Start over in --out."""


def main(argv: list[str] | None = None) -> dict:
    b = parse_config(BenchConfig, argv, prog="benchmarks/thinking.py")
    base = DemoConfig()
    cfg = DemoConfig(out=b.out, task=b.task, quick=b.quick, force=b.force,
                     **({"sft_steps": 2 * base.sft_steps, "rl_updates": 2 * base.rl_updates} if b.full else {}))
    s = run_demo(cfg)
    rows = []
    for seed in s["rl_span_seeds"] or []:
        rows.append({"bench": "thinking", "row": "rl", "seed": seed["seed"], "sft_base": seed["before"],
                     "rl": seed["after"], "updates": seed["updates"], "separated": seed["separated"]})
    for budget, acc in (s["thinking_accuracy"] or {}).items():
        rows.append({"bench": "thinking", "row": "think", "thinking_budget": int(budget), "accuracy": acc,
                     "tokens_per_problem": (s["thinking_tokens"] or {}).get(budget)})
    for label, pts in s["test_curves"].items():
        if not label.startswith("think"):
            rows += [{"bench": "thinking", "row": "parallel", "strategy": label, "budget": p["budget"],
                      "accuracy": p["accuracy"], "tokens_per_problem": p["tokens_per_problem"]} for p in pts]
    for key in ("rl_span", "thinking_span"):
        rows.append({"bench": "thinking", "row": "target", "target": key, "value": s[key],
                     "ci_low": s[f"{key}_ci_low"], "ci_high": s[f"{key}_ci_high"], "goal": GOAL,
                     "met": bool(s[f"{key}_met"])})
    final = {"bench": "thinking", "row": "summary", "task": b.task, "seeds": s["seeds"],
             "response_length_before": s["response_length_before"], "response_length_after": s["response_length_after"],
             "pass_at_1_before": s["pass_at_1_before"], "pass_at_1_after": s["pass_at_1_after"],
             "pass_at_k_before": s["pass_at_k_before"], "pass_at_k_after": s["pass_at_k_after"], "pass_k": s["pass_k"],
             "cut_short": s["cut_short"], "quick": b.quick, "config": {f.name: getattr(cfg, f.name)
                                                                        for f in fields(cfg) if f.name in QUICK},
             "report": str(Path(b.out) / "report.html")}
    for row in rows + [final]:
        print(json.dumps(row))
    if s["cut_short"]:
        print(f"WARNING: {', '.join(s['cut_short'])} cut short by the time cap: not a measurement", file=sys.stderr)
    return final


if __name__ == "__main__":
    main(sys.argv[1:])
