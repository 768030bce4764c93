"""GRPO accuracy target: from an SFT checkpoint, RL raises greedy accuracy by >= 15 points within 100 updates.

    .venv/bin/python benchmarks/grpo.py --init runs/sft_mult [--updates 100] [--task mult] [--quick]

Runs ``qstar train grpo`` (defaults: 32 problems x 8 samples, T=1, lr 2e-4, one on-policy update per batch) for
``--updates`` updates (a step budget: a slow host runs the same updates, only later; 4-6 s per update were measured
for 3x3 multiplication on a busy 2-core machine, so 100 updates take 7-10 minutes there) and prints JSON lines: one
per held-out evaluation (accuracy against updates and training seconds), then a final line with
greedy_accuracy_before/after, gain_points and ``target_met`` (gain >= 15 points). Without ``--init`` it first trains
an SFT checkpoint for ``--sft-steps`` updates (a short budget so accuracy sits mid-way and RL has room to help).
``--max-seconds`` is only a safety cap on each training run; a run it stops before its budget says
``"cut_short": true``, and its target verdict is then not a measurement of the budget.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from bench_common import SAFETY_SECONDS, sft_warmup, warn

from qstar.config import parse_config
from qstar.learn.grpo import GRPOConfig, train_grpo
from qstar.runio import read_jsonl

#: what ``--quick`` changes: a toy-size smoke test of the whole path (seconds, not a measurement)
QUICK = {"preset": "tiny", "sft_steps": 30, "updates": 2, "eval_problems": 20}


@dataclass
class BenchConfig:
    """GRPO accuracy benchmark."""

    init: str = ""
    """SFT checkpoint (run dir or HF dir); empty: train one first for --sft-steps updates."""
    task: str = "mult"
    """Task to train and evaluate on."""
    updates: int = 100
    """GRPO updates (the budget; the old 300 s target at the ~3 s per update of an idle 2-core machine)."""
    preset: str = "small"
    """Model size of the SFT warm-up when no --init is given."""
    sft_steps: int = 480
    """SFT updates when no --init is given: on 3x3 multiplication (`small`, fp32, seed 0) 51% greedy on 200 held-out
    problems with mixed rewards in 56% of GRPO groups, so RL has signal and room to help (400: 2%; 600: 100%)."""
    max_seconds: float = SAFETY_SECONDS
    """Safety cap in seconds on each training run (evaluation excluded); a run it stops is cut_short."""
    eval_problems: int = 500
    """Held-out problems per evaluation."""
    eval_every: int = 25
    """Updates between held-out evaluations (besides before and after; evaluating changes nothing that is learned)."""
    loss: str = "grpo"
    """Loss (grpo, dr_grpo, dapo)."""
    lr: float = 2e-4
    """Learning rate."""
    temperature: float = 1.0
    """Sampling temperature."""
    seed: int = 0
    """Seed."""
    out: str = ""
    """Run directory (default: a temporary directory)."""
    target_points: float = 15.0
    """Gain in greedy accuracy (percentage points) that counts as meeting the target."""
    quick: bool = False
    """Toy size for a smoke test (tiny preset, 30 SFT steps, 2 updates, 20 evaluation problems): no figure to read."""


def main(argv: list[str] | None = None) -> dict:
    b = parse_config(BenchConfig, argv, prog="benchmarks/grpo.py")
    if b.quick:
        b = replace(b, **QUICK)
    if b.updates < 1:
        raise SystemExit("need --updates >= 1")
    out = Path(b.out or tempfile.mkdtemp(prefix="qstar_bench_grpo_"))
    init, sft = b.init, {}
    if not init:
        sft = sft_warmup(b.task, out / "sft", steps=b.sft_steps, max_seconds=b.max_seconds, preset=b.preset,
                         eval_problems=b.eval_problems, seed=b.seed)
        init = str(out / "sft")
        print(json.dumps({"bench": "grpo", **sft}))
    cfg = GRPOConfig(init=init, task=b.task, out=str(out / "grpo"), seconds=b.max_seconds, max_updates=b.updates,
                     eval_problems=b.eval_problems, eval_every=b.eval_every, loss=b.loss, lr=b.lr,
                     temperature=b.temperature, seed=b.seed, force=True)
    s = train_grpo(cfg)
    for rec in read_jsonl(out / "grpo" / "metrics.jsonl"):
        if "eval/greedy_accuracy" in rec:
            print(json.dumps({"bench": "grpo", "step": rec["step"], "seconds": round(rec["seconds"], 1),
                              "greedy_accuracy": rec["eval/greedy_accuracy"]}))
    short = s["cut_short"]  # the trainer says when its safety cap stopped it
    if short:
        warn(f"GRPO stopped at its safety cap after {s['updates']} of {b.updates} updates")
    computed = s["updates"] - s["skipped_updates"] - s["zero_signal_updates"]
    if computed < s["updates"]:
        warn(f"only {computed} of {s['updates']} GRPO updates computed a gradient (the others had no reward variance "
             "or a non-finite loss): the verdict rests on those")
    gain = 100.0 * (s["greedy_accuracy_after"] - s["greedy_accuracy_before"])
    result = {
        "bench": "grpo", "task": b.task, "init": init, "loss": b.loss, "lr": b.lr, "temperature": b.temperature,
        "greedy_accuracy_before": s["greedy_accuracy_before"], "greedy_accuracy_after": s["greedy_accuracy_after"],
        "gain_points": round(gain, 2), "target_points": b.target_points, "target_met": gain >= b.target_points,
        "updates": s["updates"], "update_budget": b.updates, "updates_computed": computed,
        "skipped_updates": s["skipped_updates"],
        "zero_signal_updates": s["zero_signal_updates"], "cut_short": bool(short or sft.get("sft_cut_short")),
        "train_seconds": round(s["train_seconds"], 1), "seconds_per_update": round(s["seconds_per_update"], 3),
        "eval_problems": s["eval_problems"], "problems_per_batch": cfg.problems_per_batch,
        "group_size": cfg.group_size, "out": str(out), **sft,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
