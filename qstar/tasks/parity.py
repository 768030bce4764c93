"""Parity of a bit string: "Is the number of 1s in 0110100111010110 even or odd?".

The task where thinking is provably needed at small scale (Tsilivis et al. 2025): a transformer answering at once
does no better than chance on long strings, while the chain keeps a running parity one bit per line and is learnt in a
few hundred updates. The chain copies the bits, then writes the parity so far after each bit (``e`` even, ``o`` odd):

    0110 / eooo / Answer: even

Both lines give each bit one character, so the bit the second line needs is always the same distance back (one copy
line) and the parity it updates is the character before: fixed-offset look-ups a tiny model learns fast, where one
line per bit put the bit ever further back (LOG.md). Train/test strings have 16 bits, ood 24.
"""

from __future__ import annotations

import random
import re

from qstar.tasks.base import Problem, Task
from qstar.tasks.format import clean_line

PHRASINGS = (
    "Is the number of 1s in {b} even or odd?",
    "What is the parity of {b}?",
    "Does {b} contain an even or an odd number of ones?",
    "Parity of the bits {b}?",
)
_WALK = re.compile(r"^[eo]{1,200}$")


def parse_parity(text: str | None) -> str | None:
    """"even" or "odd" from an answer (case, spaces and a final full stop ignored); None otherwise."""
    if not isinstance(text, str):
        return None
    s = text.strip().rstrip(".").strip().lower()
    return s if s in ("even", "odd") else None


def walk(bits: str) -> list[str]:
    """The copied bits, then each bit with the running parity (see the module docstring)."""
    walked, odd = [], False
    for b in bits:
        odd ^= b == "1"
        walked.append("o" if odd else "e")
    return [bits, "".join(walked)]


class Parity(Task):
    """Even or odd number of 1s in a bit string; difficulty = its length (16 at train/test, 24 ood).

    No cheap check: any check of a parity is a recount, as costly as solving again."""

    name = "parity"
    checkable = False

    def default_difficulty(self, split: str) -> int:
        return 24 if split == "ood" else 16

    def sample(self, rng: random.Random, difficulty: int) -> Problem:
        if difficulty < 1:
            raise ValueError(f"parity difficulty is the bit count, must be >= 1, got {difficulty}")
        bits = "".join(rng.choice("01") for _ in range(difficulty))
        answer = "odd" if bits.count("1") % 2 else "even"
        return Problem(self.name, rng.choice(PHRASINGS).format(b=bits), answer, f"parity:{bits}", {"bits": bits})

    def steps(self, problem: Problem) -> list[str]:
        return walk(problem.data["bits"])

    def verify(self, problem: Problem, answer: str | None) -> bool:
        return parse_parity(answer) == problem.answer

    def check_step(self, problem: Problem, prev_steps: list[str], step: str) -> bool | None:
        ref = self.steps(problem)
        return len(prev_steps) < len(ref) and clean_line(step) == ref[len(prev_steps)]

    def corrupt(self, problem: Problem, rng: random.Random) -> list[str]:
        """One running parity slipped; the later ones follow it (the answer flips)."""
        copy, walked = self.steps(problem)
        i = rng.randrange(len(walked))
        flip = {"e": "o", "o": "e"}
        return [copy, walked[:i] + "".join(flip[c] for c in walked[i:])]

    def implied_answer(self, problem: Problem, steps: list[str]) -> str | None:
        last = clean_line(steps[-1]) if steps else ""
        return ("odd" if last[-1] == "o" else "even") if _WALK.match(last) else None
