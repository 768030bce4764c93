"""SFT optimizers side by side at equal updates: AdamW against Muon (``qstar.learn.optim``).

    .venv/bin/python benchmarks/optimizers.py [--task mixture] [--preset tiny] [--steps 1600] [--seeds 0 1]

Prints JSON lines:
- ``"what": "step_cost"``: milliseconds per optimizer step over the preset's parameters for AdamW, torch's
  ``torch.optim.Muon`` and qstar's ``BatchedMuon`` (same update, batched fp32 Newton-Schulz), measured in one run;
  torch's Muon runs its Newton-Schulz in bf16, so on a CPU without native bf16 it is skipped with a note (a line
  with ``"skipped": "no native bf16 on this CPU"``): it would time oneDNN's emulation;
- ``"what": "sft"``: one line per optimizer and seed: greedy accuracy on held-out problems after ``--steps`` updates
  (a step budget, not a time budget, so a noisy or shared machine changes the seconds but not the comparison),
  with the wall seconds and tokens/s of the run (``--max-seconds`` is only a safety cap: a run it stops early says
  ``"cut_short": true``);
- ``"what": "summary"``: accuracy per optimizer averaged over seeds and the Muon - AdamW difference in points.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench_common import SAFETY_SECONDS, dtype_skip, warn

from qstar.config import parse_config


@dataclass
class BenchConfig:
    """AdamW vs Muon for SFT at equal updates."""

    task: str = "mixture"
    """Task to train and evaluate on (the demo's mixture by default)."""
    preset: str = "tiny"
    """Model preset."""
    steps: int = 1600
    """Updates per run (about what the demo's 240 s of SFT makes on an idle 2-core machine)."""
    optimizers: list[str] = field(default_factory=lambda: ["adamw", "muon"])
    """Optimizers to compare (names from qstar.learn.optim.OPTIMIZERS)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    """Seeds per optimizer (model initialisation and data order)."""
    lr: float = 3e-3
    """Peak learning rate for every optimizer."""
    eval_problems: int = 200
    """Held-out problems for the final greedy evaluation."""
    max_seconds: float = SAFETY_SECONDS
    """Safety cap in seconds per SFT run (a run it stops is cut_short)."""
    out: str = ""
    """Run directory (default: a temporary directory)."""


#: optimizers whose step computes in bf16 (torch's Muon orthogonalises in bf16)
BF16_STEPS = ("torch_muon_hidden",)


def step_cost(preset: str, repeats: int = 20, native_bf16: bool | None = None) -> list[dict]:
    """Milliseconds per optimizer step on random gradients for the preset's parameters: one step_cost line, and a
    line with "skipped" for each optimizer whose bf16 step this CPU would only emulate."""
    import torch

    from qstar.learn.optim import BatchedMuon, make_optimizer
    from qstar.model.model import ModelConfig, Transformer

    model = Transformer(ModelConfig.preset(preset))
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    hidden = [p for n, p in model.named_parameters() if p.ndim == 2 and "embed" not in n and "lm_head" not in n]
    builds = {"adamw": lambda: make_optimizer("adamw", model, lr=1e-4),
              "torch_muon_hidden": lambda: torch.optim.Muon(hidden, lr=1e-4, adjust_lr_fn="match_rms_adamw"),
              "batched_muon_hidden": lambda: BatchedMuon(hidden, lr=1e-4, adjust_lr_fn="match_rms_adamw"),
              "muon": lambda: make_optimizer("muon", model, lr=1e-4)}
    out = {"what": "step_cost", "preset": preset}
    skipped = []
    for name in BF16_STEPS:
        why = dtype_skip("bfloat16", native_bf16)
        if why:
            del builds[name]
            skipped.append({"what": "step_cost", "preset": preset, "optimizer": name, "dtype": "bfloat16",
                            "skipped": why})
    for name, build in builds.items():
        opt = build()
        opt.step()  # allocate state outside the timing
        t0 = time.perf_counter()
        for _ in range(repeats):
            opt.step()
        out[f"{name}_ms"] = round((time.perf_counter() - t0) / repeats * 1000, 2)
    return [out, *skipped]


def main(argv: list[str] | None = None) -> list[dict]:
    from qstar.learn.optim import OPTIMIZERS
    from qstar.learn.sft import SFTConfig, train_sft

    b = parse_config(BenchConfig, argv, prog="benchmarks/optimizers.py")
    unknown = [o for o in b.optimizers if o not in OPTIMIZERS]
    if unknown or b.steps < 1:
        raise SystemExit(f"need --steps >= 1 and optimizers from {', '.join(sorted(OPTIMIZERS))}; got {unknown}")
    out = Path(b.out or tempfile.mkdtemp(prefix="qstar_bench_optim_"))
    rows = step_cost(b.preset)
    for row in rows:
        print(json.dumps(row), flush=True)
    acc: dict[str, list[float]] = {o: [] for o in b.optimizers}
    for seed in b.seeds:
        for name in b.optimizers:
            t0 = time.perf_counter()
            s = train_sft(SFTConfig(task=b.task, out=str(out / f"{name}_{seed}"), preset=b.preset,
                                    seconds=b.max_seconds, max_steps=b.steps, optimizer=name, lr=b.lr, seed=seed,
                                    eval_every=0, eval_problems=b.eval_problems, force=True))
            acc[name].append(s["greedy_accuracy"])
            short = s["cut_short"]
            if short:
                warn(f"{name} seed {seed}: SFT stopped at its safety cap after {s['steps']} of {b.steps} updates")
            rows.append({"what": "sft", "task": b.task, "preset": b.preset, "optimizer": name, "seed": seed,
                         "steps": s["steps"], "cut_short": short, "greedy_accuracy": s["greedy_accuracy"],
                         "loss": s["loss"],
                         "wall_seconds": round(time.perf_counter() - t0, 1),
                         "tokens_per_second": round(s["tokens_per_second"])})
            print(json.dumps(rows[-1]), flush=True)
    mean = {name: sum(v) / len(v) for name, v in acc.items()}
    summary = {"what": "summary", "task": b.task, "steps": b.steps, "seeds": b.seeds, "accuracy": mean,
               "cut_short": any(r.get("cut_short") for r in rows)}
    if "adamw" in mean and "muon" in mean:
        summary["muon_minus_adamw_points"] = round(100 * (mean["muon"] - mean["adamw"]), 1)
    rows.append(summary)
    print(json.dumps(summary), flush=True)
    return rows


if __name__ == "__main__":
    main()
