"""Age word puzzles: linear equations in two people's present ages, x (first named) and y (second).

Determined puzzles ("Alice is three times as old as Bob. In 5 years Alice will be twice as old as Bob.")
have one solution, written "15 and 5" (x first). The family puzzle ("The princess is as old as the
prince will be when the princess is twice as old as the prince was when the princess's age was half
the sum of their present ages") fixes only the ratio; its answer is written in lowest terms as
"4k and 3k" (a coefficient of 1 is written "k"), and any scaling ("8k and 6k") verifies.

Chain (determined): each sentence as an equation, each equation normalised to "x+by=c", the second
subtracted from the first, then y and x:

    x=3y / x+5=2(y+5) / x-3y=0 / x-2y=5 / -y=-5 / y=5 / x=15

Chain (family, m = "twice"): a = years ago, b = prince's age then, c = years ahead, d = prince's age then:

    a=(x-y)/2 / b=y-a=(-x+3y)/2 / c=2b-x=-2x+3y / d=y+c=-2x+4y / x=d=-2x+4y / 3x-4y=0
"""

from __future__ import annotations

import math
import random
import re
from fractions import Fraction

from qstar.tasks.arith import evaluate, fraction_op, tokenize
from qstar.tasks.base import UNREADABLE, Problem, Task
from qstar.tasks.format import clean_line

NAMES = ("Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Hugo", "Ivy", "Jack", "Kate", "Liam",
         "Mia", "Noah", "Olga", "Paul", "Rosa", "Sam", "Tara", "Umar", "Vera", "Will", "Yara", "Zane")
ROYALS = (("princess", "prince"), ("queen", "king"), ("aunt", "uncle"), ("mother", "father"), ("wife", "husband"))
TIMES = {2: "twice", 3: "three times", 4: "four times", 5: "five times", 6: "six times"}
ENDINGS = ("How old are {A} and {B}?", "What are the present ages of {A} and {B}?",
           "Find the current ages of {A} and {B}.", "What are {A}'s and {B}'s ages now?",
           "How old is each of them? Give {A}'s age first.")
FAMILY_ENDINGS = ("How old are they, in terms of k?", "Give their ages in terms of k.",
                  "Express the ages of {A} and {B} in terms of k.", "What are their ages (use k)?")
Lin = tuple[Fraction, Fraction, Fraction]  # p*x + q*y + r


# ---- sentence templates: (words, literal equation, normalised [p, q, r] meaning p*x + q*y = r) ----
def _times(k: int) -> str:
    return TIMES.get(k, f"{k} times")


def _templates(rng: random.Random, x: int, y: int, hard: bool) -> list[tuple[str, str, list[int]]] | None:
    """Two independent sentences true of present ages (x, y); None when the drawn numbers do not fit.

    Easy pairs contain at least one sentence about the present; hard (ood) pairs are both about other times.
    """
    plain, shifted = [], []
    k = x // y if x % y == 0 else 0
    if k >= 2:
        plain.append((f"{{A}} is {_times(k)} as old as {{B}}.", f"x={k}y", [1, -k, 0]))
    if x > y:
        plain.append((f"{{A}} is {x - y} years older than {{B}}.", f"x=y+{x - y}", [1, -1, x - y]))
    plain.append((f"The sum of their ages is {x + y}.", f"x+y={x + y}", [1, 1, x + y]))
    for j in range(2, 7):
        u = (x - j * y) // (j - 1) if (x - j * y) % (j - 1) == 0 else 0
        if u > 0:  # in u years A will be j times as old as B: x - j*y = (j-1)*u
            shifted.append((f"In {u} years {{A}} will be {_times(j)} as old as {{B}}.",
                            f"x+{u}={j}(y+{u})", [1, -j, (j - 1) * u]))
        v = (j * y - x) // (j - 1) if (j * y - x) % (j - 1) == 0 else 0
        if 0 < v < y:  # v years ago A was j times as old as B: x - j*y = -(j-1)*v
            shifted.append((f"{v} years ago {{A}} was {_times(j)} as old as {{B}}.",
                            f"x-{v}={j}(y-{v})", [1, -j, -(j - 1) * v]))
    s = rng.randint(1, 15)
    shifted.append((f"In {s} years the sum of their ages will be {x + y + 2 * s}.",
                    f"x+{s}+y+{s}={x + y + 2 * s}", [1, 1, x + y]))
    firsts, seconds = (shifted, shifted) if hard else (plain, plain + shifted)
    pairs = [(a, b) for a in firsts for b in seconds if a[2][0] * b[2][1] - b[2][0] * a[2][1] != 0]
    if not pairs:
        return None
    pair = list(rng.choice(pairs))
    rng.shuffle(pair)
    return pair


