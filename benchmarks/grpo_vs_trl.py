"""Seconds per GRPO update: qstar's trainer vs TRL's GRPOTrainer on the same model, prompts and settings.

    .venv/bin/python benchmarks/grpo_vs_trl.py [--init CKPT] [--task mult] [--updates 5] [--threads 2] [--quick]

TRL is a benchmark peer only (``pip install -e '.[bench]'``). Both sides, in one process with the same torch threads:
the same checkpoint (TRL loads it with ``AutoModelForCausalLM.from_pretrained``), the same train-split prompts with
<bos>, ``problems_per_batch`` x ``group_size`` completions per update, the same completion budget, temperature 1,
lr, the ``grpo`` loss without KL (beta 0), one on-policy update per generation, fp32, AdamW, grad clip 1. Each side
runs ``warmup`` untimed updates first. Completions stop at <eos> on both sides; mean completion tokens per update are
reported for each so a length difference is visible, and the sampling share of each update. qstar runs no
forward/backward for chains whose advantage is 0 (share ``qstar_frac_zero_std`` of the groups): they add exactly
nothing to the loss, so both sides take the same update. Per-update times are medians over the timed updates.

Equal work: a speedup is only printed when both sides computed a gradient in every timed update. qstar skips an
update whose groups all have equal rewards (no learning signal: a checkpoint at 0% or 100%), TRL computes it anyway;
a skipped update is not a fast one. When qstar skipped any, a time cap cut a side short, or the completion lengths
differ by more than ``length_tolerance``, the output says ``"equal_work": false`` with the reason in
``unequal_work``, ``speedup`` is null, and a warning goes to stderr. Per-side medians count only the updates that
computed a gradient.

Without ``--init`` an SFT checkpoint is trained first for ``--sft-steps`` updates (a step budget, so a slow host
trains the same checkpoint: one with mixed rewards, whose GRPO groups carry signal). ``--max-seconds`` is only a
safety cap on each training run; a run it stops says ``"cut_short": true``. Prints one JSON line.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bench_common import SAFETY_SECONDS, cut_short, sft_warmup, warn

from qstar.config import parse_config
from qstar.learn.evaluate import chain_budget
from qstar.learn.grpo import GRPOConfig, train_grpo
from qstar.learn.rewards import correctness
from qstar.model.checkpoint import resolve_checkpoint
from qstar.model.perf import configure_threads
from qstar.runio import read_jsonl
from qstar.tasks import Problem, get_task
from qstar.tasks.format import render_prompt

#: what ``--quick`` changes: a toy-size smoke test of the whole path (seconds, not a measurement)
QUICK = {"preset": "tiny", "sft_steps": 30, "sft_eval_problems": 20, "problems_per_batch": 4, "group_size": 4,
         "max_completion_tokens": 48, "updates": 2, "warmup": 1}


@dataclass
class BenchConfig:
    """qstar GRPO vs TRL GRPOTrainer, seconds per update at equal work."""

    init: str = ""
    """qstar checkpoint (run dir or HF dir); empty: SFT-train one for --sft-steps updates first."""
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
    preset: str = "small"
    """Model size of the SFT warm-up when no --init is given."""
    sft_steps: int = 480
    """SFT updates when no --init is given. 3x3 multiplication, `small`, Muon, fp32, batch 32, seed 0: 480 updates gave
    51% greedy on 200 held-out problems and a T=1 reward mean of 0.16 with 56% of GRPO groups mixed, so both sides
    compute every update (400 updates: 2% greedy and every group zero-variance; 600: 100% greedy)."""
    sft_eval_problems: int = 200
    """Held-out problems for the warm-up's greedy accuracy (reported)."""
    max_seconds: float = SAFETY_SECONDS
    """Safety cap in seconds on each training run (warm-up, each side's GRPO); a run it stops is cut_short."""
    length_tolerance: float = 0.25
    """Mean completion lengths of the two sides further apart than this fraction count as unequal work."""
    quick: bool = False
    """Toy size for a smoke test (tiny preset, 30 SFT steps, 4 x 4 completions, 2 timed updates): no figure to read."""
    seed: int = 0
    """Seed."""


