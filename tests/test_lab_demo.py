"""`qstar demo`: run-dir pinning, resume after interruption, missing checkpoints, summary keys, the trainer-metrics
-> train-curve conversion (scripted stages, hand-computed FLOPs), and the real pipeline end to end at toy size."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from qstar.lab import demo as demo_mod
from qstar.lab import stages
from qstar.lab.demo import DemoConfig, prepare, resolve, run_demo
from qstar.lab.metrics import append_records, read_metrics

SUMMARY_KEYS = {"wall_seconds", "train_curve", "test_curves", "efficiency_vs_best_of_n", "checkpoint", "rl_span",
                "rl_span_ci_low", "rl_span_ci_high", "thinking_span", "thinking_span_ci_low", "thinking_span_ci_high",
                "response_length_before", "response_length_after", "seeds"}


def fake_checkpoint(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text("{}")
    return str(path)


class FakeStages:
    """Stand-ins writing what the real trainers write (metrics.jsonl eval points, a checkpoint dir)."""

    def __init__(self, fail_at: str | None = None):
        self.calls: list[str] = []
        self.fail_at = fail_at

    def table(self):
        def wrap(name, fn):
            def run(ctx):
                self.calls.append(name)
                if name == self.fail_at:
                    self.fail_at = None
                    raise KeyboardInterrupt  # the user pressed Ctrl-C during this stage
                return fn(ctx)
            return run
        fns = {"data": self.data, "sft": self.sft, "prm": self.prm, "rl": self.rl, "sweep": self.sweep,
               "report": self.report}
        return {name: wrap(name, fn) for name, fn in fns.items()}

    def data(self, ctx):
        path = ctx.dir("data") / "heldout.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps({"question": q}) + "\n" for q in ("ab", "abcd")))  # 4 and 6 tokens
        return {"heldout": str(path), "families": {"letters": 2}}

    def sft(self, ctx):
        out = ctx.dir("sft")
        rows = [{"stage": "sft", "step": 5, "flops": 5e8, "train/loss": 1.0},
                {"stage": "sft", "step": 10, "flops": 1e9, "eval/greedy_accuracy": 0.25, "eval/problems": 20},
                {"stage": "sft", "step": 20, "flops": 2e9, "eval/greedy_accuracy": 0.5, "eval/problems": 20}]
        (out / "metrics.jsonl").parent.mkdir(parents=True, exist_ok=True)
        (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return {"checkpoint": fake_checkpoint(out / "checkpoint"), "metrics": str(out / "metrics.jsonl"),
                "params": 1000, "train_flops": 2e9}

    def prm(self, ctx):
        return {"checkpoint": fake_checkpoint(ctx.dir("prm") / "checkpoint"), "eval/auc": 0.7}

    def rl(self, ctx):
        runs = []
        for seed, after in ((0, 0.75), (1, 0.8)):
            out = ctx.dir("rl") / f"seed{seed}"
            rows = [{"stage": "grpo", "step": 0, "flops": 0.0, "eval/greedy_accuracy": 0.5, "eval/problems": 20,
                     "eval/len_correct": 5.0, "eval/len_incorrect": 4.0},
                    {"stage": "grpo", "step": 1, "flops": 1e6, "rl/response_len": 15.0},
                    {"stage": "grpo", "step": 2, "flops": 3e6, "rl/response_len": 15.0},
                    {"stage": "grpo", "step": 2, "flops": 3e6, "eval/greedy_accuracy": after, "eval/problems": 20,
                     "eval/len_correct": 15.0, "eval/len_incorrect": 4.0}]
            (out / "metrics.jsonl").parent.mkdir(parents=True, exist_ok=True)
            (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            runs.append({"seed": seed, "checkpoint": fake_checkpoint(out / "checkpoint"),
                         "metrics": str(out / "metrics.jsonl"), "response_length_before": 5.0,
                         "response_length_after": 15.0})
        return {"checkpoint": runs[0]["checkpoint"], "runs": runs, "problems_per_batch": 2, "group_size": 2}

    def report(self, ctx):
        from unittest import mock

        with mock.patch("qstar.lab.spans.example_chains", lambda *a, **k: []):  # fake checkpoints cannot sample
            return stages.stage_report(ctx)

    def sweep(self, ctx):
        path = ctx.dir("sweep") / "metrics.jsonl"
        recs = []
        for strategy, accs in (("best_of_n", [1, 2, 3]), ("majority", [2, 2, 2])):
            for budget, correct in zip((1, 2, 4), accs):
                for seed in ctx.cfg.seeds:
                    recs.append({"kind": "test", "key": f"{strategy}{budget}{seed}", "model": "rl",
                                 "strategy": strategy, "budget": budget, "seed": seed, "problems": list("abcd"),
                                 "outcomes": [1] * correct + [0] * (4 - correct), "tokens": [10 * budget] * 4,
                                 "flops": [1.0] * 4})
        for budget, correct in ((0, 2), (16, 4)):  # one thinking chain: chance at budget 0, all right at 16
            recs.append({"kind": "test", "key": f"think{budget}", "model": "rl", "strategy": "think", "budget": budget,
                         "seed": 0, "problems": list("abcd"), "outcomes": [1] * correct + [0] * (4 - correct),
                         "tokens": [2 + budget] * 4, "flops": [1.0] * 4})
        append_records(path, recs)
        return {"metrics": [str(path)]}


def config(tmp_path, **kw) -> DemoConfig:
    return DemoConfig(out=str(tmp_path / "run"), quick=True, strategies=["majority", "best_of_n"], **kw)


def test_quick_overrides_only_defaults_and_validation():
    cfg = resolve(DemoConfig(quick=True, sft_seconds=20.0))
    assert cfg.sft_seconds == 20.0 and cfg.preset == "tiny" and cfg.budgets == [1, 2] and cfg.sft_steps == 40
    with pytest.raises(ValueError, match="unknown strategies \\['nope'\\]"):
        resolve(DemoConfig(strategies=["nope"]))
    with pytest.raises(ValueError, match="sft_seconds must be > 0"):
        resolve(DemoConfig(sft_seconds=0))
    with pytest.raises(ValueError, match="sft_steps must be > 0"):
        resolve(DemoConfig(sft_steps=0))


def test_the_reward_model_to_train_comes_from_every_scorer_the_sweep_uses():
    from qstar.lab.stages import learned_kinds

    assert learned_kinds(DemoConfig()) == {"prm"}  # prm, plus best_of_n@prm
    assert learned_kinds(DemoConfig(scorer="checker", strategies=["beam", "best_of_n@prm"])) == {"prm"}
    assert learned_kinds(DemoConfig(scorer="checker", strategies=["beam", "best_of_n@oracle"])) == set()
    with pytest.raises(ValueError, match="one reward model, but its scorers want orm and prm"):
        resolve(DemoConfig(scorer="prm", strategies=["best_of_n@orm"]))
    with pytest.raises(ValueError, match="prm_steps must be > 0 to train the prm"):
        resolve(DemoConfig(scorer="checker", strategies=["best_of_n@checker+prm"], prm_steps=0))


def test_mismatched_or_foreign_dir_is_refused_and_force_only_removes_demo_files(tmp_path):
    run = tmp_path / "run"
    prepare(run, resolve(config(tmp_path)))
    (run / "notes.txt").write_text("mine")
    (run / "report.html").write_text("old")
    with pytest.raises(ValueError, match=r"different configuration \(seed: 0 -> 1\)"):
        prepare(run, resolve(config(tmp_path, seed=1)))
    prepare(run, resolve(config(tmp_path, seed=1, force=True)))
    assert (run / "notes.txt").read_text() == "mine" and not (run / "report.html").exists()
    assert json.loads((run / "lab.json").read_text())["config"]["seed"] == 1
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_text("")
    with pytest.raises(ValueError, match="not a qstar demo run"):
        prepare(other, resolve(config(tmp_path)))


def test_resume_after_interruption_skips_finished_stages(tmp_path, monkeypatch):
    fake = FakeStages(fail_at="rl")
    monkeypatch.setattr(demo_mod, "STAGES", fake.table())
    cfg = config(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_demo(cfg)
    assert fake.calls == ["data", "sft", "prm", "rl"]
    run = Path(cfg.out)
    assert {p.parent.name for p in run.glob("stages/*/DONE.json")} == {"data", "sft", "prm"}
    summary = run_demo(cfg)
    assert fake.calls[4:] == ["rl", "sweep", "report"]  # data, sft and prm were not redone
    assert SUMMARY_KEYS <= set(summary) and summary["checkpoint"].endswith("stages/rl/seed0/checkpoint")
    # one thinking chain reaches best-of-N's top 75% (40 tokens) at 6 tokens (2 -> 18 tokens, 50% -> 100%, log-linear)
    saved = json.loads((run / "summary.json").read_text())
    assert saved["efficiency"]["strategy"] == "think" and saved["efficiency_vs_best_of_n"] == pytest.approx(40 / 6)
    # train curve: SFT eval points, then each RL seed's own logged FLOPs on top of SFT's final 2e9
    curve = summary["train_curve"]
    assert sorted((p["stage"], p["flops"], p["accuracy"]) for p in curve) == [
        ("rl", 2e9, 0.5), ("rl", 2e9, 0.5), ("rl", 2e9 + 3e6, 0.75), ("rl", 2e9 + 3e6, 0.8), ("sft", 1e9, 0.25),
        ("sft", 2e9, 0.5)]
    # RL span: seeds pooled, 20 problems each: (15 + 16) / 40 - 20 / 40; thinking span: 4/4 - 2/4
    assert summary["rl_span"] == pytest.approx(31 / 40 - 0.5) and summary["seeds"] == [0, 1]
    assert summary["thinking_span"] == pytest.approx(0.5) and summary["thinking_span_ci_low"] >= 0
    assert (summary["response_length_before"], summary["response_length_after"]) == (5.0, 15.0)
    assert summary["rl_span_met"] is False  # 20 problems: the intervals of before and after overlap
    assert set(curve[0]) == {"flops", "accuracy", "ci_low", "ci_high", "stage"}
    assert [p["accuracy"] for p in summary["test_curves"]["best_of_n"]] == [0.25, 0.5, 0.75]
    assert "majority is flat" in " ".join(summary["verdicts"])
    run_demo(cfg)  # everything finished: nothing reruns
    assert fake.calls[7:] == []


def test_missing_checkpoint_of_finished_stage_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_mod, "STAGES", FakeStages().table())
    cfg = config(tmp_path)
    run_demo(cfg)
    (Path(cfg.out) / "stages" / "sft" / "checkpoint" / "config.json").unlink()
    (Path(cfg.out) / "stages" / "sft" / "checkpoint").rmdir()
    with pytest.raises(ValueError, match="stage 'sft' finished earlier but its checkpoint .* is missing"):
        run_demo(cfg)


def test_latest_timeline_drops_rows_a_resumed_trainer_redid():
    rows = [{"step": s} for s in (10, 20, 30, 25, 35, 35)]
    assert [r["step"] for r in stages.latest_timeline(rows)] == [10, 20, 25, 35]
    mixed = [{"step": 1, "loss": 1}, {"step": 1, "acc": 0.5}, {"step": 2, "loss": 1}]
    assert stages.latest_timeline(mixed) == mixed


def test_quick_demo_end_to_end(tmp_path, capsys):
    """The real pipeline (SFT -> PRM -> GRPO -> sweep -> report) at toy size, then the report against metrics."""
    from qstar.cli import main
    from qstar.model.checkpoint import resolve_checkpoint

    out = tmp_path / "demo"
    args = ["demo", "--quick", "--out", str(out), "--strategies", "majority", "best_of_n", "beam", "--budgets", "1",
            "2", "--sft-steps", "20", "--rl-updates", "2", "--eval-problems", "8"]  # --quick, trimmed for the suite
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary) and Path(summary["checkpoint"], "config.json").is_file()
    assert summary["cut_short"] == [] and not any("CUT SHORT" in v for v in summary["verdicts"])
    assert resolve_checkpoint(out).resolve() == Path(summary["checkpoint"]).resolve()  # --checkpoint DIR works
    records = read_metrics(out / "metrics.jsonl")
    assert {r["kind"] for r in records} >= {"train", "test"}
    assert {r["stage"] for r in records if r["kind"] == "train"} == {"sft", "rl"}
    html = (out / "report.html").read_text()
    assert len(re.findall(r"src='data:image/png;base64,", html)) == 2
    for label, pts in summary["test_curves"].items():
        for p in pts:
            assert f"<td>{label}</td><td>{p['budget']}</td><td>{p['tokens_per_problem']:.0f}</td>" in html
            assert f"{100 * p['accuracy']:.1f}%" in html
    capsys.readouterr()
    assert main(args) == 0  # finished run: every stage is skipped
    err = capsys.readouterr().err
    assert all(f"{name}: skipped" in err for name in ["data", "sft", "prm", "rl", "sweep", "report"])
    assert main(["demo", "--quick", "--out", str(out)]) == 2  # a different configuration is refused
    err = capsys.readouterr().err
    assert "holds a demo run with a different configuration (" in err and "strategies: [" in err
