"""GRPO accuracy target: from an SFT checkpoint, RL raises greedy accuracy by >= 15 points within 5 minutes.

    .venv/bin/python benchmarks/grpo.py --init runs/sft_mult [--seconds 300] [--task mult]

Runs ``qstar train grpo`` (defaults: 32 problems x 8 samples, T=1, lr 2e-4, one on-policy update per batch) and
prints JSON lines: one per held-out evaluation (accuracy against training seconds), then a final line with
greedy_accuracy_before/after, gain_points and ``target_met`` (gain >= 15 points). Without ``--init`` it first trains
an SFT checkpoint for ``--sft-seconds`` (a short budget so accuracy sits mid-way and RL has room to help).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import qstar  # noqa: F401  (thread env before torch)
from qstar.config import parse_config
from qstar.learn.grpo import GRPOConfig, train_grpo
from qstar.runio import read_jsonl


@dataclass
class BenchConfig:
    """GRPO accuracy benchmark."""

    init: str = ""
    """SFT checkpoint (run dir or HF dir); empty: train one first for --sft-seconds."""
    task: str = "mult"
    """Task to train and evaluate on."""
    seconds: float = 300.0
    """GRPO training budget in seconds (evaluation excluded)."""
    sft_seconds: float = 120.0
    """SFT budget when no --init is given."""
    eval_problems: int = 500
    """Held-out problems per evaluation."""
    eval_every: float = 60.0
    """Seconds of training between evaluations."""
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


def main(argv: list[str] | None = None) -> dict:
    b = parse_config(BenchConfig, argv, prog="benchmarks/grpo.py")
    out = Path(b.out or tempfile.mkdtemp(prefix="qstar_bench_grpo_"))
    init = b.init
    if not init:
        from qstar.learn.sft import SFTConfig, train_sft

        sft = train_sft(SFTConfig(task=b.task, out=str(out / "sft"), seconds=b.sft_seconds,
                                  eval_problems=b.eval_problems, seed=b.seed, force=True))
        init = str(out / "sft")
        print(json.dumps({"bench": "grpo", "sft_seconds": sft["train_seconds"],
                          "sft_accuracy": sft["greedy_accuracy"]}))
    cfg = GRPOConfig(init=init, task=b.task, out=str(out / "grpo"), seconds=b.seconds, eval_problems=b.eval_problems,
                     eval_every=b.eval_every, loss=b.loss, lr=b.lr, temperature=b.temperature, seed=b.seed,
                     force=True)
    s = train_grpo(cfg)
    for rec in read_jsonl(out / "grpo" / "metrics.jsonl"):
        if "eval/greedy_accuracy" in rec:
            print(json.dumps({"bench": "grpo", "step": rec["step"], "seconds": round(rec["seconds"], 1),
                              "greedy_accuracy": rec["eval/greedy_accuracy"]}))
    gain = 100.0 * (s["greedy_accuracy_after"] - s["greedy_accuracy_before"])
    result = {
        "bench": "grpo", "task": b.task, "init": init, "loss": b.loss, "lr": b.lr, "temperature": b.temperature,
        "greedy_accuracy_before": s["greedy_accuracy_before"], "greedy_accuracy_after": s["greedy_accuracy_after"],
        "gain_points": round(gain, 2), "target_points": b.target_points, "target_met": gain >= b.target_points,
        "train_seconds": round(s["train_seconds"], 1), "updates": s["updates"],
        "seconds_per_update": round(s["seconds_per_update"], 3), "eval_problems": s["eval_problems"],
        "problems_per_batch": cfg.problems_per_batch, "group_size": cfg.group_size, "out": str(out),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
