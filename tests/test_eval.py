"""`qstar eval`: the benchmark loaders on every shipped format, the grader self-check, and evaluation end to end on
a trained qstar checkpoint through qstar's sampler, through transformers (the same directory as a Hugging Face
model) and through `qstar serve` as an OpenAI-compatible upstream; resume after a kill; failing upstreams."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

import qstar.tasks as T
from qstar.cli import main
from qstar.lab.eval import BOXED_INSTRUCTION, EvalConfig, run_eval
from qstar.tasks.benchmarks import BENCHMARKS, load_aime25, load_benchmark, load_jsonl, load_pairs, parse_fields

DATA = Path(__file__).resolve().parents[1] / "qstar" / "tasks" / "data"
SHIPPED = [("gsm8k", None, 200, "18"), ("gsm8k", "gsm8k/train.jsonl", 7473, "72"),
           ("math500", None, 250, "\\left( 3, \\frac{\\pi}{2} \\right)"), ("aime24", None, 5, "204"),
           ("aime25", None, 5, "70"), ("aime25", "aime25/qwq_first5.jsonl", 5, "70"), ("amc23", None, 5, "27"),
           ("countdown", None, 2001, None)]  # the Countdown train file: test_benchmarks checks every row's gold


@pytest.mark.parametrize("name,rel,rows,first", SHIPPED)
def test_every_shipped_format_loads_and_self_checks_at_100_percent(name, rel, rows, first, capsys):
    path = DATA / rel if rel else None
    problems = load_benchmark(name, path)
    assert len(problems) == rows and len({p.key for p in problems}) == rows
    if first is not None:
        assert problems[0].answer == first
    argv = ["eval", "--benchmark", name, "--self-check"] + (["--data", str(path)] if path else [])
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report == {"benchmark": name, "problems": rows, "agreement": 1.0, "disagree": []}


def test_both_aime25_variants_hold_the_same_problems_and_answers():
    areal, qwq = load_aime25(DATA / "aime25/test_first5.jsonl"), load_aime25(DATA / "aime25/qwq_first5.jsonl")
    assert [p.answer for p in areal] == [p.answer for p in qwq] == ["70", "588", "16", "117", "279"]
    assert areal[0].question == qwq[0].question and not any("Please reason" in p.question for p in qwq)
    assert {p.data["variant"] for p in areal} == {"areal"} and {p.data["variant"] for p in qwq} == {"qwq"}
    assert all(p.task == "math" for p in areal + qwq)


def test_amc_and_aime_answers_compare_as_numbers():
    amc, aime = load_benchmark("amc23")[0], load_benchmark("aime24")[0]
    assert T.judge(amc, "they meet \\boxed{27} miles from A").correct and T.judge(amc, "#### 27.0").correct
    assert T.judge(aime, "The answer is 204.").correct and not T.judge(aime, "The answer is 240.").correct
    assert T.judge(T.Problem("math", "q", "025", "k"), "\\boxed{25}").correct


def test_bad_files_and_mappings_name_the_field_and_the_line(tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text(json.dumps({"problem": "1+1?", "solution": "2"}) + "\n" + json.dumps({"problem": "2+2?"}) + "\n")
    assert len(load_jsonl(f, fields=parse_fields("question=problem,answer=solution"), limit=1)) == 1
    with pytest.raises(ValueError, match=r"mine.jsonl:2: no field 'solution' \(--fields answer=solution\)"):
        load_jsonl(f, fields=parse_fields("question=problem,answer=solution"))
    with pytest.raises(ValueError, match=r"mine.jsonl:1: no field 'question' \(--fields question=question\)"):
        load_jsonl(f)
    with pytest.raises(ValueError, match="question=FIELD"):
        parse_fields("question")
    with pytest.raises(ValueError, match="gold=answer"):
        parse_fields("gold=answer")
    f.write_text(json.dumps({"problem": "q", "answer": 1}) + "\n" + json.dumps(["a list"]) + "\n")
    with pytest.raises(ValueError, match="mine.jsonl:2: not a JSON object"):
        load_benchmark("amc23", f)
    f.write_text(json.dumps({"question": "q", "answer": 1}) + "\n")
    with pytest.raises(ValueError, match=r"mine.jsonl:1: missing field 'problem' \(AReaL variant\) or 'prompt'"):
        load_aime25(f)
    with pytest.raises(ValueError, match=r"mine.jsonl:1: missing field\(s\) \['problem'\]"):
        load_benchmark("aime24", f)
    with pytest.raises(ValueError, match="unknown benchmark 'aime23'"):
        load_benchmark("aime23")
    # the full AReaL file's raw \f / \t escapes (a form feed, a TAB after json.loads) are repaired
    f.write_text('{"problem": "Find $\\frac{1}{2}$ of $\\triangle ABC$", "answer": 5, "id": "9"}\n')
    assert load_aime25(f)[0].question == "Find $\\frac{1}{2}$ of $\\triangle ABC$"


def mixed_problems() -> list[T.Problem]:
    """Six problems of the tasks the tiny checkpoint was trained on."""
    tasks = [T.get_task("decimals"), T.get_task("mult", digits=(2, 2))]
    return [p for t in tasks for p in t.generate(3, seed=5, split="test")]


@pytest.fixture(scope="module")
def mixed_file(tmp_path_factory) -> Path:
    """``mixed_problems`` as a user's JSONL with its own field names."""
    f = tmp_path_factory.mktemp("data") / "mine.jsonl"
    f.write_text("".join(json.dumps({"q": p.question, "gold": p.answer}) + "\n" for p in mixed_problems()))
    return f


