"""Loaders and graders for the real benchmark files that ship in ``qstar/tasks/data`` (sources, licences and
formats: qstar/tasks/data/SOURCES.md; ``$QSTAR_DATA`` points the loaders at another folder of the same layout).

- GSM8K -> task "gsm8k": gold = the text after "####", commas removed; graded numerically, with
  math-verify as the fallback for non-numeric answers.
- MATH-500 -> task "math500": gold = the ``answer`` field (LaTeX); graded with math-verify.
- Countdown (TinyZero rows) -> task "countdown": graded by qstar's Countdown checker (an expression
  using each number once that equals the target); the gold expression comes from the exhaustive solver.
- AIME 2024, AIME 2025 (both published variants), AMC 2023, and any JSONL file with a field mapping
  (``load_jsonl``) -> task "math": numeric equality when both answers hold one number ("025" == "25",
  "27.0" == "27"), else math-verify.

``BENCHMARKS`` names every loader; ``load_benchmark(name, path)`` reads a shipped sample or a full file of the same
format. Errors name the file, the line and the missing field. Model text is read with the lenient extractor in
``qstar.tasks.answers`` (\\boxed{}, ####, "the answer is", the last number, ...); ``reference_text`` is what
``qstar eval --self-check`` grades as if a model had written it.
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
    "aime24": "aime24/test_first5.jsonl",
    "aime25": "aime25/test_first5.jsonl",
    "amc23": "amc23/test_first5.jsonl",
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


def _rows(path: str | Path | None, name: str, limit: int | None) -> list[tuple[str, dict]]:
    """``(where, object)`` for each JSON line of a JSONL file, ``where`` = "file:line" for error messages
    (``path`` None -> the default file for ``name`` under data_dir())."""
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
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{p}:{n}: not JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{p}:{n}: not a JSON object")
            rows.append((f"{p}:{n}", row))
    return rows


def _need(row: dict, fields: tuple[str, ...], where: str) -> None:
    missing = [f for f in fields if f not in row]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}; the line has {sorted(row)}")


def load_gsm8k(path: str | Path | None = None, *, limit: int | None = None) -> list[Problem]:
    """GSM8K rows ({"question", "answer"}) as Problems; data holds the worked ``solution`` and row ``index``."""
    out = []
    for i, (where, row) in enumerate(_rows(path, "gsm8k", limit)):
        _need(row, ("question", "answer"), where)
        if "####" not in str(row["answer"]):
            raise ValueError(f"{where}: field 'answer' has no '####' line")
        gold = row["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        key = "gsm8k:" + hashlib.sha256(row["question"].encode()).hexdigest()[:16]
        out.append(Problem("gsm8k", row["question"], gold, key, {"solution": row["answer"], "index": i}))
    return out


def load_math500(path: str | Path | None = None, *, limit: int | None = None) -> list[Problem]:
    """MATH-500 rows as Problems (gold = the ``answer`` field); data: solution, subject, level, unique_id."""
    out = []
    for i, (where, row) in enumerate(_rows(path, "math500", limit)):
        _need(row, ("problem", "solution", "answer"), where)
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
    for i, (where, row) in enumerate(_rows(path, "countdown", limit)):
        _need(row, ("nums", "target"), where)
        nums, target = [int(n) for n in row["nums"]], int(row["target"])
        gold = (solve(nums, target) or "") if solve_gold else ""
        p = task.make(nums, target, answer=gold)
        prompt = row.get("prompt") or [{}]
        data = {**p.data, "index": (row.get("extra_info") or {}).get("index", i), "prompt": prompt[0].get("content")}
        out.append(Problem(p.task, p.question, p.answer, p.key, data))
    return out


def _number_text(value, where: str, field: str) -> str:
    """A gold answer as text: integral floats lose their ".0" (AMC's 27.0 -> "27"), strings are kept as given."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{where}: field {field!r} must be a number or a string, got {type(value).__name__}")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _math_problem(benchmark: str, question, answer, where: str, **data) -> Problem:
    """A "math" task Problem (numeric, else math-verify grading); the key names the benchmark and the question."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"{where}: the question is empty or not a string")
    key = f"{benchmark}:" + hashlib.sha256(question.encode()).hexdigest()[:16]
    return Problem("math", question, answer, key, {"benchmark": benchmark, **data})


def load_aime24(path: str | Path | None = None, *, limit: int | None = None) -> list[Problem]:
    """AIME 2024 rows (Qwen2.5-Math format: problem, answer, solution, id, url). The AoPS ``solution`` is kept as
    data["writeup"], not as a reference solution: write-ups end in author signatures and do not always mark the
    answer, so only the ``answer`` field is the gold."""
    out = []
    for where, row in _rows(path, "aime24", limit):
        _need(row, ("problem", "answer"), where)
        out.append(_math_problem("aime24", row["problem"], _number_text(row["answer"], where, "answer"), where,
                                 id=row.get("id"), writeup=row.get("solution"), url=row.get("url")))
    return out


QWQ_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."


def load_aime25(path: str | Path | None = None, *, limit: int | None = None) -> list[Problem]:
    """AIME 2025 rows in either published variant, told apart per line: AReaL's ``{"problem", "answer", "id"}``
    (raw form feeds / TABs where "\\f" / "\\t" were meant are repaired) or QwQ's ``{"prompt", "answer"}`` (the
    "Please reason step by step ..." suffix is cut off)."""
    out = []
    for where, row in _rows(path, "aime25", limit):
        if "problem" in row:
            question = str(row["problem"]).replace("\x0c", "\\f").replace("\t", "\\t")
            variant = "areal"
        elif "prompt" in row:
            question = str(row["prompt"]).removesuffix(QWQ_SUFFIX)
            variant = "qwq"
        else:
            raise ValueError(f"{where}: missing field 'problem' (AReaL variant) or 'prompt' (QwQ variant); "
                             f"the line has {sorted(row)}")
        _need(row, ("answer",), where)
        out.append(_math_problem("aime25", question, _number_text(row["answer"], where, "answer"), where,
                                 id=row.get("id"), variant=variant))
    return out


def load_amc23(path: str | Path | None = None, *, limit: int | None = None) -> list[Problem]:
    """AMC 2023 rows (Qwen2.5-Math format: problem, answer as a float such as 27.0, id, url)."""
    out = []
    for where, row in _rows(path, "amc23", limit):
        _need(row, ("problem", "answer"), where)
        out.append(_math_problem("amc23", row["problem"], _number_text(row["answer"], where, "answer"), where,
                                 id=row.get("id"), url=row.get("url")))
    return out


def parse_fields(spec: str) -> dict[str, str]:
    """``"question=problem,answer=solution"`` -> {"question": "problem", "answer": "solution"}: which field of a
    JSONL line holds the question, the answer and (optionally) a reference solution."""
    mapping = {"question": "question", "answer": "answer"}
    for part in filter(None, (x.strip() for x in str(spec).split(","))):
        ours, sep, theirs = part.partition("=")
        if not sep or ours.strip() not in ("question", "answer", "solution") or not theirs.strip():
            raise ValueError(f"--fields: {part!r} must be question=FIELD, answer=FIELD or solution=FIELD")
        mapping[ours.strip()] = theirs.strip()
    return mapping


def load_jsonl(path: str | Path, *, fields: dict[str, str] | None = None, name: str = "",
               limit: int | None = None) -> list[Problem]:
    """Any JSONL file as "math" Problems: ``fields`` maps question / answer / solution to the file's field names
    (default: question, answer). A line without a mapped field is an error naming the field and the line."""
    fields = fields or {"question": "question", "answer": "answer"}
    name = name or Path(path).stem
    out = []
    for where, row in _rows(path, name, limit):
        for ours, theirs in fields.items():
            if theirs not in row:
                raise ValueError(f"{where}: no field {theirs!r} (--fields {ours}={theirs}); the line has "
                                 f"{sorted(row)}")
        solution = row[fields["solution"]] if "solution" in fields else None
        out.append(_math_problem(name, row[fields["question"]], _number_text(row[fields["answer"]], where, "answer"),
                                 where, **({"solution": str(solution)} if solution is not None else {})))
    return out


def load_pairs(path: str | Path, *, question: str = "question", chain: str = "chain") -> list[tuple[str, str]]:
    """(question, chain) training pairs from a JSONL file: ``qstar relabel``'s output, or any file with these two
    fields (strings). Errors name the line and the field."""
    pairs = []
    for where, row in _rows(path, "pairs", None):
        _need(row, (question, chain), where)
        q, c = row[question], row[chain]
        if not isinstance(q, str) or not isinstance(c, str) or not q.strip() or not c.strip():
            raise ValueError(f"{where}: fields {question!r} and {chain!r} must be non-empty strings")
        pairs.append((q, c))
    if not pairs:
        raise ValueError(f"{path}: no (question, chain) pairs")
    return pairs


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


class MathAnswer(_Benchmark):
    """Math problems with one final answer (AIME, AMC, user JSONL): numeric, else math-verify grading."""

    name = "math"
    loader = "load_benchmark(name, path) or load_jsonl(path, fields=...)"

    def steps(self, problem: Problem) -> list[str]:
        return [line.strip() for line in str(problem.data.get("solution") or "").splitlines() if line.strip()]

    def verify(self, problem: Problem, answer: str | None) -> bool:
        """Numeric equality when both answers hold one number ("$1,800", "18 dollars", "025"), else math-verify."""
        got, gold = to_number(answer), to_number(problem.answer)
        if got is not None and gold is not None:
            return got == gold
        return math_equal(problem.answer, answer)


class GSM8K(MathAnswer):
    """GSM8K grade-school word problems (numeric answers); load with load_gsm8k."""

    name = "gsm8k"
    loader = "load_gsm8k(path)"

    def steps(self, problem: Problem) -> list[str]:
        """The worked solution's lines, calculator annotations <<...>> removed, without the #### line."""
        text = re.sub(r"<<[^>]*>>", "", problem.data.get("solution", "")).split("####")[0]
        return [line.strip() for line in text.splitlines() if line.strip()]


