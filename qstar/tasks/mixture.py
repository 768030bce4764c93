"""A weighted mixture of registered tasks. Its problems keep their component's ``task`` name, so
``qstar.tasks.verify`` (and everything else that dispatches on ``problem.task``) grades them correctly.
"""

from __future__ import annotations

import math
import random

from qstar.tasks.base import Problem, Task, Verdict

DEFAULT_WEIGHTS = {"mult": 1.0, "countdown": 1.0, "ages": 1.0, "letters": 1.0, "decimals": 1.0, "cipher": 1.0}
#: component task options (constructor keywords). The mixture is what the demo trains from scratch in minutes on
#: 2 cores, so its hardest families come at an easier size than their own defaults (LOG.md): 2x2-digit
#: multiplication, Countdown with 3 numbers, and the classic Caesar shift of 3 (one 26-letter substitution; with
#: any of 25 shifts the tiny model decoded 2% after 1200 updates, with shift 3 it decoded 95% after 2000).
#: `get_task("mult")` alone stays 3x3 and `get_task("cipher")` keeps every shift.
DEFAULT_OPTIONS: dict[str, dict] = {"mult": {"digits": (2, 2)}, "countdown": {"max_numbers": 3},
                                   "cipher": {"shifts": (3,)}}


class Mixture(Task):
    """Draws each problem from a component chosen with probability proportional to ``weights``.

    difficulty 1 (train/test) gives each component its own train difficulty, 2 (ood) its own ood one.
    Component keys carry their task name, so the train/test split of the mixture is the components' split.
    ``options`` holds constructor keywords per component (None: ``DEFAULT_OPTIONS``; ``{}``: every default).
    """

    name = "mixture"
    #: each problem is checked by its own component (``cheap_check`` is None for a component without a method)
    check_method = "the component task's"

    def __init__(self, weights: dict[str, float] | None = None, options: dict[str, dict] | None = None):
        from qstar.tasks import get_task, task_names  # the registry imports this module

        weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        known = [n for n in task_names() if n != self.name]
        unknown = [n for n in weights if n not in known]
        if unknown:
            raise ValueError(f"mixture: unknown task(s) {unknown}; choose from {', '.join(known)}")
        if not weights or any(not math.isfinite(w) or w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"mixture weights must be finite, >= 0 and not all zero, got {weights}")
        self.weights = {n: float(w) for n, w in weights.items() if w > 0}
        options = {n: dict(o) for n, o in (DEFAULT_OPTIONS if options is None else options).items()}
        stray = [n for n in options if n not in known]
        if stray:
            raise ValueError(f"mixture options: unknown task(s) {stray}; choose from {', '.join(known)}")
        # Steps and verification depend only on a problem's data, so the options change only what is sampled and
        # every component's problems still grade through the shared default instance (``problem.task``).
        self.options = {n: o for n, o in options.items() if n in self.weights}
        self.components = {n: get_task(n, **self.options.get(n, {})) for n in self.weights}

    def _task(self, problem: Problem) -> Task:
        if problem.task not in self.components:
            from qstar.tasks import get_task

            return get_task(problem.task)
        return self.components[problem.task]

    def sample(self, rng: random.Random, difficulty: int) -> Problem:
        name = rng.choices(list(self.weights), weights=list(self.weights.values()))[0]
        task = self.components[name]
        return task.sample(rng, task.default_difficulty("ood" if difficulty >= 2 else "train"))

    def steps(self, problem: Problem) -> list[str]:
        return self._task(problem).steps(problem)

    def verify(self, problem: Problem, answer: str | None) -> bool:
        return self._task(problem).verify(problem, answer)

    def judge(self, problem: Problem, text: str) -> Verdict:
        return self._task(problem).judge(problem, text)  # the component's own parser (Countdown reads <answer> tags)

    def check(self, problem: Problem, answer: str | None) -> bool | None:
        return self._task(problem).check(problem, answer)

    def cheap_check(self, problem: Problem, candidate: str) -> tuple[str, bool] | None:
        try:
            task = self._task(problem)
        except ValueError:  # a problem of an unregistered task: nothing to check it with
            return None
        return task.cheap_check(problem, candidate)

    def check_step(self, problem: Problem, prev_steps: list[str], step: str) -> bool | None:
        return self._task(problem).check_step(problem, prev_steps, step)

    def corrupt(self, problem: Problem, rng: random.Random) -> list[str]:
        return self._task(problem).corrupt(problem, rng)

    def implied_answer(self, problem: Problem, steps: list[str]) -> str | None:
        return self._task(problem).implied_answer(problem, steps)
