"""Data-parallel reward models and GRPO on CPU (gloo, 2 ranks): the same weights as one process at the same global
batch and seed, rank 0 alone writes, ``torchrun`` runs ``qstar train prm`` and ``qstar train grpo``, and a killed
GRPO run resumes (with the same number of processes only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch
from test_ddp import _free_port, _kill_all, assert_same_updates

from qstar.learn import distributed
from qstar.learn.distributed import World
from qstar.learn.grpo import GRPOConfig, train_grpo
from qstar.learn.reward_model import fit_reward
from qstar.model.checkpoint import load_checkpoint
from qstar.model.model import ModelConfig, Transformer
from qstar.model.tokenizer import CharTokenizer
from qstar.runio import read_jsonl
from qstar.scorers.learned import RewardModel, load_reward_model

# 5 problems split 3 + 2 over the ranks; dapo normalises by the batch's token count, which the ranks share unevenly;
# micro-batches of 6 rows cut a rank's groups into several backward passes
GRPO = dict(task="letters", problems_per_batch=5, group_size=4, max_completion_tokens=48, eval_problems=0, seconds=0,
            loss="dapo", micro_batch=6, max_updates=3, lr=5e-4, warmup_updates=1)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _spawned(rank: int, size: int, port: int, fn, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(size))
    torch.set_num_threads(1)
    distributed.init()
    fn(rank, *args)
    distributed.finish()


def _spawn(fn, *args) -> None:
    torch.multiprocessing.spawn(_spawned, args=(2, _free_port(), fn, args), nprocs=2)


def _reward_items() -> list[tuple[str, list[str], list[float]]]:
    from qstar.tasks import get_task
    from qstar.tasks.format import chain_steps

    task, items = get_task("decimals"), []
    for i, p in enumerate(task.generate(12, seed=0, split="train")):
        steps = chain_steps(task.reference(p))
        targets = [float((i + j) % 3 != 0) for j in range(len(steps))]
        targets[-1] = float("nan") if i % 4 == 0 else targets[-1]  # untrained positions weigh nothing
        items.append((p.question, steps, targets))
    return items


def _fit_reward(rank: int = 0, out: str = "") -> dict:
    torch.manual_seed(rank)  # ranks start from different weights: rank 0's must reach every rank
    model = RewardModel(Transformer(ModelConfig.preset("tiny")), kind="prm")
    fit_reward(model, CharTokenizer(), _reward_items(), steps=4, batch_size=5, lr=1e-3, warmup_steps=1, seed=0)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if out:
        torch.save(state, f"{out}/rank{rank}.pt")
    return state


def test_reward_model_two_ranks_match_one_process(tmp_path):
    # batches of 5 chains split 3 + 2, with different numbers of trained positions per rank
    _spawn(_fit_reward, str(tmp_path))
    one = _fit_reward()
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    torch.manual_seed(0)
    initial = RewardModel(Transformer(ModelConfig.preset("tiny")), kind="prm").state_dict()
    for name in one:
        assert torch.equal(ranks[0][name], ranks[1][name]), name
    assert_same_updates(ranks[0], one, initial)
    assert max((one[k] - initial[k]).abs().max() for k in one) > 1e-4  # the updates did move the weights


def _grpo(rank: int, init: str, out: str) -> None:
    train_grpo(GRPOConfig(init=init, out=out, **GRPO))


def test_grpo_two_ranks_match_one_process(tiny_checkpoint, tmp_path):
    _spawn(_grpo, str(tiny_checkpoint), str(tmp_path / "two"))
    one = train_grpo(GRPOConfig(init=str(tiny_checkpoint), out=str(tmp_path / "one"), **GRPO))
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert (one["world_size"], two["world_size"], two["updates"], two["skipped_updates"]) == (1, 2, 3, 0)
    rows = {k: read_jsonl(tmp_path / k / "metrics.jsonl") for k in ("one", "two")}
    assert [r["step"] for r in rows["two"]] == [1, 2, 3]  # rank 0 alone wrote
    for a, b in zip(rows["one"], rows["two"]):  # the same chains, and the ranks' shares add up to the batch's
        assert a["rl/reward_mean"] == b["rl/reward_mean"] and a["rl/response_len"] == b["rl/response_len"]
        for key in ("train/loss", "train/grad_norm", "rl/entropy"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
    a, b = (load_checkpoint(tmp_path / k / "checkpoint")[0].state_dict() for k in ("one", "two"))
    init = load_checkpoint(tiny_checkpoint)[0].state_dict()
    assert_same_updates(b, a, init)
    assert max((a[k] - init[k]).abs().max() for k in a) > 1e-4


def _torchrun(*args: str, log) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
           "-m", "qstar.cli", *args]
    return subprocess.Popen(cmd, env=ENV, stdout=log.open("w"), stderr=subprocess.STDOUT)


def test_torchrun_prm_matches_one_process(tiny_checkpoint, tmp_path):
    # rank 0 labels (the Monte-Carlo labels of one process) and shares them; 3 chains per batch split 2 + 1
    args = ["--init", str(tiny_checkpoint), "--task", "decimals", "--problems", "4", "--samples", "2", "--mc-samples",
            "2", "--max-steps", "3", "--batch-size", "3", "--eval-problems", "0"]
    log = tmp_path / "log"
    assert _torchrun("train", "prm", "--out", str(tmp_path / "two"), *args, log=log).wait(timeout=240) == 0, \
        log.read_text()
    subprocess.run([sys.executable, "-m", "qstar.cli", "train", "prm", "--out", str(tmp_path / "one"), *args],
                   env=ENV, check=True, capture_output=True)
    assert sum(line.startswith("{") for line in log.read_text().splitlines()) == 1  # one summary: rank 0's
    labels = [(tmp_path / k / "labels.jsonl").read_text() for k in ("one", "two")]
    assert labels[0] == labels[1] and len(labels[0].splitlines()) == 8
    (a, _, meta), (b, _, _) = (load_reward_model(tmp_path / k) for k in ("one", "two"))
    assert meta["metrics"]["world_size"] == 1 and json.loads((tmp_path / "two" / "summary.json").read_text())[
        "world_size"] == 2
    a, b = a.state_dict(), b.state_dict()
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-5) for k in a)


def test_killed_torchrun_grpo_resumes_and_refuses_another_world_size(tiny_checkpoint, tmp_path):
    out, log = tmp_path / "run", tmp_path / "log"
    args = ["train", "grpo", "--init", str(tiny_checkpoint), "--out", str(out), "--task", "letters",
            "--problems-per-batch", "3", "--group-size", "4", "--max-completion-tokens", "32", "--eval-problems", "0",
            "--save-every", "0"]
    proc = _torchrun(*args, "--max-updates", "100000", log=log)
    deadline = time.monotonic() + 120
    while not (out / "resume" / "optimizer.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    _kill_all(proc)
    meta = load_checkpoint(out / "resume")[2]
    k = meta["train_state"]["step"]
    assert meta["world_size"] == 2 and k >= 1, log.read_text()
    with pytest.raises(ValueError, match="written by 2 process"):
        train_grpo(GRPOConfig(init=str(tiny_checkpoint), out=str(out), task="letters", max_updates=k + 2))
    assert _torchrun(*args, "--max-updates", str(k + 2), log=log).wait(timeout=240) == 0, log.read_text()
    text = log.read_text()
    assert f"at update {k} " in text and text.count("resuming") == 1  # rank 0 alone speaks
    summary = json.loads((out / "summary.json").read_text())
    assert summary["updates"] == k + 2 and summary["world_size"] == 2 and not (out / "resume").exists()
    steps = [r["step"] for r in read_jsonl(out / "metrics.jsonl")]
    assert steps.count(k + 2) == 1 and set(steps) == set(range(1, k + 3))  # rank 0 alone wrote


def test_span_names_the_flag_and_one_process_sum_gradients_poisons():
    assert [list(distributed.span(5, World(r, 2))) for r in range(2)] == [[0, 1, 2], [3, 4]]
    assert list(distributed.span(4)) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="--problems-per-batch 3"):
        distributed.span(2, World(2, 3), flag="--problems-per-batch")
    lin = torch.nn.Linear(2, 1)
    lin(torch.ones(1, 2)).sum().backward()
    grads = [p.grad.clone() for p in lin.parameters()]
    distributed.sum_gradients(lin.parameters())  # one process: the gradient is the batch's already
    assert all(torch.equal(p.grad, g) for p, g in zip(lin.parameters(), grads))
    distributed.sum_gradients(lin.parameters(), poison=True)  # a non-finite loss: the update must be skipped
    assert not torch.isfinite(torch.nn.utils.clip_grad_norm_(lin.parameters(), 1.0))