def _lin(text: str, env: dict[str, Lin]) -> Lin | None:
    """Linear form of an expression in x, y and defined names; None if malformed or non-linear."""
    def atom(t: str):
        if t.isdigit():
            return (Fraction(0), Fraction(0), Fraction(int(t)))
        return {"x": (Fraction(1), Fraction(0), Fraction(0)), "y": (Fraction(0), Fraction(1), Fraction(0)),
                **env}.get(t)

    def binop(op: str, a: Lin, b: Lin):
        if op in "+-":
            s = 1 if op == "+" else -1
            return tuple(u + s * v for u, v in zip(a, b))
        if op == "*" and (a[0] == a[1] == 0 or b[0] == b[1] == 0):
            return tuple(u * b[2] + v * a[2] for u, v in zip(a[:2], b[:2])) + (a[2] * b[2],)
        if op == "/" and b[0] == b[1] == 0 and b[2] != 0:
            return tuple(u / b[2] for u in a)
        return None

    return evaluate(tokenize(text, names=True), atom=atom, binop=binop, neg=lambda a: tuple(-u for u in a))


def _fmt(form: Lin) -> str:
    """"(-x+3y)/2"-style text of a linear form p*x + q*y (+ r), integer numerators over one denominator."""
    den = math.lcm(*(f.denominator for f in form))
    terms = []
    for coef, var in zip((f * den for f in form), ("x", "y", "")):
        if coef == 0:
            continue
        mag = "" if abs(coef) == 1 and var else str(abs(coef))
        terms.append(("-" if coef < 0 else "+") + mag + var)
    body = "".join(terms).lstrip("+") or "0"
    return body if den == 1 else f"({body})/{den}"


def _eq(p: int, q: int, r: int) -> str:
    return _fmt((Fraction(p), Fraction(q), Fraction(0))) + f"={r}"


