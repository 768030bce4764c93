"""Training-free scorers: a constant baseline, the exact oracle, and reference-free programmatic checkers.

All implement ``qstar.search.types.Scorer`` (structurally; this layer sits below qstar.search):
``score(problems, chains) -> [float]`` and ``score_steps(problems, steps) -> [[float]]``. A step list may end with
the answer line (``"Answer: X"``); that step is scored like the whole chain's outcome.

- ``none``: 0.5 for everything. Search guided by it is search guided by the policy alone.
- ``oracle``: reads the gold answer (``task.verify``). oracle=True: an upper bound for analysis, never deployable.
  Steps: 1 while every step so far passes ``task.check_step`` (or, where the task has none, equals the reference
  step at that position), else 0; the answer line scores its exact verification.
- ``checker``: reference-free (never reads ``problem.answer``): ``task.check(problem, answer)`` (Countdown evaluates
  the expression, equations substitute, cipher re-encodes) and ``task.check_step``. A passing answer scores 1, less
  up to ``STEP_SLIP`` for the share of its steps that fail their checks. A task with step checks but no
  outcome check (multiplication) scores a chain by its steps: any failing step -> 0, all passing -> 1. Where the task
  can judge neither the score is 0.5 = unknown; a chain without an answer scores 0.
- ``cheap``: only the checks that verify without solving again (``qstar.scorers.kinds``): ``task.cheap_check`` on
  the answer (evaluation, substitution, re-encoding, casting out nines) and the step checks that do not compare
  with the reference chain (Countdown's). 0.5 where the task has none. A verifier on every task: what ``serve`` and
  the headline verdicts may use.

Each declares its kind (``scorer_kind``, per task): oracle, solver or verifier (see ``qstar.scorers.kinds``).
"""

from __future__ import annotations

from collections.abc import Sequence

from qstar.scorers.kinds import judging_kind, most_privileged, task_checks
from qstar.tasks import task_of
from qstar.tasks.base import Problem
from qstar.tasks.format import ANSWER_PREFIX, split_chain

UNKNOWN = 0.5
#: the most a checked-correct answer loses for steps that fail their checks (all of them): it stays above UNKNOWN
STEP_SLIP = 0.1


def _tri(x: bool | None) -> float:
    return UNKNOWN if x is None else float(bool(x))


def _check_lengths(problems: Sequence[Problem], items: Sequence) -> None:
    if len(problems) != len(items):
        raise ValueError(f"scorer got {len(problems)} problems for {len(items)} chains")


class ConstantScorer:
    """Scores every chain and step ``value`` (registry name "none": no verifier)."""

    oracle = False
    params = 0

    def __init__(self, value: float = UNKNOWN, *, name: str = "none") -> None:
        self.value, self.name = float(value), name

    def scorer_kind(self, task: str) -> str | None:
        return None  # judges nothing, reads nothing

    def score(self, problems: Sequence[Problem], chains: Sequence[str]) -> list[float]:
        _check_lengths(problems, chains)
        return [self.value] * len(chains)

    def score_steps(self, problems: Sequence[Problem], steps: Sequence[Sequence[str]]) -> list[list[float]]:
        _check_lengths(problems, steps)
        return [[self.value] * len(s) for s in steps]


class OracleScorer:
    """Exact verification against the gold answer (ORACLE: analysis only). Problems whose task is not registered
    are verified by exact match of the extracted answer with ``problem.answer`` (``PlainTask``)."""

    name = "oracle"
    oracle = True
    params = 0
    scorer_kind = "oracle"

    def _verify(self, problem: Problem, text: str) -> bool:
        return task_of(problem.task).judge(problem, text).correct

    def score(self, problems: Sequence[Problem], chains: Sequence[str]) -> list[float]:
        _check_lengths(problems, chains)
        return [float(self._verify(p, c)) for p, c in zip(problems, chains)]

    def score_steps(self, problems: Sequence[Problem], steps: Sequence[Sequence[str]]) -> list[list[float]]:
        _check_lengths(problems, steps)
        return [self._steps(p, list(s)) for p, s in zip(problems, steps)]

    def _steps(self, problem: Problem, steps: list[str]) -> list[float]:
        task = task_of(problem.task)
        try:
            ref = task.steps(problem)
        except Exception:
            ref = []
        out, ok = [], True
        for j, step in enumerate(steps):
            if step.startswith(ANSWER_PREFIX):
                out.append(float(self._verify(problem, step)))
                continue
            verdict = check_step_safely(task, problem, steps[:j], step)
            if verdict is None:
                verdict = j < len(ref) and step.strip() == ref[j].strip()
            ok = ok and bool(verdict)
            out.append(float(ok))
        return out


