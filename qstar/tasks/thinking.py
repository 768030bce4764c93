"""The thinking grammar: what may stand between a question and its answer line, for every task.

A chain (``qstar.tasks.format``) is its *thinking*, one line per step, closed by the answer line ``Answer: X``;
the user sees only X. Lines after the first answer line are not part of the chain. Each thinking line is one of:

- ``step``: any line that is none of the kinds below: an attempt's work ("13+7=20 left 20 5 9").
- ``check``: ``Check: <candidate> | <work> ok`` (or ``wrong``): a check of a candidate answer by the task's cheap
  method (``Task.cheap_check``, named by ``Task.check_method``); ``<work>`` is the method's visible work and the
  verdict is the method's own. ``<candidate>`` never contains " | " (the first " | " ends it) and never ends in " |".
- ``recheck``: ``Check: <recomputed step> ok`` (or ``wrong``), with no " | ": a re-derivation of one step, as
  ``qstar.learn.retry`` writes it (``check_line``/``parse_check``); a failed one is followed by the corrected step.
  A step containing " | " cannot be rechecked unambiguously (no task writes one).
- ``wait``: ``Wait`` (``WAIT_STEP``): budget forcing inserts it where the model tried to answer too early.
- ``retry``: ``Retry``: after a failed check, a fresh attempt follows.
- ``back``: ``back left <numbers>``: undo the last operation of a Countdown search trace (``countdown.search_trace``),
  restoring the numbers listed.

The kinds are read from the line alone (whitespace normalised with ``clean_line``); a ``Check:`` line without a
final ``ok``/``wrong`` is a plain step. An attempt runs from the start (or a ``Retry``) to its check. A checked
Countdown chain with one retry (the first attempt slipped at 20*5; its candidate keeps the slip as a literal):

    13+7=20 left 20 5 9
    20*5=101 left 101 9
    101-9=92 left 92
    Check: 101-9 | 101-9=92 92!=91 nums 9 101!=5 7 9 13 wrong
    Retry
    13+7=20 left 20 5 9
    20*5=100 left 100 9
    100-9=91 left 91
    Check: (13+7)*5-9 | 13+7=20 20*5=100 100-9=91 91=91 nums 5 7 9 13=5 7 9 13 ok
    Answer: (13+7)*5-9

``parse_thinking`` never raises; ``render_thinking`` writes lines back, and the two are inverse on well-formed lines
(``well_formed``). ``thinking_stats`` counts the kinds (RL metrics). This module imports no model code.

A thinking-length target (L1, Aggarwal & Welleck 2025) is an instruction appended to the question,
``with_target(question, 48)`` -> "<question> Think for 48 tokens.": a model RL-trained on such prompts (GRPO's
``length_targets`` with the ``length_target`` reward) serves every effort level from one checkpoint, its budget
read from the prompt. ``thinking_length`` is what the target counts: the characters (qstar's tokens) before the
answer line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qstar.tasks.base import Problem, Task
from qstar.tasks.countdown import is_back_line
from qstar.tasks.format import ANSWER_PREFIX, CHECK_PREFIX, STEP_END, WAIT_STEP, clean_line, split_chain

__all__ = ["KINDS", "RETRY_STEP", "CHECK_SEP", "Line", "parse_line", "parse_thinking", "render_thinking",
           "well_formed", "answer_check_line", "cheap_check_line", "thinking_stats", "answer_line", "thinking_length",
           "with_target", "read_target", "parse_targets", "TARGET_TEMPLATE"]

KINDS = ("step", "check", "recheck", "wait", "retry", "back")
RETRY_STEP = "Retry"
CHECK_SEP = " | "
OK, WRONG = "ok", "wrong"
#: L1's instruction; the question ends with it when the model was trained to follow a thinking-length target
TARGET_TEMPLATE = " Think for {} tokens."


@dataclass(frozen=True)
class Line:
    """One thinking line: its ``kind`` (one of KINDS), its ``text`` (one clean line), and for a check the candidate,
    the work and the verdict; for a recheck the recomputed step (as ``work``) and the verdict; else None."""

    kind: str
    text: str
    candidate: str | None = None
    work: str | None = None
    ok: bool | None = None


def parse_line(text: str) -> Line:
    """The Line a line of text is (whitespace normalised; anything unrecognised is a step). Never raises."""
    t = clean_line(text if isinstance(text, str) else "")
    if t == WAIT_STEP:
        return Line("wait", t)
    if t == RETRY_STEP:
        return Line("retry", t)
    if is_back_line(t):
        return Line("back", t)
    if t.startswith(CHECK_PREFIX):
        body, _, verdict = t[len(CHECK_PREFIX):].rpartition(" ")
        if verdict in (OK, WRONG):
            candidate, sep, work = body.partition(CHECK_SEP)
            if sep:  # cleaned text: both sides are non-empty
                return Line("check", t, candidate, work, verdict == OK)
            return Line("recheck", t, None, body, verdict == OK)  # as retry.parse_check reads it, even with no body
    return Line("step", t)


def parse_thinking(text: str) -> tuple[list[Line], str | None]:
    """(thinking lines, answer) of chain text; answer None without an answer line (as ``split_chain``). Empty lines
    and lines after the answer are dropped. Never raises."""
    steps, answer = split_chain(text if isinstance(text, str) else "")
    return [parse_line(s) for s in steps], answer


def well_formed(line: Line) -> bool:
    """Does ``line`` survive a render and parse unchanged? Its text is one clean, non-empty line that is not an
    answer line, and its fields are what that text says."""
    t = line.text
    return (isinstance(t, str) and t != "" and t == clean_line(t) and not t.startswith(ANSWER_PREFIX)
            and parse_line(t) == line)


def render_thinking(lines: Sequence[Line | str], answer: str | None) -> str:
    """Chain text: one line per thinking line, then the answer line (without one, every line ends in a newline,
    as thinking in progress does). ``parse_thinking(render_thinking(lines, a)) == (lines, a)`` for well-formed
    lines and an answer that is one clean line."""
    texts = [clean_line(x.text if isinstance(x, Line) else x) for x in lines]
    body = "".join(t + STEP_END for t in texts)
    return body if answer is None else body + ANSWER_PREFIX + clean_line(answer)


def answer_check_line(candidate: str, work: str, ok: bool) -> str:
    """``Check: <candidate> | <work> ok|wrong``. ValueError when the line would not parse back (an empty candidate
    or work, or a candidate containing " | " or ending in " |").

    >>> answer_check_line("56088", "... 0=0", True)
    'Check: 56088 | ... 0=0 ok'
    """
    c, w = clean_line(candidate), clean_line(work)
    if not c or not w or CHECK_SEP in c + " ":
        raise ValueError(f"cannot write a check line for candidate {candidate!r} and work {work!r}")
    return f"{CHECK_PREFIX}{c}{CHECK_SEP}{w} {OK if ok else WRONG}"


def cheap_check_line(task: Task, problem: Problem, candidate: str) -> str | None:
    """The check line of ``candidate`` by ``task``'s cheap method; None when the task has none for this problem or
    the candidate cannot stand in a check line. Never raises on any candidate."""
    got = task.cheap_check(problem, candidate)
    if got is None:
        return None
    try:
        return answer_check_line(candidate, *got)
    except ValueError:
        return None


def thinking_stats(text: str) -> dict[str, int]:
    """Counts of the thinking in chain ``text``: steps, checks, failed_checks, rechecks, failed_rechecks, waits,
    retries, backs, and answered (1 if it has an answer line). Never raises."""
    lines, answer = parse_thinking(text)
    kinds = [x.kind for x in lines]
    return {
        "steps": kinds.count("step"),
        "checks": kinds.count("check"),
        "failed_checks": sum(x.kind == "check" and not x.ok for x in lines),
        "rechecks": kinds.count("recheck"),
        "failed_rechecks": sum(x.kind == "recheck" and not x.ok for x in lines),
        "waits": kinds.count("wait"),
        "retries": kinds.count("retry"),
        "backs": kinds.count("back"),
        "answered": int(answer is not None),
    }


def answer_line(text: str) -> int:
    """Where the first answer line of chain ``text`` starts; -1 when it has none. Never raises.

    >>> answer_line("a\\nAnswer: 3"), answer_line("Answer: 3"), answer_line("a\\nb")
    (2, 0, -1)
    """
    return ("\n" + text).find(STEP_END + ANSWER_PREFIX) if isinstance(text, str) else -1


def thinking_length(text: str) -> int:
    """Tokens of thinking in chain ``text`` (qstar's tokenizer: one per character): everything before the first
    answer line, or the whole text when it has none."""
    at = answer_line(text)
    return len(text) if at < 0 else at


def with_target(question: str, tokens: int) -> str:
    """``question`` with L1's thinking-length instruction appended (see the module docstring).

    >>> with_target("Is 0110 even or odd?", 48)
    'Is 0110 even or odd? Think for 48 tokens.'
    """
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise ValueError(f"a thinking-length target is a number of tokens >= 0, got {tokens!r}")
    return question + TARGET_TEMPLATE.format(tokens)


def read_target(question: str) -> int | None:
    """The thinking-length target a question ends with (:func:`with_target`), else None. Never raises.

    >>> read_target("Is 0110 even or odd? Think for 48 tokens."), read_target("Is 0110 even or odd?")
    (48, None)
    """
    head, tail = TARGET_TEMPLATE.split("{}")
    if not isinstance(question, str) or not question.endswith(tail):
        return None
    number = question[: len(question) - len(tail)].rpartition(head)[2]
    return int(number) if number.isascii() and number.isdigit() else None


def parse_targets(spec: str) -> list[int]:
    """Thinking-length targets from a flag: ``"0,16,48"`` -> [0, 16, 48]; ValueError for anything but integers >= 0.

    >>> parse_targets("0, 16,48"), parse_targets("")
    ([0, 16, 48], [])
    """
    parts = [x.strip() for x in str(spec).split(",") if x.strip()]
    if not all(x.isascii() and x.isdigit() for x in parts):
        raise ValueError(f"thinking-length targets are token counts (integers >= 0), e.g. '0,16,48'; got {spec!r}")
    return [int(x) for x in parts]
