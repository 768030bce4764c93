"""Countdown: combine the given numbers with + - * / to reach a target, each number used exactly once.

The answer is an arithmetic expression (TinyZero rule: every given number exactly once, nothing else);
any correct expression verifies, not only the gold one. The reference chain does one operation per
line and lists the numbers left, result first: "13+7=20 left 20 5 9". Operands are written larger
first and every intermediate is a non-negative integer.

``solve`` is an exhaustive search; ``search_trace`` writes a Stream-of-Search style depth-first trace
with dead ends and "back left ..." lines (undo the last operation) that ends in a correct answer.
"""

from __future__ import annotations

import functools
import random
import re
from fractions import Fraction

from qstar.tasks.arith import eval_numbers, evaluate, fraction_op, tokenize
from qstar.tasks.base import UNREADABLE, Problem, Task
from qstar.tasks.format import clean_line, render_chain, split_chain

PHRASINGS = (
    "Using the numbers {nums}, make {target}.",
    "Use {csv} exactly once each with + - * / to reach {target}.",
    "Reach {target} from {nums} using each number once.",
    "Countdown: numbers {nums}, target {target}.",
    "Can you get {target} using {csv} (each once)?",
    "Make {target} out of {csv} with +, -, * and /.",
)
_STEP = re.compile(r"^(\d{1,30})([-+*/])(\d{1,30})=(\d{1,60}) left((?: \d{1,60})+)$")
_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_BACK = re.compile(r"^back left((?: \d{1,60})+)$")
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}
Item = tuple[Fraction, str, int]  # (value, expression, precedence of its top operator; 3 = literal)


def is_back_line(line: str) -> bool:
    """Is ``line`` an undo line of a search trace ("back left 13 7 5": the numbers the undo restores)?"""
    return isinstance(line, str) and _BACK.match(line) is not None


def combine(op: str, a: Item, b: Item) -> Item | None:
    """a op b as an Item, with the minimal parentheses; None on division by zero."""
    v = fraction_op(op, a[0], b[0])
    if v is None:
        return None
    p = _PREC[op]
    left = f"({a[1]})" if a[2] < p else a[1]
    right = f"({b[1]})" if b[2] < p or (b[2] == p and op in "-/") else b[1]
    return v, f"{left}{op}{right}", p


