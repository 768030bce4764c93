"""Loaders and graders for the real benchmark files that ship in ``qstar/tasks/data`` (sources, licences and
formats: qstar/tasks/data/SOURCES.md; ``$QSTAR_DATA`` points the loaders at another folder of the same layout).

- GSM8K -> task "gsm8k": gold = the text after "####", commas removed; graded numerically, with
  math-verify as the fallback for non-numeric answers.
- MATH-500 -> task "math500": gold = the ``answer`` field (LaTeX); graded with math-verify.
- Countdown (TinyZero rows) -> task "countdown": graded by qstar's Countdown checker (an expression
  using each number once that equals the target); the gold expression comes from the exhaustive solver.

Model text is read with the lenient extractor in ``qstar.tasks.answers`` (\\boxed{}, ####, Answer:, ...).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import threading
from pathlib import Path

from qstar.tasks.answers import extract_answer as extract_any
from qstar.tasks.answers import extract_marked, to_number
from qstar.tasks.base import Problem, Task
from qstar.tasks.countdown import Countdown, solve

DEFAULT_FILES = {
    "gsm8k": "gsm8k/test_first200.jsonl",
    "math500": "math500/test_first250.jsonl",
    "countdown": "countdown/tinyzero_test.jsonl",
}

PACKAGE_DATA = Path(__file__).resolve().parent / "data"
"""The benchmark files shipped with the package (qstar/tasks/data)."""


def data_dir() -> Path:
    """The benchmark data folder: $QSTAR_DATA if set, else the package's own ``qstar/tasks/data``."""
    env = os.environ.get("QSTAR_DATA")
    if env:
        if not Path(env).is_dir():
            raise FileNotFoundError(f"QSTAR_DATA={env} is not a directory (unset it to use the shipped {PACKAGE_DATA})")
        return Path(env)
    return PACKAGE_DATA


def _rows(path: str | Path | None, name: str, limit: int | None) -> list[dict]:
    """JSON objects of a JSONL file (``path`` None -> the default file for ``name`` under data_dir())."""
    if path is None:
        folder, rel = data_dir(), DEFAULT_FILES[name]
        p = folder / rel
        if not p.is_file():
            fix = ("unset QSTAR_DATA to use the shipped files" if os.environ.get("QSTAR_DATA")
                   else "set QSTAR_DATA to use another folder")
            raise FileNotFoundError(f"{rel}: not in {folder}; the repository ships it in qstar/tasks/data "
                                    f"(see SOURCES.md there); {fix}")
    else:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{name}: no file at {p}")
    rows = []
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if limit is not None and len(rows) >= limit:
                break
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{p}:{n}: not JSON ({e.msg})") from None
    return rows


def _need(row: dict, fields: tuple[str, ...], where: str) -> None:
    missing = [f for f in fields if f not in row]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}; has {sorted(row)}")


