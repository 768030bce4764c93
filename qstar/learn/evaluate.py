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


def held_out(policy: Policy, problems: Sequence[Problem], *, max_tokens: int, k: int = 8) -> dict:
    """What RL changes on held-out problems: greedy pass@1, sampled (T=1) pass@1 and pass@k from k chains per problem
    (RL can raise pass@1 and narrow pass@k), and the thinking of the sampled chains (``chain_metrics``)."""
    if not problems:
        return {}
    greedy = greedy_accuracy(policy, problems, max_tokens=max_tokens)
    outs = policy.sample([Prompt(p.question) for p in problems], n=k, temperature=1.0, max_tokens=max_tokens)
    hits = [[judge(p, c.text).correct for c in row] for p, row in zip(problems, outs)]
    flat = [(p, c) for p, row in zip(problems, outs) for c in row]
    return {"greedy_accuracy": greedy, "pass@1": sum(map(sum, hits)) / (k * len(problems)),
            f"pass@{k}": sum(map(any, hits)) / len(problems),
            **chain_metrics([p for p, _ in flat], [c.text for _, c in flat], [c.n_tokens for _, c in flat])}


def chain_metrics(problems: Sequence[Problem], texts: Sequence[str], lengths: Sequence[int]) -> dict:
    """Thinking of chains: mean length (tokens) of correct and of incorrect chains (None without one), checks and
    retries per chain, and the cheap checks' precision and recall at catching a wrong candidate, judged by the exact
    verifier (None when no check said "wrong" / no checked candidate was wrong)."""
    from qstar.tasks import task_of
    from qstar.tasks.thinking import parse_thinking, thinking_stats

    right = [judge(p, t).correct for p, t in zip(problems, texts)]
    stats = [thinking_stats(t) for t in texts]
    flagged = caught = wrong = 0
    for p, t in zip(problems, texts):
        for line in parse_thinking(t)[0]:
            if line.kind == "check":
                bad = not task_of(p.task).accepts(p, line.candidate)
                flagged += not line.ok
                wrong += bad
                caught += bad and not line.ok

    def mean(xs: list) -> float | None:
        return sum(xs) / len(xs) if xs else None

    return {"len_correct": mean([n for n, ok in zip(lengths, right) if ok]),
            "len_incorrect": mean([n for n, ok in zip(lengths, right) if not ok]),
            "response_len": mean(list(lengths)),
            "checks_per_chain": mean([s["checks"] + s["rechecks"] for s in stats]),
            "retries_per_chain": mean([s["retries"] + s["failed_rechecks"] for s in stats]),
            "check_precision": caught / flagged if flagged else None, "check_recall": caught / wrong if wrong else None}


def chain_budget(task: Task, problems: Sequence[Problem], corpus: str = "") -> int:
    """Max new tokens for evaluation: 1.5x the longest reference chain, at least 32; with a thinking ``corpus``
    (``SFTConfig.corpus``) 1.5x the longest of 64 of its chains when longer (checks and retries lengthen them)."""
    longest = max((len(task.reference(p)) for p in problems), default=32)
    if corpus:
        import random

        from qstar.learn.retry import corpus as thinking_corpus

        draw, rng = thinking_corpus(task, corpus, seed=12345), random.Random(0)
        longest = max([longest] + [len(draw(rng)[1]) for _ in range(64)])
    return max(32, int(longest * 1.5) + 8)
