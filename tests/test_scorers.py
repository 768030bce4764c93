"""Training-free scorers on real tasks: registry, oracle vs reference-free checker, step scores, garbage text."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qstar.scorers import SCORERS, get_scorer
from qstar.tasks import get_task
from qstar.tasks.base import Problem
from qstar.tasks.format import render_chain

CHECKABLE = ("countdown", "ages", "cipher", "letters", "decimals")
TASKS = CHECKABLE + ("mult",)


def problem(task, seed=0):
    return get_task(task).generate(1, seed=seed, split="test")[0]


def test_registry_and_unknown_names():
    assert {"none", "oracle", "checker", "orm", "prm"} <= set(SCORERS)
    with pytest.raises(ValueError, match="none, oracle, checker"):
        get_scorer("gut_feeling")
    s = get_scorer("none")
    assert (s.name, s.oracle, s.params) == ("none", False, 0)
    assert s.score([problem("mult")] * 2, ["x", "Answer: 3"]) == [0.5, 0.5]
    assert s.score_steps([problem("mult")], [["a", "b"]]) == [[0.5, 0.5]]
    assert get_scorer("oracle").oracle is True and get_scorer("checker").oracle is False


@pytest.mark.parametrize("task", TASKS)
def test_reference_chain_scores_one_and_corrupted_chain_less(task):
    t, p = get_task(task), problem(task)
    ref_steps, bad_steps = t.steps(p), t.corrupt(p, random.Random(0))
    wrong = render_chain(bad_steps, "12345")
    for name in ("oracle", "checker"):
        s = get_scorer(name)
        assert s.score([p, p, p], [t.reference(p), wrong, "no answer here"]) == [1.0, 0.0, 0.0], name
        good = s.score_steps([p], [ref_steps + ["Answer: " + p.answer]])[0]
        assert good == [1.0] * (len(ref_steps) + 1), name
        bad = s.score_steps([p], [bad_steps])[0]
        first = next(i for i, (a, b) in enumerate(zip(ref_steps, bad_steps)) if a != b)
        assert bad[:first] == [1.0] * first and bad[first] == 0.0, name


@pytest.mark.parametrize("task", CHECKABLE)
def test_checker_never_reads_the_gold_answer(task):
    t, p = get_task(task), problem(task)
    lied = dataclasses.replace(p, answer="a gold answer that is wrong")
    assert get_scorer("checker").score([lied], [t.reference(p)]) == [1.0]
    if task != "countdown":  # countdown's exact verifier is the checker itself: any valid expression is right
        assert get_scorer("oracle").score([lied], [t.reference(p)]) == [0.0]


def test_countdown_checker_evaluates_any_valid_expression():
    p = get_task("countdown").generate(1, seed=0, split="test")[0]  # 10 18 20 3 -> 15
    assert p.data == {"nums": [10, 18, 20, 3], "target": 15}
    s = get_scorer("checker")
    assert s.score([p] * 3, ["Answer: 20-18+10*3", "Answer: 20-18+10+3", "Answer: 20-18+10"]) == [0.0, 1.0, 0.0]
    assert s.score([p, p], ["Answer: 3+10+20-18", "Answer: (10+20)/(18/3)*3"]) == [1.0, 0.0]  # not gold; 3 twice


def test_multiplication_checker_uses_step_checks():
    t, p = get_task("mult"), problem("mult")
    s = get_scorer("checker")
    # mult has no outcome checker: a chain without steps cannot be judged, one with a wrong step is wrong
    chains = ["Answer: " + p.answer, render_chain(t.corrupt(p, random.Random(1)), p.answer), t.reference(p)]
    assert s.score([p] * 3, chains) == [0.5, 0.0, 1.0]


def test_checked_answers_rank_by_their_steps():
    # the ages check judges the answer; steps that fail their own checks cost a little, never below "unknown"
    t, p = get_task("ages"), problem("ages")
    garbled = ["a=(x-y)/2", "b=nonsense", "x=1"]
    right, sloppy, wrong = t.reference(p), render_chain(garbled, p.answer), render_chain(garbled, "1 and 2")
    good, meh, bad = get_scorer("checker").score([p] * 3, [right, sloppy, wrong])
    assert good == 1.0 and 0.5 < meh < 1.0 and bad == 0.0


def test_problems_outside_the_registry():
    p = Problem("my_task", "2+2?", "4", "k")
    assert get_scorer("checker").score([p, p], ["Answer: 4", "nothing"]) == [0.5, 0.0]
    assert get_scorer("oracle").score([p, p], ["Answer: 4", "Answer: 5"]) == [1.0, 0.0]
    assert get_scorer("checker").score_steps([p], [["x", "Answer: 4"]]) == [[0.5, 0.5]]


def test_length_mismatch_is_a_clear_error():
    for name in ("none", "oracle", "checker"):
        with pytest.raises(ValueError, match="problems"):
            get_scorer(name).score([problem("mult")], ["a", "b"])


@settings(max_examples=40, deadline=None)
@given(text=st.text(max_size=60), task=st.sampled_from(TASKS), name=st.sampled_from(["oracle", "checker", "cheap"]))
def test_scorers_never_raise_on_arbitrary_text(text, task, name):
    p, s = problem(task), get_scorer(name)
    scores = s.score([p, p], [text, "Answer: " + text])
    scores += s.score_steps([p], [text.split("\n") + ["Answer: " + text]])[0]
    assert all(0.0 <= x <= 1.0 for x in scores)


def test_checked_scorer_uses_the_checker_where_it_judges_and_the_fallback_elsewhere():
    from qstar.scorers import CheckedScorer, ConstantScorer, learned_kind

    s = CheckedScorer(ConstantScorer(0.9, name="learned"))
    assert (s.name, s.oracle) == ("checker+learned", False)
    cd = problem("countdown")
    good, bad = render_chain(get_task("countdown").reference(cd).split("\n")[:-1], cd.answer), "Answer: 1+1"
    outside = Problem("user_task", "q?", "7", "k")  # no checker can judge it
    assert s.score([cd, cd, outside], [good, bad, "Answer: 7"]) == [1.0, 0.0, 0.9]
    assert s.score_steps([outside], [["a", "b"]]) == [[0.9, 0.9]]
    assert [learned_kind(n) for n in ("prm", "checker+orm", "checker", "none")] == ["prm", "orm", None, None]
    assert {"checker+prm", "checker+orm"} <= set(SCORERS)