def run(out: Path, checkpoint, data, *extra) -> tuple[dict, list[dict]]:
    """``qstar eval`` on ``data`` (greedy, 64 tokens, batches of 3) into ``out``: (summary, result rows)."""
    argv = ["eval", "--data", str(data), "--fields", "question=q,answer=gold", "--checkpoint", str(checkpoint),
            "--out", str(out), "--max-tokens", "64", "--batch", "3", *extra]
    assert main(argv) == 0
    return json.loads((out / "summary.json").read_text()), [json.loads(x) for x in
                                                             (out / "results.jsonl").read_text().splitlines()]


def same_chains(a: list[dict], b: list[dict]) -> bool:
    return [(r["answer"], r["correct"], r["chain"]) for r in a] == [(r["answer"], r["correct"], r["chain"]) for r in b]


@pytest.fixture(scope="module")
def qstar_run(tiny_checkpoint, mixed_file, tmp_path_factory) -> tuple[dict, list[dict]]:
    """The tiny checkpoint on ``mixed_file`` through qstar's own sampler."""
    return run(tmp_path_factory.mktemp("eval") / "qstar", tiny_checkpoint, mixed_file)


def test_eval_on_a_qstar_checkpoint_grades_like_the_tasks(qstar_run):
    summary, rows = qstar_run
    assert summary["backend"] == "qstar" and summary["prompt"] == "task"  # a qstar checkpoint: the task's phrasing
    for key in ("accuracy", "ci_low", "ci_high", "tokens_per_problem", "problems", "failed"):
        assert key in summary
    assert summary["problems"] == 6 and summary["failed"] == 0 and summary["tokens_per_problem"] > 0
    assert summary["ci_low"] <= summary["accuracy"] <= summary["ci_high"]
    assert summary["accuracy"] == sum(r["correct"] for r in rows) / 6
    assert [r["index"] for r in rows] == list(range(6)) and any(r["answer"] is not None for r in rows)
    # the "math" grading of a user file agrees with each task's own verifier on the same chains
    for r, original in zip(rows, mixed_problems()):
        assert set(r) >= {"answer", "gold", "correct", "tokens", "chain"} and r["question"] == original.question
        assert r["correct"] == T.judge(original, r["chain"]).correct, r


