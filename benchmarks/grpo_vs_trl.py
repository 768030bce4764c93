"""Seconds per GRPO update: qstar's trainer vs TRL's GRPOTrainer on the same model, prompts and settings.

    .venv/bin/python benchmarks/grpo_vs_trl.py [--init CKPT] [--task mult] [--updates 5] [--threads 2]

TRL is a benchmark peer only (``pip install -e '.[bench]'``). Both sides, in one process with the same torch threads:
the same checkpoint (TRL loads it with ``AutoModelForCausalLM.from_pretrained``), the same train-split prompts with
<bos>, ``problems_per_batch`` x ``group_size`` completions per update, the same completion budget, temperature 1,
lr, the ``grpo`` loss without KL (beta 0), one on-policy update per generation, fp32, AdamW, grad clip 1. Each side
runs ``warmup`` untimed updates first. Completions stop at <eos> on both sides; mean completion tokens per update are
reported for each so a length difference is visible, and the sampling share of each update. qstar runs no
forward/backward for chains whose advantage is 0 (groups with all-equal rewards, share ``qstar_frac_zero_std``):
they add exactly nothing to the loss, so both sides take the same update. Per-update times are medians over the
timed updates. Prints one JSON line with qstar_s_per_update, trl_s_per_update and speedup.
Without ``--init`` an SFT checkpoint is trained first (``--sft-seconds``).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from qstar.config import parse_config
from qstar.learn.grpo import GRPOConfig, train_grpo
from qstar.learn.rewards import correctness
from qstar.learn.sft import chain_budget
from qstar.model.checkpoint import resolve_checkpoint
from qstar.model.perf import configure_threads
from qstar.runio import read_jsonl
from qstar.tasks import Problem, get_task
from qstar.tasks.format import render_prompt


@dataclass
class BenchConfig:
    """qstar GRPO vs TRL GRPOTrainer, seconds per update."""

    init: str = ""
    """qstar checkpoint (run dir or HF dir); empty: SFT-train one for --sft-seconds first."""
    task: str = "mult"
    """Task for prompts and the correctness reward."""
    problems_per_batch: int = 32
    """Prompts per update."""
    group_size: int = 8
    """Completions per prompt."""
    max_completion_tokens: int = 0
    """Completion budget in tokens; 0: 1.5x the longest reference chain (as qstar train grpo)."""
    updates: int = 5
    """Timed updates per side."""
    warmup: int = 1
    """Untimed updates per side before timing (>= 1: startup costs land there)."""
    lr: float = 2e-4
    """Learning rate (both sides)."""
    threads: int = 0
    """torch threads for both sides (0: $OMP_NUM_THREADS or all usable cores)."""
    sft_seconds: float = 120.0
    """SFT budget when no --init is given."""
    seed: int = 0
    """Seed."""


def run_qstar(b: BenchConfig, ckpt: str, max_new: int, out: Path) -> dict:
    cfg = GRPOConfig(init=ckpt, task=b.task, out=str(out), seconds=0, max_updates=b.warmup + b.updates,
                     problems_per_batch=b.problems_per_batch, group_size=b.group_size, lr=b.lr, warmup_updates=0,
                     loss="grpo", max_completion_tokens=max_new, eval_problems=0, save_every=1e9, seed=b.seed,
                     force=True)
    s = train_grpo(cfg)
    rows = [r for r in read_jsonl(out / "metrics.jsonl") if "rl/reward_mean" in r]
    clock = [0.0] + [r["seconds"] for r in rows]
    per = [clock[i + 1] - clock[i] for i in range(b.warmup, len(rows))]
    n = b.problems_per_batch * b.group_size
    timed = rows[b.warmup:]
    return {"s_per_update": statistics.median(per), "tokens_per_update": statistics.mean(
        r["rl/response_len"] * n for r in timed), "skipped": s["skipped_updates"] + s["zero_signal_updates"],
        "reward_mean": statistics.mean(r["rl/reward_mean"] for r in rows),
        "sample_s": statistics.median(r["time/sample"] for r in timed),
        "frac_zero_std": statistics.mean(r["rl/frac_zero_std"] for r in timed)}


def run_trl(b: BenchConfig, ckpt: str, max_new: int, out: Path) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer

    task, tok = get_task(b.task), AutoTokenizer.from_pretrained(ckpt)
    steps = b.warmup + b.updates
    problems = task.generate(b.problems_per_batch * steps, seed=b.seed + 12345, split="train")
    rows = [{"prompt": render_prompt(p.question), "problem": json.dumps(p.to_json())} for p in problems]
    ds = Dataset.from_list(rows)

    def reward(prompts, completions, problem, completion_ids, **_):  # the same reward as qstar's trainer
        finished = [bool(ids) and ids[-1] == tok.eos_token_id for ids in completion_ids]
        return correctness([Problem.from_json(json.loads(s)) for s in problem], completions, finished=finished)

    class Clock(TrainerCallback):
        """Wall time between consecutive update ends: generation, rewards, loss, step and TRL's own bookkeeping."""

        def __init__(self):
            self.ends, self.lengths = [], []

        def on_step_end(self, args, state, control, **kw):
            self.ends.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                self.lengths.append(logs["completions/mean_length"])

    args = TRLConfig(
        output_dir=str(out), per_device_train_batch_size=b.problems_per_batch * b.group_size,
        gradient_accumulation_steps=1, num_generations=b.group_size, max_completion_length=max_new, temperature=1.0,
        top_p=1.0, top_k=0, learning_rate=b.lr, lr_scheduler_type="constant", warmup_steps=0, beta=0.0,
        loss_type="grpo", num_iterations=1, scale_rewards="group", max_grad_norm=1.0, adam_beta2=0.99,
        weight_decay=0.0, max_steps=steps, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
        bf16=False, fp16=False, gradient_checkpointing=False, dataloader_num_workers=0, shuffle_dataset=False,
        seed=b.seed, disable_dropout=True,
    )
    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32)
    clock = Clock()
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=ds, processing_class=tok,
                          callbacks=[clock])
    generation = []  # seconds in TRL's sampling call per update
    real_generate = trainer._generate

    def timed_generate(*args, **kw):
        t0 = time.perf_counter()
        try:
            return real_generate(*args, **kw)
        finally:
            generation.append(time.perf_counter() - t0)

    trainer._generate = timed_generate
    trainer.train()
    per = [clock.ends[i] - clock.ends[i - 1] for i in range(b.warmup, len(clock.ends))]
    n = b.problems_per_batch * b.group_size
    return {"s_per_update": statistics.median(per), "tokens_per_update": statistics.mean(
        length * n for length in clock.lengths[b.warmup:]) if clock.lengths else None,
        "sample_s": statistics.median(generation[b.warmup:]) if len(generation) > b.warmup else None}


