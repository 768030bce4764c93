"""`qstar demo --out DIR`: reproduce both o1 scaling charts from scratch with one command, by o1's own mechanism.

data (held-out problems) -> SFT a tiny reasoner on a thinking corpus of short (answer-only) and long (thinking)
demonstrations -> train a PRM -> GRPO from the SFT base on 2 seeds -> sweep the thinking budget of one chain and
parallel strategies at equal tokens -> DIR/report.html, DIR/metrics.jsonl, the chart PNGs and DIR/summary.json.

Chart 1 is held-out pass@1 against RL training FLOPs (RL teaches the model to think: its chains lengthen); chart 2
is accuracy against thinking tokens per problem (the model's own thinking under a growing budget, next to majority
voting and best-of-N with the learned PRM at equal tokens).

Re-running continues after the last finished stage (DIR/stages/<stage>/DONE.json holds its outputs); a stage that
re-runs invalidates every later one. DIR/lab.json pins the configuration: a run dir of a different configuration is
refused (or, with --force, the demo's own files in it are removed first), so runs never silently mix.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qstar.lab.progress import StageProgress
from qstar.lab.stages import STAGES, Ctx, cut_short, expected_seconds, learned_kinds
from qstar.runio import atomic_write_json

#: files and folders the demo writes in DIR (the only things --force removes)
OWN = ("stages", "checkpoint", "lab.json", "metrics.jsonl", "report.html", "summary.json", "train_compute.png",
       "test_compute.png", "report.png")
MARKER = "DONE.json"


@dataclass
class DemoConfig:
    """Train a tiny reasoner from scratch and chart accuracy vs train-time and test-time compute."""

    out: str = "runs/demo"
    """Run directory (report.html, metrics.jsonl, summary.json, charts, stages/)."""
    quick: bool = False
    """Toy sizes (< 1 minute end to end): replaces every size field still at its default by QUICK's value."""
    force: bool = False
    """Start over: remove the demo's files in --out instead of refusing a run of another configuration."""
    task: str = "parity"
    """Task for training and held-out evaluation (see `qstar tasks`). Parity: answering at once is chance, thinking
    (a running parity) is learnt in minutes, so whether the model thinks decides its accuracy (LOG.md)."""
    preset: str = "small"
    """Model size preset of the reasoner (tiny, small, base). tiny learnt the parity corpus's long chains too
    poorly in 800 updates for RL to have anything to amplify (LOG.md)."""
    seed: int = 0
    """Seed of the model init, the data streams and the held-out problem set."""
    eval_problems: int = 200
    """Held-out problems for every pass@1 evaluation (chart 1)."""
    sft_steps: int = 1200
    """SFT updates, counted in updates so every machine trains the same model. At 800 the thinking chains were
    learnt under some kernel sets and not others; RL then had nothing to reinforce (LOG.md, 2026-12-04)."""
    sft_corpus: str = "short=0.5,long=0.5"
    """SFT's thinking corpus (qstar.learn.retry.CORPUS_KINDS by weight): short demonstrations answer at once, long
    ones think first. The model learns both and mostly answers at once; RL then finds that thinking pays."""
    sft_seconds: float = 3600.0
    """SFT time cap (seconds, evaluations excluded): a safety net for a stalled machine. A run it stops is marked
    cut short in the summary, the report and the verdicts."""
    sft_evals: int = 4
    """Held-out evaluations during SFT (points on chart 1), log-spaced: at 1/2^k of sft_steps, the last at the end."""
    sft_batch_size: int = 32
    """SFT sequences per update."""
    sft_bf16: bool = False
    """bf16 autocast in SFT. Off: it trains a different model than fp32 and exists only on CPUs with native bf16, and
    the demo shows the same figures on every CPU (LOG.md)."""
    prm_steps: int = 40
    """Process reward model updates (labelling chains comes first)."""
    prm_problems: int = 32
    """Train problems whose sampled chains the PRM is trained on."""
    prm_samples: int = 4
    """Chains sampled per PRM train problem."""
    prm_mc_samples: int = 2
    """Monte-Carlo completions per step prefix for the PRM's step labels (the labelling cost)."""
    prm_eval_problems: int = 32
    """Held-out problems for the PRM's AUC in the report (0 skips it)."""
    rl_updates: int = 30
    """GRPO updates per seed; 0 skips RL and the SFT model is the final reasoner."""
    rl_seeds: list[int] = field(default_factory=lambda: [0, 1])
    """GRPO seeds (sampling and problems), each from the same SFT base; the first seed's model is the final one."""
    rl_loss: str = "dr_grpo"
    """GRPO loss (qstar.learn.losses): Dr. GRPO has no per-sequence length bias, so length growth is the model's."""
    rl_pass_k: int = 2
    """Chains per held-out problem at RL's evaluations for sampled pass@1 and pass@k (greedy pass@1 is chart 1)."""
    cap_seconds: float = 3600.0
    """Time cap for each of the PRM and RL stages' training (seconds): a safety net; a stage it stops is marked
    cut short."""
    rl_lr: float = 2e-4
    """GRPO learning rate (GRPO's own default). At 5e-5 the 30 updates moved the SFT base to thinking on one host and
    not on another, whose rounding left it a little further from that switch (LOG.md, 2026-12-04)."""
    rl_evals: int = 3
    """Evenly spaced held-out evaluations during RL, counted in updates (points on chart 1)."""
    rl_problems_per_batch: int = 16
    """GRPO problems per update."""
    rl_group_size: int = 8
    """GRPO samples per problem."""
    think_budgets: list[int] = field(default_factory=lambda: [0, 4, 8, 16, 24, 32, 48, 64])
    """Thinking budgets (tokens) of one greedy chain (strategy think): chart 2's thinking line. 0: answer at once."""
    strategies: list[str] = field(default_factory=lambda: ["majority", "best_of_n@prm"])
    """Parallel strategies drawn next to the thinking line at equal tokens (qstar.search.STRATEGIES); `name@scorer`
    runs one with another scorer and `name/N` stops one at budget N."""
    budgets: list[int] = field(default_factory=lambda: [1, 2, 4])
    """Budgets N of the parallel strategies (full chains per problem)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Sampling seeds of the sweep, run on every RL seed's model; results are pooled per problem."""
    sweep_problems: int = 200
    """Held-out problems per sweep cell (chart 2)."""
    sweep_max_tokens: int = 0
    """Cap on tokens per chain in the sweep; 0 derives it from the task's reference chains."""
    scorer: str = "prm"
    """Scorer for scored strategies: the PRM the prm stage trains (deployable: it never reads the gold answer).
    checker and checker+prm recompute some tasks' answers from the question: a ceiling, not a headline line."""
    trees: int = 2
    """Search trees per tree strategy shown in the report's viewer."""


