"""`qstar eval`, `qstar relabel`, PRM labelling and expert iteration through the executor seam: one in-process worker
and a two-process pool (and, for eval, Ray actors) give the same results on the tiny checkpoint, and a shard whose
worker failed is run again (or reported, the rest written, and redone by a rerun)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import qstar.tasks as T
from qstar.cli import main
from qstar.config import parse_config
from qstar.lab.eval import EvalConfig, run_eval
from qstar.lab.relabel import RelabelConfig, run_relabel
from qstar.learn.expert_iteration import ExpertIterationConfig, train_expert_iteration
from qstar.learn.reward_model import RewardConfig, train_prm


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Six decimals problems (a task the tiny checkpoint was trained on) as a user's JSONL."""
    f = tmp_path_factory.mktemp("data") / "dec.jsonl"
    problems = T.get_task("decimals").generate(6, seed=3, split="test")
    f.write_text("".join(json.dumps({"q": p.question, "a": p.answer}) + "\n" for p in problems))
    return f


def eval_cfg(tiny_checkpoint, data, out, **kw) -> EvalConfig:
    """Majority of 2 over three shards of two problems."""
    return EvalConfig(data=str(data), fields="question=q,answer=a", checkpoint=str(tiny_checkpoint), out=str(out),
                      strategy="majority", budget=2, max_tokens=48, batch=2, **kw)


def rows(path: Path) -> list[dict]:
    """Result lines by index (a pool writes shards in the order they finish)."""
    return sorted((json.loads(x) for x in path.read_text().splitlines()), key=lambda r: r["index"])


@pytest.fixture(scope="module")
def local_run(tiny_checkpoint, data, tmp_path_factory) -> Path:
    """The evaluation on one in-process worker: its output directory."""
    out = tmp_path_factory.mktemp("eval") / "local"
    assert run_eval(eval_cfg(tiny_checkpoint, data, out)) == 0
    return out


@pytest.fixture(scope="module")
def local_eval(local_run) -> list[dict]:
    return rows(local_run / "results.jsonl")


def test_every_command_takes_the_executor_flags():
    from qstar.lab.sweep import SweepConfig

    flags = ["--executor", "ray", "--ray-address", "auto", "--workers", "3", "--retries", "1"]
    for cls in (SweepConfig, EvalConfig, RelabelConfig, RewardConfig, ExpertIterationConfig):
        cfg = parse_config(cls, flags)
        assert (cfg.executor, cfg.ray_address, cfg.workers, cfg.retries) == ("ray", "auto", 3, 1), cls
    with pytest.raises(SystemExit):  # a name outside qstar.executor.EXECUTORS
        parse_config(EvalConfig, ["--executor", "slurm"])


def test_inherited_flags_keep_their_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "expert-iteration", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Parallel workers (pool processes or Ray actors" in text and "Ray cluster to join" in text


def test_eval_in_a_pool_matches_one_worker(local_eval, tiny_checkpoint, data, tmp_path):
    assert run_eval(eval_cfg(tiny_checkpoint, data, tmp_path / "pool", workers=2)) == 0
    assert rows(tmp_path / "pool" / "results.jsonl") == local_eval and len(local_eval) == 6


def test_eval_on_ray_matches_local_and_resumes(ray_session, local_run, local_eval, tiny_checkpoint, data, tmp_path):
    out = tmp_path / "ray"
    out.mkdir()  # a local run killed after its first shard: Ray actors do the other two
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in local_eval[:2]))
    (out / "eval.json").write_text((local_run / "eval.json").read_text())
    assert run_eval(eval_cfg(tiny_checkpoint, data, out, executor="ray", workers=2)) == 0
    assert rows(out / "results.jsonl") == local_eval


