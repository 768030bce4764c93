"""`qstar sweep` resumability with a scripted cell runner (no model): finished cells are never redone."""

from __future__ import annotations

import dataclasses
import json

import pytest

from qstar.lab.metrics import read_metrics
from qstar.lab.sweep import SweepConfig, config_hash, grid, pick_examples, run_sweep


class Scripted:
    """Deterministic cell results; raises KeyboardInterrupt after ``die_after`` cells (a killed sweep)."""

    def __init__(self, die_after: int | None = None):
        self.calls: list[tuple] = []
        self.die_after = die_after

    def __call__(self, cell, cfg):
        if self.die_after is not None and len(self.calls) >= self.die_after:
            raise KeyboardInterrupt
        self.calls.append((cell["strategy"], cell["budget"], cell["seed"]))
        n = cfg.problems
        ok = [int(i < cell["budget"]) for i in range(n)]
        trees = [{"strategy": cell["strategy"], "question": "q", "tree": {"step": "", "children": []}}] \
            if cell["strategy"] == "mcts" else []
        return {"scorer": "none", "oracle": False, "problems": [f"p{i}" for i in range(n)], "outcomes": ok,
                "tokens": [10 * cell["budget"]] * n, "flops": [1.0] * n}, trees


def config(tmp_path, **kw):
    return SweepConfig(out=str(tmp_path / "sweep.jsonl"), checkpoints=["runs/x/checkpoint"],
                       strategies=["majority", "mcts"], budgets=[1, 2], seeds=[0, 1], problems=3, **kw)


def test_grid_order_and_keys(tmp_path):
    cfg = config(tmp_path)
    cells = grid(cfg)
    assert len(cells) == 8 and cells[0]["model"] == "x"  # an HF dir named checkpoint uses its run dir's name
    assert [c["seed"] for c in cells] == [0] * 4 + [1] * 4  # one full seed first
    with pytest.raises(ValueError, match="budgets must be >= 1"):
        grid(SweepConfig(budgets=[0]))


def test_killed_sweep_resumes_without_redoing_cells(tmp_path):
    cfg = config(tmp_path)
    first = Scripted(die_after=3)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, runner=first)
    assert len(read_metrics(cfg.out, allow_empty=True)) == 3 + 1  # 3 test records + the mcts tree
    second = Scripted()
    res = run_sweep(cfg, runner=second)
    assert res == {**res, "cells": 8, "ran": 5, "skipped": 3}
    assert not set(first.calls) & set(second.calls)
    recs = read_metrics(cfg.out)
    tests = [r for r in recs if r["kind"] == "test"]
    assert len(tests) == 8 == len({r["key"] for r in tests})
    assert all(r["config_hash"] == config_hash(cfg) for r in tests)
    assert run_sweep(cfg, runner=Scripted(die_after=0))["ran"] == 0  # nothing left: the runner is never called


def test_torn_last_line_and_orphan_trees_are_dropped(tmp_path):
    cfg = config(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, runner=Scripted(die_after=2))
    path = tmp_path / "sweep.jsonl"
    orphan = {"kind": "tree", "cell": "never-finished", "strategy": "mcts", "question": "q", "tree": {"step": ""}}
    with open(path, "a") as f:
        f.write(json.dumps(orphan) + "\n" + '{"kind": "test", "key": "torn')  # killed mid-write
    runner = Scripted()
    run_sweep(cfg, runner=runner)
    assert len(runner.calls) == 6
    recs = read_metrics(path)
    assert not any(r.get("cell") == "never-finished" for r in recs)
    assert len([r for r in recs if r["kind"] == "test"]) == 8


def test_changed_config_is_refused_unless_forced(tmp_path):
    run_sweep(config(tmp_path), runner=Scripted())
    with pytest.raises(ValueError, match="different configuration"):
        run_sweep(config(tmp_path, max_tokens=7), runner=Scripted())
    res = run_sweep(config(tmp_path, max_tokens=7, force=True), runner=Scripted())
    assert res["ran"] == 8 and len([r for r in read_metrics(tmp_path / "sweep.jsonl") if r["kind"] == "test"]) == 8


def test_pick_examples_alternates_solved_and_failed():
    rows = [("a", None, 1), ("b", None, 1), ("c", None, 0), ("d", None, 1)]
    assert [r[0] for r in pick_examples(rows, 3)] == ["a", "c", "b"]


def test_strategy_at_scorer_specs_are_parsed_and_checked(tmp_path):
    from qstar.lab.sweep import SweepConfig, check_config, split_strategy

    assert split_strategy("best_of_n@checker", "prm") == ("best_of_n", "checker")
    assert split_strategy("beam", "prm") == ("beam", "prm")
    cfg = SweepConfig(out=str(tmp_path / "m.jsonl"), checkpoints=[str(tmp_path)], scorer="none",
                      strategies=["majority", "best_of_n@gut"])
    with pytest.raises(ValueError, match="unknown scorer 'gut'"):
        check_config(cfg)
    with pytest.raises(ValueError, match="is learned"):
        check_config(dataclasses.replace(cfg, strategies=["best_of_n@checker+prm"]))


def test_budget_caps_limit_a_strategy_to_its_cheap_budgets(tmp_path):
    from qstar.lab.sweep import budget_cap

    cfg = SweepConfig(out=str(tmp_path / "m.jsonl"), checkpoints=["a"], strategies=["majority", "beam/2"],
                      budgets=[1, 2, 4], seeds=[0])
    assert [(c["strategy"], c["budget"]) for c in grid(cfg)] == [
        ("majority", 1), ("beam/2", 1), ("majority", 2), ("beam/2", 2), ("majority", 4)]
    assert budget_cap("best_of_n@checker/32") == 32 and budget_cap("mcts") is None
    with pytest.raises(ValueError, match="budget cap"):
        budget_cap("beam/x")