#: --quick values (applied to fields left at their defaults)
QUICK: dict[str, object] = {
    "preset": "tiny", "eval_problems": 16, "sft_steps": 40, "sft_evals": 2, "sft_batch_size": 32,
    "prm_steps": 20, "prm_problems": 8, "prm_samples": 2, "prm_mc_samples": 2, "prm_eval_problems": 8,
    "rl_updates": 4, "rl_evals": 1, "rl_problems_per_batch": 4, "rl_group_size": 4, "rl_pass_k": 2,
    "think_budgets": [0, 16, 64], "budgets": [1, 2], "sweep_problems": 4, "sweep_max_tokens": 64, "trees": 1,
}
NOT_CONFIG = ("out", "quick", "force")  # fields that do not change the results
POSITIVE = ("eval_problems", "sft_steps", "sft_seconds", "cap_seconds", "sft_evals", "sft_batch_size", "prm_problems",
            "prm_samples",
            "prm_mc_samples", "rl_lr", "rl_evals", "rl_problems_per_batch", "rl_group_size", "sweep_problems",
            "rl_pass_k")


def resolve(cfg: DemoConfig) -> DemoConfig:
    """The effective configuration: --quick values for fields still at their defaults, then validated."""
    if cfg.quick:
        defaults = DemoConfig()
        cfg = dataclasses.replace(cfg, **{k: v for k, v in QUICK.items() if getattr(cfg, k) == getattr(defaults, k)})
    errors = [f"{k} must be > 0" for k in POSITIVE if getattr(cfg, k) <= 0]
    if cfg.rl_updates < 0:
        errors.append("rl_updates must be >= 0 (0 skips RL)")
    if not (cfg.strategies and cfg.budgets and cfg.seeds):
        errors.append("give at least one strategy, budget and seed")
    if any(b < 1 for b in cfg.budgets):
        errors.append(f"budgets must be >= 1, got {cfg.budgets}")
    if not cfg.think_budgets or any(b < 0 for b in cfg.think_budgets):
        errors.append(f"think_budgets must be >= 0 and not empty, got {cfg.think_budgets}")
    if not cfg.rl_seeds:
        errors.append("give at least one RL seed")
    from qstar.learn.losses import LOSSES

    if cfg.rl_loss not in LOSSES:
        errors.append(f"unknown rl_loss {cfg.rl_loss!r}; choose from {', '.join(LOSSES)}")
    from qstar.lab.sweep import split_strategy
    from qstar.search import STRATEGIES

    kinds = learned_kinds(cfg)
    if len(kinds) > 1:
        errors.append(f"the demo trains one reward model, but its scorers want {' and '.join(sorted(kinds))}")
    elif kinds and cfg.prm_steps <= 0:
        errors.append(f"prm_steps must be > 0 to train the {kinds.pop()} its scorers use")

    unknown = [s for s in cfg.strategies if split_strategy(s, cfg.scorer)[0] not in STRATEGIES]
    if unknown:
        errors.append(f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
    if errors:
        raise ValueError("invalid demo config: " + "; ".join(errors))
    return cfg


def fingerprint(cfg: DemoConfig) -> dict:
    return {k: v for k, v in asdict(cfg).items() if k not in NOT_CONFIG}


def prepare(run: Path, cfg: DemoConfig) -> None:
    """Create DIR or check that it holds this configuration's run; --force clears the demo's own files."""
    pinned = run / "lab.json"
    if cfg.force:
        for name in OWN:
            p = run / name
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
    elif pinned.is_file():
        old = json.loads(pinned.read_text()).get("config", {})
        diff = {k: (old.get(k), v) for k, v in fingerprint(cfg).items() if old.get(k) != v}
        if diff:
            shown = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(diff.items()))
            raise ValueError(f"{run} holds a demo run with a different configuration ({shown}); choose another --out "
                             "or pass --force to start over there")
    elif run.is_dir() and any(run.iterdir()):
        raise ValueError(f"{run} exists and is not a qstar demo run (no lab.json); choose another --out, or pass "
                         "--force to write the demo there")
    run.mkdir(parents=True, exist_ok=True)
    if not pinned.is_file():
        atomic_write_json(pinned, {"config": fingerprint(cfg), "created": time.time()})