def test_a_failed_eval_shard_is_retried_then_reported_and_redone(local_eval, tiny_checkpoint, data, tmp_path,
                                                                 monkeypatch):
    import qstar.lab.eval as E

    solve, calls = E._solve, []

    def flaky(cfg, policy, scorer, shard, knobs):  # the shard of problems 2-3 fails while `bad` says so
        calls.append(shard[0][0])
        if shard[0][0] == 2 and bad and (bad[0] == "always" or calls.count(2) == 1):
            raise RuntimeError("worker out of memory")
        return solve(cfg, policy, scorer, shard, knobs)

    monkeypatch.setattr(E, "_solve", flaky)
    bad = ["once"]
    assert run_eval(eval_cfg(tiny_checkpoint, data, tmp_path / "once", retries=1)) == 0
    assert rows(tmp_path / "once" / "results.jsonl") == local_eval and calls.count(2) == 2
    bad[0], cfg = "always", eval_cfg(tiny_checkpoint, data, tmp_path / "always", retries=1)
    with pytest.raises(RuntimeError, match="1 shards failed after 2 attempts.*problems from 2.*out of memory"):
        run_eval(cfg)
    assert [r["index"] for r in rows(tmp_path / "always" / "results.jsonl")] == [0, 1, 4, 5]
    bad.clear()
    calls.clear()
    assert run_eval(cfg) == 0 and calls == [2]  # the rerun solves only the failed shard
    assert rows(tmp_path / "always" / "results.jsonl") == local_eval


def test_relabel_in_a_pool_matches_one_worker(tiny_checkpoint, data, tmp_path):
    def run(name: str, workers: int) -> tuple[list[dict], list[dict]]:
        out = tmp_path / name / "chains.jsonl"
        run_relabel(RelabelConfig(out=str(out), data=str(data), fields="question=q,answer=a",
                                  checkpoint=str(tiny_checkpoint), strategy="majority", budget=2, attempts=2,
                                  max_tokens=48, batch=2, workers=workers))
        return rows(out), rows(out.with_name("chains.unsolved.jsonl"))

    one, two = run("one", 1), run("two", 2)
    assert one == two and len(one[0]) + len(one[1]) == 6


def small_shards(monkeypatch):
    monkeypatch.setattr("qstar.learn.shards.SHARD", 2)  # three shards of the six problems


def test_prm_labels_in_a_pool_match_one_worker_and_a_failed_shard_is_retried(tiny_checkpoint, tmp_path,
                                                                            monkeypatch):
    import qstar.learn.reward_model as R

    small_shards(monkeypatch)
    common = dict(init=str(tiny_checkpoint), task="decimals", problems=6, samples=2, mc_samples=2, max_steps=1,
                  batch_size=4, eval_problems=0)
    train_prm(RewardConfig(out=str(tmp_path / "one"), **common))
    train_prm(RewardConfig(out=str(tmp_path / "two"), workers=2, **common))
    one = (tmp_path / "one" / "labels.jsonl").read_text()
    assert one == (tmp_path / "two" / "labels.jsonl").read_text() and len(one.splitlines()) == 12

    label, failures = R.label_chains, []

    def fails_once(policy, problems, **kw):  # a worker's shard (no executor): the first one raises
        if "executor" not in kw and not failures:
            failures.append(1)
            raise RuntimeError("worker died")
        return label(policy, problems, **kw)

    monkeypatch.setattr(R, "label_chains", fails_once)
    train_prm(RewardConfig(out=str(tmp_path / "retried"), **common))
    assert failures and (tmp_path / "retried" / "labels.jsonl").read_text() == one


def test_expert_iteration_in_a_pool_matches_one_worker(tiny_checkpoint, tmp_path, monkeypatch):
    small_shards(monkeypatch)
    common = dict(init=str(tiny_checkpoint), task="decimals", rounds=1, problems=6, samples=2, steps=1, batch_size=4,
                  eval_problems=2, eval_samples=0)
    one = train_expert_iteration(ExpertIterationConfig(out=str(tmp_path / "one"), **common))
    two = train_expert_iteration(ExpertIterationConfig(out=str(tmp_path / "two"), workers=2, **common))
    kept = (tmp_path / "one" / "ei-round-1" / "kept.jsonl")
    assert one["kept_total"] > 0 and kept.read_text() == (tmp_path / "two" / "ei-round-1" / "kept.jsonl").read_text()
    assert one["final_greedy_accuracy"] == two["final_greedy_accuracy"]
