"""n x m digit multiplication with a chain a tiny character-level model can learn.

Every number in the chain is written least-significant digit first and zero-padded to the fixed
width W = n + m, so each output digit depends on a short, fixed window of earlier characters (carries
flow left to right, the direction the model writes). For 123*456 (W = 6):

    123*456                        operands copied from the question (whatever its phrasing)
    321*654                        and reversed
    6:81 21 60 837000              6*3, 6*2, 6*1 (each two digits, reversed); partial 123*6 = 738
    5:51 01 50 051600 888600       the same for 5; partial 123*5*10 = 6150; running sum 6888
    4:21 80 40 002940 880650       partial 123*4*100 = 49200; running sum 56088
    Answer: 56088                  normal order, no leading zeros

The first row has no running sum (it would repeat the partial product). Each written digit is a small
function of a few digits at fixed offsets: a one-digit product is a table lookup, and a partial-product
digit is units(p_k) + tens(p_k-1) + carry. The plain copy comes first because reversing straight out of a
free-form question was the slowest thing to learn, and spelling out the one-digit products made the rows
learnable sooner (LOG.md, 2026-11-22).
"""

from __future__ import annotations

import random
import re

from qstar.tasks.base import UNREADABLE, Problem, Task
from qstar.tasks.format import clean_line

PHRASINGS = (
    "What is {a} times {b}?",
    "Compute {a}*{b}.",
    "Multiply {a} by {b}.",
    "What's the product of {a} and {b}?",
    "Calculate {a} x {b}.",
    "{a} * {b} = ?",
    "What do you get when you multiply {a} and {b}?",
)
_ROW = re.compile(r"^(\d):(?:\d\d ){0,60}(\d{1,60})(?: (\d{1,60}))?$")


def _rev(value: int, width: int) -> str:
    """``value`` reversed and zero-padded to ``width`` digits (least significant digit first)."""
    return str(value).zfill(width)[::-1]


def _unrev(digits: str) -> int:
    return int(digits[::-1])


def parse_int(text: str | None) -> int | None:
    """An integer written with optional commas, spaces, underscores, sign or leading zeros; else None."""
    if not isinstance(text, str):
        return None
    s = text.strip().rstrip(".").replace(",", "").replace("_", "").replace(" ", "")
    if not re.fullmatch(r"[+-]?\d{1,200}", s):
        return None
    return int(s)


def nines(n: int) -> tuple[str, int]:
    """Running digit sums mod 9, one digit at a time, and the residue: 123 -> ("123:1 3 6", 6)."""
    sums, s = [], 0
    for ch in str(n):
        s = (s + int(ch)) % 9
        sums.append(str(s))
    return f"{n}:" + " ".join(sums), s


def rows(a: int, b: int) -> list[tuple[int, int, int]]:
    """(digit of b, partial product, running sum) per digit of ``b``, least significant first."""
    out, total = [], 0
    for i, ch in enumerate(reversed(str(b))):
        d = int(ch)
        partial = a * d * 10**i
        total += partial
        out.append((d, partial, total))
    return out


def render_rows(a: int, b: int, table: list[tuple[int, int, int]]) -> list[str]:
    """Chain lines for a (possibly corrupted) table of rows."""
    w = len(str(a)) + len(str(b))
    lines = [f"{a}*{b}", f"{str(a)[::-1]}*{str(b)[::-1]}"]
    for i, (d, partial, total) in enumerate(table):
        products = "".join(_rev(d * int(x), 2) + " " for x in reversed(str(a)))
        lines.append(f"{d}:{products}{_rev(partial, w)}" + ("" if i == 0 else f" {_rev(total, w)}"))
    return lines