def finished_outputs(run: Path, name: str) -> dict | None:
    """A finished stage's outputs (None when it has not finished); a finished stage whose checkpoint is gone
    raises a clear error instead of silently retraining on top of later stages."""
    marker = run / "stages" / name / MARKER
    if not marker.is_file():
        return None
    out = json.loads(marker.read_text())["outputs"]
    # a key holds one path or (the sweep's metrics) a list of them; the RL stage lists each seed's run
    paths = [(k, p) for k in ("checkpoint", "metrics", "heldout") for p in _as_list(out.get(k))]
    paths += [(k, r[k]) for r in out.get("runs", []) for k in ("checkpoint", "metrics")]
    for key, path in paths:
        if not Path(path).exists():
            raise ValueError(f"stage {name!r} finished earlier but its {key} {path} is missing; "
                             f"re-run with --force to start over (or use a new --out)")
    return out


def _as_list(value) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


def run_demo(cfg: DemoConfig) -> dict:
    """Run (or continue) every stage, then write DIR/summary.json; returns the summary."""
    t0 = time.perf_counter()
    cfg = resolve(cfg)
    run = Path(cfg.out).resolve()  # stage markers hold absolute paths, valid from any working directory
    prepare(run, cfg)
    expected = expected_seconds(cfg)
    progress = StageProgress([(n, expected[n]) for n in STAGES])
    ctx = Ctx(cfg=cfg, run=run, outputs={}, progress=progress)
    rerun = False  # once a stage runs, every later stage must run again on its outputs
    old_tqdm = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"  # the trainers' own bars would fight the live display
    try:
        with progress:
            for name, fn in STAGES.items():
                done = None if rerun else finished_outputs(run, name)
                if done is not None:
                    ctx.outputs[name] = done
                    progress.skip(name)
                    continue
                stage_dir = run / "stages" / name
                if rerun and stage_dir.exists():
                    shutil.rmtree(stage_dir)  # stale: built on an earlier stage's previous outputs
                rerun = True
                s0 = time.perf_counter()
                with progress.stage(name):
                    ctx.outputs[name] = fn(ctx)
                atomic_write_json(stage_dir / MARKER, {"stage": name, "seconds": time.perf_counter() - s0,
                                                       "outputs": ctx.outputs[name]})
    finally:
        if old_tqdm is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = old_tqdm
    summary = write_summary(run, ctx, this_run=time.perf_counter() - t0)
    print(json.dumps({k: summary[k] for k in ("rl_span", "rl_span_ci_low", "rl_span_ci_high", "thinking_span",
                                              "thinking_span_ci_low", "thinking_span_ci_high",
                                              "response_length_before", "response_length_after", "seeds",
                                              "wall_seconds", "efficiency_vs_best_of_n", "checkpoint")}
                     | {"report": str(run / "report.html")}))
    return summary


