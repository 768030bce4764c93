"""The thinking grammar (qstar.tasks.thinking) and each task's cheap answer check (Task.cheap_check)."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qstar.learn.retry import RETRY_KINDS, check_line, parse_check
from qstar.tasks import get_task
from qstar.tasks.base import UNREADABLE, Problem
from qstar.tasks.countdown import solve
from qstar.tasks.format import ANSWER_PREFIX, WAIT_STEP, clean_line, render_chain
from qstar.tasks.letters import NUMBER_WORDS
from qstar.tasks.thinking import (
    RETRY_STEP,
    Line,
    answer_check_line,
    cheap_check_line,
    parse_line,
    parse_thinking,
    render_thinking,
    thinking_stats,
    well_formed,
)

HYPO = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SYNTH = ["mult", "countdown", "cipher", "letters", "ages", "decimals"]
EXACT = ["countdown", "cipher", "letters", "ages"]  # methods whose verdict must equal the exact verifier's
N = 200


@pytest.fixture(scope="module")
def problems() -> dict[str, list[Problem]]:
    return {n: get_task(n).generate(N, seed=11, split="test") for n in SYNTH}


# ---- the grammar ----
def test_line_kinds_and_retry_compatibility():
    chk = answer_check_line("56088", "123:1 3 6 0=0", True)
    assert parse_line(chk) == Line("check", chk, "56088", "123:1 3 6 0=0", True)
    assert parse_line("Check: 15 and 5 | x=15 y=5 15=15 29!=35 wrong").ok is False
    rc = check_line("6:837000", False)
    assert parse_line(rc) == Line("recheck", rc, None, "6:837000", False)
    assert parse_line(WAIT_STEP).kind == "wait" and parse_line(RETRY_STEP).kind == "retry"
    assert parse_line("back left 13 7 5").kind == "back"
    for step in ["13+7=20 left 20 5 9", "Check: maybe", "Check:", "back left x", "Waiting", "retry", "Answer:"]:
        assert parse_line(step) == Line("step", step)
    assert parse_line("  Wait \r") == Line("wait", "Wait")  # whitespace is normalised
    for text in ["Check: ok", "Check: 12+3=15 left 15 ok", "Check: a | b wrong", "Check: | b ok"]:
        line = parse_line(text)  # every line retry.parse_check reads is a check or recheck with the same verdict
        body, ok = parse_check(text)
        assert line.ok == ok and (line.work == body if line.kind == "recheck" else line.kind == "check")
    for bad in ["", "a | b", "a |", "  "]:
        with pytest.raises(ValueError):
            answer_check_line(bad, "work", True)
    with pytest.raises(ValueError):
        answer_check_line("5", " ", True)


_ANY = st.text(max_size=40) | st.text("Check: |okwrongWaitRetrybackleft0123Answer\n ", max_size=40)
_CLEAN = _ANY.map(clean_line).filter(bool)
_SPECIAL = ("Check: ", ANSWER_PREFIX)


@st.composite
def lines(draw) -> Line:
    kind = draw(st.sampled_from(["step", "check", "recheck", "wait", "retry", "back"]))
    if kind == "step":
        t = draw(_CLEAN.filter(lambda t: not t.startswith(_SPECIAL) and t not in (WAIT_STEP, RETRY_STEP)
                               and not t.startswith("back left ")) | st.sampled_from(["Check: maybe", "Check:"]))
        return Line("step", t)
    if kind == "check":
        c, w, ok = draw(_CLEAN.filter(lambda c: " | " not in c + " ")), draw(_CLEAN), draw(st.booleans())
        return Line("check", answer_check_line(c, w, ok), c, w, ok)
    if kind == "recheck":
        r, ok = draw(_CLEAN.filter(lambda r: " | " not in r)), draw(st.booleans())
        return Line("recheck", check_line(r, ok), None, r, ok)
    if kind == "back":
        nums = draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=5))
        return Line("back", "back left " + " ".join(map(str, nums)))
    return Line(kind, WAIT_STEP if kind == "wait" else RETRY_STEP)


@HYPO
@given(st.lists(lines(), max_size=8), st.none() | st.just("") | _CLEAN)
def test_render_parse_round_trip(ls, answer):
    assert all(well_formed(x) for x in ls)
    text = render_thinking(ls, answer)
    assert parse_thinking(text) == (ls, answer)
    assert render_thinking(*parse_thinking(text)) == text


@HYPO
@given(st.text(max_size=200) | st.text("Check: |okwrong\nWaitRetryback left 0123Answer:\r\t", max_size=200))
def test_parse_never_raises(text):
    ls, answer = parse_thinking(text)
    assert answer is None or isinstance(answer, str)
    for x in ls:
        assert x.kind in ("step", "check", "recheck", "wait", "retry", "back")
        assert x.text and "\n" not in x.text and x.text == clean_line(x.text)
        assert (x.ok is None) == (x.kind not in ("check", "recheck"))
    stats = thinking_stats(text)
    assert sum(stats[k] for k in ("steps", "checks", "rechecks", "waits", "retries", "backs")) == len(ls)
    for junk in (None, 5, b"x"):
        assert parse_thinking(junk) == ([], None) and parse_line(junk) == Line("step", "")


def checked_chain(task, problem, rng) -> str | None:
    """A slipped attempt, its failed check, Retry, the reference attempt, its passed check, the answer."""
    try:
        bad = task.corrupt(problem, rng)
    except ValueError:  # a Countdown gold with fractions has no integer chain to corrupt
        return None
    cand = task.implied_answer(problem, bad)
    first = cheap_check_line(task, problem, cand) if cand else None
    if first is None or parse_line(first).ok:
        return None
    return render_chain(bad + [first, RETRY_STEP] + task.steps(problem)
                        + [cheap_check_line(task, problem, problem.answer)], problem.answer)


@pytest.mark.parametrize("name", SYNTH)
def test_task_chains_parse_and_render_back(name, problems):
    task, rng = get_task(name), random.Random(0)
    seen: dict[str, int] = {}
    for p in problems[name][:25]:
        chains = [task.reference(p)]
        for kind in ("retry", "wait_ok", "wait_fix") + (("backtrack",) if name == "countdown" else ()):
            try:
                chains.append(RETRY_KINDS[kind](task, p, rng))
            except ValueError:  # a Countdown gold with fractions has no integer chain
                pass
        if task.check_method:
            chains.append(checked_chain(task, p, rng))
        for text in filter(None, chains):
            ls, answer = parse_thinking(text)
            assert task.verify(p, answer) and all(well_formed(x) for x in ls)
            assert render_thinking(ls, answer) == text
            for x in ls:
                seen[x.kind] = seen.get(x.kind, 0) + 1
                if x.kind == "recheck":
                    assert parse_check(x.text) == (x.work, x.ok)
        assert all(x.kind == "step" for x in parse_thinking(task.reference(p))[0])
    want = {"step", "recheck", "wait"} | ({"check", "retry"} if task.check_method else set())
    assert want <= set(seen) and ("back" in seen) == (name == "countdown")


def test_thinking_stats_of_the_docstring_chain():
    import qstar.tasks.thinking as th

    doc = th.__doc__.split("literal):\n\n")[1].split("\n\n")[0]
    text = "\n".join(line.strip() for line in doc.splitlines())
    assert thinking_stats(text) == {"steps": 6, "checks": 2, "failed_checks": 1, "rechecks": 0,
                                    "failed_rechecks": 0, "waits": 0, "retries": 1, "backs": 0, "answered": 1}
    task = get_task("countdown")
    p = task.make([13, 7, 5, 9], 91, answer="(13+7)*5-9")
    ls, answer = parse_thinking(text)
    assert [x.text for x in ls if x.kind == "check"] == [cheap_check_line(task, p, c) for c in ("101-9", answer)]
    assert thinking_stats("a\nWait\nCheck: x wrong\nx\nback left 3") == {
        "steps": 2, "checks": 0, "failed_checks": 0, "rechecks": 1, "failed_rechecks": 1, "waits": 1, "retries": 0,
        "backs": 1, "answered": 0}


# ---- cheap checks ----
def test_check_methods_declared():
    for name in ["mult", "countdown", "cipher", "letters", "ages"]:
        assert get_task(name).check_method
    for name in ["decimals", "gsm8k", "math500"]:
        task = get_task(name)
        assert task.check_method == "" and task.cheap_check(Problem(name, "q", "5", "k", {}), "5") is None


def wrong_candidates(name: str, task, p: Problem, rng: random.Random) -> list[str]:
    """Corrupted chains' implied answers plus perturbed gold answers (some of which are still correct)."""
    out = []
    for _ in range(3):
        try:
            out.append(task.implied_answer(p, task.corrupt(p, rng)))
        except ValueError:  # a Countdown gold with fractions has no integer chain to corrupt
            pass
    g, d = p.answer, p.data
    if name == "countdown":
        out += [str(d["target"]), g + "+1", g + " = " + str(d["target"]), solve(d["nums"], d["target"]) or "",
                g.replace("+", "-", 1), g.replace("*", "+", 1), g.replace(str(d["nums"][0]), str(d["nums"][0] + 1), 1)]
    elif name == "cipher":
        i = rng.randrange(len(g.replace(" ", "")))
        out += [g.upper() + "!", g[::-1], " ".join(reversed(g.split())), g.replace(g.replace(" ", "")[i], "q"), "x"]
    elif name == "letters":
        n = int(g)
        out += [str(n + 1), str(max(0, n - 1)), f"0{n}", next(w for w, v in NUMBER_WORDS.items() if v == n)]
    elif name == "ages":
        nums = [int(t) for t in g.replace("k", "").split(" and ") if t] if "k" in g else None
        if nums and len(nums) == 2:
            out += [f"{2 * nums[0]}k and {2 * nums[1]}k", f"{nums[1]}k and {nums[0]}k", g.replace("k", ""),
                    f"-{g}" if g[0] != "k" else g]
        else:
            x, y = g.split(" and ")
            out += [f"x={x}, y={y}", f"{y} and {x}", f"{int(x) + 1} and {y}", f"{x} and {int(y) - 1}", f"{x}k and {y}k"]
    return [c for c in out if c is not None]