def load_gsm8k(path: str | Path | None = None, *, limit: int | None = None) -> list[Problem]:
    """GSM8K rows ({"question", "answer"}) as Problems; data holds the worked ``solution`` and row ``index``."""
    out = []
    for i, row in enumerate(_rows(path, "gsm8k", limit)):
        _need(row, ("question", "answer"), f"gsm8k row {i}")
        if "####" not in row["answer"]:
            raise ValueError(f"gsm8k row {i}: answer has no '####' line")
        gold = row["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        key = "gsm8k:" + hashlib.sha256(row["question"].encode()).hexdigest()[:16]
        out.append(Problem("gsm8k", row["question"], gold, key, {"solution": row["answer"], "index": i}))
    return out


def load_math500(path: str | Path | None = None, *, limit: int | None = None) -> list[Problem]:
    """MATH-500 rows as Problems (gold = the ``answer`` field); data: solution, subject, level, unique_id."""
    out = []
    for i, row in enumerate(_rows(path, "math500", limit)):
        _need(row, ("problem", "solution", "answer"), f"math500 row {i}")
        uid = row.get("unique_id", str(i))
        data = {"solution": row["solution"], "subject": row.get("subject"), "level": row.get("level"),
                "unique_id": uid}
        out.append(Problem("math500", row["problem"], row["answer"], f"math500:{uid}", data))
    return out


def load_countdown_tinyzero(path: str | Path | None = None, *, limit: int | None = None,
                            solve_gold: bool = True) -> list[Problem]:
    """TinyZero Countdown rows as "countdown" Problems (graded by the Countdown checker, not the gold).

    The rows ship no solution; with ``solve_gold`` the answer is an expression from the exhaustive
    solver (about 0.5 ms a row), else "". data adds the original TinyZero ``prompt`` and ``index``.
    """
    task = Countdown()
    out = []
    for i, row in enumerate(_rows(path, "countdown", limit)):
        _need(row, ("nums", "target"), f"countdown row {i}")
        nums, target = [int(n) for n in row["nums"]], int(row["target"])
        gold = (solve(nums, target) or "") if solve_gold else ""
        p = task.make(nums, target, answer=gold)
        prompt = row.get("prompt") or [{}]
        data = {**p.data, "index": (row.get("extra_info") or {}).get("index", i), "prompt": prompt[0].get("content")}
        out.append(Problem(p.task, p.question, p.answer, p.key, data))
    return out


# ---- graders ----
def _timeout() -> int | None:
    # math-verify's timeouts use SIGALRM, which only works in the main thread (servers grade in workers)
    return 5 if threading.current_thread() is threading.main_thread() else None


@functools.lru_cache(maxsize=8192)
def _parse(latex: str) -> tuple:
    """math-verify parse of an answer string, cached (gold answers are parsed once)."""
    from math_verify import parse

    boxed = tuple(parse(latex if "\\boxed" in latex else "\\boxed{" + latex + "}", parsing_timeout=_timeout()))
    return boxed or tuple(parse(latex, parsing_timeout=_timeout()))  # plain text: math-verify's own extraction


def math_equal(gold: str, answer: str | None) -> bool:
    """Are two final answers (LaTeX or plain) mathematically equal? math-verify, gold first. Never raises."""
    if not isinstance(answer, str) or not answer.strip() or len(answer) > 2000:
        return False
    if answer.strip() == gold.strip():
        return True
    from math_verify import verify

    try:
        g, a = _parse(gold), _parse(answer)
        return bool(g and a and verify(list(g), list(a), timeout_seconds=_timeout()))
    except Exception:  # math-verify/sympy can fail on odd input; an ungradable answer is a wrong answer
        return False


class _Benchmark(Task):
    """A fixed benchmark: problems come from a loader, answers from the lenient extractor.

    No cheap check (``check_method = ""``): free-form word and competition problems have no general answer check
    cheaper than solving them.
    """

    loader = "a loader in qstar.tasks.benchmarks"

    def generate(self, n: int, *, seed: int, split: str = "train", difficulty: int | None = None) -> list[Problem]:
        raise ValueError(f"{self.name} is a fixed benchmark, not a generator: use {self.loader}")

    def sample(self, rng, difficulty: int) -> Problem:
        raise ValueError(f"{self.name} is a fixed benchmark, not a generator: use {self.loader}")

    def extract_answer(self, text: str) -> str | None:
        """A marked answer (\\boxed{}, ####, "Answer:", ...); else a short one-line text is itself the answer
        (so a bare "\\frac{1}{4}" is not cut to its last number); else the last number."""
        got = extract_marked(text)
        if got is None and isinstance(text, str) and "\n" not in text.strip() and 0 < len(text.strip()) <= 100:
            return text.strip()
        return got if got is not None else extract_any(text)


class GSM8K(_Benchmark):
    """GSM8K grade-school word problems (numeric answers); load with load_gsm8k."""

    name = "gsm8k"
    loader = "load_gsm8k(path)"

    def steps(self, problem: Problem) -> list[str]:
        """The worked solution's lines, calculator annotations <<...>> removed, without the #### line."""
        text = re.sub(r"<<[^>]*>>", "", problem.data.get("solution", "")).split("####")[0]
        return [line.strip() for line in text.splitlines() if line.strip()]

    def verify(self, problem: Problem, answer: str | None) -> bool:
        """Numeric equality when the answer holds one number ("$1,800", "18 dollars"), else math-verify."""
        got, gold = to_number(answer), to_number(problem.answer)
        if got is not None and gold is not None:
            return got == gold
        return math_equal(problem.answer, answer)


class Math500(_Benchmark):
    """MATH-500 competition problems (LaTeX answers, graded by math-verify); load with load_math500."""

    name = "math500"
    loader = "load_math500(path)"

    def steps(self, problem: Problem) -> list[str]:
        return [line.strip() for line in problem.data.get("solution", "").splitlines() if line.strip()]

    def verify(self, problem: Problem, answer: str | None) -> bool:
        return math_equal(problem.answer, answer)
