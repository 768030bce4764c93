"""Data-parallel SFT under torchrun (gloo, CPU): updates per second with 1 and K processes at the same global batch.

    .venv/bin/python benchmarks/ddp.py [--preset small] [--batch-size 32] [--steps 50] [--workers 1 2]

Each run is ``torchrun --nproc-per-node K -m qstar.cli train sft`` (K = 1: ``python -m qstar.cli train sft``, the
one-process path) with one intra-op thread per process, so K
processes use K cores: the scaling efficiency is ``updates_per_s(K) / (K * updates_per_s(1))`` at equal cores per
worker (1.0: perfect; below it: all-reduce time and the data every rank generates for the whole global batch).

Prints JSON lines:
- ``"what": "run"``: one per K: updates/s over the training seconds (evaluation excluded), tokens/s, the run's loss;
- ``"what": "summary"`` (last): ``scaling_efficiency`` (of the largest K), ``max_weight_diff`` (largest absolute
  difference between its weights and the one-process run's after ``--steps`` updates) and the all-reduce volume per
  update (parameters x 4 bytes x 2: a ring all-reduce sends and receives about twice the gradient per rank).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench_common import warn

from qstar.config import parse_config


@dataclass
class BenchConfig:
    """SFT updates per second with 1 and K gloo processes at the same global batch."""

    task: str = "mult"
    """Task to train on."""
    preset: str = "small"
    """Model preset."""
    batch_size: int = 32
    """Global batch (sequences per update), split over the processes."""
    steps: int = 50
    """Updates per run."""
    workers: list[int] = field(default_factory=lambda: [1, 2])
    """Process counts to run; the first is the reference for scaling and weights."""
    out: str = ""
    """Directory for the runs (default: a temporary one)."""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cfg: BenchConfig, k: int, out: Path) -> dict:
    """One SFT run with ``k`` processes (k = 1: a plain process, as without torchrun); its summary.json."""
    launch = ["-m", "torch.distributed.run", "--nproc-per-node", str(k), "--master-port", str(_port())] if k > 1 else []
    cmd = [sys.executable, *launch, "-m", "qstar.cli", "train", "sft", "--task", cfg.task, "--preset", cfg.preset,
           "--batch-size", str(cfg.batch_size), "--max-steps", str(cfg.steps), "--eval-every", "0",
           "--eval-problems", "8", "--save-every", "1e9", "--force", "--out", str(out)]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{k} process(es) failed:\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}")
    return json.loads((out / "summary.json").read_text())


def max_weight_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return max(float((wa[n] - wb[n]).abs().max()) for n in wa)


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark; returns the JSON lines it printed."""
    cfg = parse_config(BenchConfig, argv, prog="benchmarks/ddp.py")
    root = Path(cfg.out or tempfile.mkdtemp(prefix="qstar-ddp-"))
    if (os.cpu_count() or 1) < max(cfg.workers):
        warn(f"{max(cfg.workers)} processes on {os.cpu_count()} cores: the scaling figure measures contention")
    results, rows = {}, []
    for k in cfg.workers:
        s = run(cfg, k, root / f"k{k}")
        ups = s["steps"] / s["train_seconds"]
        results[k] = (s, ups)
        rows.append({"what": "run", "processes": k, "preset": cfg.preset, "global_batch": cfg.batch_size,
                     "steps": s["steps"], "updates_per_s": round(ups, 3),
                     "tokens_per_s": round(s["tokens_per_second"], 1), "loss": round(s["loss"], 5)})
        print(json.dumps(rows[-1]), flush=True)
    base, (top_s, top_ups) = cfg.workers[0], results[cfg.workers[-1]]
    k = cfg.workers[-1]
    params = top_s["params"]
    rows.append({
        "what": "summary", "processes": k, "reference_processes": base,
        "scaling_efficiency": round(top_ups / (k / base * results[base][1]), 3),
        "max_weight_diff": max_weight_diff(root / f"k{base}" / "checkpoint", root / f"k{k}" / "checkpoint"),
        "params": params, "allreduce_mb_per_update": round(params * 4 * 2 / 1e6, 3),
    })
    print(json.dumps(rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    main()