def test_eval_through_transformers_matches_qstars_sampler(tiny_checkpoint, mixed_file, qstar_run, tmp_path):
    summary, rows = run(tmp_path / "hf", tiny_checkpoint, mixed_file, "--backend", "hf", "--problems", "3")
    assert summary["backend"] == "hf" and summary["prompt"] == "task" and summary["problems"] == 3
    assert same_chains(rows, qstar_run[1][:3])


def test_eval_through_qstar_serve_as_an_openai_upstream(tiny_checkpoint, mixed_file, qstar_run, tmp_path, capsys):
    from test_serve_fakes import serve_in_thread

    from qstar.model.policy import load_policy
    from qstar.serve.app import create_app
    from qstar.serve.config import ServeConfig

    with serve_in_thread(create_app(load_policy(tiny_checkpoint), ServeConfig(name="tiny"))) as url:
        summary, rows = run(tmp_path / "up", "", mixed_file, "--upstream", url, "--upstream-model", "tiny",
                            "--prompt", "task", "--retries", "0")
    assert summary == json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # printed as one JSON line
    assert summary["backend"] == "upstream" and summary["failed"] == 0
    assert same_chains(rows, qstar_run[1])


def test_resume_after_a_kill_skips_done_problems_and_never_mixes(tiny_checkpoint, mixed_file, tmp_path, capsys,
                                                                  monkeypatch, dies_on_call):
    from qstar.model.policy import ModelPolicy

    cfg = EvalConfig(data=str(mixed_file), fields="question=q,answer=gold", checkpoint=str(tiny_checkpoint),
                     out=str(tmp_path / "r"), max_tokens=64, batch=2, strategy="majority", budget=2, problems=4)
    original = ModelPolicy.sample
    monkeypatch.setattr(ModelPolicy, "sample", dies_on_call(original, 2))  # killed in the second batch
    with pytest.raises(KeyboardInterrupt):
        run_eval(cfg)
    results = tmp_path / "r" / "results.jsonl"
    first = results.read_text().splitlines()
    assert len(first) == 2
    with results.open("a") as f:
        f.write('{"index": 2, "key": "torn')  # a kill in the middle of a write
    calls = []
    monkeypatch.setattr(ModelPolicy, "sample", lambda self, prompts, **kw: calls.append(len(prompts)) or
                        original(self, prompts, **kw))
    assert run_eval(cfg) == 0
    lines = results.read_text().splitlines()
    assert lines[:2] == first and [json.loads(x)["index"] for x in lines] == list(range(4))
    assert sum(calls) == 2  # only the two problems not done were solved
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["problems"] == 4 and summary["samples"] == 2 and {"pass@1", "pass@2", "maj@1", "maj@2"} <= set(
        summary)
    assert 0 <= summary["pass@1"] <= summary["pass@2"] <= 1
    with pytest.raises(ValueError, match="another evaluation .*strategy"):
        run_eval(EvalConfig(**{**cfg.__dict__, "strategy": "best_of_n"}))


