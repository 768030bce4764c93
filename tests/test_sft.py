"""`qstar train sft` end to end at toy size: summary fields, evaluation schedule, refusal to overwrite, resume."""

from __future__ import annotations

import json

import pytest
import torch

from qstar.learn import sft
from qstar.learn.sft import SFTConfig, train_sft
from qstar.model.checkpoint import load_checkpoint
from qstar.runio import read_jsonl

TOY = dict(task="decimals", preset="tiny", seconds=0.0, eval_problems=4, eval_every=0, batch_size=8)


def test_sft_summary_and_evaluation_points(tmp_path):
    out = tmp_path / "run"
    summary = train_sft(SFTConfig(out=str(out), max_steps=5, eval_at_steps=[1], **TOY))
    for key in ("greedy_accuracy", "train_seconds", "tokens_per_second", "mfu", "params", "steps", "train_flops",
                "peak_dtype", "mfu_vs_fp32_peak"):
        assert key in summary
    assert summary["steps"] == 5 and summary["params"] == 209472 and 0 < summary["mfu"] < 1
    assert summary["cut_short"] is False
    evals = [r for r in read_jsonl(out / "metrics.jsonl") if "eval/greedy_accuracy" in r]
    assert [r["step"] for r in evals] == [1, 5]  # the eval_at_steps point (after the first update) and the final one
    assert json.loads((out / "summary.json").read_text())["steps"] == 5
    assert load_checkpoint(out / "checkpoint")[2]["stage"] == "sft"
    assert not (out / "resume").exists()
    with pytest.raises(ValueError, match="already holds a finished run"):
        train_sft(SFTConfig(out=str(out), max_steps=5, **TOY))


def test_sft_falls_back_to_fp32_without_native_bf16(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sft, "native_bf16", lambda: False)
    summary = train_sft(SFTConfig(out=str(tmp_path / "run"), max_steps=2, **{**TOY, "bf16": True}))
    assert summary["peak_dtype"] == "float32" and summary["mfu"] == summary["mfu_vs_fp32_peak"] > 0
    assert "no native bf16" in capsys.readouterr().err
    monkeypatch.setattr(sft, "native_bf16", lambda: True)
    summary = train_sft(SFTConfig(out=str(tmp_path / "run2"), max_steps=2, **{**TOY, "bf16": True}))
    assert summary["peak_dtype"] == "bfloat16" and summary["mfu"] > 0 and summary["mfu_vs_fp32_peak"] > 0


def test_sft_time_cap_cuts_a_step_budget_short_and_says_so(tmp_path):
    summary = train_sft(SFTConfig(out=str(tmp_path / "run"), max_steps=10_000, **{**TOY, "seconds": 1e-9}))
    assert summary["steps"] == 1 and summary["cut_short"] is True


def test_sft_evaluates_at_update_counts(tmp_path):
    out = tmp_path / "run"
    train_sft(SFTConfig(out=str(out), max_steps=6, eval_at_steps=[2, 4, 40], **TOY))
    evals = [r["step"] for r in read_jsonl(out / "metrics.jsonl") if "eval/greedy_accuracy" in r]
    assert evals == [2, 4, 6]  # the two points inside the budget, then the final evaluation


def test_sft_resumes_after_kill(tmp_path, monkeypatch, capsys, dies_on_call):
    cfg = SFTConfig(out=str(tmp_path / "run"), max_steps=4, save_every=0.0, **TOY)
    real = sft.collate
    monkeypatch.setattr(sft, "collate", dies_on_call(real, 3))  # killed while building the third batch
    with pytest.raises(KeyboardInterrupt):
        train_sft(cfg)
    assert not (tmp_path / "run" / "summary.json").exists()
    assert load_checkpoint(tmp_path / "run" / "resume")[2]["train_state"]["step"] == 2
    monkeypatch.setattr(sft, "collate", real)
    snapshot, started = load_checkpoint(tmp_path / "run" / "resume")[0].state_dict(), []
    real_fit = sft.fit
    monkeypatch.setattr(sft, "fit", lambda model, *a, **k: started.append(
        {n: t.clone() for n, t in model.state_dict().items()}) or real_fit(model, *a, **k))
    summary = train_sft(cfg)
    assert "at step 2" in capsys.readouterr().err
    assert all(torch.equal(started[0][n], snapshot[n]) for n in snapshot)  # it goes on from the snapshot's weights
    assert summary["steps"] == 4
    steps = [r["step"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "eval/greedy_accuracy" in r]
    assert steps == [4]
    assert summary["train_flops"] > 0 and summary["tokens"] > 0
