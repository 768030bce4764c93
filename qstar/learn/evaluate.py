"""Held-out evaluation every trainer shares: greedy accuracy by the task's exact verifier, and the token budget a
chain gets. SFT, GRPO, reward models, expert iteration, distillation and the lab import them from here."""

from __future__ import annotations

from collections.abc import Sequence

from qstar.model.types import Policy, Prompt
from qstar.tasks import judge
from qstar.tasks.base import Problem, Task

__all__ = ["greedy_accuracy", "chain_budget"]


def greedy_accuracy(policy: Policy, problems: Sequence[Problem], *, max_tokens: int = 256) -> float:
    """Fraction of ``problems`` whose greedy chain's answer the exact verifier accepts."""
    if not problems:
        return float("nan")
    outs = policy.sample([Prompt(p.question) for p in problems], n=1, temperature=0.0, max_tokens=max_tokens)
    return sum(judge(p, c.text).correct for p, (c,) in zip(problems, outs)) / len(problems)


def chain_budget(task: Task, problems: Sequence[Problem]) -> int:
    """Max new tokens for evaluation: 1.5x the longest reference chain, at least 32."""
    longest = max((len(task.reference(p)) for p in problems), default=32)
    return max(32, int(longest * 1.5) + 8)
