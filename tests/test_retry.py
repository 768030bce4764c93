"""Check-and-retry / backtracking training chains (qstar.learn.retry): well-formed, checks catch the slip,
final answers verify."""

from __future__ import annotations

import random

import pytest

from qstar.learn.retry import RETRY_KINDS, check_line, corpus, mixed, parse_check, retry_examples
from qstar.tasks import get_task
from qstar.tasks.format import CHECK_PREFIX, WAIT_STEP, split_chain

TASKS = ["mult", "countdown", "decimals", "letters", "ages", "cipher"]


def audit(task, problem, chain: str) -> dict:
    """Walk a chain and assert its invariants: an "ok" check re-derives a written step exactly; a "wrong" check
    re-derives the first written step the task's step checker rejects, and the corrected step follows it. After
    the corrections, every remaining step passes the step checker and the final answer verifies."""
    lines, answer = split_chain(chain)
    assert task.verify(problem, answer), f"final answer {answer!r} does not verify"
    written: list[str] = []  # the reasoning so far, caught steps removed
    counts = {"ok": 0, "wrong": 0, "wait": 0}
    for i, line in enumerate(lines):
        if line == WAIT_STEP:
            counts["wait"] += 1
            continue
        if not line.startswith(CHECK_PREFIX):
            written.append(line)
            continue
        recomputed, ok = parse_check(line)
        if ok:
            counts["ok"] += 1
            j = written.index(recomputed)
            assert task.check_step(problem, written[:j], recomputed) is not False, line
            continue
        counts["wrong"] += 1
        j = next(k for k, s in enumerate(written) if task.check_step(problem, written[:k], s) is False)
        assert written[j] != recomputed and task.check_step(problem, written[:j], recomputed) is not False, line
        assert lines[i + 1] == recomputed, "the corrected step follows the failed check"
        del written[j:]
    for j, s in enumerate(written):
        assert task.check_step(problem, written[:j], s) is not False, (j, s)
    return counts


@pytest.mark.parametrize("name", TASKS)
def test_retry_kinds_are_well_formed(name):
    task = get_task(name)
    rng = random.Random(0)
    totals = {"ok": 0, "wrong": 0, "wait": 0}
    for p in task.generate(12, seed=1, split="train"):
        for kind in ("retry", "wait_ok", "wait_fix"):
            try:
                chain = RETRY_KINDS[kind](task, p, rng)
            except ValueError:
                assert name == "countdown"  # a fractional gold answer has no integer chain to corrupt
                continue
            c = audit(task, p, chain)
            assert c["wrong"] == (kind != "wait_ok"), (kind, chain)
            if kind == "wait_ok":
                assert c["ok"] == len(task.steps(p))
            for k in totals:
                totals[k] += c[k]
    assert totals["wait"] > 0 and totals["ok"] > 0 and totals["wrong"] > 0


def test_mult_retry_golden():
    task = get_task("mult")
    p = [q for q in task.generate(40, seed=3) if q.data["b"] >= 100][0]
    chain = RETRY_KINDS["retry"](task, p, random.Random(5))
    ref = task.steps(p)
    lines = split_chain(chain)[0]
    i = next(j for j, s in enumerate(lines) if s.startswith(CHECK_PREFIX))
    assert lines[: i - 1] == ref[: i - 1]
    assert lines[i] == check_line(ref[i - 1], False) and lines[i + 1 :] == ref[i - 1 :]
    assert chain.endswith("Answer: " + p.answer)


def test_countdown_backtrack_traces_verify():
    task = get_task("countdown")
    rng = random.Random(0)
    backs = 0
    for p in task.generate(10, seed=2):
        chain = RETRY_KINDS["backtrack"](task, p, rng)
        steps, answer = split_chain(chain)
        assert task.verify(p, answer)
        backs += sum(s.startswith("back") for s in steps)
        for j, s in enumerate(steps):
            assert task.check_step(p, steps[:j], s)
    assert backs > 0
    with pytest.raises(ValueError, match="countdown only"):
        RETRY_KINDS["backtrack"](get_task("mult"), get_task("mult").generate(1, seed=0)[0], rng)


def test_retry_examples_and_mixing():
    task = get_task("countdown")
    draw = retry_examples(task, kinds=("retry", "backtrack"), seed=1)
    rng = random.Random(0)
    for _ in range(20):
        q, chain = draw(rng)
        assert q and split_chain(chain)[1]
    base = [("q", "Answer: 1")]
    extra = lambda r: ("x", "Answer: 2")
    assert {mixed(base, extra, 0.0)(rng)[0] for _ in range(50)} == {"q"}
    assert {mixed(base, extra, 1.0)(rng)[0] for _ in range(50)} == {"x"}
    frac = sum(mixed(base, extra, 0.3)(rng)[0] == "x" for _ in range(2000)) / 2000
    assert 0.25 < frac < 0.35
    with pytest.raises(ValueError, match="unknown corpus kinds"):
        retry_examples(task, kinds=("nope",))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mixed(base, extra, 1.5)
    with pytest.raises(ValueError, match="cannot make"):
        retry_examples(get_task("mult"), kinds=("backtrack",))(rng)
    with pytest.raises(ValueError, match="max_chars"):
        retry_examples(task, kinds=("retry",), max_chars=20)(rng)


