"""The demo's stages, in order: data -> sft -> prm -> rl -> sweep -> report.

Each stage is ``fn(ctx) -> outputs`` (a JSON-able dict; paths under ``outputs["checkpoint"]`` etc. are checked
on resume) and calls the real trainers and search: qstar.learn.sft, qstar.learn.reward_model, qstar.learn.grpo,
qstar.lab.sweep (-> qstar.search). A stage whose trainer was killed resumes through that trainer's own resume/ dir.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qstar.runio import read_jsonl
from qstar.scorers import learned_kind


@dataclass
class Ctx:
    """What a stage sees: the resolved demo config, the run dir, earlier stages' outputs, the progress display."""

    cfg: Any  # qstar.lab.demo.DemoConfig
    run: Path
    outputs: dict[str, dict]
    progress: Any  # qstar.lab.progress.StageProgress

    def dir(self, name: str) -> Path:
        return self.run / "stages" / name

    def checkpoint(self, stage: str) -> str:
        """An earlier stage's checkpoint; a clear error when it is gone."""
        path = self.outputs.get(stage, {}).get("checkpoint")
        if not path or not (Path(path) / "config.json").is_file():
            raise ValueError(f"the {stage} stage's checkpoint {path or self.dir(stage) / 'checkpoint'} is missing; "
                             f"re-run `qstar demo --out {self.run} --force` to start over")
        return path


#: seconds of training between resume snapshots (they do not change what is learned)
SAVE_EVERY = 30.0


@contextmanager
def watch(ctx: Ctx, name: str, metrics: Path, steps: int):
    """While a trainer runs, read its latest metrics line once a second -> stage fraction done (updates of its
    step budget)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(1.0):
            try:
                with open(metrics, "rb") as f:
                    f.seek(max(0, f.seek(0, 2) - 4096))
                    last = f.read().decode(errors="replace").strip().splitlines()[-1]
                ctx.progress.update(name, fraction=min(1.0, float(json.loads(last).get("step", 0)) / steps))
            except (OSError, ValueError, IndexError, AttributeError, ZeroDivisionError):
                pass  # no line yet or a line being written

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


def _finished(out: Path) -> dict | None:
    """A trainer's summary when it finished but the demo was killed before writing its stage marker."""
    p = out / "summary.json"
    return json.loads(p.read_text()) if p.is_file() and (out / "checkpoint" / "config.json").is_file() else None


# -- stages ----------------------------------------------------------------------------------------------------------

def stage_data(ctx: Ctx) -> dict:
    """The held-out problems every evaluation uses (the trainers regenerate them from the same task + seed)."""
    from qstar.tasks import get_task

    problems = get_task(ctx.cfg.task).generate(ctx.cfg.eval_problems, seed=ctx.cfg.seed, split="test")
    path = ctx.dir("data") / "heldout.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(p.to_json()) + "\n" for p in problems))
    families: dict[str, int] = {}
    for p in problems:
        families[p.task] = families.get(p.task, 0) + 1
    return {"heldout": str(path), "problems": len(problems), "families": families}


