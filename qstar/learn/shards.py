"""Shards of problems through ``qstar.executor`` for the learning stages' rollouts (PRM/ORM labelling, expert
iteration's search): each worker loads the checkpoint's policy once, and each shard restarts the sampling streams at
its own seed, so the results are the same whichever worker runs a shard and however many there are.

    records = map_shards(label_chains, problems, options=cfg, checkpoint=cfg.init, seed=cfg.seed, policy=policy,
                         samples=4, temperature=0.8, max_tokens=64, mc_samples=8)
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence
from pathlib import Path

from qstar.executor import ExecutorOptions, map_all

#: problems per shard: enough for batched sampling, small enough to spread a few hundred problems over workers
SHARD = 16


class PolicyWorker:
    """One executor worker: ``(seed, problems) -> fn(policy, problems, **kw)`` with every sampling stream (the
    policy's own, torch's and Python's global ones) restarted at ``seed``; the caller's global streams are left as
    they were, so running in-process changes nothing that follows."""

    def __init__(self, checkpoint: str, fn: Callable, kw: dict, policy=None) -> None:
        if policy is None:
            from qstar.model.checkpoint import load_model
            from qstar.model.policy import ModelPolicy

            model, tok, _ = load_model(checkpoint)
            policy = ModelPolicy(model, tok)
        self.fn, self.kw, self.policy = fn, kw, policy

    def __call__(self, item: tuple[int, Sequence]) -> list:
        import torch

        seed, problems = item
        state = random.getstate()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random.seed(seed)
            if hasattr(self.policy, "reseed"):
                self.policy.reseed(seed)
            try:
                return list(self.fn(self.policy, problems, **self.kw))
            finally:
                random.setstate(state)


def map_shards(fn: Callable, problems: Sequence, *, options: ExecutorOptions, checkpoint: str | Path, seed: int,
               policy=None, shard: int | None = None, **kw) -> list:
    """``fn(policy, shard_problems, **kw)`` (a list) over shards of ``shard`` problems, through ``options``'
    executor; the shards' lists joined in problem order. Shard ``j`` is seeded ``seed * 2**20 + j``.
    ``policy`` (the checkpoint's, already loaded) serves the one in-process worker; other workers load
    ``checkpoint``. ``shard`` defaults to ``SHARD``. RuntimeError when a shard still fails after ``options.retries``
    retries."""
    shard = shard or SHARD
    parts = [problems[i:i + shard] for i in range(0, len(problems), shard)]
    items = [((seed << 20) + j, part) for j, part in enumerate(parts)]
    factory = functools.partial(PolicyWorker, str(Path(checkpoint).resolve()), fn, kw,
                                policy if options.in_process else None)
    return [x for rows in map_all(options, factory, items, what="shard") for x in rows]
