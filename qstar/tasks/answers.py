"""Lenient final-answer extraction from free-form model text (real LLM outputs, not qstar chains).

``extract_answer`` tries, in order: the last ``\\boxed{...}`` (nested braces), the last ``#### X``,
the last ``<answer>X</answer>``, the last "Answer: X" line, the last "the answer is X", and finally
the last number. It never raises, whatever the input (empty, binary, huge, any unicode).

>>> extract_answer("so 2+2 = \\\\boxed{\\\\frac{1}{2}} done")
'\\\\frac{1}{2}'
>>> extract_answer("She pays 3 * 6 = 18 dollars.\\n#### 1,800")
'1,800'
>>> extract_answer("Thus the answer is 42.")
'42'
"""

from __future__ import annotations

import re
from fractions import Fraction

MAX_CHARS = 200_000  # only the tail of longer text is searched: final answers come last
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_HASH = re.compile(r"####[ \t]*([^\n]*)")
_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_LINE = re.compile(r"^[ \t>*_#]*(?:final answer|answer)[ \t*_]*:[ \t*_]*([^\n]*)", re.I | re.M)
_IS = re.compile(r"answer is[ \t:]*([^\n]*)", re.I)
_NUM = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def _boxed(text: str) -> str | None:
    """Content of the last balanced \\boxed{...} (checks the last few openings only, so it stays linear)."""
    starts = [m.end() for m in _BOX.finditer(text)][-8:]
    for start in reversed(starts):
        depth = 1
        for k in range(start, len(text)):
            ch = text[k]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[start:k]
    return None


def _sentence(text: str) -> str:
    """Cut "42. Then we ..." to "42" (a period followed by a space or the end ends the sentence)."""
    m = re.search(r"\.(\s|$)", text)
    return text[: m.start()] if m else text


def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    s = text.strip().strip("*").strip()
    if s.startswith("$") and s.endswith("$") and len(s) > 1:
        s = s.strip("$").strip()
    s = s.rstrip(".").strip()
    return s or None


def extract_marked(text: object) -> str | None:
    """The answer behind an explicit marker (\\boxed{}, ####, <answer>, "Answer:", "the answer is"), or None.

    No number fallback. Never raises.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str):
        return None
    text = text[-MAX_CHARS:]
    boxed = _clean(_boxed(text))
    if boxed:
        return boxed
    for pattern, cut in ((_HASH, False), (_TAG, False), (_LINE, True), (_IS, True)):
        last = None
        for last in pattern.finditer(text):  # noqa: B007 (keep the last match)
            pass
        if last is not None:
            got = _clean(_sentence(last.group(1)) if cut else last.group(1))
            if got:
                return got
    return None


def extract_answer(text: object) -> str | None:
    """The final answer in arbitrary model text: a marked answer, else the last number, else None. Never raises."""
    got = extract_marked(text)
    if got is not None or not isinstance(text, (str, bytes)):
        return got
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    num = None
    for num in _NUM.finditer(text[-MAX_CHARS:]):  # noqa: B007 (keep the last match)
        pass
    return num.group().replace(",", "").rstrip(".") if num is not None else None


def to_number(text: str | None) -> Fraction | None:
    """The single number in a short answer ("$1,800", "18 dollars", "-3.5", "3/4", "\\frac{3}{4}", "50%"); else None.

    Answers holding more than one number (or none) give None, so callers can fall back to a symbolic check.
    """
    if not isinstance(text, str) or len(text) > 200:
        return None
    s = re.sub(r"\\[dt]?frac\{(-?\d+)\}\{(\d+)\}", r"\1/\2", text).replace("\\!", "").replace("{,}", "")
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)
    found = _NUM.findall(s)
    if len(found) != 1:
        return None
    try:
        return Fraction(found[0].replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None