def stage_sft(ctx: Ctx) -> dict:
    from qstar.learn.sft import SFTConfig, train_sft

    c, out = ctx.cfg, ctx.dir("sft")
    summary = _finished(out)
    if summary is None:
        # chart 1 has a log-FLOPs axis: evaluations at 1/2^k of the step budget spread its points from scratch to the
        # end (the trainer's own final evaluation is the last point)
        points = sorted({max(1, c.sft_steps // 2**k) for k in range(c.sft_evals - 1, 0, -1)})
        sft = SFTConfig(task=c.task, out=str(out), preset=c.preset, seconds=c.sft_seconds, max_steps=c.sft_steps,
                        corpus=c.sft_corpus,
                        batch_size=c.sft_batch_size, eval_every=0, eval_at_steps=points,
                        eval_problems=c.eval_problems, save_every=SAVE_EVERY, seed=c.seed, bf16=c.sft_bf16)
        with watch(ctx, "sft", out / "metrics.jsonl", c.sft_steps):
            summary = train_sft(sft)
    return {"checkpoint": str(out / "checkpoint"), "metrics": str(out / "metrics.jsonl"),
            "params": summary["params"], "train_flops": summary["train_flops"], "steps": summary["steps"],
            "greedy_accuracy": summary["greedy_accuracy"], "train_seconds": summary["train_seconds"],
            "cut_short": bool(summary.get("cut_short"))}


def learned_kinds(cfg) -> set[str]:
    """The learned reward models ("prm", "orm") a demo config's sweep needs: its scorer's and any `name@scorer`'s."""
    from qstar.lab.sweep import split_strategy

    scorers = {cfg.scorer} | {split_strategy(s, cfg.scorer)[1] for s in cfg.strategies}
    return {k for k in map(learned_kind, scorers) if k}


def stage_prm(ctx: Ctx) -> dict:
    """Train the process reward model the sweep's scorer uses (skipped when the scorer is not learned)."""
    c, out = ctx.cfg, ctx.dir("prm")
    kinds = learned_kinds(c)
    if not kinds:
        return {"skipped": f"scorers {c.scorer!r} and the strategies' own need no training"}
    kind = kinds.pop()
    from qstar.learn.reward_model import RewardConfig, train_orm, train_prm

    summary = _finished(out)
    if summary is None:
        rc = RewardConfig(init=ctx.checkpoint("sft"), task=c.task, out=str(out), seconds=c.cap_seconds,
                          max_steps=c.prm_steps, problems=c.prm_problems, samples=c.prm_samples,
                          mc_samples=c.prm_mc_samples,
                          eval_problems=c.prm_eval_problems, eval_samples=max(2, c.prm_samples), seed=c.seed)
        summary = (train_prm if kind == "prm" else train_orm)(rc)
    keep = {k: v for k, v in summary.items() if isinstance(v, (int, float, str)) and k != "checkpoint"}
    return {"checkpoint": str(out / "checkpoint"), **keep, "cut_short": bool(summary.get("train/cut_short"))}


def stage_rl(ctx: Ctx) -> dict:
    """GRPO from the SFT checkpoint, once per RL seed (rl_updates 0: skipped, the SFT checkpoint is the final
    reasoner). The first seed's model is the final one; every seed's run is in ``runs``."""
    c = ctx.cfg
    if c.rl_updates <= 0:
        return {"checkpoint": ctx.checkpoint("sft"), "skipped": "rl_updates is 0", "runs": []}
    from qstar.learn.grpo import GRPOConfig, train_grpo

    runs = []
    for seed in c.rl_seeds:
        out = ctx.dir("rl") / f"seed{seed}"
        summary = _finished(out)
        if summary is None:
            g = GRPOConfig(init=ctx.checkpoint("sft"), task=c.task, out=str(out), max_updates=c.rl_updates,
                           seconds=c.cap_seconds, problems_per_batch=c.rl_problems_per_batch,
                           group_size=c.rl_group_size, lr=c.rl_lr, loss=c.rl_loss, pass_k=c.rl_pass_k,
                           eval_every=max(1, c.rl_updates // max(1, c.rl_evals)), eval_problems=c.eval_problems,
                           save_every=SAVE_EVERY, seed=seed)
            with watch(ctx, "rl", out / "metrics.jsonl", c.rl_updates * len(c.rl_seeds)):
                summary = train_grpo(g)
        keep = ("greedy_accuracy_before", "greedy_accuracy_after", "pass_at_1_before", "pass_at_1_after",
                "pass_at_k_before", "pass_at_k_after", "pass_k", "response_length_before", "response_length_after",
                "updates", "train_seconds", "train_flops")
        runs.append({"seed": seed, "checkpoint": str(out / "checkpoint"), "metrics": str(out / "metrics.jsonl"),
                     **{k: summary.get(k) for k in keep}, "cut_short": bool(summary.get("cut_short"))})
    first = runs[0]
    return {"checkpoint": first["checkpoint"], "runs": runs, "problems_per_batch": c.rl_problems_per_batch,
            "group_size": c.rl_group_size, "greedy_accuracy_before": first["greedy_accuracy_before"],
            "greedy_accuracy_after": first["greedy_accuracy_after"], "updates": first["updates"],
            "train_seconds": sum(r["train_seconds"] or 0.0 for r in runs),
            "cut_short": any(r["cut_short"] for r in runs)}


def rl_checkpoints(ctx: Ctx) -> list[str]:
    """Every RL seed's final checkpoint (the SFT one when RL was skipped)."""
    return [r["checkpoint"] for r in ctx.outputs["rl"].get("runs", [])] or [ctx.checkpoint("rl")]


def stage_sweep(ctx: Ctx) -> dict:
    """Chart 2: one greedy chain under growing thinking budgets, then the parallel strategies, on every RL seed's
    model (two sweeps: their budgets mean tokens and chains)."""
    from qstar.lab.sweep import SweepConfig, run_sweep

    c = ctx.cfg
    common = dict(checkpoints=rl_checkpoints(ctx), seeds=list(c.seeds), task=c.task, problems=c.sweep_problems,
                  problem_seed=c.seed, scorer=c.scorer, trees=c.trees, max_tokens=c.sweep_max_tokens,
                  scorer_checkpoint=ctx.checkpoint("prm") if learned_kinds(c) else "")
    sweeps = [SweepConfig(out=str(ctx.dir("sweep") / "think.jsonl"), strategies=["think"],
                          budgets=list(c.think_budgets), **common),
              SweepConfig(out=str(ctx.dir("sweep") / "parallel.jsonl"), strategies=list(c.strategies),
                          budgets=list(c.budgets), **common)]
    cells = 0
    for i, sc in enumerate(sweeps):
        res = run_sweep(sc, on_cell=lambda k, n, i=i: ctx.progress.update(
            "sweep", fraction=(i + k / max(1, n)) / len(sweeps), note=f"sweep {i + 1}/{len(sweeps)} cell {k}/{n}"))
        cells += res["cells"]
    return {"metrics": [sc.out for sc in sweeps], "cells": cells}


def stage_report(ctx: Ctx) -> dict:
    """Assemble DIR/metrics.jsonl from the stages, render the report (the demo writes summary.json)."""
    from qstar.lab.metrics import read_metrics, write_records
    from qstar.lab.report import render_report

    records = train_records(ctx.outputs)
    for path in ctx.outputs["sweep"]["metrics"]:
        records += read_metrics(path, allow_empty=True)
    write_records(ctx.run / "metrics.jsonl", records)
    o = ctx.outputs
    from qstar.tasks import get_task

    sizes = getattr(get_task(ctx.cfg.task), "options", {})  # a mixture's component sizes (e.g. 2x2 digits)
    info = {"task": ctx.cfg.task, **({"task sizes": sizes} if sizes else {}), "preset": ctx.cfg.preset,
            "held-out problems": o["data"].get("families"),
            "SFT": {k: o["sft"].get(k) for k in ("params", "steps", "train_seconds", "greedy_accuracy", "cut_short")},
            "RL": {k: o["rl"].get(k) for k in ("updates", "train_seconds", "greedy_accuracy_before",
                                                 "greedy_accuracy_after", "skipped", "cut_short") if k in o["rl"]},
            "scorer": ctx.cfg.scorer, "scorer training": {k: v for k, v in o.get("prm", {}).items()
                                                          if k.startswith(("eval/", "train/seconds", "skipped"))},
            "final checkpoint": ctx.checkpoint("rl")}
    from qstar.lab.spans import example_chains

    examples = example_chains(ctx.checkpoint("sft"), ctx.checkpoint("rl"), o["data"]["heldout"])
    render_report(records, ctx.run, run_info=info, cut_short=cut_short(o), examples=examples, task=ctx.cfg.task)
    return {"metrics": str(ctx.run / "metrics.jsonl"), "report": str(ctx.run / "report.html")}


def cut_short(outputs: dict[str, dict]) -> list[str]:
    """The training stages whose time cap stopped them before their update budget."""
    return [name for name in ("sft", "prm", "rl") if outputs.get(name, {}).get("cut_short")]


STAGES: dict[str, Callable[[Ctx], dict]] = {
    "data": stage_data, "sft": stage_sft, "prm": stage_prm, "rl": stage_rl, "sweep": stage_sweep,
    "report": stage_report,
}


# -- trainer metrics -> lab train records ----------------------------------------------------------------------------

def latest_timeline(rows: list[dict]) -> list[dict]:
    """Drop rows a resumed trainer re-did: when ``step`` goes back, earlier rows after it are discarded (and an
    earlier row of the same kind at the same step). Rows of different kinds may share a step (update + eval)."""
    kept: list[dict] = []
    for r in rows:
        while kept and (kept[-1]["step"] > r["step"] or (kept[-1]["step"] == r["step"] and
                                                          kept[-1].keys() == r.keys())):
            kept.pop()
        kept.append(r)
    return kept


def train_records(outputs: dict[str, dict]) -> list[dict]:
    """Lab ``train`` records from the SFT and RL trainers' eval points, with cumulative training FLOPs.

    Both trainers log their own FLOPs (qstar.model.perf's convention, attention included); RL's count from its own
    start, so RL points sit at SFT's final FLOPs plus RL's (``rl_flops`` keeps RL's own). Each RL seed's points carry
    its ``seed`` and the held-out chains' mean lengths (correct and incorrect, sampled chains).
    """
    sft, rl = outputs["sft"], outputs.get("rl", {})
    rows = latest_timeline([r for r in read_jsonl(sft["metrics"]) if "step" in r])
    out = [_point("sft", r, r["flops"]) for r in rows if "eval/greedy_accuracy" in r]
    base = max((p["flops"] for p in out), default=sft["train_flops"])
    for run in rl.get("runs", []):
        if not Path(run["metrics"]).is_file():
            continue
        for r in latest_timeline([r for r in read_jsonl(run["metrics"]) if "step" in r]):
            if "eval/greedy_accuracy" in r:  # step 0 is the SFT base, measured by this run's own evaluation
                extra = {k: r.get(f"eval/{k}") for k in ("len_correct", "len_incorrect", "response_len", "pass@1")}
                out.append(_point("rl", r, base + r["flops"]) | {"seed": run["seed"], "rl_flops": r["flops"],
                                                                  **{k: v for k, v in extra.items() if v is not None}})
    return out


def _point(stage: str, r: dict, flops: float) -> dict:
    n = int(r["eval/problems"])
    return {"kind": "train", "stage": stage, "step": int(r["step"]), "flops": float(flops), "n": n,
            "correct": int(round(r["eval/greedy_accuracy"] * n)), "seconds": float(r.get("seconds", 0.0))}


def expected_seconds(cfg) -> dict[str, float]:
    """Rough stage durations for the ETA before a stage reports its own progress (evaluations included)."""
    from qstar.lab.sweep import budget_cap

    budget_sum = sum(b for s in cfg.strategies for b in cfg.budgets if budget_cap(s) is None or b <= budget_cap(s))
    budget_sum = (budget_sum + len(cfg.think_budgets)) * len(cfg.rl_seeds)
    # rates of an idle 2-core machine (tiny): SFT ~3-7 updates/s, the PRM ~10, RL ~1; the bar corrects itself as
    # each stage reports its own progress
    return {"data": 1.0, "sft": cfg.sft_steps / 4.0 + 3, "prm": cfg.prm_steps / 10 + 10 if learned_kinds(cfg) else 0.0,
            "rl": (cfg.rl_updates * 2.5 + 20) * len(cfg.rl_seeds),
            "sweep": budget_sum * len(cfg.seeds) * cfg.sweep_problems * 0.007 + 2, "report": 3.0}

