"""A tiny exact expression evaluator (shunting-yard, no ``eval``) shared by countdown and ages.

Values are generic: the caller supplies ``atom`` (token -> value) and ``binop`` (op, a, b -> value),
so Countdown evaluates Fractions while tracking the literals used, and Ages evaluates linear forms
in the unknowns. Nothing here raises on any input: malformed text gives ``None``. The evaluator is
iterative, so deeply nested parentheses cannot overflow the stack.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction
from typing import TypeVar

V = TypeVar("V")

MAX_CHARS = 400  # longer expressions are rejected outright (bounds time on adversarial text)
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "u-": 3}
_TOKEN = re.compile(r"[0-9]+|[a-z]|[-+*/()]|\s+|.", re.S)
_ALIASES = {"×": "*", "·": "*", "÷": "/", "−": "-", "–": "-"}


def tokenize(text: str, *, names: bool = False) -> list[str] | None:
    """Split ``text`` into integer, operator, parenthesis (and with ``names``, single-letter) tokens.

    With ``names``, juxtaposition means multiplication ("3y", "2(y+5)") and a ``*`` is inserted.
    Returns None for any other character or for text longer than MAX_CHARS.
    """
    if not isinstance(text, str) or len(text) > MAX_CHARS:
        return None
    out: list[str] = []
    for m in _TOKEN.finditer(text):
        t = _ALIASES.get(m.group(), m.group())
        if t.isspace():
            continue
        is_name = len(t) == 1 and "a" <= t <= "z"
        if not (t[0] in "0123456789" or t in "+-*/()" or (names and is_name)):
            return None
        if names and out and (is_name or t == "(") and (out[-1][0].isdigit() or out[-1].isalpha() or out[-1] == ")"):
            out.append("*")
        out.append(t)
    return out


def evaluate(
    tokens: list[str] | None,
    *,
    atom: Callable[[str], V | None],
    binop: Callable[[str, V, V], V | None],
    neg: Callable[[V], V | None] | None = None,
) -> V | None:
    """Evaluate infix ``tokens`` with the usual precedence; unary minus only when ``neg`` is given.

    ``atom``/``binop``/``neg`` return None to reject (unknown name, division by zero, ...).
    """
    if not tokens:
        return None
    vals: list = []
    ops: list[str] = []

    def reduce_top() -> bool:
        op = ops.pop()
        if op == "u-":
            if not vals or neg is None:
                return False
            r = neg(vals.pop())
        else:
            if len(vals) < 2:
                return False
            b = vals.pop()
            r = binop(op, vals.pop(), b)
        if r is None:
            return False
        vals.append(r)
        return True

    expect_value = True
    for t in tokens:
        if expect_value:
            if t == "(":
                ops.append(t)
            elif t == "-" and neg is not None:
                ops.append("u-")
            elif t in _PREC or t == ")":
                return None
            else:
                v = atom(t)
                if v is None:
                    return None
                vals.append(v)
                expect_value = False
        elif t == ")":
            while ops and ops[-1] != "(":
                if not reduce_top():
                    return None
            if not ops:
                return None
            ops.pop()
        elif t in _PREC:
            while ops and ops[-1] != "(" and _PREC[ops[-1]] >= _PREC[t]:
                if not reduce_top():
                    return None
            ops.append(t)
            expect_value = True
        else:  # two values in a row
            return None
    if expect_value:
        return None
    while ops:
        if ops[-1] == "(" or not reduce_top():
            return None
    return vals[0] if len(vals) == 1 else None


def fraction_op(op: str, a: Fraction, b: Fraction) -> Fraction | None:
    """Exact + - * / on Fractions; None on division by zero."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return None if b == 0 else a / b


def eval_numbers(text: str) -> tuple[Fraction, list[int]] | None:
    """Value of an integer expression and the integer literals it uses, e.g. "(13+7)*5-9" -> (91, [13, 7, 5, 9]).

    No unary minus, no decimals; None for anything malformed. Never raises.
    """
    def atom(t: str):
        return (Fraction(int(t)), (int(t),)) if t.isdigit() else None

    def binop(op: str, a, b):
        v = fraction_op(op, a[0], b[0])
        return None if v is None else (v, a[1] + b[1])

    r = evaluate(tokenize(text), atom=atom, binop=binop)
    return None if r is None else (r[0], list(r[1]))