class Math500(_Benchmark):
    """MATH-500 competition problems (LaTeX answers, graded by math-verify); load with load_math500."""

    name = "math500"
    loader = "load_math500(path)"

    def steps(self, problem: Problem) -> list[str]:
        return [line.strip() for line in problem.data.get("solution", "").splitlines() if line.strip()]

    def verify(self, problem: Problem, answer: str | None) -> bool:
        return math_equal(problem.answer, answer)


#: benchmark name -> loader(path=None, *, limit=None); path None reads the shipped sample under data_dir()
BENCHMARKS = {
    "gsm8k": load_gsm8k,
    "math500": load_math500,
    "aime24": load_aime24,
    "aime25": load_aime25,
    "amc23": load_amc23,
    "countdown": load_countdown_tinyzero,
}


def load_benchmark(name: str, path: str | Path | None = None, *, limit: int | None = None) -> list[Problem]:
    """Problems of benchmark ``name`` from ``path`` (a full file of that format) or its shipped sample."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)} (or give --data FILE)")
    return BENCHMARKS[name](path, limit=limit)


def reference_text(problem: Problem) -> str:
    """What the grader self-check reads as if a model had written it: the worked solution where the format marks
    its final answer in it (GSM8K's "####", MATH's \\boxed{}, a mapped solution field), Countdown's reference chain,
    else the gold answer in a sentence ending "\\boxed{answer}"."""
    if problem.task == "countdown":
        return Countdown().reference(problem)
    solution = problem.data.get("solution")
    if isinstance(solution, str) and solution.strip():
        return solution
    return f"Putting it together, the final answer is $\\boxed{{{problem.answer}}}$."
