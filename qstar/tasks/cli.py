"""``qstar tasks``: list the registered tasks, or print sample problems with their reference chains."""

from __future__ import annotations

import json
from dataclasses import dataclass

from qstar.tasks import get_task, task_names


@dataclass
class TasksConfig:
    """List the registered tasks, or show sample problems of one task with their reference chains."""

    name: str = ""
    """Task to show (empty: list every registered task)."""
    n: int = 3
    """How many problems to show."""
    split: str = "train"
    """Split to draw from: train, test or ood."""
    seed: int = 0
    """Generator seed."""
    as_json: bool = False
    """Print one JSON problem per line instead of readable chains."""


def run_tasks(cfg: TasksConfig) -> int:
    """Print task names, or ``n`` problems of ``name`` (question, reference chain, answer)."""
    if not cfg.name:
        for name in task_names():
            task = get_task(name)
            doc = (type(task).__doc__ or "").strip().splitlines() or [""]
            print(f"{name:10s} {type(task).__name__:16s} {doc[0]}")
        return 0
    task = get_task(cfg.name)
    for p in task.generate(cfg.n, seed=cfg.seed, split=cfg.split):
        if cfg.as_json:
            print(json.dumps(p.to_json()))
        else:
            print(p.question + "\n" + task.reference(p) + "\n")
    return 0
