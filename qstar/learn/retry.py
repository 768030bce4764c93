"""The thinking corpus: short and long demonstrations, checks, caught mistakes and retries (Physics of LMs 2.2,
Tsilivis et al. 2025), in the grammar of ``qstar.tasks.thinking``.

``corpus(task, "short=0.7,long=0.3")`` is an endless ``rng -> (question, chain)`` source for ``qstar.learn.sft.fit``
whose mixture ratios are knobs (``SFTConfig.corpus``). Short chains answer at once; long ones think first. Next-token
training on such a mixture teaches both modes, and RL afterwards can move the model to the mode that pays.

A check line re-derives one step and compares it with what was written: ``Check: <recomputed step> ok`` or
``Check: <recomputed step> wrong``. A failed check is followed by the corrected step and the rest of the correct
chain, so the chain still ends in a verified answer. Kinds (each ``f(task, problem, rng) -> chain text``):

- ``retry``: a wrong step (``task.corrupt``), a check that catches it at once, the corrected continuation.
- ``wait_ok``: a correct chain, then (after ``WAIT_STEP`` half the time, directly otherwise) a re-check of every step,
  all ok, then the answer: what budget forcing ("Wait") and the sequential strategy's "check" mode trigger.
- ``wait_fix``: a chain with a propagated mistake, then the re-check pass finds it, corrects it and finishes.
- ``backtrack``: Countdown search traces with dead ends and "back left ..." undo lines (``search_trace``).
- ``short``: the answer line alone (no thinking); ``long``: the task's reference chain.
- ``cut``: the reference chain's thinking cut after a random number of its lines (at least one, not all), then the
  right answer (Dualformer's randomly truncated traces): what a thinking budget that runs out mid-chain asks of the
  model, which then answers from the work it has.
- ``checked``: the reference chain, then a check of its answer by the task's cheap method (``Task.cheap_check``).
- ``check_retry``: an attempt with a slipped step, a cheap check of its answer that fails, ``Retry``, the reference
  attempt, a check that passes, the answer.

The first answer line of a re-checked chain is left out: budget forcing suppresses it at test time.
``retry_examples`` is an endless ``rng -> (question, chain)`` source for ``qstar.learn.sft.fit``; ``mixed`` blends
it into another source at a given fraction, so one switch (``retry_fraction``) trains with or without it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from qstar.tasks.base import Problem, Task
from qstar.tasks.format import CHECK_PREFIX, WAIT_STEP, render_chain
from qstar.tasks.thinking import RETRY_STEP, cheap_check_line

__all__ = ["check_line", "cut_chain", "retry_chain", "recheck_chain", "backtrack_chain", "RETRY_KINDS", "CORPUS_KINDS",
           "retry_examples", "corpus", "parse_mix", "mixed", "parse_check"]

Example = tuple[str, str]
Source = Sequence[Example] | Callable[[random.Random], Example]
OK, WRONG = "ok", "wrong"


def check_line(recomputed: str, ok: bool) -> str:
    """``Check: <recomputed step> ok|wrong``.

    >>> check_line("6:837000", False)
    'Check: 6:837000 wrong'
    """
    return f"{CHECK_PREFIX}{recomputed} {OK if ok else WRONG}"


def parse_check(line: str) -> tuple[str, bool] | None:
    """(recomputed step, verdict ok) of a check line, else None. Never raises."""
    if not isinstance(line, str) or not line.startswith(CHECK_PREFIX):
        return None
    body, _, verdict = line[len(CHECK_PREFIX):].rpartition(" ")
    return (body, verdict == OK) if verdict in (OK, WRONG) else None


def _slip(task: Task, problem: Problem, rng: random.Random) -> tuple[list[str], list[str], int]:
    """(reference steps, corrupted steps, index of the first wrong step); ValueError if the task cannot slip."""
    ref = task.steps(problem)
    bad = task.corrupt(problem, rng)
    i = next((j for j, (a, b) in enumerate(zip(ref, bad)) if a != b), None)
    if not ref or i is None:
        raise ValueError(f"{task.name}: corrupt() left {problem.question!r} unchanged")
    return ref, bad, i


def retry_chain(task: Task, problem: Problem, rng: random.Random) -> str:
    """Correct steps, one wrong step, a check that catches it, then the corrected step and the rest."""
    ref, bad, i = _slip(task, problem, rng)
    return render_chain(ref[:i] + [bad[i], check_line(ref[i], False)] + ref[i:], problem.answer)


def recheck_chain(task: Task, problem: Problem, rng: random.Random, *, wrong: bool) -> str:
    """A finished chain (with one propagated mistake if ``wrong``), a re-check pass over its steps (after
    ``WAIT_STEP`` half the time), then the answer; a failed check is followed by the corrected steps."""
    ref = task.steps(problem)
    if not ref:
        raise ValueError(f"{task.name}: no reference steps for {problem.question!r}")
    written, i = ref, len(ref)
    if wrong:
        ref, written, i = _slip(task, problem, rng)
    marker = [WAIT_STEP] if rng.random() < 0.5 else []
    checks = [check_line(ref[j], True) for j in range(i)]
    tail = [check_line(ref[i], False)] + ref[i:] if wrong else []
    return render_chain(written + marker + checks + tail, problem.answer)


def backtrack_chain(task: Task, problem: Problem, rng: random.Random, *, max_steps: int = 12) -> str:
    """A depth-first search trace with dead ends and undo lines (tasks with ``search_trace``, e.g. Countdown).
    After ``max_steps`` lines the trace heads straight for a solution, which keeps it a few hundred characters."""
    from qstar.tasks import countdown

    if task.name != "countdown":
        raise ValueError(f"backtracking traces exist for countdown only, not {task.name}")
    return countdown.search_trace(problem, rng, max_steps=max_steps)


def _checked(task: Task, problem: Problem, candidate: str) -> str:
    line = cheap_check_line(task, problem, candidate)
    if line is None:
        raise ValueError(f"{task.name} has no cheap answer check")
    return line


def checked_chain(task: Task, problem: Problem, rng: random.Random) -> str:
    """The reference chain, a cheap check of its answer, the answer."""
    return render_chain(task.steps(problem) + [_checked(task, problem, problem.answer)], problem.answer)


def check_retry_chain(task: Task, problem: Problem, rng: random.Random) -> str:
    """A slipped attempt whose answer fails the cheap check, ``Retry``, the reference attempt, a passing check."""
    ref, bad, _ = _slip(task, problem, rng)
    wrong = task.implied_answer(problem, bad)
    if wrong is None or task.accepts(problem, wrong):
        raise ValueError(f"{task.name}: the slip left no wrong answer to catch")
    return render_chain(bad + [_checked(task, problem, wrong), RETRY_STEP] + ref + [_checked(task, problem,
                        problem.answer)], problem.answer)


def cut_chain(task: Task, problem: Problem, rng: random.Random) -> str:
    """The reference thinking cut after 1..n-1 of its n lines, then the right answer (the whole chain when n < 2)."""
    steps = task.steps(problem)
    return render_chain(steps[:rng.randint(1, len(steps) - 1)] if len(steps) > 1 else steps, problem.answer)


#: kind -> f(task, problem, rng) -> chain text
RETRY_KINDS: dict[str, Callable[[Task, Problem, random.Random], str]] = {
    "retry": retry_chain,
    "wait_ok": lambda t, p, r: recheck_chain(t, p, r, wrong=False),
    "wait_fix": lambda t, p, r: recheck_chain(t, p, r, wrong=True),
    "backtrack": backtrack_chain,
}
#: every kind the corpus mixes: the retry kinds plus short and long demonstrations and cheap-check kinds
CORPUS_KINDS: dict[str, Callable[[Task, Problem, random.Random], str]] = {
    "short": lambda t, p, r: render_chain([], p.answer),
    "long": lambda t, p, r: t.reference(p),
    "cut": lambda t, p, r: cut_chain(t, p, r),
    "checked": checked_chain,
    "check_retry": check_retry_chain,
    **RETRY_KINDS,
}


def parse_mix(spec: str) -> dict[str, float]:
    """``"short=0.7,long=0.3"`` -> {"short": 0.7, "long": 0.3}; ValueError for an unknown kind or a bad weight."""
    mix: dict[str, float] = {}
    for part in filter(None, (s.strip() for s in str(spec).split(","))):
        kind, _, weight = part.partition("=")
        if kind.strip() not in CORPUS_KINDS:
            raise ValueError(f"unknown corpus kind {kind.strip()!r}; choose from {', '.join(CORPUS_KINDS)}")
        try:
            w = float(weight)
        except ValueError:
            raise ValueError(f"corpus weight of {kind.strip()!r} must be a number, got {weight!r}") from None
        if not w >= 0:
            raise ValueError(f"corpus weight of {kind.strip()!r} must be >= 0, got {weight!r}")
        mix[kind.strip()] = w
    if not mix or sum(mix.values()) <= 0:
        raise ValueError(f"corpus mixture {spec!r} has no positive weight; e.g. 'short=0.7,long=0.3'")
    return mix


def corpus(task: Task, spec: str | dict[str, float], *, seed: int = 0, split: str = "train",
           max_chars: int = 480) -> Callable[[random.Random], Example]:
    """Endless source ``rng -> (question, chain)`` mixing ``CORPUS_KINDS`` by weight (a spec string or a dict)."""
    mix = parse_mix(spec) if isinstance(spec, str) else spec
    return retry_examples(task, kinds=[k for k, w in mix.items() if w > 0],
                          weights=[w for w in mix.values() if w > 0], seed=seed, split=split, max_chars=max_chars)


def retry_examples(task: Task, *, kinds: Sequence[str] = ("retry", "wait_ok", "wait_fix"), seed: int = 0,
                   split: str = "train", max_chars: int = 480,
                   weights: Sequence[float] | None = None) -> Callable[[random.Random], Example]:
    """Endless source ``rng -> (question, chain)``: a fresh ``split`` problem and a kind drawn by ``weights``
    (uniformly by default) from ``CORPUS_KINDS``.

    Examples longer than ``max_chars`` characters (question + chain; one token each) are skipped so they fit a
    model's context (512 tokens for the presets).

    A problem the drawn kind cannot handle (a mixture's family without a cheap check, a Countdown gold answer with
    fractions) gets its reference chain instead, so no family drops out of the mixture; one that cannot have that
    either is skipped. ValueError when a kind works on none of 64 probe problems (the task has no
    ``corrupt``/``steps``/cheap check, or every chain is longer than ``max_chars``).
    """
    unknown = [k for k in kinds if k not in CORPUS_KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown corpus kinds {unknown or kinds}; choose from {', '.join(CORPUS_KINDS)}")
    kinds = list(kinds)
    probe = task.generate(64, seed=seed, split=split)
    for kind in kinds:  # a kind the task cannot make at all would silently skew the mixture
        errors = []
        for p in probe:
            try:
                _make(task, p, kind, random.Random(0), max_chars)
                break
            except (ValueError, NotImplementedError) as e:
                errors.append(str(e))
        else:
            raise ValueError(f"{task.name} cannot make {kind!r} chains ({errors[-1] if errors else 'no problems'})")
    buf: list[Problem] = []
    state = {"seed": seed * 7919 + 17}

    def draw(rng: random.Random) -> Example:
        while True:
            if not buf:
                state["seed"] += 1
                buf.extend(task.generate(256, seed=state["seed"], split=split))
            p = buf.pop()
            kind = rng.choice(kinds) if weights is None else rng.choices(kinds, weights=weights)[0]
            try:
                chain = _make(task, p, kind, rng, max_chars)
            except (ValueError, NotImplementedError):
                try:  # e.g. a mixture's family without a cheap check: its reference chain keeps the family in
                    chain = _make(task, p, "long", rng, max_chars)
                except (ValueError, NotImplementedError):
                    continue
            return p.question, chain

    return draw


def _make(task: Task, problem: Problem, kind: str, rng: random.Random, max_chars: int) -> str:
    chain = CORPUS_KINDS[kind](task, problem, rng)
    if len(problem.question) + len(chain) + 3 > max_chars:
        raise ValueError(f"longer than max_chars={max_chars}")
    return chain


def mixed(base: Source, extra: Callable[[random.Random], Example], fraction: float) -> Callable:
    """A source drawing from ``extra`` with probability ``fraction`` and from ``base`` otherwise."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"mixing fraction must be in [0, 1], got {fraction}")
    if not callable(base) and len(base) == 0 and fraction < 1:
        raise ValueError("mixed: the base example list is empty")
    pick = base if callable(base) else (lambda r: r.choice(base))
    return lambda rng: extra(rng) if rng.random() < fraction else pick(rng)