class Multiplication(Task):
    """``a * b`` with ``digits=(n, m)`` digit operands at train/test; ood adds one digit to each.

    Cheap check: casting out nines (``cheap_check``). It accepts exactly the candidates congruent to the product mod
    9, so it misses every error that is a multiple of 9 (a transposition of two digits, a result off by 9 or 90),
    and catches every single digit changed by 1 to 8, such as the carry slips ``corrupt`` makes.
    """

    name = "mult"
    checkable = False
    check_method = "casting out nines"

    def __init__(self, digits: tuple[int, int] = (3, 3)):
        if len(digits) != 2 or any(not isinstance(d, int) or d < 1 for d in digits):
            raise ValueError(f"digits must be two positive ints (n, m), got {digits!r}")
        self.digits = (int(digits[0]), int(digits[1]))

    def default_difficulty(self, split: str) -> int:
        return self.digits[0] + (split == "ood")

    def shape(self, difficulty: int) -> tuple[int, int]:
        """Operand digit counts (n, m) at a difficulty (= n, the first operand's digit count)."""
        if difficulty < 1:
            raise ValueError(f"mult difficulty is the digit count, must be >= 1, got {difficulty}")
        return difficulty, max(1, self.digits[1] + difficulty - self.digits[0])

    def sample(self, rng: random.Random, difficulty: int) -> Problem:
        n, m = self.shape(difficulty)
        a, b = rng.randint(10 ** (n - 1), 10**n - 1), rng.randint(10 ** (m - 1), 10**m - 1)
        question = rng.choice(PHRASINGS).format(a=a, b=b)
        return Problem(self.name, question, str(a * b), f"mult:{min(a, b)}*{max(a, b)}", {"a": a, "b": b})

    def steps(self, problem: Problem) -> list[str]:
        a, b = problem.data["a"], problem.data["b"]
        return render_rows(a, b, rows(a, b))

    def verify(self, problem: Problem, answer: str | None) -> bool:
        got = parse_int(answer)
        return got is not None and got == problem.data["a"] * problem.data["b"]

    def cheap_check(self, problem: Problem, candidate: str) -> tuple[str, bool] | None:
        """Casting out nines: running digit sums mod 9 of each operand and of the candidate (small local steps), the
        product of the operand residues mod 9, then the comparison. For 123*456 and 56088:

            123:1 3 6 456:4 0 6 56088:5 2 2 1 0 6*6=0 0=0

        A negative or non-integer candidate is unreadable (and wrong: the product of two naturals is a natural)."""
        got = parse_int(candidate)
        if got is None or got < 0:
            return UNREADABLE, False
        (wa, ra), (wb, rb), (wc, rc) = nines(problem.data["a"]), nines(problem.data["b"]), nines(got)
        r = ra * rb % 9
        return f"{wa} {wb} {wc} {ra}*{rb}={r} {r}{'=' if r == rc else '!='}{rc}", r == rc

    def check_step(self, problem: Problem, prev_steps: list[str], step: str) -> bool | None:
        """True iff ``step`` is the true line at its position (operands, partial product, running sum).

        The chain is canonical (one spelling per correct step), and judged against the true values, so a
        wrong running sum makes every later sum wrong too: errors propagate as in a process label.
        """
        ref = self.steps(problem)
        i = len(prev_steps)
        return i < len(ref) and clean_line(step) == ref[i]

    def corrupt(self, problem: Problem, rng: random.Random) -> list[str]:
        """One wrong digit in a partial product or running sum (a carry slip); later sums follow it."""
        a, b = problem.data["a"], problem.data["b"]
        w = len(str(a)) + len(str(b))
        table = rows(a, b)
        for _ in range(100):
            i = rng.randrange(len(table))
            field = 1 if i == 0 else rng.choice((1, 2))
            old = table[i][field]
            lo = i if field == 1 else 0  # partial products end in i zeros; keep those plausible
            pos = rng.randrange(lo, max(lo + 1, len(str(old))))
            digit = (old // 10**pos) % 10
            new_digit = rng.choice([x for x in range(10) if x != digit and abs(x - digit) <= 2])
            bad = old + (new_digit - digit) * 10**pos
            delta = bad - old
            out = list(table)
            for j in range(i, len(out)):
                d, partial, total = out[j]
                if j == i and field == 1:
                    partial += delta
                out[j] = (d, partial, total + delta)
            if all(0 <= v < 10**w for r in out for v in r[1:]):
                return render_rows(a, b, out)
        d, partial, total = table[-1]  # practically unreachable: nudge the units digit of the final sum
        delta = -1 if total % 10 == 9 else 1
        table[-1] = (d, partial + delta * (len(table) == 1), total + delta)
        return render_rows(a, b, table)

    def implied_answer(self, problem: Problem, steps: list[str]) -> str | None:
        """The last row's running sum (or the only row's partial product), in normal order."""
        if not steps:
            return None
        m = _ROW.match(clean_line(steps[-1]))
        if m is None:
            return None
        return str(_unrev(m.group(3) or m.group(2)))
