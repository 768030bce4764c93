"""Verifiable rewards: doctests, weights parsing, and never raising on arbitrary model text."""

import dataclasses
import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qstar.learn.rewards as rewards
from qstar.learn.rewards import REWARDS, combine, correctness, format_reward, length_penalty, parse_weights
from qstar.tasks import get_task


def test_doctests():
    assert doctest.testmod(rewards).failed == 0


def test_correctness_across_tasks():
    for name in ("mult", "decimals", "letters", "countdown"):
        task = get_task(name)
        p = task.generate(1, seed=3)[0]
        good, wrong = task.reference(p), task.reference(p).rsplit("Answer: ", 1)[0] + "Answer: nonsense"
        assert correctness([p, p, p], [good, wrong, ""]) == [1.0, 0.0, 0.0], name


def test_length_penalty_default_buffer_and_combine_weights():
    # max_len 100 -> buffer 25: free up to 75 characters, -1 at 100 and beyond
    texts = ["x" * 75, "x" * 80, "x" * 100, "x" * 500]
    assert length_penalty([None] * 4, texts, max_len=100) == [0.0, -0.2, -1.0, -1.0]
    p = get_task("mult").generate(1, seed=0)[0]
    texts = ["Answer: " + p.answer, "Answer: 1", "no answer"]
    total, parts = combine([p] * 3, texts, parse_weights("correctness=1,format=0.25"), max_len=256)
    assert total == [1.25, 0.25, 0.0]
    assert parts == {"correctness": [1.0, 0.0, 0.0], "format": [1.0, 1.0, 0.0]}


def test_bad_weights_and_lengths():
    with pytest.raises(ValueError, match="unknown reward 'speed'"):
        parse_weights("correctness=1,speed=2")
    with pytest.raises(ValueError, match="not a number"):
        parse_weights("format=high")
    with pytest.raises(ValueError, match="no rewards"):
        parse_weights(" , ")
    with pytest.raises(ValueError, match="2 problems but 1 texts"):
        format_reward([None, None], ["x"])


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_rewards_never_raise_on_arbitrary_text(text):
    p = get_task("mult").generate(1, seed=0)[0]
    for name, fn in REWARDS.items():
        (value,) = fn([p], [text], max_len=32)
        assert -1.0 <= value <= 1.0, name


def test_length_target_scores_the_thinking_against_the_prompts_target():
    from qstar.tasks.thinking import with_target

    p = get_task("parity").generate(1, seed=0)[0]
    at8 = dataclasses.replace(p, question=with_target(p.question, 8))
    texts = ["x" * 7 + "\nAnswer: odd", "Answer: odd", "x" * 3 + "\nAnswer: odd", "no answer line"]
    assert REWARDS["length_target"]([at8] * 4, texts, max_len=16) == [0.0, -0.5, -0.25, -6 / 16]
    assert REWARDS["length_target"]([p] * 4, texts, max_len=16) == [0.0] * 4  # no target stated: no term
