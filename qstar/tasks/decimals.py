"""Decimal comparison: "Which is larger, 9.11 or 9.8?" (also "smaller" and yes/no forms).

Half the pairs are the tricky kind: same whole part, and the number with more decimals is smaller.
The chain pads both to the same number of decimals, compares whole parts, then decimals digit by digit
until they differ, states the order with the original spellings, and ends on what was asked (the larger one,
the smaller one, or whether the question's "a > b" / "a < b" holds):

    9.11 9.80 / 9=9 / 1<8 / 9.11<9.8 / larger 9.8 / Answer: 9.8
    Is 9.11 bigger than 9.8?  ->  ... / 9.11<9.8 / 9.11>9.8? no / Answer: no

The last step is there because a tiny model that had the order right still answered the wrong side when the
question asked for the smaller number: the ask lives in the question's wording, far from the answer (LOG.md).
"""

from __future__ import annotations

import random
import re
from decimal import Decimal, InvalidOperation

from qstar.tasks.base import Problem, Task
from qstar.tasks.format import clean_line

PHRASINGS = {
    "larger": ("Which is larger, {a} or {b}?", "Which number is greater: {a} or {b}?",
               "What is the bigger number, {a} or {b}?", "Which one is bigger, {a} or {b}?"),
    "smaller": ("Which is smaller, {a} or {b}?", "Which number is less: {a} or {b}?",
                "What is the smaller number, {a} or {b}?"),
    "is_bigger": ("Is {a} bigger than {b}?", "Is {a} greater than {b}?", "Is {a} larger than {b}?"),
    "is_smaller": ("Is {a} smaller than {b}?", "Is {a} less than {b}?"),
}
YES, NO = {"yes", "y", "true", "correct"}, {"no", "n", "false", "incorrect"}
_NUM = re.compile(r"\d+(?:\.\d+)?")
_DEC = re.compile(r"[+-]?(\d{1,30}(\.\d{0,30})?|\.\d{1,30})")


def parse_decimal(text: str | None) -> Decimal | None:
    """A decimal number ("9.8", "09.80", ".8", "1,234.5"); None otherwise."""
    if not isinstance(text, str):
        return None
    s = text.strip().rstrip(".").replace(",", "").replace(" ", "")
    if not _DEC.fullmatch(s):
        return None
    try:
        return Decimal(s)
    except InvalidOperation:
        return None


def _values(line: str) -> str:
    """``line`` with every number written by value ("09.80" -> "9.8"), so spellings of one number compare equal."""
    return _NUM.sub(lambda m: format(Decimal(m[0]).normalize(), "f"), line)


def _number(rng: random.Random, whole: int, places: int) -> str:
    """A decimal with ``places`` digits after the point, the last one non-zero (no "9.10" spellings)."""
    digits = [str(rng.randint(0, 9)) for _ in range(places - 1)] + [str(rng.randint(1, 9))]
    return f"{whole}." + "".join(digits)


def gold_answer(a: str, b: str, kind: str) -> str:
    """The answer from the statement alone: the larger/smaller spelling, or yes/no for a-vs-b questions."""
    x, y = Decimal(a), Decimal(b)
    return {"larger": a if x > y else b, "smaller": a if x < y else b,
            "is_bigger": "yes" if x > y else "no", "is_smaller": "yes" if x < y else "no"}[kind]


def chain(a: str, b: str, kind: str, *, flip: bool = False) -> list[str]:
    """Pad, compare whole parts, compare decimals digit by digit, conclude, answer the ask.

    ``flip`` inverts the deciding step; the conclusion and the last step follow it."""
    places = max(len(a.split(".")[1]), len(b.split(".")[1]))
    pa, pb = (s.split(".")[0] + "." + s.split(".")[1].ljust(places, "0") for s in (a, b))
    lines = [f"{pa} {pb}"]
    pairs = [(int(pa.split(".")[0]), int(pb.split(".")[0]))] + list(zip(pa.split(".")[1], pb.split(".")[1]))
    for x, y in pairs:
        rel = "=" if int(x) == int(y) else ("<" if int(x) < int(y) else ">")
        if rel != "=" and flip:
            rel = "<" if rel == ">" else ">"
        lines.append(f"{x}{rel}{y}")
        if rel != "=":
            lines.append(f"{a}{rel}{b}")
            lines.append(asked(a, b, kind, a_is_larger=rel == ">"))
            break
    return lines


