"""Caesar cipher decoding: each letter of the plaintext was shifted forward by a fixed amount (mod 26).

Train/test give the shift; ood gives a known plaintext word and its encryption instead, so the shift
must be inferred first. The chain states the shift (or infers it from the hint's first letters), then
decodes word by word:

    shift 3 / khoor=hello / zruog=world / Answer: hello world
    f-c=3 / khoor=hello / Answer: hello                       (hint "cat" -> "fdw")
"""

from __future__ import annotations

import random
import re

from qstar.tasks.base import UNREADABLE, Problem, Task
from qstar.tasks.format import clean_line
from qstar.tasks.words import SHORT

GIVEN = (
    "Decode the Caesar cipher '{c}' with shift {s}.",
    "The message '{c}' was encrypted with a Caesar shift of {s}. What does it say?",
    "Decrypt '{c}' using a Caesar cipher with key {s}.",
    "Caesar shift {s}: what is the plaintext of '{c}'?",
    "Each letter of '{c}' was moved {s} places forward in the alphabet. What is the original text?",
)
HINTED = (
    "In a Caesar cipher, '{p}' becomes '{h}'. Decode '{c}'.",
    "A Caesar cipher turns '{p}' into '{h}'. What does '{c}' say?",
    "Using the same Caesar shift that maps '{p}' to '{h}', decrypt '{c}'.",
    "Known plaintext: '{p}' encrypts to '{h}'. Find the plaintext of '{c}'.",
)


def shift_text(text: str, shift: int) -> str:
    """Shift every lowercase letter forward by ``shift`` (mod 26); other characters unchanged."""
    return "".join(chr((ord(ch) - 97 + shift) % 26 + 97) if "a" <= ch <= "z" else ch for ch in text)


def normalize(text: str | None) -> str | None:
    """Lowercase words of letters only, single-spaced ("Hello,  World!" -> "hello world"); None if empty."""
    if not isinstance(text, str):
        return None
    words = re.sub(r"[^a-z\s]", "", text.lower()).split()
    return " ".join(words) or None


def _shift_of(data: dict) -> int:
    """The shift from the statement: given, or inferred from the hint pair."""
    if data.get("hint"):
        plain, enc = data["hint"]
        return (ord(enc[0]) - ord(plain[0])) % 26
    return int(data["shift"])


class Caesar(Task):
    """Decode a Caesar cipher; difficulty 1 = shift given, 1-2 words; 2 (ood) = shift from a hint, 2-3 words.

    ``shifts``: the shifts problems use (default every shift 1-25). Decoding with any of 25 shifts is 650
    letter facts; one fixed shift (the classic Caesar 3) is a 26-letter substitution a tiny model learns in
    minutes, which is what the demo's mixture uses (LOG.md, 2026-12-01).
    """

    name = "cipher"
    checkable = True
    check_method = "re-encoding"

    def __init__(self, *, shifts: tuple[int, ...] | list[int] = tuple(range(1, 26))):
        shifts = tuple(int(k) for k in shifts)
        if not shifts or any(not 1 <= k <= 25 for k in shifts):
            raise ValueError(f"cipher shifts must be a non-empty list of integers in 1..25, got {shifts}")
        self.shifts = shifts

    def sample(self, rng: random.Random, difficulty: int) -> Problem:
        shift = rng.choice(self.shifts)
        hinted = difficulty >= 2
        words = [rng.choice(SHORT) for _ in range(rng.randint(2, 3) if hinted else rng.randint(1, 2))]
        plain = " ".join(words)
        cipher = shift_text(plain, shift)
        data: dict = {"cipher": cipher, "shift": None if hinted else shift, "hint": None}
        if hinted:
            known = rng.choice(SHORT)
            while known in words:
                known = rng.choice(SHORT)
            data["hint"] = [known, shift_text(known, shift)]
            question = rng.choice(HINTED).format(p=known, h=data["hint"][1], c=cipher)
            key = f"cipher:{known}>{data['hint'][1]}:{cipher}"
        else:
            question = rng.choice(GIVEN).format(c=cipher, s=shift)
            key = f"cipher:{shift}:{cipher}"
        return Problem(self.name, question, plain, key, data)

    def _lines(self, data: dict, bad: tuple[int, int, int] | None = None) -> list[str]:
        """Shift line, then "cipherword=plainword"; ``bad=(word, letter, +-1)`` decodes that letter one off."""
        shift = _shift_of(data)
        if data.get("hint"):
            plain, enc = data["hint"]
            head = f"{enc[0]}-{plain[0]}={shift}"
        else:
            head = f"shift {shift}"
        lines = [head]
        for i, cw in enumerate(data["cipher"].split()):
            pw = shift_text(cw, -shift)
            if bad is not None and bad[0] == i:
                j = bad[1] % len(pw)
                pw = pw[:j] + shift_text(pw[j], bad[2]) + pw[j + 1:]
            lines.append(f"{cw}={pw}")
        return lines

    def steps(self, problem: Problem) -> list[str]:
        return self._lines(problem.data)

    def verify(self, problem: Problem, answer: str | None) -> bool:
        got = normalize(answer)
        return got is not None and got == normalize(problem.answer)

    def check(self, problem: Problem, answer: str | None) -> bool | None:
        """Re-encrypts the answer with the statement's shift and compares with the ciphertext."""
        got = normalize(answer)
        return got is not None and shift_text(got, _shift_of(problem.data)) == normalize(problem.data["cipher"])

    def cheap_check(self, problem: Problem, candidate: str) -> tuple[str, bool] | None:
        """Re-encodes the candidate (normalised as ``verify`` reads it) with the shift and compares with the
        ciphertext: "+3 khoor zruog=khoor zruog". Exact, since a shift is one-to-one; no letters is unreadable."""
        got = normalize(candidate)
        if got is None:
            return UNREADABLE, False
        shift, cipher = _shift_of(problem.data), normalize(problem.data["cipher"])
        enc = shift_text(got, shift)
        return f"+{shift} {enc}{'=' if enc == cipher else '!='}{cipher}", enc == cipher

    def check_step(self, problem: Problem, prev_steps: list[str], step: str) -> bool | None:
        """The shift line must give the true shift; the i-th word line must decode the i-th cipher word."""
        ref = self.steps(problem)
        i = len(prev_steps)
        return i < len(ref) and clean_line(step).replace(" = ", "=") == ref[i]

    def corrupt(self, problem: Problem, rng: random.Random) -> list[str]:
        """One letter of one word decoded one place off (a shift applied as shift +- 1)."""
        n = len(problem.data["cipher"].split())
        return self._lines(problem.data, (rng.randrange(n), rng.randrange(100), rng.choice((-1, 1))))

    def implied_answer(self, problem: Problem, steps: list[str]) -> str | None:
        words = [line.split("=", 1)[1] for line in map(clean_line, steps) if re.fullmatch(r"[a-z]+=[a-z]+", line)]
        return " ".join(words) or None