class CheckerScorer:
    """Reference-free programmatic checks (``task.check`` / ``task.check_step``); 0.5 where a task has none."""

    name = "checker"
    oracle = False
    params = 0

    def scorer_kind(self, task: str) -> str | None:
        """The outcome check's and step check's kinds, the most privileged (a solver on most tasks)."""
        checks = task_checks(task)
        return most_privileged((checks.outcome, checks.steps))

    def score(self, problems: Sequence[Problem], chains: Sequence[str]) -> list[float]:
        _check_lengths(problems, chains)
        return [self._outcome(p, c) for p, c in zip(problems, chains)]

    def score_steps(self, problems: Sequence[Problem], steps: Sequence[Sequence[str]]) -> list[list[float]]:
        _check_lengths(problems, steps)
        out = []
        for p, s in zip(problems, steps):
            task, s = task_of(p.task), list(s)
            out.append([self._outcome(p, "".join(x + "\n" for x in s[:j]) + step) if step.startswith(ANSWER_PREFIX)
                        else _tri(self._step(task, p, s[:j], step)) for j, step in enumerate(s)])
        return out

    def _step(self, task, problem: Problem, prev: list[str], step: str) -> bool | None:
        return check_step_safely(task, problem, prev, step)

    def _verdict(self, task, problem: Problem, answer: str) -> bool | None:
        """The outcome check of ``answer``: True, False, or None where this scorer cannot judge it."""
        try:
            return task.check(problem, answer)
        except Exception:  # a checker that cannot parse the answer has judged it wrong
            return False

    def _outcome(self, problem: Problem, text: str) -> float:
        """check(answer) where the task has an outcome checker (a pass loses up to STEP_SLIP for failing steps);
        otherwise the chain's step checks (any failing step -> 0, all passing -> 1); 0.5 when neither can judge;
        0 without an answer."""
        task = task_of(problem.task)
        answer = task.read_answer(text)
        if answer is None:
            return 0.0
        verdict = self._verdict(task, problem, answer)
        if verdict is False:
            return 0.0
        steps = split_chain(text)[0]
        verdicts = [self._step(task, problem, steps[:j], s) for j, s in enumerate(steps)]
        if verdict:
            # a right answer reached through steps that do not check out ranks just below one whose steps do: what
            # a reader of the chain (`qstar ask` prints it) wants, and still far above anything unverified
            return 1.0 - STEP_SLIP * sum(v is False for v in verdicts) / max(1, len(verdicts))
        if any(v is False for v in verdicts):
            return 0.0
        return 1.0 if verdicts and all(verdicts) else UNKNOWN


class CheapScorer(CheckerScorer):
    """The checker restricted to checks that verify without solving again: ``task.cheap_check`` on the answer and
    the step checks of kind verifier; 0.5 (unknown) where a task has neither. A verifier on every task."""

    name = "cheap"

    def scorer_kind(self, task: str) -> str | None:
        checks = task_checks(task)
        return "verifier" if "verifier" in (checks.cheap, checks.steps) else None

    def _step(self, task, problem: Problem, prev: list[str], step: str) -> bool | None:
        if task_checks(problem.task).steps != "verifier":
            return None
        return check_step_safely(task, problem, prev, step)

    def _verdict(self, task, problem: Problem, answer: str) -> bool | None:
        """cheap_check(answer) where it verifies, else None (the verifier step checks then judge)."""
        got = task.cheap_check(problem, answer) if task_checks(problem.task).cheap == "verifier" else None
        return None if got is None else got[1]


#: the scorers that need no model, by registry name (``qstar.scorers.kinds`` asks them for their kind by name)
PROGRAMMATIC = {"none": ConstantScorer, "oracle": OracleScorer, "checker": CheckerScorer, "cheap": CheapScorer}


def check_step_safely(task, problem: Problem, prev: list[str], step: str) -> bool | None:
    """``task.check_step``, with any exception on unparseable model text read as a wrong step."""
    if task is None:
        return None
    try:
        return task.check_step(problem, prev, step)
    except Exception:  # unparseable model text is a wrong step, not a crash
        return False


class CheckedScorer:
    """The checker where it can judge, ``fallback`` (a learned ORM/PRM) where it cannot (score 0.5 = unknown).

    What a deployment would run: exact programmatic verification where a task has it (every qstar task judges its
    chains or steps) and the learned verifier where nothing can (user tasks, GSM8K/MATH-500 chains, steps a task
    has no check for). Both halves are reference-free.
    """

    oracle = False

    def __init__(self, fallback, *, checker: CheckerScorer | None = None) -> None:
        self.fallback, self.checker = fallback, checker or CheckerScorer()
        self.name = f"{self.checker.name}+{getattr(fallback, 'name', 'fallback')}"
        self.params = getattr(fallback, "params", 0)  # the learned half is the only one that costs FLOPs
        if hasattr(fallback, "count_tokens"):
            self.count_tokens = fallback.count_tokens

    def scorer_kind(self, task: str) -> str | None:
        """The checker's kind where it judges anything, else the fallback's (the checker's kind ranks above)."""
        return most_privileged((judging_kind(self.checker, task), judging_kind(self.fallback, task)))

    def score(self, problems: Sequence[Problem], chains: Sequence[str]) -> list[float]:
        first = self.checker.score(problems, chains)
        todo = [i for i, s in enumerate(first) if s == UNKNOWN]
        if todo:
            for i, s in zip(todo, self.fallback.score([problems[i] for i in todo], [chains[i] for i in todo])):
                first[i] = s
        return first

    def score_steps(self, problems: Sequence[Problem], steps: Sequence[Sequence[str]]) -> list[list[float]]:
        first = self.checker.score_steps(problems, steps)
        todo = [i for i, row in enumerate(first) if UNKNOWN in row]
        if todo:
            learned = self.fallback.score_steps([problems[i] for i in todo], [steps[i] for i in todo])
            for i, row in zip(todo, learned):
                first[i] = [b if a == UNKNOWN else a for a, b in zip(first[i], row)]
        return first