def test_failing_upstream_gives_no_answer_counted_as_failed_and_the_run_goes_on(tmp_path, capsys):
    from test_serve_fakes import serve_in_thread

    app, seen = FastAPI(), []

    @app.post("/v1/completions")
    async def completions(request: Request):  # answers like an LLM, fails on two questions
        body = await request.json()
        seen.extend(body["prompt"])
        if any("FAIL" in p for p in body["prompt"]):
            return JSONResponse({"error": "overloaded"}, status_code=503)
        if any("GARBAGE" in p for p in body["prompt"]):
            return PlainTextResponse("<html>oops</html>")
        texts = [f"Let me think step by step.\n\nThe sum is 2 + {p.split()[2]}, so the final answer is "
                 f"$\\boxed{{{2 + int(p.split()[2])}}}$." for p in body["prompt"]]
        return {"choices": [{"index": i, "text": t, "finish_reason": "stop"} for i, t in enumerate(texts)]}

    data = tmp_path / "up.jsonl"
    rows = [{"question": "What is 40 plus two? FAIL", "answer": "42"}, {"question": "Add 2 5 GARBAGE", "answer": "7"},
            {"question": "Add 2 10 please", "answer": "12"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with serve_in_thread(app) as url:
        assert main(["eval", "--data", str(data), "--fields", "question=question,answer=answer", "--upstream", url,
                     "--upstream-model", "m", "--out", str(tmp_path / "o"), "--retries", "1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["problems"], summary["failed"], summary["accuracy"], summary["prompt"]) == (3, 2, 1 / 3, "instruct")
    out = [json.loads(x) for x in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    assert [(r["answer"], r["correct"], r["failed"]) for r in out] == [(None, False, True), (None, False, True),
                                                                      ("12", True, False)]
    assert "503" in out[0]["error"] and "JSON" in out[1]["error"]
    assert all(BOXED_INSTRUCTION in p for p in seen)  # an LLM is asked for a \boxed{} answer


def test_bad_invocations_are_clear_errors(tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="exactly one policy"):
        run_eval(EvalConfig(out=str(tmp_path / "x")))
    with pytest.raises(ValueError, match="oracle"):
        run_eval(EvalConfig(checkpoint=str(tiny_checkpoint), scorer="oracle", out=str(tmp_path / "x")))
    with pytest.raises(ValueError, match="--fields maps"):
        run_eval(EvalConfig(fields="question=q", checkpoint=str(tiny_checkpoint)))
    with pytest.raises(ValueError, match="unknown benchmark"):
        run_eval(EvalConfig(benchmark="aime23", checkpoint=str(tiny_checkpoint)))
    assert set(BENCHMARKS) == {"gsm8k", "math500", "aime24", "aime25", "amc23", "countdown"}


def test_relabel_a_checkpoint_keeps_only_verified_chains_resumes_and_never_mixes(tiny_checkpoint, tmp_path,
                                                                                 capsys):
    data = tmp_path / "decimals.jsonl"
    problems = T.get_task("decimals").generate(12, seed=7, split="train")
    data.write_text("".join(json.dumps({"q": p.question, "a": p.answer}) + "\n" for p in problems))
    out = tmp_path / "relabel" / "chains.jsonl"
    argv = ["relabel", "--data", str(data), "--fields", "question=q,answer=a", "--checkpoint", str(tiny_checkpoint),
            "--out", str(out), "--strategy", "majority", "--budget", "4", "--attempts", "1", "--max-tokens", "64",
            "--batch", "6"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    kept = [json.loads(x) for x in out.read_text().splitlines()]
    unsolved = [json.loads(x) for x in out.with_name("chains.unsolved.jsonl").read_text().splitlines()]
    assert (report["solved"], report["unsolved"]) == (len(kept), len(unsolved)) and len(kept) + len(unsolved) == 12
    assert sorted(r["index"] for r in kept + unsolved) == list(range(12))
    by_question = {p.question: p for p in problems}
    for row in kept:  # every kept chain verifies against its own problem, and says where it came from
        assert T.judge(by_question[row["question"]], row["chain"]).correct
        assert row["provenance"]["strategy"] == "majority" and row["provenance"]["tokens"] > 0
    assert all(r["attempts"] == 1 and r["tokens"] > 0 for r in unsolved)
    assert main(argv) == 0  # a finished run: nothing is redone or duplicated
    assert [json.loads(x) for x in out.read_text().splitlines()] == kept
    from qstar.lab.relabel import RelabelConfig, run_relabel

    with pytest.raises(ValueError, match="other settings"):
        run_relabel(RelabelConfig(out=str(out), data=str(data), fields="question=q,answer=a",
                                  checkpoint=str(tiny_checkpoint), strategy="majority", keep="first"))


def test_relabel_keep_rules_on_a_scripted_llm_and_sft_trains_on_the_output(tmp_path, capsys):
    """Keep rules over attempts, with an upstream that answers like an LLM: a long right chain on the first call, a
    short right one on the second, always a wrong one for the other problem; then `train sft --data` reads it."""
    from test_serve_fakes import serve_in_thread

    from qstar.learn.sft import SFTConfig, train_sft

    app, calls = FastAPI(), {"n": 0}

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await request.json()
        texts = []
        for prompt in body["prompt"]:
            calls["n"] += 1  # prompts answered
            if "seven" in prompt:
                calls["seven"] = calls.get("seven", 0) + 1
                texts.append("Six plus one.\n\nSo the answer is \\boxed{7}." if calls["seven"] % 2 == 0 else
                             "Let me think step by step.\n\nSix, then one more: six plus one is seven.\n\n"
                             "Therefore the final answer is $\\boxed{7}$.")
            else:
                texts.append("Hmm.\n\nThe answer is \\boxed{5}.")
        return {"choices": [{"index": i, "text": t, "finish_reason": "stop"} for i, t in enumerate(texts)]}

    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"problem": "What is six plus one (seven)?", "ans": 7}) + "\n" +
                    json.dumps({"problem": "What is two plus two?", "ans": 4}) + "\n")
    kept = {}
    with serve_in_thread(app) as url:
        for keep in ("shortest", "first"):
            calls.update(n=0, seven=0)
            out = tmp_path / keep / "chains.jsonl"
            assert main(["relabel", "--data", str(data), "--fields", "question=problem,answer=ans", "--upstream", url,
                         "--upstream-model", "m", "--out", str(out), "--strategy", "greedy", "--attempts", "2",
                         "--keep", keep]) == 0
            kept[keep] = [json.loads(x) for x in out.read_text().splitlines()]
            unsolved = [json.loads(x) for x in out.with_name("chains.unsolved.jsonl").read_text().splitlines()]
            assert [r["question"] for r in unsolved] == ["What is two plus two?"] and unsolved[0]["attempts"] == 2
            assert calls["n"] == (4 if keep == "shortest" else 3)  # first: the solved problem is not searched again
    assert kept["shortest"][0]["chain"].startswith("Six plus one.") and kept["first"][0]["chain"].startswith("Let me")
    row = kept["shortest"][0]
    assert row["question"] == "What is six plus one (seven)?" and row["answer"] == "7" and row["gold"] == "7"
    assert (row["provenance"]["prompt"], row["provenance"]["attempts"], row["provenance"]["verified"]) == \
        ("instruct", 2, 2)
    assert (kept["first"][0]["provenance"]["attempts"], kept["first"][0]["provenance"]["verified"]) == (1, 1)
    capsys.readouterr()
    summary = train_sft(SFTConfig(task="decimals", data=str(tmp_path / "shortest" / "chains.jsonl"), preset="tiny",
                                  out=str(tmp_path / "student"), max_steps=2, eval_problems=4, save_every=1e9))
    assert summary["steps"] == 2 and summary["tokens"] > 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "chain": "c"}) + "\n" + json.dumps({"question": "q"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: missing field\(s\) \['chain'\]"):
        load_pairs(bad)


def test_a_question_past_a_local_models_context_fails_alone(tiny_checkpoint, tmp_path):
    data = tmp_path / "long.jsonl"
    data.write_text(json.dumps({"q": "Is 1.5 larger than 1.25? " * 40, "gold": "yes"}) + "\n" +
                    json.dumps({"q": "Is 1.5 larger than 1.25?", "gold": "yes"}) + "\n")
    summary, rows = run(tmp_path / "long", tiny_checkpoint, data)
    assert summary["failed"] == 1 and rows[0]["failed"] and "no room" in rows[0]["error"]
    assert not rows[1]["failed"] and rows[1]["tokens"] > 0
