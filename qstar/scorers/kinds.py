"""What a scorer knows when it scores: its kind, per task. ``kind_of(scorer, task) -> "oracle" | "solver" |
"verifier" | "learned"`` is the one function every result, sweep row, report line and ``serve`` asks.

- ``oracle``: reads the gold answer (``problem.answer``). Analysis only.
- ``solver``: recomputes the answer (or the reference chain) from the question, so it selects as an oracle would:
  the checker on letters and decimals, and every step check that compares a step with the reference chain.
- ``verifier``: checks a candidate without solving the problem again: Countdown evaluates the expression, ages
  substitutes, the cipher re-encodes, multiplication casts out nines (``Task.cheap_check``). A scorer that judges
  nothing on a task (``none``; the checker on GSM8K) reads nothing either, and is counted here: it is deployable.
- ``learned``: an ORM, PRM or value model. Any registered scorer that is not programmatic is learned, so a new
  learned scorer needs no entry here; an object declares its kind with a ``scorer_kind`` attribute (a kind, or a
  function of the task).

A scorer built from parts (``checker+prm``) takes the most privileged kind among the parts that can judge on the
task: oracle > solver > verifier > learned. Only verifier and learned scorers make headline verdicts; oracle and
solver lines are ceilings, and ``serve`` refuses them.

``TASK_CHECKS`` says, per task, what each programmatic check of ``qstar.tasks`` knows; a test holds it to every
registered task.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

KINDS = ("oracle", "solver", "verifier", "learned")
#: kinds a deployment may select with (headline verdicts, ``serve``)
DEPLOYABLE = ("verifier", "learned")
_RANK = {"learned": 0, "verifier": 1, "solver": 2, "oracle": 3}


class Checks(NamedTuple):
    """The kind of each programmatic check of a task ("" where the task has none): ``Task.check`` (outcome),
    ``Task.cheap_check`` and ``Task.check_step``."""

    outcome: str
    cheap: str
    steps: str


#: task -> what its checks know. Step checks that compare with the reference chain are solvers; Countdown's step
#: check only replays arithmetic on the given numbers; ages' step check evaluates both sides at the true solution.
#: Letters' "positions recount" counts the letter again: solving again, however it is written.
TASK_CHECKS: dict[str, Checks] = {
    "countdown": Checks("verifier", "verifier", "verifier"),
    "ages": Checks("verifier", "verifier", "solver"),
    "cipher": Checks("verifier", "verifier", "solver"),
    "mult": Checks("", "verifier", "solver"),
    "letters": Checks("solver", "solver", "solver"),
    "decimals": Checks("solver", "", "solver"),
    "parity": Checks("", "", "solver"),
    "safety": Checks("", "", ""),
    "gsm8k": Checks("", "", ""),
    "math": Checks("", "", ""),
    "math500": Checks("", "", ""),
}
NO_CHECKS = Checks("", "", "")


def most_privileged(kinds: Iterable[str | None]) -> str | None:
    """The most privileged of ``kinds`` (oracle > solver > verifier > learned), ignoring None; None if all are."""
    ks = [k for k in kinds if k]
    return max(ks, key=_RANK.__getitem__) if ks else None


def components(task) -> list[str]:
    """The task names whose problems a task produces: a mixture's components, else the task itself."""
    name = task if isinstance(task, str) else getattr(task, "name", "")
    if name == "mixture":
        weights = getattr(task, "weights", None)
        if weights is None:
            from qstar.tasks import get_task

            weights = get_task("mixture").weights
        return sorted(weights)
    return [name]


def task_checks(task: str) -> Checks:
    """``TASK_CHECKS`` of a (non-mixture) task name; an unregistered task (served chat, user data) has none."""
    return TASK_CHECKS.get(task, NO_CHECKS)


def judging_kind(scorer, task: str) -> str | None:
    """The kind of what ``scorer`` (an object) judges with on the (non-mixture) task ``task``; None when it judges
    nothing there."""
    declared = getattr(scorer, "scorer_kind", None)
    if callable(declared):
        return declared(task)
    if declared in KINDS:
        return declared
    if declared is not None:
        raise ValueError(f"scorer {getattr(scorer, 'name', scorer)!r} declares an unknown kind {declared!r}; "
                         f"choose from {', '.join(KINDS)}")
    if getattr(scorer, "params", 0):  # a model with no declaration: a learned scorer
        return "learned"
    raise ValueError(f"scorer {getattr(scorer, 'name', scorer)!r} declares no scorer_kind ({', '.join(KINDS)})")


def _name_kind(name: str, task: str) -> str | None:
    """``judging_kind`` of a registered scorer name without loading any model: its programmatic parts answer for
    themselves, every other part is learned."""
    from qstar.scorers import SCORERS
    from qstar.scorers.programmatic import PROGRAMMATIC

    if name not in SCORERS:
        raise ValueError(f"unknown scorer {name!r}; choose from {', '.join(SCORERS)}")
    return most_privileged(judging_kind(PROGRAMMATIC[p](), task) if p in PROGRAMMATIC else "learned"
                           for p in name.split("+"))


def kind_of(scorer, task) -> str:
    """The kind of ``scorer`` (a registered name or a scorer object) on ``task`` (a name or a Task; a mixture takes
    its most privileged component). A scorer that judges nothing there is a verifier (it reads nothing)."""
    judge = (lambda t: _name_kind(scorer, t)) if isinstance(scorer, str) else (lambda t: judging_kind(scorer, t))
    return most_privileged(judge(t) for t in components(task)) or "verifier"


def kind_over(scorer, tasks: Iterable) -> str:
    """The most privileged ``kind_of`` over ``tasks`` (e.g. the tasks of a run's problems)."""
    return most_privileged(kind_of(scorer, t) for t in set(tasks)) or "verifier"


def is_ceiling(kind: str | None) -> bool:
    """True for the kinds whose lines are ceilings, not results (oracle, solver)."""
    return kind in ("oracle", "solver")


def require_deployable(scorer, tasks: Iterable, *, where: str = "") -> str:
    """The kind of ``scorer`` over ``tasks``; ValueError naming the kind (and the tasks where it holds) for an oracle
    or a solver, which no deployment has."""
    tasks = sorted({t if isinstance(t, str) else t.name for t in tasks})
    kind = kind_over(scorer, tasks)
    if kind in DEPLOYABLE:
        return kind
    name = scorer if isinstance(scorer, str) else getattr(scorer, "name", "?")
    on = [t for t in tasks if kind_of(scorer, t) == kind]
    why = "reads the gold answer" if kind == "oracle" else "recomputes the answer from the question"
    article = "an" if kind == "oracle" else "a"
    raise ValueError(f"{where + ': ' if where else ''}scorer {name!r} is {article} {kind} on {', '.join(on)} ({why}); "
                     f"only {' or '.join(DEPLOYABLE)} scorers can be deployed (e.g. cheap, cheap+prm, prm)")


__all__ = ["KINDS", "DEPLOYABLE", "Checks", "TASK_CHECKS", "kind_of", "kind_over", "judging_kind", "is_ceiling",
           "most_privileged", "require_deployable", "task_checks", "components"]