def test_parse_check_never_raises():
    assert parse_check("Check: 12+3=15 left 15 ok") == ("12+3=15 left 15", True)
    assert parse_check("Check: x wrong") == ("x", False)
    for junk in ["", "Check:", "Check: maybe", "hello ok", None, "Check:  ok"]:
        r = parse_check(junk)
        assert r is None or isinstance(r, tuple)


def test_corpus_mixes_short_long_and_checked_retries_by_weight():
    from qstar.learn.retry import corpus, parse_mix
    from qstar.tasks.thinking import parse_thinking

    task = get_task("mult")
    src, rng = corpus(task, "short=0.6,long=0.2,check_retry=0.2"), random.Random(0)
    chains = [src(rng)[1] for _ in range(400)]
    short = sum(split_chain(c)[0] == [] for c in chains) / len(chains)
    assert 0.5 < short < 0.7
    retried = [c for c in chains if "Retry" in c]
    assert 0.12 < len(retried) / len(chains) < 0.28
    for c in retried:  # a failed cheap check of a wrong candidate, Retry, a passing check of the gold answer
        lines, answer = parse_thinking(c)
        checks = [x for x in lines if x.kind == "check"]
        assert [x.ok for x in checks] == [False, True] and checks[1].candidate == answer
        assert [x.kind for x in lines].index("retry") == [x.kind for x in lines].index("check") + 1
    assert parse_mix("short=1, long=0") == {"short": 1.0, "long": 0.0}
    for bad, match in (("nope=1", "unknown corpus kind"), ("short=x", "number"), ("short=-1", ">= 0"),
                       ("short=0", "no positive weight"), ("", "no positive weight")):
        with pytest.raises(ValueError, match=match):
            parse_mix(bad)
    with pytest.raises(ValueError, match="cannot make 'checked'"):  # parity has no cheap check
        corpus(get_task("parity"), "short=1,checked=1")


def test_chain_metrics_count_lengths_checks_and_their_precision_and_recall():
    from qstar.learn.evaluate import chain_metrics
    from qstar.learn.retry import check_retry_chain, checked_chain

    task = get_task("mult")
    p = task.generate(1, seed=3, split="test")[0]
    right, retried = checked_chain(task, p, random.Random(0)), check_retry_chain(task, p, random.Random(0))
    wrong = right.replace(f"Answer: {p.answer}", "Answer: 1")
    m = chain_metrics([p] * 3, [right, retried, wrong], [10, 30, 20])
    assert (m["len_correct"], m["len_incorrect"], m["response_len"]) == (20.0, 20.0, 20.0)
    assert m["checks_per_chain"] == (1 + 2 + 1) / 3 and m["retries_per_chain"] == 1 / 3
    # the retried chain's failed check caught a wrong candidate; every passing check was of the gold answer
    assert (m["check_precision"], m["check_recall"]) == (1.0, 1.0)
    lying = right.replace(" ok\n", " wrong\n")  # a check that rejects the right answer: a false alarm
    m = chain_metrics([p], [lying], [5])
    assert m["check_precision"] == 0.0 and m["check_recall"] is None and m["len_incorrect"] is None


def test_a_mixture_corpus_keeps_the_families_that_cannot_make_a_kind():
    # decimals has no cheap check: its problems get their reference chains, so the family stays in the corpus
    from collections import Counter

    from qstar.tasks.routes import route

    draw, rng = corpus(get_task("mixture"), "checked=1"), random.Random(0)
    seen = Counter()
    for _ in range(200):
        question, chain = draw(rng)
        routed = route(question)
        seen[(routed.task if routed else None, CHECK_PREFIX in chain)] += 1
    assert seen[("decimals", False)] > 10 and seen[("decimals", True)] == 0
    assert all(seen[(family, True)] > 10 for family in ("mult", "letters", "cipher", "ages", "countdown"))


def test_cut_chains_keep_a_proper_prefix_of_the_thinking_and_the_right_answer():
    from qstar.learn.retry import cut_chain

    task, rng = get_task("mult"), random.Random(0)
    cuts = set()
    for p in task.generate(40, seed=0):
        ref = task.steps(p)
        steps, answer = split_chain(cut_chain(task, p, rng))
        assert answer == p.answer and 1 <= len(steps) < len(ref) and steps == ref[:len(steps)]
        cuts.add(len(steps))
    assert len(cuts) > 2  # the cut point varies
    safety = get_task("safety")
    bad = next(p for p in safety.generate(50, seed=0) if p.data["rule"])  # cut before its verdict: still refused
    assert split_chain(cut_chain(safety, bad, rng))[1] == f"refuse {bad.data['rule']}"