def main(argv: list[str] | None = None) -> dict:
    import torch  # after qstar, which sets the thread environment first

    b = parse_config(BenchConfig, argv, prog="benchmarks/grpo_vs_trl.py")
    if b.warmup < 1 or b.updates < 1:
        raise SystemExit("need --warmup >= 1 and --updates >= 1")
    threads = configure_threads(b.threads or None)
    tmp = Path(tempfile.mkdtemp(prefix="qstar_bench_trl_"))
    init = b.init
    if not init:
        from qstar.learn.sft import SFTConfig, train_sft

        train_sft(SFTConfig(task=b.task, out=str(tmp / "sft"), seconds=b.sft_seconds, eval_problems=100, force=True))
        init = str(tmp / "sft")
    ckpt = str(resolve_checkpoint(init))
    task = get_task(b.task)
    max_new = b.max_completion_tokens or chain_budget(task, task.generate(64, seed=b.seed, split="test"))
    q = run_qstar(b, ckpt, max_new, tmp / "qstar")
    torch.set_num_threads(threads)  # the same threads for the peer, whatever the first run left behind
    t = run_trl(b, ckpt, max_new, tmp / "trl")
    import trl

    result = {
        "bench": "grpo_vs_trl", "qstar_s_per_update": round(q["s_per_update"], 4),
        "trl_s_per_update": round(t["s_per_update"], 4), "speedup": round(t["s_per_update"] / q["s_per_update"], 2),
        "qstar_completion_tokens_per_update": round(q["tokens_per_update"], 1),
        "trl_completion_tokens_per_update": t["tokens_per_update"] and round(t["tokens_per_update"], 1),
        "qstar_sample_s": round(q["sample_s"], 4), "trl_sample_s": t["sample_s"] and round(t["sample_s"], 4),
        "qstar_skipped_updates": q["skipped"],
        "qstar_frac_zero_std": round(q["frac_zero_std"], 3), "qstar_reward_mean": round(q["reward_mean"], 4),
        "completions_per_update": b.problems_per_batch * b.group_size, "max_completion_tokens": max_new,
        "threads": threads, "device": "cpu", "trl_version": trl.__version__, "torch_version": torch.__version__,
        "checkpoint": ckpt, "settings": {k: v for k, v in asdict(b).items() if k not in ("init",)},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