def moves(values: list[int]) -> list[tuple[int, int, str, int]]:
    """Every integer, non-negative move (i, j, op, result) on a list of values; a = values[i] >= b = values[j]."""
    out = []
    for i in range(len(values)):
        for j in range(len(values)):
            a, b = values[i], values[j]
            if i == j or a < b or (a == b and i > j):
                continue
            out += [(i, j, "+", a + b), (i, j, "*", a * b), (i, j, "-", a - b)]
            if b and a % b == 0:
                out.append((i, j, "/", a // b))
    return out


def step_line(a: int, op: str, b: int, c: int, left: list[int]) -> str:
    return f"{a}{op}{b}={c} left " + " ".join(map(str, left))


def solve(nums: list[int], target: int, *, integer_only: bool = False) -> str | None:
    """An expression using each of ``nums`` once that equals ``target``, or None. Exhaustive DFS.

    Integer, non-negative intermediates are tried first; fractions only if that fails (and not integer_only).
    """
    if _solvable(tuple(sorted(nums)), int(target)):
        items: list[Item] = [(Fraction(n), str(n), 3) for n in nums]
        while len(items) > 1:  # follow any move that keeps the target reachable
            values = [int(x[0]) for x in items]
            for i, j, op, c in moves(values):
                rest = [x for k, x in enumerate(items) if k not in (i, j)]
                if _solvable(tuple(sorted([c] + [int(x[0]) for x in rest])), int(target)):
                    items = [combine(op, items[i], items[j])] + rest  # type: ignore[list-item]
                    break
        return items[0][1]
    if integer_only:
        return None
    return _dfs([(Fraction(n), str(n), 3) for n in nums], Fraction(target), set())


def _dfs(items: list[Item], target: Fraction, failed: set[tuple]) -> str | None:
    """Exhaustive search over exact fractions (for targets that need a fractional intermediate)."""
    if len(items) == 1:
        return items[0][1] if items[0][0] == target else None
    sig = tuple(sorted(x[0] for x in items))
    if sig in failed:
        return None
    for i in range(len(items)):
        for j in range(len(items)):
            if i == j:
                continue
            rest = [x for k, x in enumerate(items) if k not in (i, j)]
            for op in "+*-/":
                if op in "+*" and i > j:
                    continue  # commutative: one order is enough
                r = combine(op, items[i], items[j])
                if r is None:
                    continue
                found = _dfs([r] + rest, target, failed)
                if found is not None:
                    return found
    failed.add(sig)
    return None


@functools.lru_cache(maxsize=100_000)
def _solvable(values: tuple[int, ...], target: int) -> bool:
    """Can integer, non-negative moves turn ``values`` (sorted) into exactly ``target``?"""
    if len(values) == 1:
        return values[0] == target
    for i, j, _, c in moves(list(values)):
        rest = [v for k, v in enumerate(values) if k not in (i, j)]
        if _solvable(tuple(sorted([c] + rest)), target):
            return True
    return False


def _plan(nums: list[int], expr: str) -> list[tuple[int, int, str]] | None:
    """Operations (i, j, op) on positions of the evolving number list that evaluate ``expr`` in post-order.

    After each operation the two operands leave the list and the result goes first. None unless ``expr``
    uses exactly ``nums``.
    """
    unclaimed = list(range(len(nums)))
    state: list[tuple[Fraction, int]] = [(Fraction(n), k) for k, n in enumerate(nums)]  # (value, uid)
    plan: list[tuple[int, int, str]] = []

    def atom(t: str):
        k = next((k for k in unclaimed if t.isdigit() and nums[k] == int(t)), None)
        if k is not None:
            unclaimed.remove(k)
        return k

    def binop(op: str, ua: int, ub: int):
        i, j = [next(k for k, x in enumerate(state) if x[1] == u) for u in (ua, ub)]
        v = fraction_op(op, state[i][0], state[j][0])
        if v is None:
            return None
        plan.append((i, j, op))
        uid = len(nums) + len(plan)
        state[:] = [(v, uid)] + [x for k, x in enumerate(state) if k not in (i, j)]
        return uid

    ok = evaluate(tokenize(expr), atom=atom, binop=binop) is not None
    return plan if ok and not unclaimed else None


def _run(nums: list[int], plan: list[tuple[int, int, str]], slip: tuple[int, int] | None = None) -> list[str] | None:
    """Chain lines for a plan; ``slip=(k, delta)`` adds delta to step k's result and carries it on.

    None when an intermediate is negative or fractional (the chain format holds integers only).
    """
    state, lines = list(nums), []
    for k, (i, j, op) in enumerate(plan):
        a, b = state[i], state[j]
        v = fraction_op(op, Fraction(a), Fraction(b))
        if v is None or v < 0 or v.denominator != 1:
            return None
        c = int(v) + (slip[1] if slip is not None and slip[0] == k else 0)
        if c < 0:
            return None
        state = [c] + [x for t, x in enumerate(state) if t not in (i, j)]
        x, y = (b, a) if op in "+*" and b > a else (a, b)
        lines.append(step_line(x, op, y, c, state))
    return lines


def search_trace(problem: Problem, rng: random.Random, *, max_steps: int = 40) -> str:
    """A Stream-of-Search style depth-first trace that ends in a correct "Answer:" line.

    Moves are tried in random order, one line each ("13*7=91 left 91 5 9"); a single number that misses
    the target is a dead end, and each undo is written "back left <numbers restored>". After ``max_steps``
    lines the search takes only moves that can still reach the target (known by exhaustive search), so
    the trace always ends solved. Raises ValueError when the numbers have no integer solution.
    """
    nums, target = list(problem.data["nums"]), int(problem.data["target"])
    if not _solvable(tuple(sorted(nums)), target):
        raise ValueError(f"countdown: {nums} -> {target} has no solution with integer, non-negative steps")
    lines: list[str] = []

    def dfs(items: list[Item]) -> str | None:
        if len(items) == 1:
            return items[0][1] if items[0][0] == target else None
        values = [int(x[0]) for x in items]
        options = moves(values)
        rng.shuffle(options)
        for i, j, op, c in options:
            rest = [x for k, x in enumerate(items) if k not in (i, j)]
            left = [c] + [int(x[0]) for x in rest]
            if len(lines) >= max_steps and not _solvable(tuple(sorted(left)), target):
                continue
            lines.append(step_line(values[i], op, values[j], c, left))
            found = dfs([combine(op, items[i], items[j])] + rest)  # type: ignore[list-item]
            if found is not None:
                return found
            lines.append("back left " + " ".join(map(str, values)))
        return None

    answer = dfs([(Fraction(n), str(n), 3) for n in nums])
    return render_chain(lines, answer or "")


class Countdown(Task):
    """Countdown over ``min_numbers``..difficulty numbers in 1..max_value; train targets in ``target_range``.

    difficulty = the most numbers a problem may have. Up to ``max_numbers`` (train/test) the count is
    drawn from min_numbers..difficulty; above it (ood, default 5) every problem has exactly that many.
    """

    name = "countdown"
    checkable = True
    check_method = "evaluation"

    def __init__(self, *, min_numbers: int = 3, max_numbers: int = 4, max_value: int = 20,
                 target_range: tuple[int, int] = (10, 99)):
        if not 2 <= min_numbers <= max_numbers or max_value < 1 or target_range[0] > target_range[1]:
            raise ValueError("countdown needs 2 <= min_numbers <= max_numbers, max_value >= 1, lo <= hi targets")
        self.min_numbers, self.max_numbers, self.max_value = min_numbers, max_numbers, max_value
        self.target_range = target_range

    def default_difficulty(self, split: str) -> int:
        return self.max_numbers + (split == "ood")

    def sample(self, rng: random.Random, difficulty: int) -> Problem:
        if difficulty < 2:
            raise ValueError(f"countdown difficulty is a count of numbers, must be >= 2, got {difficulty}")
        count = difficulty if difficulty > self.max_numbers else rng.randint(min(self.min_numbers, difficulty),
                                                                              difficulty)
        lo, hi = self.target_range
        while True:
            nums = [rng.randint(1, self.max_value) for _ in range(count)]
            items: list[Item] = [(Fraction(n), str(n), 3) for n in nums]
            while len(items) > 1:  # random expression tree with integer, positive intermediates
                i, j = rng.sample(range(len(items)), 2)
                a, b = (items[i], items[j]) if items[i][0] >= items[j][0] else (items[j], items[i])
                ops = ["+", "*"] + (["-"] if a[0] > b[0] else []) + (["/"] if b[0] > 1 and a[0] % b[0] == 0 else [])
                r = combine(rng.choice(ops), a, b)
                items = [r] + [x for k, x in enumerate(items) if k not in (i, j)]  # type: ignore[list-item]
            if lo <= items[0][0] <= hi:
                return self.make(nums, int(items[0][0]), answer=items[0][1], rng=rng)

    def make(self, nums: list[int], target: int, *, answer: str, rng: random.Random | None = None) -> Problem:
        """A Problem for given numbers and target (also used by the TinyZero loader)."""
        fmt = (rng or random.Random(f"{nums}{target}")).choice(PHRASINGS)
        question = fmt.format(nums=" ".join(map(str, nums)), csv=", ".join(map(str, nums)), target=target)
        key = f"countdown:{' '.join(map(str, sorted(nums)))}:{target}"
        return Problem(self.name, question, answer, key, {"nums": list(nums), "target": int(target)})

    def steps(self, problem: Problem) -> list[str]:
        """Post-order operations of the gold expression (fractional golds fall back to none)."""
        plan = _plan(problem.data["nums"], problem.answer)
        return (_run(problem.data["nums"], plan) or []) if plan else []

    def extract_answer(self, text: str) -> str | None:
        """The "Answer:" line, else the last <answer>...</answer> (TinyZero's output format)."""
        got = split_chain(text)[1]
        if got is None and isinstance(text, str):
            tags = _TAG.findall(text[-20_000:])
            got = tags[-1].strip() if tags else None
        return got

    def check(self, problem: Problem, answer: str | None) -> bool | None:
        """Evaluates ``answer`` exactly: uses each given number once and equals the target."""
        if not isinstance(answer, str):
            return False
        expr = answer.strip()
        if "=" in expr:
            expr = expr.split("=")[0]
        r = eval_numbers(expr)
        return r is not None and r[0] == problem.data["target"] and sorted(r[1]) == sorted(problem.data["nums"])

    def verify(self, problem: Problem, answer: str | None) -> bool:
        return bool(self.check(problem, answer))

    def cheap_check(self, problem: Problem, candidate: str) -> tuple[str, bool] | None:
        """Evaluates the candidate one operation at a time, then compares the value with the target and the numbers
        it uses (sorted) with the given ones: "13+7=20 20*5=100 100-9=91 91=91 nums 5 7 9 13=5 7 9 13". Exact: the
        verdict is ``check``'s. Text after an "=" is ignored, as ``check`` does."""
        expr = candidate.strip().split("=")[0] if isinstance(candidate, str) else ""
        ops: list[str] = []

        def binop(op: str, a, b):
            v = fraction_op(op, a[0], b[0])
            if v is None:
                return None
            ops.append(f"{a[0]}{op}{b[0]}={v}")
            return v, a[1] + b[1]

        r = evaluate(tokenize(expr), atom=lambda t: (Fraction(int(t)), (int(t),)) if t.isdigit() else None,
                     binop=binop)
        if r is None:
            return UNREADABLE, False
        target, used, given = problem.data["target"], sorted(r[1]), sorted(problem.data["nums"])
        hit, same = r[0] == target, used == given
        nums = " ".join(map(str, used)) + ("=" if same else "!=") + " ".join(map(str, given))
        return " ".join(ops + [f"{r[0]}{'=' if hit else '!='}{target}", f"nums {nums}"]), hit and same

    def check_step(self, problem: Problem, prev_steps: list[str], step: str) -> bool | None:
        """Valid arithmetic on available numbers with the right numbers left (or a correct "back" line).

        Steps after an invalid step are invalid. Dead-end but valid steps (search traces) count as correct.
        """
        stack = [sorted(problem.data["nums"])]
        for line in list(prev_steps) + [step]:
            nxt = _apply(stack[-1], clean_line(line), stack)
            if nxt is None:
                return False
        return True

    def corrupt(self, problem: Problem, rng: random.Random) -> list[str]:
        """An arithmetic slip (result off by 1-3) in one step; later steps compute with the wrong number."""
        nums = problem.data["nums"]
        plan = _plan(nums, problem.answer)
        if not plan or _run(nums, plan) is None:
            raise ValueError(f"countdown: gold {problem.answer!r} has no integer chain to corrupt")
        for _ in range(100):
            out = _run(nums, plan, (rng.randrange(len(plan)), rng.choice((-3, -2, -1, 1, 2, 3))))
            if out is not None:
                return out
        return _run(nums, plan, (len(plan) - 1, 1)) or []  # the last step always takes a +1 slip

    def implied_answer(self, problem: Problem, steps: list[str]) -> str | None:
        """Expression the steps build; a step with wrong arithmetic contributes its stated result as a literal."""
        items: list[Item] = [(Fraction(n), str(n), 3) for n in problem.data["nums"]]
        history: list[list[Item]] = []
        for line in steps:
            line = clean_line(line)
            m = _STEP.match(line)
            if line.startswith("back") and history:
                items = history.pop()
                continue
            if m is None:
                continue
            a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
            history.append(items)
            ia = next((x for x in items if x[0] == a), (Fraction(a), str(a), 3))
            rest = list(items)
            if ia in rest:
                rest.remove(ia)
            ib = next((x for x in rest if x[0] == b), (Fraction(b), str(b), 3))
            if ib in rest:
                rest.remove(ib)
            r = combine(op, ia, ib)
            items = [r if r is not None and r[0] == c else (Fraction(c), str(c), 3)] + rest
        return items[0][1] if history else None


def _apply(state: list[int], line: str, stack: list[list[int]]) -> list[int] | None:
    """Apply one chain line to ``state`` (pushing onto ``stack``); None if the line is invalid."""
    back = _BACK.match(line)
    if back is not None:
        left = sorted(int(x) for x in back[1].split())
        if len(stack) < 2 or stack[-2] != left:
            return None
        stack.pop()
        return stack[-1]
    m = _STEP.match(line)
    if m is None:
        return None
    a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
    v = fraction_op(op, Fraction(a), Fraction(b))
    rest = list(state)
    for x in (a, b):
        if x not in rest:
            return None
        rest.remove(x)
    if v is None or v != c:
        return None
    new = sorted(rest + [c])
    if sorted(int(x) for x in m[5].split()) != new:
        return None
    stack.append(new)
    return new
