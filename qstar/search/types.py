"""Shared types of the search engine: Scorer protocol, compute ledger, search result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable

from qstar.tasks.base import Problem


@runtime_checkable
class Scorer(Protocol):
    """Scores chains. Scores are floats, higher is better, nominally in [0, 1].

    name: registry name. oracle: True when it reads the gold answer (analysis only, never a
    deployable result). params: parameter count for the FLOPs ledger (0 for programmatic scorers).
    """

    name: str
    oracle: bool
    params: int

    def score(self, problems: Sequence[Problem], chains: Sequence[str]) -> list[float]:
        """Outcome score per (problem, full chain text)."""
        ...

    def score_steps(self, problems: Sequence[Problem], steps: Sequence[Sequence[str]]) -> list[list[float]]:
        """Per-step scores: for each problem, one float per step of its partial chain."""
        ...


@dataclass
class Ledger:
    """Compute spent on one problem.

    generated_tokens: tokens sampled from the policy. prompt_tokens: prompt tokens the policy
    processed. scored_tokens: tokens read by a learned scorer. flops: forward FLOPs
    (2 * params * tokens, policy and scorer). seconds: wall-clock share for this problem.
    """

    generated_tokens: int = 0
    prompt_tokens: int = 0
    scored_tokens: int = 0
    flops: float = 0.0
    seconds: float = 0.0

    def add(self, other: Ledger) -> Ledger:
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)
        return self


@dataclass
class SearchResult:
    """What every strategy returns per problem.

    answer: extracted answer or None ("no answer"). chain: the chosen chain text.
    score: the scorer's score of the chosen chain (nan when none). ledger: compute spent.
    tree: JSON-serialisable search tree for tree strategies, else None. info: strategy extras.
    """

    answer: str | None
    chain: str
    score: float
    ledger: Ledger
    tree: dict | None = None
    info: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)
