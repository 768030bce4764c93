"""Letter counting: "How many r's are in strawberry?".

The chain names the asked letter, then walks the word one letter per line with its running count:

    count r / s0 / t0 / r1 / a1 / w1 / b1 / e1 / r2 / r3 / y3 / Answer: 3

The first step is there because a tiny model copied the word right and still never raised the count: the letter
to compare with sat somewhere in the question's wording, not at a fixed place in the chain (LOG.md).

Train/test words come from the built-in COMMON list (3-10 letters); ood uses longer, rarer words
(11+ letters) and random letter strings of 12-20 letters.
"""

from __future__ import annotations

import random
import re
import string

from qstar.tasks.base import UNREADABLE, Problem, Task
from qstar.tasks.format import clean_line
from qstar.tasks.words import COMMON, LONG

PHRASINGS = (
    "How many {c}'s are in {w}?",
    "How many times does the letter {c} appear in {w}?",
    "Count the {c}'s in the word {w}.",
    "In the word {w}, how many times does {c} occur?",
    "How many letter {c} are there in '{w}'?",
    "What is the count of the letter {c} in {w}?",
)
NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_STEP = re.compile(r"^([a-z])(\d{1,6})$")
HEAD = "count {c}"


def parse_count(text: str | None) -> int | None:
    """A count written as digits ("3", " 03 ") or a number word ("three"); None otherwise."""
    if not isinstance(text, str):
        return None
    s = text.strip().rstrip(".").strip().lower()
    if re.fullmatch(r"\d{1,6}", s):
        return int(s)
    return NUMBER_WORDS.get(s)


def walk(word: str, letter: str) -> list[str]:
    """The asked letter, then one line per letter of ``word``: the letter and the running count of ``letter``."""
    out, n = [HEAD.format(c=letter)], 0
    for ch in word:
        n += ch == letter
        out.append(f"{ch}{n}")
    return out


class LetterCount(Task):
    """Count one letter in a word; difficulty 1 = common words, 2 (ood) = long/rare words or random strings."""

    name = "letters"
    checkable = True
    check_method = "positions recount"

    def __init__(self, *, absent_fraction: float = 0.15):
        if not 0 <= absent_fraction <= 1:
            raise ValueError(f"absent_fraction must be in [0, 1], got {absent_fraction}")
        self.absent_fraction = absent_fraction  # share of questions about a letter not in the word

    def _word(self, rng: random.Random, difficulty: int, tries: int) -> str:
        """A real word at first; after a few tries a string of a few repeated letters (counts of 2-3 are rare in
        common words, and held-out dedupe would exhaust them)."""
        if tries < 4:
            return rng.choice(COMMON if difficulty <= 1 else LONG)
        pool = rng.sample(string.ascii_lowercase, rng.randint(3, 5) if difficulty <= 1 else rng.randint(4, 8))
        size = rng.randint(5, 9) if difficulty <= 1 else rng.randint(12, 20)
        return "".join(rng.choice(pool) for _ in range(size))

    def sample(self, rng: random.Random, difficulty: int) -> Problem:
        # Pick the count first, then a word with a letter of that count. Drawing a letter of a random word made "1"
        # the answer to 73% of questions, and RL learned to answer "1" to everything (LOG.md, 2026-11-22).
        target = 0 if rng.random() < self.absent_fraction else rng.randint(1, 3)
        for tries in range(100):
            word = self._word(rng, difficulty, tries)
            counts = {c: word.count(c) for c in string.ascii_lowercase}
            letters = [c for c in string.ascii_lowercase if counts[c] == target]
            if letters:
                break
        letter = rng.choice(letters) if letters else word[0]
        question = rng.choice(PHRASINGS).format(c=letter, w=word)
        return Problem(self.name, question, str(word.count(letter)), f"letters:{word}:{letter}",
                       {"word": word, "letter": letter})

    def steps(self, problem: Problem) -> list[str]:
        return walk(problem.data["word"], problem.data["letter"])

    def verify(self, problem: Problem, answer: str | None) -> bool:
        got = parse_count(answer)
        return got is not None and got == parse_count(problem.answer)

    def check(self, problem: Problem, answer: str | None) -> bool | None:
        """Counts the letter in the word from the problem statement (not the gold answer)."""
        got = parse_count(answer)
        return got is not None and got == problem.data["word"].count(problem.data["letter"])

    def cheap_check(self, problem: Problem, candidate: str) -> tuple[str, bool] | None:
        """A recount by another route than the chain's walk: the 1-based positions of the letter in the word, their
        count, and the comparison with the candidate: "r at 3 8 9 count 3=3" (strawberry), "q at none count 0!=1".
        Exact; a candidate that is not a count (``parse_count``) is unreadable."""
        got = parse_count(candidate)
        if got is None:
            return UNREADABLE, False
        word, letter = problem.data["word"], problem.data["letter"]
        pos = [str(i + 1) for i, ch in enumerate(word) if ch == letter]
        n = len(pos)
        return f"{letter} at {' '.join(pos) or 'none'} count {n}{'=' if n == got else '!='}{got}", n == got

    def check_step(self, problem: Problem, prev_steps: list[str], step: str) -> bool | None:
        """The first line must name the asked letter; the next ones each letter with the true running count."""
        ref = self.steps(problem)
        i = len(prev_steps)
        return i < len(ref) and clean_line(step).replace(" ", "") == ref[i].replace(" ", "")

    def corrupt(self, problem: Problem, rng: random.Random) -> list[str]:
        """Miss one occurrence or count one look-alike letter; later counts carry the error."""
        word, letter = problem.data["word"], problem.data["letter"]
        hits = [i for i, ch in enumerate(word) if ch == letter]
        i = rng.choice(hits) if hits and rng.random() < 0.6 else rng.choice([i for i in range(len(word))
                                                                           if i not in hits] or [0])
        delta = -1 if i in hits else 1
        ref = walk(word, letter)[1:]
        return [HEAD.format(c=letter)] + ref[:i] + [f"{word[j]}{int(ref[j][1:]) + delta}" for j in range(i, len(word))]

    def implied_answer(self, problem: Problem, steps: list[str]) -> str | None:
        m = _STEP.match(clean_line(steps[-1]).replace(" ", "")) if steps else None
        return m.group(2) if m else None
