"""qstar.tasks: verifiable reasoning tasks (generators, reference chains, verifiers, checkers) and real
benchmark loaders. Imports no model code and no torch.

    >>> p = get_task("mult").generate(1, seed=0)[0]
    >>> verify(p, get_task("mult").reference(p)), verify(p, p.answer), verify(p, "0")
    (True, True, False)

Helpers dispatch on ``problem.task`` through ``task_of``, which grades problems of unregistered tasks in the plain
format (``PlainTask``). ``judge(problem, text)`` is the one way to ask "what is the answer, and is it right?";
``verify``/``check`` also take a bare answer string.
"""

from __future__ import annotations

from collections.abc import Callable

from qstar.tasks.ages import Ages
from qstar.tasks.answers import extract_answer as extract_any
from qstar.tasks.base import PlainTask, Problem, Task, Verdict
from qstar.tasks.benchmarks import GSM8K, Math500, MathAnswer, load_countdown_tinyzero, load_gsm8k, load_math500
from qstar.tasks.cipher import Caesar
from qstar.tasks.countdown import Countdown
from qstar.tasks.decimals import DecimalCompare
from qstar.tasks.format import clean_line, render_chain, render_prompt, split_chain
from qstar.tasks.letters import LetterCount
from qstar.tasks.mixture import Mixture
from qstar.tasks.mult import Multiplication
from qstar.tasks.parity import Parity
from qstar.tasks.safety import Safety

__all__ = [
    "TASKS", "PlainTask", "Problem", "Task", "Verdict", "check", "extract_answer", "get_task", "is_correct", "judge",
    "load_countdown_tinyzero", "load_gsm8k", "load_math500", "render_chain", "render_prompt", "split_chain",
    "task_names", "task_of", "task_options", "verify",
]

#: name -> Task class (or factory taking keyword options)
TASKS: dict[str, Callable[..., Task]] = {
    "mult": Multiplication,
    "parity": Parity,
    "countdown": Countdown,
    "ages": Ages,
    "letters": LetterCount,
    "decimals": DecimalCompare,
    "cipher": Caesar,
    "safety": Safety,
    "mixture": Mixture,
    "gsm8k": GSM8K,
    "math500": Math500,
    "math": MathAnswer,
}
_DEFAULT: dict[str, Task] = {}  # tasks are stateless, so option-free instances are shared
_PLAIN = PlainTask()


def task_names() -> list[str]:
    """Registered task names, sorted."""
    return sorted(TASKS)


def get_task(name: str, **kwargs) -> Task:
    """The task registered as ``name``, built with keyword options (none -> a shared default instance).

    ``name`` may carry options itself, ``"name:key=value[:key=value...]"`` (values are JSON where they parse as JSON,
    else strings), so every ``--task`` flag takes them and a checkpoint records them with its task:
    ``"safety:spec=my_rules.txt"``, ``"cipher:shifts=[3]"``.
    """
    if isinstance(name, str) and ":" in name and name not in TASKS:
        name, kwargs = name.split(":", 1)[0], {**task_options(name), **kwargs}
    if not isinstance(name, str) or name not in TASKS:
        raise ValueError(f"unknown task {name!r}; registered tasks: {', '.join(task_names())}")
    if kwargs:
        try:
            return TASKS[name](**kwargs)
        except TypeError as e:
            raise ValueError(f"bad options for task {name!r}: {e}") from None
    if name not in _DEFAULT:
        _DEFAULT[name] = TASKS[name]()
    return _DEFAULT[name]


def task_options(spec: str) -> dict:
    """The options of a task string ``"name:key=value:..."`` (``get_task``); ValueError for a malformed one."""
    import json

    options = {}
    for part in spec.split(":")[1:]:
        key, eq, value = part.partition("=")
        if not eq or not key.strip().isidentifier():
            raise ValueError(f"task {spec!r}: options must look like name:key=value[:key=value...], got {part!r}")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value.strip()
    return options


def task_of(name: str) -> Task:
    """The task that grades problems of task ``name``: the registered one (its shared default instance), else the
    plain-format ``PlainTask``. Never raises: every per-problem lookup (search, scorers, rewards, evaluation) uses
    it."""
    return get_task(name) if isinstance(name, str) and name in TASKS else _PLAIN


def judge(problem: Problem, text: str) -> Verdict:
    """The answer in chain ``text`` and whether ``problem``'s task accepts it (``Task.judge``). Never raises."""
    return task_of(problem.task).judge(problem, text)


def is_correct(problem: Problem, text: str) -> bool:
    """Does chain ``text`` end in the right answer? ``judge(problem, text).correct``."""
    return judge(problem, text).correct


def extract_answer(problem_or_task_name: Problem | str, text: str, *, lenient: bool = False) -> str | None:
    """The answer in ``text`` as the task reads it (qstar tasks: the "Answer:" line). With ``lenient``,
    fall back to the generic extractor (\\boxed{}, ####, "the answer is", last number). Never raises."""
    name = problem_or_task_name.task if isinstance(problem_or_task_name, Problem) else problem_or_task_name
    got = task_of(name).read_answer(text)
    return extract_any(text) if got is None and lenient else got


def _answer(task: Task, text_or_answer: str | None) -> str | None:
    """Chain text -> its extracted answer; a bare answer (no answer line) -> itself."""
    if not isinstance(text_or_answer, str):
        return None
    got = task.read_answer(text_or_answer)
    return got if got is not None else (clean_line(text_or_answer) or None)


def verify(problem: Problem, text_or_answer: str | None) -> bool:
    """Is the answer in ``text_or_answer`` (chain text or a bare answer) correct for ``problem``?"""
    task = get_task(problem.task)
    return task.accepts(problem, _answer(task, text_or_answer))


def check(problem: Problem, text_or_answer: str | None) -> bool | None:
    """Reference-free check (never reads ``problem.answer``); None for tasks without one (mult, benchmarks)."""
    task = get_task(problem.task)
    return task.check(problem, _answer(task, text_or_answer))
