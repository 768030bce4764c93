"""Problem and Task: the contract every generator, verifier and checker follows."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from typing import ClassVar

from qstar.tasks.format import render_chain, render_prompt, split_chain

SPLITS = ("train", "test", "ood")
UNREADABLE = "unreadable"  # the work of a cheap check that cannot read its candidate (the verdict is then False)


@dataclass(frozen=True)
class Problem:
    """One verifiable problem.

    task: registry name of the task that made it (verification dispatches on it).
    question: natural-language question, one line.
    answer: canonical gold answer string.
    key: canonical form used to dedupe and to assign the train/test split.
    data: task-specific structured fields (JSON-serialisable), e.g. operands or ciphertext.
    """

    task: str
    question: str
    answer: str
    key: str
    data: dict = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Problem:
        return cls(d["task"], d["question"], d["answer"], d["key"], dict(d.get("data") or {}))

    @property
    def prompt(self) -> str:
        return render_prompt(self.question)


@dataclass(frozen=True)
class Verdict:
    """What a chain answered (None: no answer) and whether the task's exact verifier accepts that answer."""

    answer: str | None
    correct: bool


def heldout(key: str, test_fraction: float = 0.1) -> bool:
    """True if a canonical key belongs to the held-out (test) side. Deterministic, seed-free,
    so train and test are disjoint by construction: train generators reject held-out keys."""
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return (h % 1_000_000) < test_fraction * 1_000_000


class Task:
    """Base class: subclasses set ``name`` and implement ``sample``, ``steps`` and ``verify``.

    ``generate`` handles seeding, split membership and dedupe so every task gets them right.
    """

    name: ClassVar[str] = ""
    #: True when ``check`` can judge an answer without the gold answer (Countdown, equations, cipher).
    checkable: ClassVar[bool] = False
    #: What ``cheap_check`` does (e.g. "casting out nines"); "" when the task has no cheap answer check.
    check_method: ClassVar[str] = ""

    def sample(self, rng: random.Random, difficulty: int) -> Problem:
        """Draw one random problem at the given difficulty."""
        raise NotImplementedError

    def default_difficulty(self, split: str) -> int:
        """Difficulty for a split: ``ood`` is harder than train/test."""
        return 2 if split == "ood" else 1

    def generate(self, n: int, *, seed: int, split: str = "train", difficulty: int | None = None) -> list[Problem]:
        """``n`` distinct problems of a split. train and test never share a key; ood is harder."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
        if n < 0:
            raise ValueError("n must be >= 0")
        rng = random.Random(f"{self.name}:{split}:{seed}")
        level = self.default_difficulty(split) if difficulty is None else difficulty
        seen: set[str] = set()
        out: list[Problem] = []
        tries = 0
        while len(out) < n:
            tries += 1
            if tries > 200 * n + 1000:
                raise ValueError(f"{self.name}: could only make {len(out)} distinct {split} problems of {n}")
            p = self.sample(rng, level)
            if p.key in seen or (split != "ood" and heldout(p.key) != (split == "test")):
                continue
            seen.add(p.key)
            out.append(p)
        return out

    def steps(self, problem: Problem) -> list[str]:
        """Reference chain of thought: explicit steps, one line each, answer line excluded."""
        raise NotImplementedError

    def reference(self, problem: Problem) -> str:
        """Full reference chain text (steps + answer line)."""
        return render_chain(self.steps(problem), problem.answer)

    def extract_answer(self, text: str) -> str | None:
        """Answer from generated chain text; None for no answer. Never raises."""
        return split_chain(text)[1]

    def verify(self, problem: Problem, answer: str | None) -> bool:
        """Exact outcome verifier against the gold answer (an oracle when used for selection)."""
        raise NotImplementedError

    # The seam every evaluation goes through (accuracy, rewards, verified-chain filters, scorers, reports): subclasses
    # override extract_answer and verify, callers use these, so model text can never take a run down.

    def judge(self, problem: Problem, text: str) -> Verdict:
        """What is the answer in chain ``text``, and is it right? Extract, then verify. Never raises."""
        answer = self.read_answer(text)
        return Verdict(answer, self.accepts(problem, answer))

    def read_answer(self, text: str) -> str | None:
        """``extract_answer`` that never raises: text that is not a str, or that the parser chokes on, has no answer.
        What search uses: it must not read the gold answer."""
        if not isinstance(text, str):
            return None
        try:
            return self.extract_answer(text)
        except Exception:  # a task parser must not take a search or a training run down on garbage text
            return None

    def accepts(self, problem: Problem, answer: str | None) -> bool:
        """``verify`` of an answer already extracted (e.g. a search result's); no answer, or one the verifier chokes
        on, is wrong. Never raises."""
        if answer is None:
            return False
        try:
            return bool(self.verify(problem, answer))
        except Exception:  # garbage answers are wrong, not errors
            return False

    def check(self, problem: Problem, answer: str | None) -> bool | None:
        """Reference-free check (does not read ``problem.answer``); None when the task has none."""
        return None

    def cheap_check(self, problem: Problem, candidate: str) -> tuple[str, bool] | None:
        """``(work, ok)``: a check of ``candidate`` by ``check_method``, a method cheaper than solving again.

        ``work`` is the method's visible work, one line a model can learn to write (the body of a thinking check line,
        ``qstar.tasks.thinking``); ``ok`` is the verdict the method itself reaches from the problem statement, never
        from ``problem.answer``. None exactly when the task (for a mixture, the problem's own task) has no cheap check
        (``check_method == ""``); a candidate the method cannot read gives ``(UNREADABLE, False)``. Never raises on any
        candidate.
        """
        return None

    def check_step(self, problem: Problem, prev_steps: list[str], step: str) -> bool | None:
        """Is ``step`` a correct next step after ``prev_steps``? None when the task has no step checker."""
        return None

    def corrupt(self, problem: Problem, rng: random.Random) -> list[str]:
        """Reference steps with one plausible wrong step (for tests and retry/backtrack data)."""
        raise NotImplementedError

    def implied_answer(self, problem: Problem, steps: list[str]) -> str | None:
        """The answer ``steps`` lead to (e.g. the last running sum of a corrupted chain); None if unknown."""
        return None

    def dumps(self, problem: Problem) -> str:
        return json.dumps(problem.to_json())


class PlainTask(Task):
    """Grades problems from outside the task registry (scripted tests, user data): the plain "Answer:" line, exact
    match with ``problem.answer``, and no reference steps, checks or step checks."""

    def verify(self, problem: Problem, answer: str | None) -> bool:
        return answer is not None and answer == problem.answer
