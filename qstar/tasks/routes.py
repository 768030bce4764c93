"""Route a question in a user's own words to a task Problem, so the reasoner sees the phrasing it was trained on
and the task's own verifier and checker can judge the answer.

A task that offers ``parse(question) -> Problem | None`` is asked first; otherwise the recognisers below (one per
family, in a registry) pull out the operands with a regex and build the Problem with the task module's own
phrasings and helpers (decimals.gold_answer, cipher.shift_text, countdown.solve/make); ages parses the classic
"as old as ... will be when" family and otherwise only recognises (no gold: the reply rests on agreement).
Recognisers never raise; a question no task recognises returns None, and the caller says it cannot answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from qstar.tasks.base import Problem

_NUM = r"-?\d[\d,]*"
_DEC = r"-?\d+(?:\.\d+)?|-?\.\d+"


def _clean(q: str) -> str:
    return " ".join(q.replace("\u2019", "'").replace("\u00d7", "*").split())


def letters(q: str) -> Problem | None:
    """"How many r's are in strawberry?", "count the letter r in 'strawberry'", "in strawberry, how many r"."""
    from qstar.tasks.letters import PHRASINGS

    s = q.lower()
    if not re.search(r"\bhow many\b|\bcount\b|\bnumber of\b|\boccurrences?\b", s):
        return None
    letter = r"['\"]?([a-z])['\"]?(?:'s|s)?"
    word = r"['\"]?([a-z]{2,40})['\"]?"
    pats = [rf"(?:letter\s+)?{letter}\s+(?:are\s+|is\s+|do\s+|does\s+)?(?:there\s+)?(?:appear\s+|occur\s+)?"
            rf"(?:in|inside|within)\s+(?:the\s+word\s+)?{word}",
            rf"(?:in|inside)\s+(?:the\s+word\s+)?{word}\s*,?\s*(?:how many|count)\s+(?:times\s+does\s+)?"
            rf"(?:the\s+letter\s+)?{letter}"]
    for i, pat in enumerate(pats):
        for m in re.finditer(pat, s):
            c, w = (m.group(1), m.group(2)) if i == 0 else (m.group(2), m.group(1))
            if w in ("the", "word", "a", "an") or not c.isalpha():
                continue
            return Problem("letters", PHRASINGS[0].format(c=c, w=w), str(w.count(c)), f"letters:{w}:{c}",
                           {"word": w, "letter": c})
    return None


def mult(q: str) -> Problem | None:
    """"What's 123 x 456?", "multiply 12 by 34", "product of 7 and 8" (exactly two integers, nothing else)."""
    s = q.lower()
    if len(re.findall(r"\d+(?:\.\d+)?", s)) != 2 or re.search(r"[+/^%]|\bplus\b|\bminus\b|\bdivided\b|\.\d", s):
        return None
    m = (re.search(rf"({_NUM})\s*(?:\*|x|times|multiplied by)\s*({_NUM})", s)
         or re.search(rf"multiply\s+({_NUM})\s+(?:by|and|with)\s+({_NUM})", s)
         or re.search(rf"product of\s+({_NUM})\s+and\s+({_NUM})", s))
    if not m:
        return None
    a, b = (int(g.replace(",", "")) for g in m.groups())
    from qstar.tasks.mult import PHRASINGS

    return Problem("mult", PHRASINGS[0].format(a=a, b=b), str(a * b), f"mult:{min(a, b)}*{max(a, b)}",
                   {"a": a, "b": b})


def decimals(q: str) -> Problem | None:
    """"Which is bigger, 9.11 or 9.9?", "is 3.14 less than 3.2?"."""
    from qstar.tasks.decimals import PHRASINGS, gold_answer

    s = q.lower()
    big, small = r"(?:larger|bigger|greater|more)", r"(?:smaller|less|lower)"
    kind, m = None, None
    for k, pat in (("larger", rf"which\b.*\b{big}\b.*?({_DEC})\s*(?:,\s*)?or\s+({_DEC})"),
                   ("smaller", rf"which\b.*\b{small}\b.*?({_DEC})\s*(?:,\s*)?or\s+({_DEC})"),
                   ("is_bigger", rf"is\s+({_DEC})\s+{big}\s+than\s+({_DEC})"),
                   ("is_smaller", rf"is\s+({_DEC})\s+{small}\s+than\s+({_DEC})")):
        m = re.search(pat, s)
        if m:
            kind = k
            break
    if not m:
        return None
    a, b = (g if "." in g else g + ".0" for g in m.groups())
    a, b = ("0" + x if x.startswith(".") else x for x in (a, b))
    if a == b:
        return None
    return Problem("decimals", PHRASINGS[kind][0].format(a=a, b=b), gold_answer(a, b, kind),
                   "decimals:" + "|".join(sorted((a, b))), {"a": a, "b": b, "kind": kind})


def countdown(q: str) -> Problem | None:
    """"Use 3, 4, 5 and 6 to make 17", "with the numbers 2 7 9 reach 23"."""
    s = q.lower()
    nums_re = r"(?P<nums>(?:\d+\s*(?:,|and|\s)\s*){1,5}\d+)"
    m = (re.search(rf"(?:numbers?|using|use|with|from)\s+{nums_re}\s*,?\s*(?:to\s+)?"
                   rf"(?:make|reach|get|equal|hit|target|form)\s+(?P<target>\d+)", s)
         or re.search(rf"(?:make|reach|get)\s+(?P<target>\d+)\s+(?:from|using|with)\s+(?:the\s+numbers\s+)?"
                      rf"{nums_re}", s))
    if not m:
        return None
    nums_text, target = m.group("nums"), m.group("target")
    nums = [int(x) for x in re.findall(r"\d+", nums_text)]
    if not 2 <= len(nums) <= 6:
        return None
    from qstar.tasks import get_task
    from qstar.tasks.countdown import solve

    return get_task("countdown").make(nums, int(target), answer=solve(nums, int(target)) or "")


def cipher(q: str) -> Problem | None:
    """"Decode 'khoor' with a Caesar shift of 3", "decrypt wkh fdw, shift 3"."""
    from qstar.tasks.cipher import GIVEN, shift_text

    s = q.lower()
    if not re.search(r"caesar|cipher|decode|decrypt|shift", s):
        return None
    shift = re.search(r"(?:shift|key|rotation|rot)\D{0,8}(\d{1,2})|(\d{1,2})\s+places", s)
    text = re.search(r"['\"]([a-z ]+)['\"]", s) or re.search(r"(?:decode|decrypt)\s+([a-z]+(?:\s+[a-z]+)*?)"
                                                              r"\s*(?:,|with|using|\(|shift|$)", s)
    if not shift or not text or not text.group(1).strip():
        return None
    k, cipher_text = int(shift.group(1) or shift.group(2)), " ".join(text.group(1).split())
    if not 1 <= k <= 25:
        return None
    return Problem("cipher", GIVEN[0].format(c=cipher_text, s=k), shift_text(cipher_text, -k),
                   f"cipher:{k}:{cipher_text}", {"cipher": cipher_text, "shift": k, "hint": None})


_FAMILY = re.compile(r"(the )?(\w+) is as old as (?:the )?(\w+) will be when (?:the )?\2 is (twice|\w+ times|\d+ "
                     r"times) as old as (?:the )?\3 was when (?:the )?\2'?s age was half the sum of their (?:present )?"
                     r"ages")


def ages(q: str) -> Problem | None:
    """Age word problems. The classic family puzzle ("the princess is as old as the prince will be when the princess
    is twice as old as ...") is parsed into the task's own problem, so its check and verifier judge the reply. Other
    age questions ("Tom is 4 years older than Ann ... How old are they?") are only recognised: turning free English
    into equations is the task's job, so the Problem carries the question as asked, no gold answer and no data, and
    the reply is judged by the samples' agreement alone."""
    family = _ages_family(q)
    if family is not None:
        return family
    s = q.lower()
    if not re.search(r"\bhow old\b|\bages?\b|\byears? (?:old|older|younger)\b|\bas old as\b", s):
        return None
    if not re.search(r"\b(?:older|younger|twice|times|sum|will be|was|ago|in \d+ years)\b", s):
        return None
    return Problem("ages", q, "", "ask:ages", {})


def _ages_family(q: str) -> Problem | None:
    from qstar.tasks.ages import TIMES, family_problem

    m = _FAMILY.search(q.lower())
    if m is None:
        return None
    the, a, b, times = m.groups()
    k = {v: n for n, v in TIMES.items()}.get(times) or (int(times.split()[0]) if times[0].isdigit() else None)
    if k is None or not 2 <= k <= 9:
        return None
    return family_problem(k, *((f"the {a}", f"the {b}") if the else (a.title(), b.title())))


#: task name -> recogniser; order matters only when two could match (mult before countdown: "make" is rarer)
def parity(q: str) -> Problem | None:
    """"Is the number of 1s in 0110 even or odd?", "parity of 10110?" (one string of 0s and 1s, 2-64 bits)."""
    s = q.lower()
    bits = re.findall(r"\b[01]{2,64}\b", s)
    if len(bits) != 1 or not re.search(r"parity|\beven\b|\bodd\b", s):
        return None
    if len(bits[0]) < 4 and not re.search(r"parity|\b1s\b|\bones\b|\bbits?\b", s):
        return None  # "is 10 odd?" asks about the number ten
    from qstar.tasks.parity import PHRASINGS

    b = bits[0]
    return Problem("parity", PHRASINGS[0].format(b=b), "odd" if b.count("1") % 2 else "even", f"parity:{b}",
                   {"bits": b})


RECOGNISERS: dict[str, Callable[[str], Problem | None]] = {
    "letters": letters, "decimals": decimals, "cipher": cipher, "countdown": countdown, "mult": mult, "ages": ages,
    "parity": parity,
}


def route(question: str, *, tasks: list[str] | None = None) -> Problem | None:
    """The Problem a question asks, or None when no task recognises it. ``tasks`` limits the families tried."""
    q = _clean(str(question))
    if not q or len(q) > 500:
        return None
    names = tasks or list(RECOGNISERS)
    try:
        from qstar.tasks import get_task
    except ImportError:  # tasks registry not importable: recognisers only
        get_task = None
    for name in names:
        parse = None
        if get_task is not None:
            try:
                parse = getattr(get_task(name), "parse", None)
            except (KeyError, ValueError):
                parse = None
        try:
            p = parse(q) if callable(parse) else RECOGNISERS[name](q) if name in RECOGNISERS else None
        except Exception:  # a recogniser bug must read as "not recognised", never crash the CLI
            p = None
        if p is not None:
            return p
    return None
