"""Smoke tests at toy size, so that nothing rots unseen: every ``qstar`` command through the real CLI
(``qstar.cli.main``, in process, or in a subprocess for ``serve``) and every script in benchmarks/ through its own
entry point, each checked on what it really wrote or printed. One toy ``qstar train sft`` run (a few updates from the
session's ``tiny_checkpoint``) is the checkpoint the other commands and the scripts start from (countdown_ei.py
trains its own warm-up, the scripts' path without a checkpoint).
``qstar demo`` has its own end-to-end test: tests/test_lab_demo.py::test_quick_demo_end_to_end."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import runpy
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_benchmarks import BENCH, bench, common

from qstar.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]
TASK = "decimals"  # a family the tiny checkpoint was trained on, with short chains and a reference-free checker

#: the test of each command in this file (demo's lives in its own file)
CLI_SMOKE = {
    "train sft": "test_train_sft", "train grpo": "test_train_grpo", "train prm": "test_train_prm_then_search_with_it",
    "train orm": "test_train_orm_then_search_with_it", "train expert-iteration": "test_train_expert_iteration",
    "train distill": "test_train_distill", "search": "test_search", "serve": "test_serve_answers_the_openai_sdk",
    "demo": "test_lab_demo.py::test_quick_demo_end_to_end", "sweep": "test_sweep_resumes",
    "report": "test_report_of_the_sweep", "ask": "test_ask", "tasks": "test_tasks",
    "eval": "test_eval.py::test_eval_through_transformers_matches_qstars_sampler",
    "relabel": "test_eval.py::test_relabel_a_checkpoint_keeps_only_verified_chains_resumes_and_never_mixes",
    "train value": "test_train_value_then_search_with_it", "train alphazero": "test_train_alphazero",
    "fit compute-optimal": "test_fit_compute_optimal_then_search_with_it",
    "safety": "test_safety_then_its_benchmark_continues_it",
}
#: the test of each script in benchmarks/ (bench_common.py is their shared helper module, not a script)
SCRIPT_SMOKE = {name: f"test_bench_{name}" for name in
                ("sampler", "serve_load", "optimizers", "prm", "retry", "countdown_ei", "grpo", "search",
                 "grpo_vs_trl", "thinking", "ddp", "executor", "labels")}
SCRIPT_SMOKE["safety"] = "test_safety_then_its_benchmark_continues_it"


def json_lines(text: str) -> list[dict]:
    """The JSON objects printed one per line (other lines: progress and notes)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def cli(capsys, *argv) -> list[dict]:
    """``qstar ARGV`` in process: asserts exit code 0, returns the JSON lines it printed."""
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err[-3000:]
    return json_lines(capsys.readouterr().out)


