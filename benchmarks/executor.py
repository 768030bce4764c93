"""The same sweep through the `local` executor (a process pool) and through `ray` (actors), at equal workers.

    .venv/bin/python benchmarks/executor.py [--checkpoint runs/demo --workers 2 --problems 16 --budgets 1 2 4]

Prints one JSON line per executor (executor, workers, cells, seconds, cells_per_s, same_results) and a last line
with local_cells_per_s, ray_cells_per_s and overhead (ray's wall time over local's; the target is <= 1.2). Both
timings include starting the workers and loading the checkpoint in each; starting the local Ray cluster is not
included (a cluster is started once and reused), it is printed as ray_init_seconds. Without --checkpoint a tiny
model is trained for --train-steps updates first.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench_common import sft_warmup

from qstar.config import parse_config
from qstar.executor import import_ray
from qstar.lab.metrics import read_metrics
from qstar.lab.sweep import SweepConfig, run_sweep


@dataclass
class BenchConfig:
    """Cells per second of one sweep through the local and the ray executor at equal workers."""

    checkpoint: str = ""
    """Checkpoint (run dir or HF dir); empty: train a tiny one for --train-steps updates."""
    task: str = "parity"
    """Task of the held-out problems (and of the fallback checkpoint)."""
    strategies: list[str] = field(default_factory=lambda: ["majority", "best_of_n"])
    """Strategy specs of the sweep (as `qstar sweep --strategies`)."""
    budgets: list[int] = field(default_factory=lambda: [1, 2, 4])
    """Budgets N per strategy."""
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    """Sampling seeds (each one more cell per strategy and budget)."""
    problems: int = 16
    """Held-out problems per cell."""
    workers: int = 2
    """Workers of each executor: pool processes for local, actors for ray."""
    ray_address: str = ""
    """Ray cluster to use; empty starts a local one with one CPU per worker."""
    train_steps: int = 100
    """SFT updates of the fallback tiny checkpoint (only without --checkpoint)."""


def timed_sweep(cfg: SweepConfig) -> tuple[float, dict]:
    t0 = time.perf_counter()
    run_sweep(cfg)
    seconds = time.perf_counter() - t0
    tests = {r["key"]: {k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(cfg.out)
             if r["kind"] == "test"}
    return seconds, tests


def main(argv: list[str] | None = None) -> None:
    bc = parse_config(BenchConfig, argv, prog="benchmarks/executor.py")
    ray = import_ray()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = bc.checkpoint
        if not checkpoint:
            checkpoint = str(Path(tmp) / "tiny")
            sft_warmup(bc.task, checkpoint, steps=bc.train_steps, preset="tiny")
        base = SweepConfig(checkpoints=[checkpoint], task=bc.task, strategies=list(bc.strategies),
                           budgets=list(bc.budgets), seeds=list(bc.seeds), problems=bc.problems, scorer="none",
                           workers=bc.workers, trees=0)
        t0, ours = time.perf_counter(), not ray.is_initialized()  # a cluster this process already joined is reused
        if ours:
            ray.init(address=bc.ray_address or None, include_dashboard=False, configure_logging=False,
                     log_to_driver=False, **({} if bc.ray_address else {"num_cpus": bc.workers}))
        ray_init = time.perf_counter() - t0
        try:
            rows = {}
            for name in ("local", "ray"):
                seconds, tests = timed_sweep(replace(base, executor=name, out=f"{tmp}/{name}.jsonl"))
                rows[name] = {"executor": name, "workers": bc.workers, "cells": len(tests), "seconds": seconds,
                              "cells_per_s": len(tests) / seconds, "tests": tests}
        finally:
            if ours:
                ray.shutdown()
    same = rows["local"]["tests"] == rows["ray"]["tests"]
    for row in rows.values():
        row.pop("tests")
        print(json.dumps({**row, "same_results": same}), flush=True)
    local, remote = rows["local"]["cells_per_s"], rows["ray"]["cells_per_s"]
    print(json.dumps({"local_cells_per_s": local, "ray_cells_per_s": remote, "overhead": local / remote,
                      "target": 1.2, "met": local / remote <= 1.2, "same_results": same, "workers": bc.workers,
                      "cells": rows["local"]["cells"], "problems": bc.problems, "ray_init_seconds": ray_init,
                      "checkpoint": bc.checkpoint or f"tiny, {bc.train_steps} SFT updates"}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
