"""Expert iteration and distillation end to end at toy size on the session's tiny checkpoint: round checkpoints,
resume after a simulated kill, a verifier that rejects everything, and bad input."""

from __future__ import annotations

import json

import pytest

from qstar.learn import expert_iteration as ei
from qstar.learn.distill import DistillConfig, train_distill
from qstar.learn.expert_iteration import ExpertIterationConfig, collect_verified, train_expert_iteration
from qstar.model.checkpoint import load_checkpoint
from qstar.model.types import Completion
from qstar.tasks import get_task

TOY = dict(task="decimals", rounds=2, problems=8, samples=4, steps=3, batch_size=8, eval_problems=6)


class FixedPolicy:
    name, params = "fixed", 0

    def __init__(self, texts):
        self.texts = texts

    def sample(self, prompts, *, n=1, **kw):
        return [[Completion(self.texts[i % len(self.texts)]) for i in range(n)] for _ in prompts]


def test_collect_verified_dedupes_and_caps():
    task = get_task("mult", digits=(2, 2))
    p = task.generate(1, seed=0)[0]
    good = task.reference(p)
    policy = FixedPolicy([good, good + "\n", "Answer: 0", "x\nAnswer: " + p.answer, "junk \x00"])
    kept, stats = collect_verified(policy, [p], samples=5, temperature=1.0, max_tokens=64, max_per_problem=5)
    assert kept == [(p.question, good), (p.question, "x\nAnswer: " + p.answer)]  # the duplicate is dropped
    assert stats["search/chains"] == 5 and stats["search/sample_accuracy"] == 3 / 5 and stats["search/solved"] == 1
    kept, _ = collect_verified(policy, [p], samples=5, temperature=1.0, max_tokens=64, max_per_problem=1)
    assert len(kept) == 1
    kept, stats = collect_verified(policy, [p], samples=5, temperature=1.0, max_tokens=64, strategy="majority")
    assert kept == [(p.question, good)] and stats["search/chains"] == 1  # one chosen chain per problem
    with pytest.raises(ValueError, match="no reference-free checker"):
        collect_verified(policy, [p], samples=1, temperature=1.0, max_tokens=8, verifier="checker")


def test_expert_iteration_rounds_and_resume(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "ei"
    cfg = ExpertIterationConfig(init=str(tiny_checkpoint), out=str(out), **TOY)
    s = train_expert_iteration(cfg)
    assert len(s["rounds"]) == 2 and s["kept_total"] > 0
    for k in (1, 2):
        meta = load_checkpoint(out / f"ei-round-{k}" / "checkpoint")[2]
        assert meta["stage"] == f"ei-round-{k}" and meta["metrics"]["eval/greedy_accuracy"] is not None
        assert (out / f"ei-round-{k}" / "kept.jsonl").exists()
    with pytest.raises(ValueError, match="already holds a finished run"):
        train_expert_iteration(cfg)
    # simulated kill during round 2: its summary and the run summary were never written
    round1 = (out / "ei-round-1" / "checkpoint" / "model.safetensors").stat().st_mtime_ns
    (out / "ei-round-2" / "summary.json").unlink()
    (out / "summary.json").unlink()
    capsys.readouterr()
    s2 = train_expert_iteration(cfg)
    assert "round 1 already done" in capsys.readouterr().err
    assert (out / "ei-round-1" / "checkpoint" / "model.safetensors").stat().st_mtime_ns == round1
    assert [r["round"] for r in s2["rounds"]] == [1, 2] and s2["rounds"][0] == s["rounds"][0]
    assert s2["checkpoint"] == str(out / "ei-round-2" / "checkpoint")


def test_expert_iteration_with_nothing_verified(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(ei.VERIFIERS, "gold", lambda task, p, text: False)
    out = tmp_path / "ei0"
    s = train_expert_iteration(ExpertIterationConfig(init=str(tiny_checkpoint), out=str(out), **{**TOY, "rounds": 1}))
    err = capsys.readouterr().err
    assert "accepted none" in err and "kept no chains" in err
    assert s["kept_total"] == 0 and s["checkpoint"] == str(tiny_checkpoint)
    assert not (out / "ei-round-1" / "checkpoint").exists()
    assert json.loads((out / "ei-round-1" / "summary.json").read_text())["kept"] == 0


def test_expert_iteration_bad_input(tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="--init"):
        train_expert_iteration(ExpertIterationConfig(out=str(tmp_path / "a")))
    with pytest.raises(ValueError, match="unknown strategy"):
        train_expert_iteration(ExpertIterationConfig(init=str(tiny_checkpoint), strategy="nope", out=str(tmp_path)))
    with pytest.raises(ValueError, match="verifier"):
        train_expert_iteration(ExpertIterationConfig(init=str(tiny_checkpoint), verifier="x", out=str(tmp_path)))


def test_distill_end_to_end(tiny_checkpoint, tmp_path):
    out = tmp_path / "distill"
    s = train_distill(DistillConfig(teacher=str(tiny_checkpoint), task="decimals", out=str(out), preset="tiny",
                                    problems=8, samples=2, steps=3, seconds=0, batch_size=8, eval_problems=4))
    assert s["stage"] == "distill" and s["traces"] > 0 and 0 <= s["eval/greedy_accuracy"] <= 1
    assert load_checkpoint(out / "checkpoint")[2]["stage"] == "distill"
    with pytest.raises(ValueError, match="--teacher"):
        train_distill(DistillConfig(out=str(tmp_path / "d2")))
    with pytest.raises(ValueError, match="preset"):
        train_distill(DistillConfig(teacher=str(tiny_checkpoint), preset="huge", out=str(tmp_path / "d3")))