@pytest.mark.parametrize("name", EXACT)
def test_exact_checks_agree_with_the_verifier(name, problems):
    task, rng = get_task(name), random.Random(1)
    wrong = 0
    for p in problems[name]:
        blind = dataclasses.replace(p, answer="?")  # the method must not read the gold answer
        work, ok = task.cheap_check(p, p.answer)
        assert ok and task.cheap_check(blind, p.answer) == (work, ok), (p.question, work)
        for c in wrong_candidates(name, task, p, rng):
            got = task.cheap_check(p, c)
            assert got == task.cheap_check(blind, c)
            assert got[1] == task.verify(p, c), (p.question, p.answer, c, got)
            wrong += not task.verify(p, c)
    assert wrong >= N  # the corrupted candidates are mostly wrong, and each of those was caught


def test_casting_out_nines_misses_exactly_the_multiples_of_9(problems):
    task, rng = get_task("mult"), random.Random(2)
    caught = missed = 0
    for p in problems["mult"]:
        ab = p.data["a"] * p.data["b"]
        work, ok = task.cheap_check(p, p.answer)
        assert ok and len(work) <= 70 and task.cheap_check(dataclasses.replace(p, answer="?"), p.answer) == (work, ok)
        slips = [task.implied_answer(p, task.corrupt(p, rng)) for _ in range(3)]
        for c in slips:  # a digit slipped by 1 or 2: never a multiple of 9, always caught
            work, ok = task.cheap_check(p, c)
            assert not ok and len(work) <= 70 and (int(c) - ab) % 9 != 0
        g = p.answer
        swaps = [g[:i] + g[i + 1] + g[i] + g[i + 2:] for i in range(len(g) - 1) if g[i] != g[i + 1]]
        for c in [str(ab + d) for d in range(-27, 28) if d] + swaps + slips:
            ok = task.cheap_check(p, c)[1]
            assert not task.verify(p, c) and ok == ((int(c) - ab) % 9 == 0), (p.question, c)
            caught += not ok
            missed += ok
    assert missed >= N * 6 and caught > missed  # every +-9, 18, 27 and every digit swap is missed; the rest caught
    assert task.cheap_check(problems["mult"][0], "-" + problems["mult"][0].answer) == (UNREADABLE, False)