def require_trl() -> None:
    """Fail in one line, before any training, when the peer is not installed."""
    try:
        import datasets  # noqa: F401
        import trl  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"benchmarks/grpo_vs_trl.py needs TRL ({e.name} is missing): pip install -e '.[bench]'") from e


def work_accounting(q_times: list[float], q_computed: list[bool], t_times: list[float], *, updates: int,
                    q_tokens: float | None = None, t_tokens: float | None = None,
                    length_tolerance: float = 0.25) -> dict:
    """Per-update seconds of each side over the timed updates that computed a gradient, and whether the two sides
    did equal work; the speedup is None (with the reason in ``unequal_work``) when they did not.

    q_times, q_computed: qstar's timed updates and whether each computed a gradient (qstar skips an update whose
    groups all have equal rewards). t_times: TRL's timed updates (TRL computes a gradient in every one).
    updates: the timed updates asked of each side. q_tokens, t_tokens: mean completion tokens per update."""
    q_done = [t for t, c in zip(q_times, q_computed) if c]
    reasons = []
    if len(q_done) < len(q_times):
        reasons.append(f"qstar skipped {len(q_times) - len(q_done)} of its {len(q_times)} timed updates (no gradient: "
                       "every group had equal rewards, or a non-finite loss) while TRL computed all of its")
    if len(q_times) < updates or len(t_times) < updates:
        reasons.append(f"a side stopped early: qstar ran {len(q_times)}, TRL {len(t_times)} of {updates} timed updates")
    if q_tokens and t_tokens and max(q_tokens, t_tokens) > (1 + length_tolerance) * min(q_tokens, t_tokens):
        reasons.append(f"completion lengths differ: qstar {q_tokens:.0f} vs TRL {t_tokens:.0f} tokens per update "
                       f"(more than {length_tolerance:.0%} apart)")
    q_s = statistics.median(q_done) if q_done else None
    t_s = statistics.median(t_times) if t_times else None
    equal = not reasons and q_s is not None and t_s is not None
    return {"equal_work": equal, "unequal_work": "; ".join(reasons) or None,
            "speedup": round(t_s / q_s, 2) if equal else None,
            "qstar_s_per_update": q_s and round(q_s, 4), "trl_s_per_update": t_s and round(t_s, 4),
            "qstar_updates_computed": len(q_done), "trl_updates_computed": len(t_times), "timed_updates": updates}


def run_qstar(b: BenchConfig, ckpt: str, max_new: int, out: Path) -> dict:
    steps = b.warmup + b.updates
    cfg = GRPOConfig(init=ckpt, task=b.task, out=str(out), seconds=b.max_seconds, max_updates=steps,
                     problems_per_batch=b.problems_per_batch, group_size=b.group_size, lr=b.lr, warmup_updates=0,
                     loss="grpo", max_completion_tokens=max_new, eval_problems=0, save_every=1e9, seed=b.seed,
                     force=True)
    train_grpo(cfg)
    rows = [r for r in read_jsonl(out / "metrics.jsonl") if "rl/reward_mean" in r]
    clock = [0.0] + [r["seconds"] for r in rows]
    n = b.problems_per_batch * b.group_size
    timed = rows[b.warmup:]
    return {"times": [clock[i + 1] - clock[i] for i in range(b.warmup, len(rows))],
            "computed": ["train/loss" in r for r in timed],  # an optimizer step ran on a gradient
            "tokens_per_update": statistics.mean(r["rl/response_len"] * n for r in timed) if timed else None,
            "reward_mean": statistics.mean(r["rl/reward_mean"] for r in rows),
            "sample_s": statistics.median(r["time/sample"] for r in timed) if timed else None,
            "frac_zero_std": statistics.mean(r["rl/frac_zero_std"] for r in timed) if timed else None,
            "cut_short": cut_short(len(rows), steps)}


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
        """Wall time between consecutive update ends (generation, rewards, loss, step and TRL's own bookkeeping);
        stops training at the safety cap."""

        def __init__(self):
            self.start, self.ends, self.logs = time.perf_counter(), [], []

        def on_step_end(self, args, state, control, **kw):
            self.ends.append(time.perf_counter())
            if self.ends[-1] - self.start > b.max_seconds:
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                self.logs.append(logs)

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
    clock.start = time.perf_counter()
    trainer.train()
    n = b.problems_per_batch * b.group_size
    timed = clock.logs[b.warmup:]

    def mean_of(key: str, scale: float = 1.0):
        vals = [log[key] * scale for log in timed if key in log]
        return statistics.mean(vals) if vals else None

    return {"times": [clock.ends[i] - clock.ends[i - 1] for i in range(b.warmup, len(clock.ends))],
            "tokens_per_update": mean_of("completions/mean_length", n),
            "sample_s": statistics.median(generation[b.warmup:]) if len(generation) > b.warmup else None,
            "frac_zero_std": mean_of("frac_reward_zero_std"), "reward_mean": mean_of("reward"),
            "cut_short": cut_short(len(clock.ends), steps)}


