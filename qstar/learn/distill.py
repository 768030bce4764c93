"""Distillation: a small fresh student trained on a bigger teacher's verified search traces.

``qstar train distill --teacher DIR --task mult --preset tiny --out DIR``:

1) the teacher searches fresh train problems (``collect_verified``: N samples, or a qstar.search strategy) and the
   verified chains are kept (DIR/traces.jsonl, reused when a killed run resumes);
2) a fresh student of ``preset`` size is trained on them with ``qstar.learn.sft.fit``;
3) greedy accuracy of teacher and student on held-out problems; DIR/checkpoint (stage "distill") + summary.json.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, replace

import torch

from qstar.learn.budget import Budget
from qstar.learn.evaluate import chain_budget, greedy_accuracy
from qstar.learn.expert_iteration import VERIFIERS, collect_verified
from qstar.learn.runs import finish_stage, load_examples, save_examples, start_run
from qstar.learn.sft import fit
from qstar.model.checkpoint import load_model, task_for
from qstar.model.model import ModelConfig, Transformer
from qstar.model.perf import configure_threads

__all__ = ["DistillConfig", "train_distill"]


@dataclass
class DistillConfig:
    """Train a small student on a teacher's verified search traces."""

    teacher: str = ""
    """Teacher checkpoint (run dir or HF dir)."""
    task: str = ""
    """Task name: traces on its train split, evaluation on its test split. Empty: the task the teacher was trained
    on, else mult."""
    out: str = "runs/distill"
    """Run directory: checkpoint/, traces.jsonl, summary.json."""
    preset: str = "tiny"
    """Student model size (a fresh model of this preset)."""
    problems: int = 2048
    """Train problems the teacher searches."""
    samples: int = 4
    """Teacher search budget per problem (N samples, or the strategy's budget)."""
    temperature: float = 0.8
    """Teacher sampling temperature."""
    strategy: str = "sample"
    """"sample" keeps verified distinct samples; a qstar.search strategy name keeps its chosen chain."""
    scorer: str = "checker"
    """Scorer for a search strategy."""
    verifier: str = "gold"
    """Which traces to keep: "gold" (against the train answer) or "checker" (reference-free task check)."""
    max_per_problem: int = 2
    """Most kept traces per problem."""
    steps: int = 500
    """Student updates (the budget: every machine trains the same student). 0: train for --seconds instead."""
    seconds: float = 0.0
    """Safety cap on training time in seconds; a run it stops is marked cut short. With --steps 0 it is the budget
    itself. 0: no cap."""
    batch_size: int = 64
    """Sequences per update."""
    lr: float = 3e-3
    """Peak learning rate."""
    eval_problems: int = 200
    """Held-out problems for greedy accuracy."""
    seed: int = 0
    """Seed for problems, sampling and initialisation."""
    force: bool = False
    """Overwrite a finished run in OUT."""


def train_distill(cfg: DistillConfig) -> dict:
    """Run the distillation stage; returns the summary (also OUT/summary.json)."""
    from qstar.model.policy import ModelPolicy

    if not cfg.teacher:
        raise ValueError("distillation needs --teacher DIR (the checkpoint whose traces the student learns)")
    if cfg.verifier not in VERIFIERS:
        raise ValueError(f"unknown --verifier {cfg.verifier!r}; choose from {', '.join(VERIFIERS)}")
    if cfg.seconds <= 0 and cfg.steps <= 0:
        raise ValueError("give a positive --steps (or --seconds) budget")
    student_cfg = ModelConfig.preset(cfg.preset)  # ValueError naming the presets
    configure_threads()
    from qstar.tasks import get_task

    cfg = replace(cfg, task=task_for(cfg.task, [cfg.teacher], default="mult", doing="distilling"))
    task = get_task(cfg.task)
    teacher, tok, _ = load_model(cfg.teacher, flag="--teacher")
    out = start_run(cfg.out, force=cfg.force)
    eval_problems = task.generate(cfg.eval_problems, seed=cfg.seed, split="test")
    max_tokens = chain_budget(task, eval_problems or task.generate(8, seed=cfg.seed, split="train"))
    teacher_policy = ModelPolicy(teacher, tok)

    # 1) verified teacher traces (cached for resume)
    t0 = time.perf_counter()
    stats: dict = {}
    if (out / "traces.jsonl").exists():
        traces = load_examples(out / "traces.jsonl")
        print(f"distill: reusing {len(traces)} teacher traces from {out / 'traces.jsonl'}", file=sys.stderr)
    else:
        problems = task.generate(cfg.problems, seed=cfg.seed + 1, split="train")
        torch.manual_seed(cfg.seed)
        traces, stats = collect_verified(teacher_policy, problems, samples=cfg.samples, temperature=cfg.temperature,
                                         max_tokens=max_tokens, strategy=cfg.strategy, scorer=cfg.scorer,
                                         verifier=cfg.verifier, max_per_problem=cfg.max_per_problem)
        if not traces:
            raise ValueError(f"the teacher produced no verified traces on {cfg.problems} {cfg.task} problems "
                             f"({stats['search/chains']} chains judged); train the teacher more or raise --samples")
        save_examples(out / "traces.jsonl", traces)
    trace_seconds = time.perf_counter() - t0

    # 2) fresh student on the traces
    torch.manual_seed(cfg.seed)
    student = Transformer(student_cfg)
    budget = Budget.of(cfg.steps, cfg.seconds)
    fstats = fit(student, tok, traces, seconds=budget.seconds, steps=budget.steps, lr=cfg.lr,
                 batch_size=cfg.batch_size, seed=cfg.seed)

    # 3) evaluate both, write the stage
    acc = greedy_accuracy(ModelPolicy(student, tok), eval_problems, max_tokens=max_tokens)
    teacher_acc = greedy_accuracy(teacher_policy, eval_problems, max_tokens=max_tokens)
    metrics = {"task": cfg.task, "traces": len(traces), **stats, "trace_seconds": trace_seconds,
               "student_params": student.num_params(), "teacher_params": teacher.num_params(),
               "train/seconds": fstats["seconds"], "train/steps": fstats["steps"],
               "train/cut_short": fstats["cut_short"], "train/loss": fstats["loss"],
               "eval/greedy_accuracy": acc, "eval/teacher_greedy_accuracy": teacher_acc,
               "eval/problems": len(eval_problems)}
    summary = finish_stage(out, student, tok, stage="distill", config=asdict(cfg), metrics=metrics)
    print(json.dumps(summary))
    return summary