@pytest.mark.parametrize("name", SYNTH + ["mixture", "gsm8k"])
@HYPO
@given(text=st.text(max_size=60) | st.text("0123456789+-*/()= kand:xy|.,", max_size=60))
def test_cheap_check_never_raises(name, text):
    task = get_task(name)
    ps = task.generate(3, seed=0, split="test") if name != "gsm8k" else [Problem("gsm8k", "q", "5", "k", {})]
    for p in ps:
        got = task.cheap_check(p, text)
        assert got is None or (isinstance(got[0], str) and isinstance(got[1], bool) and got[0])
        assert (got is None) == (task.check_method == "" or get_task(p.task).check_method == "")
        line = cheap_check_line(task, p, text)
        if line is not None:
            assert parse_line(line) == Line("check", line, clean_line(text), clean_line(got[0]), got[1])
    assert get_task(name).cheap_check(ps[0], None) in (None, (UNREADABLE, False))


def test_mixture_delegates_to_the_component(problems):
    mix = get_task("mixture")
    for p in mix.generate(30, seed=3, split="test"):
        assert mix.cheap_check(p, p.answer) == get_task(p.task).cheap_check(p, p.answer)
    assert mix.cheap_check(Problem("nope", "q", "1", "k", {}), "1") is None


@given(st.text(max_size=60), st.integers(0, 10_000))
@settings(max_examples=200, deadline=None)
def test_a_length_target_round_trips_and_reading_never_raises(question, n):
    from qstar.tasks.thinking import read_target, with_target

    assert read_target(with_target(question, n)) == n
    read_target(question)  # arbitrary text: None or a number, never an exception


def test_bad_length_targets_are_clear_errors():
    from qstar.tasks.thinking import parse_targets, with_target

    assert parse_targets(" 0,16 ,48,") == [0, 16, 48]
    for bad in ("-4", "1.5", "lots", "0,,x"):
        with pytest.raises(ValueError, match="token counts"):
            parse_targets(bad)
    with pytest.raises(ValueError, match="tokens >= 0"):
        with_target("q", -1)
