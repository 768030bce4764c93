"""Real benchmark files (shipped in qstar/tasks/data): provenance, loaders, graders, data-dir resolution."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qstar.tasks as T
from qstar.tasks.answers import to_number
from qstar.tasks.benchmarks import (
    DEFAULT_FILES,
    PACKAGE_DATA,
    data_dir,
    load_countdown_tinyzero,
    load_gsm8k,
    load_math500,
    math_equal,
)
from qstar.tasks.countdown import solve

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "qstar" / "tasks" / "data"  # what the package ships


@pytest.fixture(scope="module")
def math500():
    return load_math500(DATA / "math500/test_first250.jsonl")


@pytest.mark.parametrize("name,rows", [("test_first200", 200), ("train", 7473)])
def test_gsm8k_every_gold_grades_correct_and_wrong_rejected(name, rows):
    ps = load_gsm8k(DATA / f"gsm8k/{name}.jsonl")
    assert len(ps) == rows and len({p.key for p in ps}) == rows and all(p.task == "gsm8k" for p in ps)
    assert ps[0].answer == ("18" if name == "test_first200" else "72")
    for p in ps:
        assert T.verify(p, p.data["solution"]), p.answer  # the full worked solution, read through "####"
        assert T.verify(p, p.answer)
    rng = random.Random(0)
    for p in rng.sample(ps, 200):
        gold = int(to_number(p.answer))
        assert T.verify(p, f"So she makes ${gold:,}.\nThe answer is {gold}.")
        assert T.verify(p, f"\\boxed{{{p.answer}}}") and T.verify(p, f"Answer: {p.answer}")
        assert not T.verify(p, str(gold + 1)) and not T.verify(p, f"#### {gold - 1}") and not T.verify(p, "")
    first = "Janet sells 16 - 3 - 4 = 9 duck eggs a day." if rows == 200 else "Natalia sold 48/2 = 24 clips in May."
    assert T.get_task("gsm8k").steps(ps[0])[0] == first


def test_math500_answer_and_boxed_solution_grade_correct(math500):
    assert len(math500) == 250 and math500[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    for p in math500:
        assert T.verify(p, p.answer), p.answer
        assert T.verify(p, p.data["solution"]), p.answer  # the last \boxed{} of the worked solution
        assert T.verify(p, f"Hence the final answer is $\\boxed{{{p.answer}}}$.")


def test_math500_wrong_answers_rejected(math500):
    for i, p in enumerate(math500[:60]):  # sympy comparisons of unequal answers are the slow part
        other = math500[i + 1].answer
        if other.strip() != p.answer.strip() and "=" not in other:  # math-verify reads "x=5" as 5, by design
            assert not T.verify(p, other), (p.answer, other)
        n = to_number(p.answer)
        if n is not None:
            assert not T.verify(p, str(n + 1))
    p = math500[0]
    assert T.verify(p, "\\left( 3, \\frac{\\pi}{2} \\right)") and T.verify(p, "(3, \\pi/2)")
    assert not T.verify(p, "(3, \\pi)") and not T.verify(p, "\\frac{\\pi}{2}")


@settings(max_examples=25, deadline=None)
@given(st.text(alphabet="\\{}()[]^_+-*/=0123456789xpifrac sqrt$,.", max_size=40))
def test_math_grader_never_raises(text):
    assert math_equal("\\frac{1}{2}", text) in (True, False)
    gsm = T.Problem("gsm8k", "q", "18", "k", {})
    assert T.verify(gsm, text) in (True, False)
    got = T.extract_answer(gsm, text)
    assert got is None or isinstance(got, str)


def test_countdown_tinyzero_rows_are_solved_and_checked():
    test = load_countdown_tinyzero(DATA / "countdown/tinyzero_test.jsonl")
    assert len(test) == 2001 and test[0].data["nums"] == [96, 7, 37, 74] and test[0].data["target"] == 55
    assert "create an equation that equals 55" in test[0].data["prompt"]
    assert sum(len(p.data["nums"]) == 3 for p in test) == 1001
    cd = T.get_task("countdown")
    for p in test:  # every row is solvable; the solver's expression passes the checker (verify == check)
        assert p.task == "countdown" and T.check(p, p.answer) and T.verify(p, p.answer), p.data
        steps = cd.steps(p)  # and its reference chain is integral, with every step valid
        assert steps and all(cd.check_step(p, steps[:i], x) for i, x in enumerate(steps))
    train = load_countdown_tinyzero(DATA / "countdown/tinyzero_train_first2000.jsonl", limit=300, solve_gold=False)
    assert len(train) == 300 and all(p.answer == "" for p in train)
    assert not {p.key for p in train} & {p.key for p in test}
    for p in train[:100]:
        expr = solve(p.data["nums"], p.data["target"])
        assert expr is not None and T.check(p, expr) and T.verify(p, "<answer> " + expr + " </answer>")
    p = test[0]
    n = p.data["nums"]
    assert not T.check(p, f"{n[0]}+{n[1]}+{n[2]}+{n[3]}+1") and not T.check(p, f"{n[0]}+{n[0]}")
    assert not T.check(p, "") and not T.verify(p, "55")


def test_shipped_files_match_sources_table_and_have_licences():
    """Every file in SOURCES.md's table is present with its size and sha256, and names a licence notice present."""
    table = (DATA / "SOURCES.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([^`]+)` \| (\d+) \| (\d+) \| `([0-9a-f]{64})` \|.*\]\((LICENSES/[^)]+)\)", table, re.M)
    assert len(rows) == 9 and set(DEFAULT_FILES.values()) <= {r[0] for r in rows}
    for name, lines, size, sha, licence in rows:
        data = (DATA / name).read_bytes()
        assert (data.count(b"\n"), len(data), hashlib.sha256(data).hexdigest()) == (int(lines), int(size), sha), name
        assert "Copyright" in (DATA / licence).read_text(encoding="utf-8"), licence
    assert {p.relative_to(DATA).as_posix() for p in DATA.rglob("*.jsonl")} == {r[0] for r in rows}


@pytest.mark.parametrize("load,rel", [(load_gsm8k, DEFAULT_FILES["gsm8k"]), (load_math500, DEFAULT_FILES["math500"]),
                                      (load_countdown_tinyzero, DEFAULT_FILES["countdown"])])
def test_missing_default_file_names_the_file_and_the_folder(load, rel, tmp_path, monkeypatch):
    monkeypatch.setenv("QSTAR_DATA", str(tmp_path))  # an empty folder
    with pytest.raises(FileNotFoundError) as e:
        load(limit=1)
    assert rel in str(e.value) and str(tmp_path) in str(e.value) and "qstar/tasks/data" in str(e.value)


def test_data_dir_resolution_and_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("QSTAR_DATA", raising=False)
    assert data_dir() == PACKAGE_DATA and (data_dir() / "SOURCES.md").is_file()
    monkeypatch.chdir(tmp_path)  # the working directory does not matter: the files ship in the package
    assert data_dir() == PACKAGE_DATA and PACKAGE_DATA.resolve() == DATA.resolve()
    assert len(load_gsm8k(limit=3)) == 3  # default file under the resolved folder
    monkeypatch.setenv("QSTAR_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_math500()
    monkeypatch.setenv("QSTAR_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="gsm8k/test_first200.jsonl"):
        load_gsm8k()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "1\n#### 1"}) + "\n{not json\n")
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        load_gsm8k(bad)
    bad.write_text(json.dumps({"question": "q"}) + "\n")
    with pytest.raises(ValueError, match="missing field"):
        load_gsm8k(bad)
