"""Real benchmark files (shipped in qstar/tasks/data): provenance, loaders, graders, data-dir resolution."""

from __future__ import annotations

import hashlib
import json
import math
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


# --------------------------------------------------------------------------------------------------- the scripts
# benchmarks/*.py: budgets in updates (a time cap only as a safety net), equal work side by side, dtype skips.

BENCH = REPO / "benchmarks"
SCRIPT_CONFIGS = {"grpo_vs_trl": "BenchConfig", "grpo": "BenchConfig", "countdown_ei": "Args", "prm": "Args",
                  "retry": "Args", "optimizers": "BenchConfig", "search": "BenchConfig", "sampler": "Args",
                  "labels": "Args"}


def common():
    """benchmarks/bench_common.py, as the scripts import it (benchmarks/ on the path, as when a script runs)."""
    import sys

    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import bench_common

    return bench_common


def bench(name: str):
    """A script of benchmarks/ as a module."""
    import importlib.util
    import sys

    common()
    if f"bench_{name}" not in sys.modules:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        module = sys.modules[f"bench_{name}"] = importlib.util.module_from_spec(spec)  # dataclasses look it up
        spec.loader.exec_module(module)
    return sys.modules[f"bench_{name}"]


@pytest.mark.parametrize("script,config", sorted(SCRIPT_CONFIGS.items()))
def test_no_benchmark_budget_is_counted_in_seconds(script, config):
    """Seconds may only cap a run (``max_seconds``); what a model learns is set by updates, samples or problems."""
    import dataclasses

    fields = {f.name: f.default for f in dataclasses.fields(getattr(bench(script), config))}
    timed = {name for name in fields if "seconds" in name}
    assert timed <= {"max_seconds"}, timed
    if timed:
        assert fields["max_seconds"] >= 600  # a safety cap that a healthy run never reaches


@pytest.mark.parametrize("script", ["grpo_vs_trl", "grpo", "retry"])
def test_quick_modes_name_real_fields(script):
    import dataclasses

    module = bench(script)
    cfg = dataclasses.replace(getattr(module, SCRIPT_CONFIGS[script])(), **module.QUICK)
    assert all(getattr(cfg, k) == v for k, v in module.QUICK.items())


def test_equal_work_gives_a_speedup_over_computed_updates():
    work = bench("grpo_vs_trl").work_accounting([1.0, 1.2, 1.1], [True] * 3, [3.0, 3.3, 3.1], updates=3,
                                                q_tokens=1000.0, t_tokens=1100.0)
    assert work["equal_work"] and work["unequal_work"] is None
    assert work["speedup"] == round(3.1 / 1.1, 2) and work["qstar_s_per_update"] == 1.1
    assert work["qstar_updates_computed"] == work["trl_updates_computed"] == work["timed_updates"] == 3


@pytest.mark.parametrize("q_computed,t_times,tokens,reason", [
    ([False] * 3, [3.0, 3.3, 3.1], (1000.0, 1000.0), "qstar skipped 3 of its 3"),  # a 0% warm-up: no signal at all
    ([True, False, True], [3.0, 3.3, 3.1], (1000.0, 1000.0), "qstar skipped 1 of its 3"),
    ([True] * 3, [3.0, 3.3], (1000.0, 1000.0), "TRL 2 of 3"),  # a side cut short by its safety cap
    ([True] * 3, [3.0, 3.3, 3.1], (1000.0, 2000.0), "completion lengths differ"),
])
def test_unequal_work_prints_no_speedup(q_computed, t_times, tokens, reason):
    import statistics

    q_times = [0.1, 1.2, 1.1]  # a skipped update is fast: it must not count as a fast update
    work = bench("grpo_vs_trl").work_accounting(q_times, q_computed, t_times, updates=3, q_tokens=tokens[0],
                                                t_tokens=tokens[1])
    assert work["equal_work"] is False and work["speedup"] is None and reason in work["unequal_work"]
    assert work["qstar_updates_computed"] == sum(q_computed)
    computed = [t for t, c in zip(q_times, q_computed) if c]  # per-side medians count only updates with a gradient
    assert work["qstar_s_per_update"] == (round(statistics.median(computed), 4) if computed else None)


def test_grpo_vs_trl_without_trl_fails_in_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "trl", None)  # import trl -> ImportError
    with pytest.raises(SystemExit, match=r"pip install -e '\.\[bench\]'"):
        bench("grpo_vs_trl").require_trl()


def test_dtype_skip_names_bf16_without_native_support():
    import torch

    from qstar.model.perf import native_bf16

    c = common()
    assert c.dtype_skip(torch.bfloat16, native=False) == c.NO_BF16 == "no native bf16 on this CPU"
    assert c.dtype_skip("bfloat16", native=False) == c.NO_BF16
    assert c.dtype_skip(torch.bfloat16, native=True) is None
    assert c.dtype_skip(torch.float32, native=False) is None
    assert c.dtype_skip(torch.bfloat16) == (None if native_bf16() else c.NO_BF16)


def test_sampler_skips_bf16_with_a_note(monkeypatch, capsys):
    import qstar.model.perf

    monkeypatch.setattr(qstar.model.perf, "native_bf16", lambda: False)
    sampler = bench("sampler")
    sampler.main(sampler.Args(preset="tiny", dtypes="bfloat16", batches="1", shared_n=1, new_tokens=2, repeats=1))
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert lines == [{"dtype": "bfloat16", "skipped": "no native bf16 on this CPU"}]


def test_optimizer_step_cost_skips_torch_muon_without_native_bf16():
    rows = bench("optimizers").step_cost("tiny", repeats=1, native_bf16=False)
    assert "torch_muon_hidden_ms" not in rows[0] and rows[0]["batched_muon_hidden_ms"] > 0
    assert rows[1:] == [{"what": "step_cost", "preset": "tiny", "optimizer": "torch_muon_hidden", "dtype": "bfloat16",
                         "skipped": "no native bf16 on this CPU"}]


def test_a_run_stopped_by_its_safety_cap_is_cut_short(capsys):
    c = common()
    assert c.cut_short(399, 400) and not c.cut_short(400, 400)
    done = c.sft_report({"steps": 400, "train_seconds": 100.04, "greedy_accuracy": 0.5}, 400)
    assert done == {"sft_steps": 400, "sft_step_budget": 400, "sft_seconds": 100.0, "sft_greedy_accuracy": 0.5,
                    "sft_cut_short": False}
    assert capsys.readouterr().err == ""
    short = c.sft_report({"steps": 120, "train_seconds": 3600.0, "greedy_accuracy": 0.0}, 400)
    assert short["sft_cut_short"] and "after 120 of 400 updates" in capsys.readouterr().err


def test_label_quality_counts_against_exact_labels():
    import doctest

    module = bench("labels")
    assert doctest.testmod(module).failed == 0  # label_quality's hand-computed example
    q = module.label_quality([1, 1, 1], [1.0, 0.0, 0.75], threshold=0.5)
    assert (q["precision"], q["recall"]) == (1.0, 2 / 3) and math.isnan(q["specificity"]) and math.isnan(q["auc"])
    with pytest.raises(ValueError, match="3 exact labels for 2"):
        module.label_quality([1, 1, 1], [1.0, 0.0], threshold=0.5)