def _family_chain(m: int, slip: tuple[int, Lin] | None = None) -> tuple[list[str], tuple[int, int]]:
    """Chain lines and the final (p, q) with p*x + q*y = 0 for the family puzzle with multiplier ``m``."""
    one, half = Fraction(1), Fraction(1, 2)
    x, y = (one, Fraction(0), Fraction(0)), (Fraction(0), one, Fraction(0))
    vals: list[Lin] = []
    specs = [("a=(x-y)/2", lambda: tuple(half * (u - v) for u, v in zip(x, y))),
             ("b=y-a", lambda: tuple(u - v for u, v in zip(y, vals[0]))),
             (f"c={m}b-x", lambda: tuple(m * u - v for u, v in zip(vals[1], x))),
             ("d=y+c", lambda: tuple(u + v for u, v in zip(y, vals[2]))),
             ("x=d", lambda: vals[3])]
    lines = []
    for i, (head, fn) in enumerate(specs):
        v = fn()
        if slip is not None and slip[0] == i:
            v = tuple(u + w for u, w in zip(v, slip[1]))
        vals.append(v)
        lines.append(f"{head}={_fmt(v)}" if i else head)
    diff = tuple(u - w for u, w in zip(x, vals[4]))  # x - d = 0, scaled to coprime integers with p > 0
    den = math.lcm(*(f.denominator for f in diff))
    p, q = int(diff[0] * den), int(diff[1] * den)
    g = math.gcd(p, q) or 1
    p, q = (p // g, q // g) if p >= 0 else (-p // g, -q // g)
    lines.append(_eq(p, q, 0))
    return lines, (p, q)


def _family_answer(p: int, q: int) -> str:
    """"4k and 3k" for 3x-4y=0 (x:y = -q:p), coefficients of 1 written as plain "k"."""
    def term(c: int) -> str:
        return "k" if c == 1 else f"{c}k"
    return f"{term(-q)} and {term(p)}"


_TERM = re.compile(r"(-?\d+(?:/\d+)?)?\s*\*?\s*(?<![a-z])([knt])(?![a-z])|(-?\d+(?:/\d+)?)")


def parse_ages(answer: str | None) -> tuple[list[Fraction], bool] | None:
    """Two age terms and whether they are a family: "15 and 5", "x=15, y=5" -> ([15, 5], False);
    "4k and 3k", "k, 2k", "4:3" -> ([4, 3], True). None unless exactly two terms."""
    if not isinstance(answer, str) or len(answer) > 200:
        return None
    text = re.sub(r"\b[xy]\s*=", " ", answer.lower())
    vals, params = [], []
    for m in _TERM.finditer(text):
        num = m.group(1) if m.group(2) else m.group(3)
        if num and re.search(r"/0+$", num):
            return None
        vals.append(Fraction(num) if num else Fraction(1))
        params.append(bool(m.group(2)))
    if len(vals) != 2 or params[0] != params[1]:
        return None
    return vals, params[0] or re.search(r"\d\s*:\s*\d", text) is not None  # "4:3" is a ratio


def family_problem(m: int, a: str, b: str, ending: str = FAMILY_ENDINGS[0]) -> Problem:
    """The family puzzle "{a} is as old as {b} will be when {a} is m times as old as {b} was when ..." as a Problem."""
    q = (f"{a} is as old as {b} will be when {a} is {_times(m)} as old as {b} was when "
         f"{a}'s age was half the sum of their present ages. ")
    q = q[0].upper() + q[1:] + ending.format(A=a, B=b)
    _, (p, qq) = _family_chain(m)
    data = {"family": m, "eqs": [[p, qq, 0]], "names": [a, b]}
    # the family has few mathematical variants (m), so names are part of the key
    return Problem("ages", q, _family_answer(p, qq), f"ages:family:{m}:{a}:{b}", data)


class Ages(Task):
    """Age puzzles; difficulty 1 = simple sentences and "twice"/"three times" families, 2 (ood) = harder."""

    name = "ages"
    checkable = True
    check_method = "substitution"

    def __init__(self, *, family_fraction: float = 0.2):
        if not 0 <= family_fraction <= 1:
            raise ValueError(f"family_fraction must be in [0, 1], got {family_fraction}")
        self.family_fraction = family_fraction

    def sample(self, rng: random.Random, difficulty: int) -> Problem:
        hard = difficulty >= 2
        if rng.random() < self.family_fraction:
            m = rng.choice((4, 5, 6) if hard else (2, 3))
            a, b = [f"the {r}" for r in rng.choice(ROYALS)] if rng.random() < 0.3 else rng.sample(NAMES, 2)
            return family_problem(m, a, b, rng.choice(FAMILY_ENDINGS))
        while True:
            y = rng.randint(2, 40 if hard else 25)
            x = y * rng.randint(2, 4) if rng.random() < 0.5 else y + rng.randint(1, 40)
            pair = _templates(rng, x, y, hard)
            if pair is not None and x <= (110 if hard else 80):
                break
        A, B = rng.sample(NAMES, 2)
        q = " ".join(s[0] for s in pair).format(A=A, B=B) + " " + rng.choice(ENDINGS).format(A=A, B=B)
        data = {"literal": [s[1] for s in pair], "eqs": [s[2] for s in pair], "names": [A, B]}
        return Problem(self.name, q, f"{x} and {y}", "ages:" + ";".join(s[1] for s in pair), data)

    def steps(self, problem: Problem) -> list[str]:
        if "family" in problem.data:
            return _family_chain(problem.data["family"])[0]
        return self._solve_chain(problem.data["literal"], problem.data["eqs"])[0]

    @staticmethod
    def _solve_chain(literal: list[str], eqs: list[list[int]], slip: int = 0) -> tuple[list[str], str]:
        """Equations, normalised equations, elimination (with ``slip`` added to its constant), y, x."""
        (p1, q1, r1), (p2, q2, r2) = eqs
        b, c = q1 * p2 - q2 * p1, r1 * p2 - r2 * p1 + slip  # p1 = p2 = 1 in every template
        y = Fraction(c, b)
        x = (r1 - q1 * y) / p1
        lines = list(literal) + [_eq(*eqs[0]), _eq(*eqs[1]), _eq(0, b, c), f"y={y}", f"x={x}"]
        return lines, f"{x} and {y}"

    def _solutions(self, problem: Problem) -> list[tuple[Fraction, Fraction]]:
        """Points that satisfy the problem (k = 1 and 2 for a family), computed from its equations only."""
        eqs = problem.data["eqs"]
        if len(eqs) == 1:
            p, q, _ = eqs[0]
            return [(Fraction(-q * k), Fraction(p * k)) for k in (1, 2)]
        (p1, q1, r1), (p2, q2, r2) = eqs
        det = p1 * q2 - p2 * q1
        return [(Fraction(r1 * q2 - r2 * q1, det), Fraction(p1 * r2 - p2 * r1, det))]

    def check(self, problem: Problem, answer: str | None) -> bool | None:
        """Substitutes the answer into the problem's equations (and requires positive ages)."""
        parsed = parse_ages(answer)
        eqs = problem.data.get("eqs") or []
        if parsed is None or parsed[1] != (len(eqs) == 1):
            return False
        (x, y), _ = parsed
        return x > 0 and y > 0 and all(p * x + q * y == (0 if parsed[1] else r) for p, q, r in eqs)

    def cheap_check(self, problem: Problem, candidate: str) -> tuple[str, bool] | None:
        """Substitutes the candidate into the stated relations and evaluates both sides of each.

        Determined puzzles use the literal equation of each sentence ("x=3y", "x+5=2(y+5)"): "x=15 y=5 15=15 20=20".
        A family answer ("4k and 3k") is taken at k=1 and walked through the puzzle's clauses (a years ago, B's age b
        then, c years ahead, B's age d then; A's age now must equal d):
        "k=1 x=4 y=3 a=1/2 b=5/2 c=1 d=4 4=4". Exact; a candidate that is not two ages of the problem's form (k or
        not) is unreadable, and one with an age <= 0 is wrong."""
        parsed = parse_ages(candidate)
        family = problem.data.get("family")
        if parsed is None or parsed[1] != (family is not None):
            return UNREADABLE, False
        x, y = parsed[0]
        head = ("k=1 " if family else "") + f"x={x} y={y}"
        if x <= 0 or y <= 0:
            return head + " not positive", False
        if family:
            a = (x - y) / 2
            b = y - a
            c = family * b - x
            d = y + c
            return f"{head} a={a} b={b} c={c} d={d} {x}{'=' if x == d else '!='}{d}", x == d
        sides = [[_value(side, x, y) for side in eq.split("=")] for eq in problem.data.get("literal") or []]
        if len(sides) != 2 or any(len(s) != 2 or None in s for s in sides):  # no literal text: the normalised forms
            sides = [[p * x + q * y, Fraction(r)] for p, q, r in problem.data["eqs"]]
        return head + "".join(f" {u}{'=' if u == v else '!='}{v}" for u, v in sides), all(u == v for u, v in sides)

    def verify(self, problem: Problem, answer: str | None) -> bool:
        gold, got = parse_ages(problem.answer), parse_ages(answer)
        if gold is None or got is None or gold[1] != got[1]:
            return False
        (gx, gy), (ax, ay) = gold[0], got[0]
        if gold[1]:  # a family: any positive scaling of the gold ratio
            return ax > 0 and ay > 0 and ax * gy == ay * gx
        return (ax, ay) == (gx, gy)

    def check_step(self, problem: Problem, prev_steps: list[str], step: str) -> bool | None:
        """Every side of ``step`` must agree at the true solution(s); names must match the reference meaning."""
        points = self._solutions(problem)
        ref_env = _env(self.steps(problem), {})
        env = _env(prev_steps, ref_env)
        if env is None:
            return False
        sides = clean_line(step).replace(" ", "").split("=")
        if len(sides) < 2:
            return False
        if re.fullmatch(r"[a-w]", sides[0]) and sides[0] not in env:  # a definition: compare with the reference
            ref = ref_env.get(sides[0])
            if ref is None:
                return False
            env = {**env, sides[0]: ref}
        forms = [_lin(s, env) for s in sides]
        if any(f is None for f in forms):
            return False
        return all(len({f[0] * px + f[1] * py + f[2] for f in forms}) == 1 for px, py in points)

    def corrupt(self, problem: Problem, rng: random.Random) -> list[str]:
        """A slip in one derived line (elimination constant, or one family coefficient) carried to the end."""
        if "family" in problem.data:
            for _ in range(100):
                i = rng.randrange(1, 5)
                delta = rng.choice(((1, 0), (-1, 0), (0, 1), (0, -1), (Fraction(1, 2), 0)))
                lines, (p, q) = _family_chain(problem.data["family"], (i, (Fraction(delta[0]), Fraction(delta[1]),
                                                                           Fraction(0))))
                if p > 0 > q and _family_answer(p, q) != problem.answer:
                    return lines
        literal, eqs = problem.data["literal"], problem.data["eqs"]
        b = eqs[0][1] * eqs[1][0] - eqs[1][1] * eqs[0][0]
        slips = [s for s in range(-9, 10) if s and s % b == 0] or [b]
        return self._solve_chain(literal, eqs, rng.choice(slips))[0]

    def implied_answer(self, problem: Problem, steps: list[str]) -> str | None:
        """"x and y" from the final "y=" and "x=" lines, or the family ratio from a final "px+qy=0" line."""
        if not steps:
            return None
        last = clean_line(steps[-1]).replace(" ", "")
        if "family" in problem.data:
            f = _lin(last.split("=")[0], {}) if last.endswith("=0") else None
            if f is None or f[0] <= 0 or f[1] >= 0:
                return None
            return _family_answer(int(f[0]), int(f[1]))
        vals = dict(line.replace(" ", "").split("=", 1) for line in steps[-2:] if re.fullmatch(r"[xy]=\S+", line))
        return f"{vals['x']} and {vals['y']}" if {"x", "y"} <= vals.keys() else None


def _value(text: str, x: Fraction, y: Fraction) -> Fraction | None:
    """Value of an expression in x and y ("2(y+5)") at the given ages; None if malformed."""
    names = {"x": x, "y": y}
    return evaluate(tokenize(text, names=True), atom=lambda t: Fraction(int(t)) if t.isdigit() else names.get(t),
                    binop=fraction_op, neg=lambda v: -v)


def _env(lines: list[str], ref: dict[str, Lin]) -> dict[str, Lin] | None:
    """Names defined by "n=..." lines (the last side gives the value); None if a definition is malformed."""
    env: dict[str, Lin] = {}
    for line in lines:
        sides = clean_line(line).replace(" ", "").split("=")
        if len(sides) >= 2 and re.fullmatch(r"[a-w]", sides[0]) and sides[0] not in env:
            value = ref.get(sides[0]) if ref else _lin(sides[-1], env)
            if value is None:
                return None
            env[sides[0]] = value
    return env
