"""Verifiable rewards for RL: plain functions, plain lists in and out.

Every reward has one signature::

    reward(problems: Sequence[Problem], texts: Sequence[str], **context) -> list[float]

``texts`` are generated chains (without the prompt). ``context`` carries run facts some rewards need: ``max_len``
(the completion budget in tokens) and ``finished`` (per text, False when the token budget cut the chain before
<eos>); a reward ignores keys it does not use. :func:`combine` mixes named rewards by weights parsed from a config
string such as ``"correctness=1,format=0.1"``. qstar's tokenizer is one token per character, so lengths below are
characters = tokens.

Correctness and format are strict about the chain format (qstar.tasks.format): the answer line must be the chain's
last line and the chain must have finished. A lenient reward (first answer line anywhere) is easy to hack: a policy
that writes ``Answer: 1`` over and over until the budget runs out collected a letter-counting task's most common
answer 73% of the time, without counting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from qstar.tasks import get_task, judge  # noqa: F401  (get_task: the doctests use it)
from qstar.tasks.base import Problem
from qstar.tasks.format import ANSWER_PREFIX, split_chain
from qstar.tasks.thinking import read_target, thinking_length, with_target  # noqa: F401  (the doctest)

__all__ = ["REWARDS", "correctness", "format_reward", "length_penalty", "length_target", "parse_weights", "combine"]

RewardFn = Callable[..., list[float]]


def correctness(problems: Sequence[Problem], texts: Sequence[str], *, finished=None, **_) -> list[float]:
    """1.0 where the chain is well formed (see :func:`format_reward`) and the task's exact verifier accepts its
    answer, else 0.0.

    >>> p = get_task("mult").generate(1, seed=0)[0]
    >>> ok = "Answer: " + p.answer
    >>> correctness([p] * 5, [get_task("mult").reference(p), ok, ok + "\\n" + ok, ok, "no answer"],
    ...             finished=[True, True, True, False, True])
    [1.0, 1.0, 0.0, 0.0, 0.0]
    """
    well_formed = format_reward(problems, texts, finished=finished)
    return [1.0 if ok and judge(p, text).correct else 0.0 for p, text, ok in zip(problems, texts, well_formed)]


def format_reward(problems: Sequence[Problem], texts: Sequence[str], *, finished=None, **_) -> list[float]:
    """1.0 where the chain's last line is its only, non-empty ``Answer: X`` line and the chain finished (when
    ``finished`` is given), else 0.0. Ignores correctness.

    >>> format_reward([None] * 4, ["12 * 3 = 36\\nAnswer: 36", "12 * 3 = 36\\n", "Answer: ", "Answer: 3\\nAnswer: 3"])
    [1.0, 0.0, 0.0, 0.0]
    """
    _check(problems, texts)
    finished = [True] * len(texts) if finished is None else finished
    out = []
    for text, done in zip(texts, finished):
        lines = text.rstrip("\n").split("\n")
        last_only = sum(line.startswith(ANSWER_PREFIX) for line in lines) == 1 and lines[-1].startswith(ANSWER_PREFIX)
        out.append(1.0 if done and last_only and split_chain(text)[1] else 0.0)
    return out


def length_penalty(
    problems: Sequence[Problem], texts: Sequence[str], *, max_len: int = 256, buffer: int = 0, **_
) -> list[float]:
    """DAPO's soft overlong penalty: 0 up to ``max_len - buffer`` tokens, then falling linearly to -1 at ``max_len``.

    ``buffer`` defaults to a quarter of ``max_len``. Chains at the budget were cut off by it, so this shapes the
    policy away from rambling without making every long-but-finished chain worthless.

    >>> length_penalty([None] * 3, ["x" * 10, "x" * 14, "x" * 20], max_len=20, buffer=8)
    [0.0, -0.25, -1.0]
    """
    _check(problems, texts)
    buffer = buffer or max(1, max_len // 4)
    start = max_len - buffer
    return [0.0 - min(1.0, max(0, len(t) - start) / buffer) for t in texts]


def length_target(problems: Sequence[Problem], texts: Sequence[str], *, max_len: int = 256, **_) -> list[float]:
    """L1-Exact's length term: ``-|n - t| / max_len`` (at least -1), where ``t`` is the thinking-length target the
    problem's question states (``qstar.tasks.thinking.with_target``) and ``n`` the chain's thinking tokens (before
    its answer line; the whole chain when it has none). 0.0 for a question without a target. Added to correctness
    (``"correctness=1,length_target=0.5"``), it pays the shortest right chain near the target, so one model learns
    to spend what the prompt asks.

    >>> from qstar.tasks.base import Problem
    >>> p = Problem("parity", with_target("Is 0110 even or odd?", 8), "even", "0110")
    >>> length_target([p, p, p], ["x" * 7 + "\\nAnswer: even", "Answer: even", "x" * 40], max_len=16)
    [0.0, -0.5, -1.0]
    """
    _check(problems, texts)
    out = []
    for p, text in zip(problems, texts):
        target = read_target(getattr(p, "question", None))
        n = thinking_length(text)
        out.append(0.0 if target is None else 0.0 - min(1.0, abs(n - target) / max(1, max_len)))
    return out


#: reward name -> function (names are what config weights refer to).
REWARDS: dict[str, RewardFn] = {"correctness": correctness, "format": format_reward, "length": length_penalty,
                                "length_target": length_target}


def parse_weights(spec: str) -> dict[str, float]:
    """``"correctness=1,format=0.1"`` -> ``{"correctness": 1.0, "format": 0.1}``; a bare name has weight 1.

    >>> parse_weights("correctness, format=0.5")
    {'correctness': 1.0, 'format': 0.5}
    """
    weights: dict[str, float] = {}
    for part in (s.strip() for s in spec.split(",")):
        if not part:
            continue
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in REWARDS:
            raise ValueError(f"unknown reward {name!r}; choose from {', '.join(REWARDS)}")
        try:
            weights[name] = float(value) if value.strip() else 1.0
        except ValueError:
            raise ValueError(f"reward weight for {name!r} is not a number: {value!r}") from None
    if not weights:
        raise ValueError(f"no rewards in {spec!r}; give e.g. 'correctness=1,format=0.1'")
    return weights


def combine(
    problems: Sequence[Problem], texts: Sequence[str], weights: dict[str, float], **context
) -> tuple[list[float], dict[str, list[float]]]:
    """Weighted sum of the named rewards: (total per text, {name: that reward's unweighted values}).

    >>> total, parts = combine([None, None], ["Answer: 7", "7"], {"format": 0.5, "length": 1.0}, max_len=10, buffer=2)
    >>> total, parts["length"]
    ([0.0, 0.0], [-0.5, 0.0])
    """
    parts = {name: REWARDS[name](problems, texts, **context) for name in weights}
    total = [sum(weights[name] * parts[name][i] for name in weights) for i in range(len(texts))]
    return total, parts


def _check(problems: Sequence, texts: Sequence[str]) -> None:
    if len(problems) != len(texts):
        raise ValueError(f"got {len(problems)} problems but {len(texts)} texts")