def run_script(name: str, capsys, monkeypatch, *argv) -> list[dict]:
    """benchmarks/NAME.py as ``python benchmarks/NAME.py ARGV`` would run it (its ``__main__`` block, in process);
    returns the JSON lines it printed."""
    common()  # benchmarks/ on sys.path, as when a script runs
    path = BENCH / f"{name}.py"
    monkeypatch.setattr(sys, "argv", [str(path), *map(str, argv)])
    capsys.readouterr()
    runpy.run_path(str(path), run_name="__main__")
    return json_lines(capsys.readouterr().out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------ shared toy runs


@pytest.fixture(scope="module")
def sft_run(tiny_checkpoint, tmp_path_factory) -> tuple[Path, str]:
    """``qstar train sft`` for 3 updates from the tiny checkpoint: (run dir, what it printed)."""
    out = tmp_path_factory.mktemp("smoke") / "sft"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(["train", "sft", "--init", str(tiny_checkpoint), "--task", TASK, "--out", str(out), "--max-steps",
                   "3", "--batch-size", "8", "--eval-every", "0", "--eval-problems", "4"])
    assert rc == 0
    return out, printed.getvalue()


@pytest.fixture(scope="module")
def sweep_run(sft_run, tmp_path_factory) -> tuple[Path, list[str]]:
    """The metrics.jsonl of a toy ``qstar sweep`` (2 strategies x 2 budgets, 1 seed) and its arguments."""
    out = tmp_path_factory.mktemp("smoke") / "sweep" / "metrics.jsonl"
    args = ["sweep", "--out", str(out), "--checkpoints", str(sft_run[0]), "--strategies", "majority", "mcts/2",
            "--budgets", "1", "2", "--seeds", "0", "--task", TASK, "--problems", "3", "--scorer", "checker",
            "--trees", "1"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 0
    return out, args


# -------------------------------------------------------------------------------------------------- the commands


def test_every_command_and_script_has_a_smoke_test():
    assert set(CLI_SMOKE) == set(COMMANDS)
    for test in CLI_SMOKE.values():
        file, _, name = test.rpartition("::")
        source = (REPO / "tests" / file).read_text() if file else Path(__file__).read_text()
        assert f"\ndef {name}(" in source, test
    assert set(SCRIPT_SMOKE) == {p.stem for p in BENCH.glob("*.py")} - {"bench_common"}
    assert all(name in globals() for name in SCRIPT_SMOKE.values())


@pytest.mark.parametrize("words", sorted(COMMANDS))
def test_help_of_every_command(words, capsys):
    with pytest.raises(SystemExit) as e:
        main([*words.split(), "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: qstar {words}")
    module, cls, _ = COMMANDS[words].split(":")
    config = getattr(__import__(module, fromlist=[cls]), cls)
    for f in dataclasses.fields(config):  # every field of the command's config is a flag (or the positional)
        flag = f.name if f.metadata.get("positional") else "--" + f.name.replace("_", "-")
        assert flag in out, (words, flag)


def test_bare_qstar_lists_the_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(words.split()[0] in out for words in COMMANDS)
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(w.split()[1] in out for w in COMMANDS if w.startswith("train "))


def test_train_sft(sft_run, tiny_checkpoint):
    out, printed = sft_run
    summary = json.loads((out / "summary.json").read_text())
    (last,) = json_lines(printed)
    assert last == {k: v for k, v in summary.items() if k != "config"}
    assert (summary["stage"], summary["task"], summary["steps"], summary["cut_short"]) == ("sft", TASK, 3, False)
    assert summary["eval_problems"] == 4 and 0 <= summary["greedy_accuracy"] <= 1 and summary["tokens"] > 0
    assert summary["config"]["init"] == str(tiny_checkpoint) and math.isfinite(summary["loss"])
    assert Path(summary["checkpoint"], "config.json").is_file() and not (out / "resume").exists()
    evals = [r for r in read_jsonl(out / "metrics.jsonl") if "eval/greedy_accuracy" in r]
    assert evals[-1]["step"] == 3 and evals[-1]["eval/greedy_accuracy"] == summary["greedy_accuracy"]


def test_train_grpo(sft_run, tmp_path, capsys):
    out = tmp_path / "grpo"
    (printed,) = cli(capsys, "train", "grpo", "--init", sft_run[0], "--task", TASK, "--out", out, "--max-updates", 2,
                     "--problems-per-batch", 4, "--group-size", 4, "--eval-problems", 4, "--eval-every", 0)
    summary = json.loads((out / "summary.json").read_text())
    assert printed == {k: v for k, v in summary.items() if k not in ("config", "reward_curve")}
    assert (summary["stage"], summary["updates"], summary["cut_short"], summary["init_stage"]) == ("grpo", 2, False,
                                                                                                     "sft")
    assert len(summary["reward_curve"]) == 2 and summary["eval_problems"] == 4
    assert 0 <= summary["greedy_accuracy_after"] <= 1 and Path(summary["checkpoint"], "config.json").is_file()
    updates = [r for r in read_jsonl(out / "metrics.jsonl") if "rl/reward_mean" in r]
    assert [r["step"] for r in updates] == [1, 2] and all(0 <= r["rl/reward_mean"] <= 1 for r in updates)


def test_train_value_then_search_with_it(sft_run, tmp_path, capsys):
    out = tmp_path / "value"
    (printed,) = cli(capsys, "train", "value", "--init", sft_run[0], "--task", TASK, "--out", out, "--problems", 4,
                     "--samples", 2, "--mc-samples", 2, "--max-steps", 2, "--batch-size", 4, "--eval-problems", 2,
                     "--eval-samples", 2)
    assert printed["kind"] == "value" and json.loads((out / "summary.json").read_text())["kind"] == "value"
    (found,) = cli(capsys, "search", "--checkpoint", sft_run[0], "--task", TASK, "--strategy", "beam", "--budget", 2,
                   "--scorer", "value", "--scorer-checkpoint", out, "--problems", 2, "--max-tokens", 48, "--out",
                   tmp_path / "search")
    assert found["scorer_kind"] == "learned" and 0 <= found["accuracy"] <= 1


def test_train_alphazero(sft_run, tmp_path, capsys):
    out = tmp_path / "az"
    *_, printed = cli(capsys, "train", "alphazero", "--init", sft_run[0], "--task", TASK, "--out", out, "--rounds", 1,
                      "--problems", 2, "--budget", 2, "--width", 2, "--samples", 2, "--mc-samples", 2,
                      "--value-steps", 2, "--policy-steps", 2, "--batch-size", 4, "--eval-problems", 2)  # last line
    assert Path(printed["value"], "config.json").is_file() and (out / "az-round-1" / "summary.json").is_file()


def test_fit_compute_optimal_then_search_with_it(sft_run, tmp_path, capsys):
    import shutil

    ck = tmp_path / "checkpoint"  # the table is written beside the checkpoint: not the shared fixture's
    shutil.copytree(Path(sft_run[0]) / "checkpoint", ck)
    (fitted,) = cli(capsys, "fit", "compute-optimal", "--checkpoint", ck, "--task", TASK, "--problems", 3,
                    "--strategies", "majority", "--budgets", 2, "--probe", 2, "--max-tokens", 40)
    assert fitted["table"] and (ck / "compute_optimal.json").is_file()
    (found,) = cli(capsys, "search", "--checkpoint", ck, "--task", TASK, "--strategy", "compute_optimal", "--budget",
                   4, "--problems", 2, "--max-tokens", 40, "--scorer", "cheap", "--out", tmp_path / "search")
    assert found["scorer_kind"] == "verifier"


def reward_model_then_search(kind: str, strategy: str, sft_dir: Path, tmp_path: Path, capsys) -> None:
    """``qstar train KIND`` at toy size, then ``qstar search`` guided by the verifier it trained."""
    out = tmp_path / kind
    (printed,) = cli(capsys, "train", kind, "--init", sft_dir, "--task", TASK, "--out", out, "--problems", 4,
                     "--samples", 2, "--mc-samples", 2, "--max-steps", 3, "--batch-size", 4, "--eval-problems", 4,
                     "--eval-samples", 2)
    summary = json.loads((out / "summary.json").read_text())
    assert printed.keys() == summary.keys() - {"config"} and printed["kind"] == summary["kind"] == kind
    assert (summary["train/chains"], summary["train/steps"], summary["train/cut_short"]) == (8, 3, False)
    assert math.isfinite(summary["train/loss"]) and summary["eval/n"] == 2
    labels = read_jsonl(out / "labels.jsonl")
    assert len(labels) == 8 and all(r["outcome"] in (0, 1) and r["chain"] for r in labels)
    if kind == "prm":  # Monte-Carlo step labels, one per step
        assert all(len(r["soft"]) == len(r["steps"]) and 0 <= min(r["soft"], default=0) for r in labels)
    (found,) = cli(capsys, "search", "--checkpoint", sft_dir, "--task", TASK, "--strategy", strategy, "--budget", 2,
                   "--problems", 2, "--scorer", kind, "--scorer-checkpoint", out, "--out", tmp_path / "search")
    assert (found["scorer"], found["strategy"], found["problems"]) == (kind, strategy, 2)


def test_train_prm_then_search_with_it(sft_run, tmp_path, capsys):
    reward_model_then_search("prm", "best_of_n", sft_run[0], tmp_path, capsys)


def test_train_orm_then_search_with_it(sft_run, tmp_path, capsys):
    reward_model_then_search("orm", "weighted_best_of_n", sft_run[0], tmp_path, capsys)


def test_train_expert_iteration(sft_run, tmp_path, capsys):
    out = tmp_path / "ei"
    (printed,) = cli(capsys, "train", "expert-iteration", "--init", sft_run[0], "--task", TASK, "--out", out,
                     "--rounds", 1, "--problems", 8, "--samples", 2, "--steps", 2, "--batch-size", 4,
                     "--eval-problems", 4, "--eval-samples", 1)
    summary = json.loads((out / "summary.json").read_text())
    assert printed == {k: v for k, v in summary.items() if k not in ("config", "rounds")}
    (rnd,) = summary["rounds"]
    assert (rnd["round"], rnd["search/chains"], summary["kept_total"]) == (1, 16, rnd["kept"])
    assert len(summary["round_greedy_accuracy"]) == 1 and Path(summary["checkpoint"], "config.json").is_file()
    if rnd["kept"]:  # a round that kept chains trained on them for its 2 updates
        assert rnd["train/steps"] == 2 and len(read_jsonl(out / "ei-round-1" / "kept.jsonl")) == rnd["kept"]


def test_train_distill(sft_run, tmp_path, capsys):
    out = tmp_path / "distill"
    # 64 teacher chains: the tiny teacher solves about a third of these problems at 4 samples, and distillation
    # stops with an error when it verifies none
    (printed,) = cli(capsys, "train", "distill", "--teacher", sft_run[0], "--task", TASK, "--out", out, "--problems",
                     16, "--samples", 4, "--steps", 2, "--batch-size", 4, "--eval-problems", 4)
    summary = json.loads((out / "summary.json").read_text())
    assert printed["stage"] == summary["stage"] == "distill" and printed["search/chains"] == 64
    assert printed["train/steps"] == 2 and not printed["train/cut_short"] and printed["eval/problems"] == 4
    assert len(read_jsonl(out / "traces.jsonl")) == printed["traces"] >= 1
    assert printed["student_params"] > 0 and Path(printed["checkpoint"], "config.json").is_file()


def test_search(sft_run, tmp_path, capsys):
    out = tmp_path / "search"
    (printed,) = cli(capsys, "search", "--checkpoint", sft_run[0], "--task", TASK, "--strategy", "beam", "--budget", 2,
                     "--problems", 3, "--max-tokens", 48, "--out", out)
    summary = json.loads((out / "summary.json").read_text())
    assert printed == summary and (summary["strategy"], summary["budget"], summary["problems"]) == ("beam", 2, 3)
    assert 0 <= summary["ci_low"] <= summary["accuracy"] <= summary["ci_high"] <= 1 and not summary["oracle"]
    assert summary["tokens_per_problem"] >= summary["generated_per_problem"] > 0 and summary["nodes_per_second"] > 0
    rows = read_jsonl(out / "results.jsonl")
    assert len(rows) == 3 and sum(r["correct"] for r in rows) / 3 == summary["accuracy"]
    assert all(r["question"] and r["gold"] for r in rows)


def test_serve_answers_the_openai_sdk(tiny_checkpoint, tmp_path):
    """``main(["serve", ...])`` in a subprocess on a free loopback port, asked through the official openai SDK."""
    import httpx
    import openai

    port, log = free_port(), tmp_path / "serve.log"
    code = "import sys; from qstar.cli import main; sys.exit(main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", code, "serve", "--checkpoint", str(tiny_checkpoint), "--port", str(port), "--name",
           "tiny", "--api-key", "sk-smoke", "--default-max-completion-tokens", "64"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "QSTAR_API_KEY": ""}
    with open(log, "wb") as sink:
        server = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "qstar serve did not come up in 120 s:\n" + log.read_text()[-3000:]
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        client = openai.OpenAI(base_url=url + "/v1", api_key="sk-smoke", max_retries=0, timeout=60)
        raw = client.chat.completions.with_raw_response.create(
            model="tiny", messages=[{"role": "user", "content": "Which number is greater: 14.2 or 14.184?"}],
            reasoning_effort="low")
        assert raw.http_response.status_code == 200
        reply = raw.parse()
        assert reply.model == "tiny" and len(reply.choices) == 1 and reply.choices[0].finish_reason in ("stop",
                                                                                                        "length")
        assert reply.choices[0].message.role == "assistant" and reply.usage.completion_tokens > 0
        assert [m.id for m in client.models.list().data] == ["tiny"]
        with pytest.raises(openai.AuthenticationError):  # the key is enforced
            openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0, timeout=60).models.list()
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C: a graceful shutdown, and main() returns 0
        try:
            rc = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            rc = server.wait(timeout=30)
    text = log.read_text()
    assert rc == 0 and "Application shutdown complete" in text and "Traceback" not in text, text[-3000:]


def test_sweep_resumes(sweep_run, capsys):
    out, args = sweep_run
    tests = [r for r in read_jsonl(out) if r["kind"] == "test"]
    assert sorted((r["strategy"], r["budget"]) for r in tests) == [("majority", 1), ("majority", 2), ("mcts", 1),
                                                                   ("mcts", 2)]
    assert all(len(r["outcomes"]) == len(r["tokens"]) == 3 and r["scorer"] == "checker" for r in tests)
    assert any(r["kind"] == "tree" and r["strategy"] == "mcts" for r in read_jsonl(out))
    (printed,) = cli(capsys, *args)  # the same sweep again: every cell is already there
    assert (printed["cells"], printed["ran"], printed["skipped"]) == (4, 0, 4)


def test_report_of_the_sweep(sweep_run, capsys):
    run_dir = sweep_run[0].parent
    cli(capsys, "report", run_dir, "--baseline", "majority", "--title", "smoke")
    html = (run_dir / "report.html").read_text()
    assert "smoke" in html and "majority" in html and "mcts" in html
    assert (run_dir / "train_compute.png").read_bytes()[:4] == (run_dir / "test_compute.png").read_bytes()[:4] == \
        b"\x89PNG"


def test_ask(tiny_checkpoint, capsys):
    (out,) = cli(capsys, "ask", "How many r's are in strawberry?", "--checkpoint", tiny_checkpoint, "--effort", "low",
                 "--json")
    assert (out["task"], out["strategy"], out["budget"], out["samples"]) == ("letters", "think", 48, 1)
    assert out["status"] in ("answered", "unsure") and out["message"] and out["thinking"]
    (refused,) = cli(capsys, "ask", "What is the capital of France?", "--checkpoint", tiny_checkpoint, "--json")
    assert refused["status"] == "out_of_scope" and refused["answer"] is None


def test_tasks(capsys):
    from qstar.tasks import get_task, task_names

    capsys.readouterr()
    assert main(["tasks"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert listed == list(task_names()) and TASK in listed
    shown = cli(capsys, "tasks", "--name", TASK, "--n", 2, "--split", "test", "--as-json")
    problems = get_task(TASK).generate(2, seed=0, split="test")
    assert [(p["task"], p["question"], p["answer"]) for p in shown] == [(TASK, p.question, p.answer) for p in problems]


# --------------------------------------------------------------------------------------------- benchmarks/*.py


def test_bench_sampler(tiny_checkpoint, capsys, monkeypatch):
    rows = run_script("sampler", capsys, monkeypatch, "--checkpoint", tiny_checkpoint, "--batches", 2, "--shared-n",
                      2, "--new-tokens", 4, "--repeats", 1, "--dtypes", "float32,bfloat16")
    fp32 = [r for r in rows if r["dtype"] == "float32"]
    assert [(r["batch"], r["n"]) for r in fp32] == [(2, 1), (2, 2)]
    assert all(r["qstar_tok_s"] > 0 and r["hf_tok_s"] > 0 and r["speedup"] > 0 and r["new_tokens"] == 4 for r in fp32)
    assert all(r["preset"] == "checkpoint" and r["params"] > 0 for r in fp32)
    bf16 = [r for r in rows if r["dtype"] == "bfloat16"]  # measured on a CPU with native bf16, else one skip line
    assert bf16 == [{"dtype": "bfloat16", "skipped": common().NO_BF16}] or len(bf16) == 2


def test_bench_serve_load(tiny_checkpoint, capsys, monkeypatch):
    rows = run_script("serve_load", capsys, monkeypatch, "--checkpoint", tiny_checkpoint, "--levels", 1, 4,
                      "--min-requests", 10, "--requests-per-client", 1, "--max-tokens", 16, "--seconds", 120)
    *levels, final = rows
    assert [r["concurrency"] for r in levels] == [1, 4]
    for r in levels:
        assert r["requests"] == r["request_budget"] == 10 and not r["cut_short"]
        assert (r["errors_5xx"], r["errors_other"], r["malformed"], r["ok"]) == (0, 0, 1, 9)
        assert r["rps"] > 0 and r["p50_ms"] <= r["p99_ms"]
    assert final["levels"] == [1, 4] and final["batching_gain"] > 0 and not final["cut_short"]
    assert isinstance(final["batcher"], dict)


def test_bench_optimizers(tmp_path, capsys):
    rows = bench("optimizers").main(["--task", TASK, "--steps", "2", "--seeds", "0", "--eval-problems", "2", "--out",
                                     str(tmp_path)])
    assert [r for r in json_lines(capsys.readouterr().out) if "what" in r] == rows
    cost, *_ = rows
    assert cost["what"] == "step_cost" and cost["adamw_ms"] > 0 and cost["muon_ms"] > 0
    sft = [r for r in rows if r["what"] == "sft"]
    assert [(r["optimizer"], r["steps"], r["cut_short"]) for r in sft] == [("adamw", 2, False), ("muon", 2, False)]
    summary = rows[-1]
    assert summary["what"] == "summary" and set(summary["accuracy"]) == {"adamw", "muon"}
    assert summary["muon_minus_adamw_points"] == round(100 * (summary["accuracy"]["muon"] -
                                                              summary["accuracy"]["adamw"]), 1)


def test_bench_prm(sft_run, tmp_path, capsys, monkeypatch):
    rows = run_script("prm", capsys, monkeypatch, "--policy", sft_run[0], "--task", TASK, "--out", tmp_path,
                      "--train-problems", 3, "--train-samples", 2, "--mc-samples", 1, "--test-problems", 3, "--n", 2,
                      "--subsets", 2, "--steps", 2, "--variants", "prm-shared", "orm-shared")
    assert rows == read_jsonl(tmp_path / "results.jsonl") and all(r["bench"] == "prm" for r in rows)
    by = lambda what: [r for r in rows if r["what"] == what]  # noqa: E731
    assert by("labels")[0]["chains"] == 6
    fits = {r["variant"]: r for r in by("fit")}
    assert {"prm-shared", "prm-shared@prod", "orm-shared", "policy-logprob"} <= set(fits)
    assert fits["prm-shared"]["steps"] == fits["orm-shared"]["steps"] == 2 and not fits["prm-shared"]["cut_short"]
    curves = by("curve")
    assert {(r["method"], r["n"]) for r in curves} >= {("majority", 1), ("majority", 2), ("prm-shared:best", 2)}
    assert all(0 <= r["accuracy"] <= 1 and r["problems"] == 3 for r in curves)
    assert {(r["rule"], r["prm"], r["orm"]) for r in by("ordering")} == {("best", "prm-shared", "orm-shared"),
                                                                          ("weighted", "prm-shared", "orm-shared")}


def test_bench_retry(sft_run, tmp_path, capsys, monkeypatch):
    rows = run_script("retry", capsys, monkeypatch, "--init", sft_run[0], "--task", TASK, "--out", tmp_path,
                      "--steps", 2, "--batch-size", 4, "--eval-problems", 3, "--budgets", 1, 2)
    assert rows == read_jsonl(tmp_path / "results.jsonl")
    assert [(r["arm"], r["steps"], r["cut_short"]) for r in rows if r["what"] == "train"] == [("plain", 2, False),
                                                                                              ("retry", 2, False)]
    evals = [(r["arm"], r["mode"], r["budget"]) for r in rows if r["what"] == "eval"]
    assert evals == [(arm, mode, b) for arm in ("plain", "retry") for mode, b in (("wait", 1), ("wait", 2),
                                                                                  ("check", 2))]
    assert all(r["problems"] == 3 and 0 <= r["accuracy"] <= 1 for r in rows if r["what"] == "eval")
    assert all((tmp_path / arm / "checkpoint" / "config.json").is_file() for arm in ("plain", "retry"))


def test_bench_countdown_ei(tmp_path, capsys, monkeypatch):
    """Without --sft, as `make bench` runs it: the script trains its own SFT warm-up (bench_common.sft_warmup, the
    fallback of grpo.py, search.py and grpo_vs_trl.py too), then one expert-iteration round."""
    rows = run_script("countdown_ei", capsys, monkeypatch, "--preset", "tiny", "--sft-steps", 2, "--out", tmp_path,
                      "--rounds", 1, "--problems", 4, "--samples", 2, "--ei-epochs", 1, "--eval-problems", 3,
                      "--tinyzero", 2)
    rows = [r for r in rows if "bench" in r]  # expert iteration prints its own summary line too
    assert rows == read_jsonl(tmp_path / "results.jsonl")
    assert [r["what"] for r in rows] == ["sft", "ei_round", "result"]
    sft, rnd, result = rows
    assert (sft["sft_steps"], sft["sft_step_budget"], sft["sft_cut_short"], sft["cut_short"]) == (2, 2, False, False)
    assert sft["tinyzero_pass@1"] is not None and 0 <= sft["greedy_pass@1"] <= 1
    assert Path(sft["checkpoint"], "config.json").is_file() and rnd["round"] == 1 and rnd["kept"] >= 0
    assert result["sft_pass@1"] == sft["greedy_pass@1"] and isinstance(result["doubled"], bool)
    assert json.loads((tmp_path / "ei" / "summary.json").read_text())["task"] == "countdown"


def test_bench_grpo(sft_run, tmp_path, capsys):
    result = bench("grpo").main(["--init", str(sft_run[0]), "--task", TASK, "--updates", "1", "--eval-problems", "3",
                                 "--out", str(tmp_path)])
    *evals, last = json_lines(capsys.readouterr().out)[-3:]
    assert last == result and [r["step"] for r in evals] == [0, 1]
    assert (result["updates"], result["update_budget"], result["cut_short"]) == (1, 1, False)
    assert result["eval_problems"] == 3 and isinstance(result["target_met"], bool)
    assert result["gain_points"] == round(100 * (result["greedy_accuracy_after"] - result["greedy_accuracy_before"]), 2)


def test_bench_search(sft_run, capsys):
    from qstar.search import STRATEGIES

    assert bench("search").main(["--checkpoint", str(sft_run[0]), "--task", TASK, "--problems", "2", "--budgets", "2",
                                 "--max-tokens", "48", "--seeds", "0"]) == 0
    *rows, verdict = json_lines(capsys.readouterr().out)
    # think's budget is tokens, so it runs only when asked for; mcts_gumbel is mcts with the Gumbel root rule;
    # cheap judges nothing on decimals, so until_verified (which would refuse it) is left out
    assert [r["strategy"] for r in rows] == [s for s in STRATEGIES if s not in ("think", "until_verified")] + [
        "mcts_gumbel"]
    assert {"efficiency_vs_best_of_n", "ci_low", "ci_high", "strategy", "scorer_kind", "tree_beats_best_of_n"} <= set(
        verdict)
    assert set(verdict["tree_vs_best_of_n"]) == {"beam", "dvts", "mcts", "mcts_gumbel"}
    for r in rows:
        assert (r["budget"], r["problems"], r["task"], r["scorer"], r["scorer_kind"]) == (2, 2, TASK, "cheap",
                                                                                         "verifier")
        assert 0 <= r["accuracy"] <= 1 and r["tokens_per_problem"] > 0
        assert ("nodes_per_second" in r) == (r["strategy"] in ("beam", "dvts", "mcts", "mcts_gumbel"))


def test_bench_grpo_vs_trl(sft_run, tmp_path, monkeypatch):
    """Without TRL (an optional extra) the script stops in one line naming the extra, before training anything;
    its qstar side runs on its own."""
    module = bench("grpo_vs_trl")
    monkeypatch.setitem(sys.modules, "trl", None)  # as where the extra is not installed
    monkeypatch.setattr(module, "sft_warmup", lambda *a, **k: pytest.fail("trained before checking for TRL"))
    with pytest.raises(SystemExit) as e:
        module.main(["--quick"])
    assert "\n" not in str(e.value) and "needs TRL" in str(e.value) and "pip install -e '.[bench]'" in str(e.value)
    b = module.BenchConfig(problems_per_batch=2, group_size=2, updates=1, warmup=1, task=TASK)
    q = module.run_qstar(b, str(sft_run[0] / "checkpoint"), 32, tmp_path / "qstar")
    assert len(q["times"]) == len(q["computed"]) == 1 and q["times"][0] > 0 and not q["cut_short"]
    assert 0 <= q["reward_mean"] <= 1


def test_bench_ddp(tmp_path, capsys):
    # torchrun with 1 and 2 gloo processes at the same global batch (5 rows: split 3 + 2)
    rows = bench("ddp").main(["--task", TASK, "--preset", "tiny", "--steps", "2", "--batch-size", "5", "--out",
                              str(tmp_path)])
    assert json_lines(capsys.readouterr().out) == rows
    assert [(r["processes"], r["steps"]) for r in rows[:2]] == [(1, 2), (2, 2)] and rows[0]["updates_per_s"] > 0
    summary = rows[-1]
    assert summary["what"] == "summary" and summary["scaling_efficiency"] > 0 and summary["max_weight_diff"] < 1e-5


def test_bench_thinking(tmp_path, capsys):
    final = bench("thinking").main(["--quick", "--out", str(tmp_path / "run")])
    rows = [r for r in json_lines(capsys.readouterr().out) if r.get("bench") == "thinking"]  # not the trainers' lines
    assert rows[-1] == final and final["seeds"] == [0, 1] and final["quick"] is True
    targets = {r["target"]: r for r in rows if r["row"] == "target"}
    assert set(targets) == {"rl_span", "thinking_span"} and all(isinstance(t["met"], bool) for t in targets.values())
    assert {r["thinking_budget"] for r in rows if r["row"] == "think"} == {0, 16, 64}
    assert [r["seed"] for r in rows if r["row"] == "rl"] == [0, 1]


def test_bench_executor(sft_run, ray_session, capsys):
    # the same 2-cell sweep through the local executor and through the session's Ray cluster
    bench("executor").main(["--checkpoint", str(sft_run[0]), "--task", TASK, "--strategies", "greedy", "--budgets",
                            "1", "2", "--seeds", "0", "--problems", "2", "--workers", "1"])
    *lines, last = json_lines(capsys.readouterr().out)
    rows = [r for r in lines if "executor" in r]  # not the sweeps' own summary lines
    assert [r["executor"] for r in rows] == ["local", "ray"] and all(r["same_results"] for r in rows)
    assert last["cells"] == 2 and last["overhead"] > 0 and last["ray_init_seconds"] < 1  # the cluster was reused


def test_bench_labels(sft_run, capsys):
    bench("labels").main(["--policy", str(sft_run[0]), "--task", TASK, "--problems", "2", "--test-problems", "2",
                          "--samples", "1", "--rollouts", "1", "--prm-steps", "2"])
    assert json_lines(capsys.readouterr().out)


def test_safety_then_its_benchmark_continues_it(tmp_path, capsys):
    out = tmp_path / "safety"
    args = ["safety", "--out", str(out), "--sft-steps", "40", "--rl-updates", "1", "--requests", "8", "--levels",
            "none,low"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["requests_per_point"] == 8
    assert set(summary["attack_success"]) == {"none", "low"} and set(summary["targets"]) == {"jailbreaks_fall",
                                                                                          "few_wrong_refusals"}
    assert all(0 <= v <= 1 for v in summary["over_refusal"].values())
    assert (out / "safety.png").stat().st_size > 0 and "attack success" in (out / "report.md").read_text()
    assert sorted(p.name for p in (out / "seed1").iterdir()) == ["eval-low.json", "eval-none.json", "rl", "sft"]
    capsys.readouterr()
    final = bench("safety").main(["--quick", "--out", str(out)])  # continues the finished run: nothing retrains
    *rows, last = json_lines(capsys.readouterr().out)
    assert last == final and {k: final[k] for k in ("attack_success", "over_refusal")} == {
        k: summary[k] for k in ("attack_success", "over_refusal")}
    assert "held_out_disguise_attack_success" in last and [r["level"] for r in rows if r.get("row") == "level"] == [
        "none", "low"]
    assert [r["target"] for r in rows if r.get("row") == "target"] == ["jailbreaks_fall", "few_wrong_refusals"]