def write_summary(run: Path, ctx: Ctx, *, this_run: float) -> dict:
    """DIR/summary.json from DIR/metrics.jsonl (the same numbers the report shows)."""
    from qstar.lab.metrics import read_metrics
    from qstar.lab.report import analyze

    res = analyze(read_metrics(run / "metrics.jsonl"), cut_short=cut_short(ctx.outputs), task=ctx.cfg.task)
    rl, think = res["rl_span"] or {}, res["thinking_span"] or {}
    runs = ctx.outputs["rl"].get("runs", [])

    def mean(key: str) -> float | None:
        xs = [r[key] for r in runs if r.get(key) is not None]
        return sum(xs) / len(xs) if xs else None
    stage_seconds = {n: json.loads((run / "stages" / n / MARKER).read_text())["seconds"] for n in STAGES}
    keep = ("budget", "tokens_per_problem", "flops_per_problem", "accuracy", "ci_low", "ci_high")
    summary = {
        "rl_span": rl.get("span"), "rl_span_ci_low": rl.get("ci_low"), "rl_span_ci_high": rl.get("ci_high"),
        "rl_span_met": rl.get("met"), "rl_span_seeds": rl.get("seeds"),
        "thinking_span": think.get("span"), "thinking_span_ci_low": think.get("ci_low"),
        "thinking_span_ci_high": think.get("ci_high"), "thinking_span_met": think.get("met"),
        "thinking_accuracy": think.get("accuracy"), "thinking_tokens": think.get("tokens"),
        "response_length_before": mean("response_length_before"),
        "response_length_after": mean("response_length_after"),
        "pass_at_1_before": mean("pass_at_1_before"), "pass_at_1_after": mean("pass_at_1_after"),
        "pass_at_k_before": mean("pass_at_k_before"), "pass_at_k_after": mean("pass_at_k_after"),
        "pass_k": ctx.cfg.rl_pass_k, "seeds": list(ctx.cfg.rl_seeds), "task": ctx.cfg.task,
        "wall_seconds": sum(stage_seconds.values()),
        "this_run_seconds": this_run,
        "stage_seconds": stage_seconds,
        "train_curve": [{k: p[k] for k in ("flops", "accuracy", "ci_low", "ci_high", "stage")}
                        for p in res["train_curve"]],
        "test_curves": {label: [{k: p[k] for k in keep} for p in pts] for label, pts in res["test_curves"].items()},
        "efficiency_vs_best_of_n": res["efficiency"]["factor"],
        "efficiency": res["efficiency"],
        "spans": res["spans"],
        "verdicts": res["verdicts"],
        "cut_short": res["cut_short"],
        "checkpoint": ctx.outputs["rl"]["checkpoint"],
        "report": str(run / "report.html"),
        "config": fingerprint(ctx.cfg),
    }
    atomic_write_json(run / "summary.json", summary)
    link = run / "checkpoint"  # `--checkpoint DIR` finds the final reasoner: resolve_checkpoint looks in DIR/checkpoint
    if link.is_symlink() or not link.exists():
        link.unlink(missing_ok=True)
        link.symlink_to(Path(summary["checkpoint"]).resolve().relative_to(run.resolve()), target_is_directory=True)
    return summary