def asked(a: str, b: str, kind: str, *, a_is_larger: bool) -> str:
    """The chain's last step: the number or yes/no the question asks for, given the order the chain concluded."""
    hi, lo = (a, b) if a_is_larger else (b, a)
    return {"larger": f"larger {hi}", "smaller": f"smaller {lo}",
            "is_bigger": f"{a}>{b}? {'yes' if a_is_larger else 'no'}",
            "is_smaller": f"{a}<{b}? {'no' if a_is_larger else 'yes'}"}[kind]


class DecimalCompare(Task):
    """Compare two decimals; difficulty 1: whole part 0-20, 1-3 decimals; 2 (ood): 0-999, up to 6 decimals.

    No cheap check (``check_method = ""``): solving is already one digit-by-digit scan, and every check of a candidate
    (the sign of the padded difference, say) costs at least as much, so a check line would only re-solve. Re-derived
    steps (``Check: 1<8 ok``) still work.
    """

    name = "decimals"
    checkable = True

    def sample(self, rng: random.Random, difficulty: int) -> Problem:
        max_whole, max_places = (20, 3) if difficulty <= 1 else (999, 6)
        while True:
            style = rng.random()
            w1 = rng.randint(0, max_whole)
            w2 = w1 if style < 0.75 else rng.randint(0, max_whole)
            a = _number(rng, w1, rng.randint(1, max_places))
            b = _number(rng, w2, rng.randint(1, max_places))
            if style < 0.5:  # tricky: the longer decimal is the smaller number
                longer, shorter = (a, b) if len(a) > len(b) else (b, a)
                if len(a) == len(b) or Decimal(longer) > Decimal(shorter):
                    continue
            if Decimal(a) != Decimal(b):
                break
        kind = rng.choice(list(PHRASINGS))
        question = rng.choice(PHRASINGS[kind]).format(a=a, b=b)
        key = "decimals:" + "|".join(sorted((a, b)))
        return Problem(self.name, question, gold_answer(a, b, kind), key, {"a": a, "b": b, "kind": kind})

    def steps(self, problem: Problem) -> list[str]:
        d = problem.data
        return chain(d["a"], d["b"], d["kind"])

    def _match(self, gold: str, answer: str | None) -> bool:
        if not isinstance(answer, str):
            return False
        if gold in ("yes", "no"):
            word = answer.strip().rstrip(".!").strip().lower()
            return word in (YES if gold == "yes" else NO)
        got = parse_decimal(answer)
        return got is not None and got == Decimal(gold)

    def verify(self, problem: Problem, answer: str | None) -> bool:
        return self._match(problem.answer, answer)

    def check(self, problem: Problem, answer: str | None) -> bool | None:
        """Recomputes the comparison from the two numbers in the statement."""
        d = problem.data
        return self._match(gold_answer(d["a"], d["b"], d["kind"]), answer)

    def check_step(self, problem: Problem, prev_steps: list[str], step: str) -> bool | None:
        """Each line of the chain is determined by the numbers; a step is correct iff it is the true line up to
        how its numbers are spelled ("9.110 9.800" restates 9.11 and 9.8 as well as the reference "9.11 9.80")."""
        ref = self.steps(problem)
        i = len(prev_steps)
        return i < len(ref) and _values(clean_line(step)) == _values(ref[i])

    def corrupt(self, problem: Problem, rng: random.Random) -> list[str]:
        """The deciding comparison goes the wrong way (the 9.11 > 9.8 mistake); the conclusion follows it."""
        d = problem.data
        return chain(d["a"], d["b"], d["kind"], flip=True)

    def implied_answer(self, problem: Problem, steps: list[str]) -> str | None:
        """The answer the last "a<b" / "a>b" conclusion implies for this question kind."""
        lines = (clean_line(s) for s in reversed(steps))
        m = next((m for m in map(re.compile(r"(\S+)([<>])(\S+)").fullmatch, lines) if m), None)
        if m is None:
            return None
        lo, hi = (m[1], m[3]) if m[2] == "<" else (m[3], m[1])
        a = problem.data["a"]
        return {"larger": hi, "smaller": lo, "is_bigger": "yes" if hi == a else "no",
                "is_smaller": "yes" if lo == a else "no"}[problem.data["kind"]]
