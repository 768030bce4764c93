"""Shared by the scripts in benchmarks/: step budgets, the cut-short flag, dtype skips and loud warnings.

What a model learns in a benchmark (SFT warm-ups, RL, expert iteration, reward models) is set by a number of
updates, never by seconds, so a slow host trains the same model as a fast one, only later. Seconds remain only as a
safety cap (``--max-seconds``); a run that the cap stops before its step budget says ``"cut_short": true``.
A dtype the CPU only emulates is skipped with a note: its figures would measure the emulation.
"""

from __future__ import annotations

import sys
from pathlib import Path

import qstar  # noqa: F401  (thread env before torch)

#: the note of a bf16 case on a CPU without AVX512-BF16/AMX (oneDNN emulates bf16 there: a bf16 matmul peak of
#: 0.9 GFLOP/s against fp32's 82-86 on an AVX2 host, and a sampler benchmark spent 10 minutes in its bf16 rows)
NO_BF16 = "no native bf16 on this CPU"

#: the default safety cap in seconds of one training run: a healthy run never reaches it
SAFETY_SECONDS = 3600.0


def cut_short(done: int, budget: int) -> bool:
    """True when a run with a budget of ``budget`` updates stopped after ``done`` (the safety cap fired)."""
    return done < budget


def dtype_skip(dtype, native: bool | None = None) -> str | None:
    """Why a benchmark skips ``dtype`` (a torch dtype or its name) on this CPU, or None to run it.

    ``native``: whether the CPU multiplies bf16 in hardware (default: ``qstar.model.perf.native_bf16()``)."""
    if str(dtype).removeprefix("torch.") != "bfloat16":
        return None
    if native is None:
        from qstar.model.perf import native_bf16

        native = native_bf16()
    return None if native else NO_BF16


def warn(message: str) -> None:
    """One loud line on stderr (stdout carries the JSON results)."""
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


def sft_warmup(task: str, out: Path | str, *, steps: int, max_seconds: float = SAFETY_SECONDS, **options) -> dict:
    """Train an SFT checkpoint into ``out`` for ``steps`` updates and return what a benchmark reports about it.

    fp32 unless ``bf16=True`` is passed (bf16 autocast runs only on some CPUs, and the step budgets here were
    measured in fp32), no evaluation before the final one, and a fresh run directory unless ``force=False``.
    ``options`` go to :class:`qstar.learn.sft.SFTConfig`; ``max_seconds`` is its safety cap."""
    from qstar.learn.sft import SFTConfig, train_sft

    if steps < 1:
        raise SystemExit("an SFT warm-up needs a step budget >= 1")
    cfg = {"bf16": False, "eval_every": 0, "force": True, **options}
    s = train_sft(SFTConfig(task=task, out=str(out), seconds=max_seconds, max_steps=steps, **cfg))
    return sft_report(s, steps)


def sft_report(summary: dict, steps: int) -> dict:
    """The warm-up fields of a benchmark's output from an SFT summary (and a warning when it was cut short)."""
    short = cut_short(summary["steps"], steps)
    if short:
        warn(f"the SFT warm-up stopped at its safety cap after {summary['steps']} of {steps} updates: "
             "a weaker checkpoint than the benchmark was sized for")
    return {"sft_steps": summary["steps"], "sft_step_budget": steps, "sft_seconds": round(summary["train_seconds"], 1),
            "sft_greedy_accuracy": summary["greedy_accuracy"], "sft_cut_short": short}