def rounded(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def main(argv: list[str] | None = None) -> dict:
    import torch  # after qstar, which sets the thread environment first

    b = parse_config(BenchConfig, argv, prog="benchmarks/grpo_vs_trl.py")
    if b.quick:
        b = replace(b, **QUICK)
    if b.warmup < 1 or b.updates < 1:
        raise SystemExit("need --warmup >= 1 and --updates >= 1")
    require_trl()
    threads = configure_threads(b.threads or None)
    tmp = Path(tempfile.mkdtemp(prefix="qstar_bench_trl_"))
    init, sft = b.init, {}
    if not init:
        sft = sft_warmup(b.task, tmp / "sft", steps=b.sft_steps, max_seconds=b.max_seconds, preset=b.preset,
                         eval_problems=b.sft_eval_problems, seed=b.seed)
        if not 0.0 < sft["sft_greedy_accuracy"] < 1.0:
            warn(f"the SFT warm-up's greedy accuracy is {sft['sft_greedy_accuracy']:.1%}: GRPO groups will have "
                 "little reward variance, and qstar skips updates without any")
        init = str(tmp / "sft")
    ckpt = str(resolve_checkpoint(init))
    task = get_task(b.task)
    max_new = b.max_completion_tokens or chain_budget(task, task.generate(64, seed=b.seed, split="test"))
    q = run_qstar(b, ckpt, max_new, tmp / "qstar")
    torch.set_num_threads(threads)  # the same threads for the peer, whatever the first run left behind
    t = run_trl(b, ckpt, max_new, tmp / "trl")
    import trl

    work = work_accounting(q["times"], q["computed"], t["times"], updates=b.updates, q_tokens=q["tokens_per_update"],
                           t_tokens=t["tokens_per_update"], length_tolerance=b.length_tolerance)
    if not work["equal_work"]:
        warn(f"unequal work, no speedup reported: {work['unequal_work']}")
    result = {
        "bench": "grpo_vs_trl", **work,
        "qstar_completion_tokens_per_update": rounded(q["tokens_per_update"], 1),
        "trl_completion_tokens_per_update": rounded(t["tokens_per_update"], 1),
        "qstar_sample_s": rounded(q["sample_s"], 4), "trl_sample_s": rounded(t["sample_s"], 4),
        "qstar_frac_zero_std": rounded(q["frac_zero_std"], 3), "trl_frac_zero_std": rounded(t["frac_zero_std"], 3),
        "qstar_reward_mean": round(q["reward_mean"], 4), "trl_reward_mean": rounded(t["reward_mean"], 4),
        "cut_short": bool(sft.get("sft_cut_short") or q["cut_short"] or t["cut_short"]), **sft,
        "completions_per_update": b.problems_per_batch * b.group_size, "max_completion_tokens": max_new,
        "threads": threads, "device": "cpu", "trl_version": trl.__version__, "torch_version": torch.__version__,
        "checkpoint": ckpt, "settings": {k: v for k, v in asdict(b).items() if k not in ("init",)},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
