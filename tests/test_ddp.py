"""Data-parallel SFT on CPU (gloo): two ranks train the same weights as one process at the same global batch and
seed; a killed ``torchrun`` run resumes; a resume with another number of processes is refused."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from qstar.learn import distributed
from qstar.learn.distributed import World
from qstar.learn.sft import SFTConfig, fit, train_sft
from qstar.model.checkpoint import load_checkpoint
from qstar.model.model import ModelConfig, Transformer
from qstar.model.tokenizer import CharTokenizer

TOY = ["--task", "decimals", "--preset", "tiny", "--batch-size", "8", "--eval-problems", "4", "--eval-every", "0"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_same_updates(got: dict, want: dict, init: dict, *, rel: float = 1e-2) -> None:
    """Two runs made the same updates: per tensor, ``got`` is within ``rel`` of the distance ``want`` moved from
    ``init`` (in norm). Adam and Muon scale each update to about lr, so an element whose gradient is float noise can
    step either way under another kernel set (LOG.md, 2026-12-04: an element 1.3e-5 apart with AVX-512); a norm over
    the tensor lets no single element decide, while a real error (a rank's share counted twice) moves whole tensors."""
    for k, w in want.items():
        moved = (w - init[k]).norm()
        assert (got[k] - w).norm() <= rel * moved + 1e-7, (k, float((got[k] - w).norm()), float(moved))


def _examples() -> list[tuple[str, str]]:
    from qstar.tasks import get_task

    task = get_task("decimals")
    return [(p.question, task.reference(p)) for p in task.generate(64, seed=0, split="train")]


def _train(steps: int, batch_size: int) -> dict:
    torch.manual_seed(distributed.world().rank)  # ranks start from different weights: DDP must broadcast rank 0's
    model = Transformer(ModelConfig.preset("tiny"))
    fit(model, CharTokenizer(), _examples(), steps=steps, batch_size=batch_size, optimizer="muon", lr=3e-3,
        warmup_steps=1, seed=0)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _rank(rank: int, size: int, port: int, out: str, steps: int, batch_size: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(size))
    torch.set_num_threads(1)
    distributed.init()
    torch.save(_train(steps, batch_size), f"{out}/rank{rank}.pt")
    distributed.finish()


def test_two_gloo_ranks_match_one_process(tmp_path):
    # 7 rows split 4 + 3: the ranks hold different numbers of trained tokens, and the update must not care
    steps, batch_size = 4, 7
    torch.multiprocessing.spawn(_rank, args=(2, _free_port(), str(tmp_path), steps, batch_size), nprocs=2)
    one = _train(steps, batch_size)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for name in one:
        assert torch.equal(ranks[0][name], ranks[1][name]), name  # the ranks never drift apart
    torch.manual_seed(0)
    initial = Transformer(ModelConfig.preset("tiny")).state_dict()
    assert_same_updates(ranks[0], one, initial)
    assert max((one[k] - initial[k]).abs().max() for k in one) > 1e-3  # the updates did move the weights


def test_shard_splits_rows_and_check_resume_refuses_other_sizes():
    batch = torch.arange(7)
    parts = [distributed.shard(batch, World(r, 2)).tolist() for r in range(2)]
    assert parts == [[0, 1, 2, 3], [4, 5, 6]]
    with pytest.raises(ValueError, match="--batch-size 3"):
        distributed.shard(torch.arange(2), World(0, 3))
    distributed.check_resume(2, World(1, 2))
    with pytest.raises(ValueError, match="written by 2 process.*--nproc-per-node 2"):
        distributed.check_resume(2, World(0, 1))


def _torchrun(out, log, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
           "-m", "qstar.cli", "train", "sft", "--out", str(out), *TOY, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _kill_all(launcher: subprocess.Popen) -> None:
    """SIGKILL torchrun's launcher and its ranks (each rank runs in its own session, so no process group holds all)."""
    ranks = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout.split()
    launcher.kill()
    launcher.wait()
    for pid in map(int, ranks):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_killed_torchrun_run_resumes_and_refuses_another_world_size(tmp_path):
    out, log = tmp_path / "run", tmp_path / "log"
    proc = _torchrun(out, log, "--max-steps", "100000", "--save-every", "0")
    deadline = time.monotonic() + 120
    while not (out / "resume" / "config.json").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    _kill_all(proc)  # mid-training, no chance to clean up
    assert not (out / "summary.json").exists(), log.read_text()
    meta = load_checkpoint(out / "resume")[2]
    k = meta["train_state"]["step"]
    assert meta["world_size"] == 2 and k >= 1
    with pytest.raises(ValueError, match="written by 2 process"):
        train_sft(SFTConfig(out=str(out), task="decimals", preset="tiny", max_steps=k + 2))
    resumed = _torchrun(out, log, "--max-steps", str(k + 2))
    assert resumed.wait(timeout=240) == 0, log.read_text()
    text = log.read_text()
    assert f"at step {k} " in text and text.count("resuming") == 1  # rank 0 alone speaks
    summary = load_checkpoint(out / "checkpoint")[2]["metrics"]
    assert summary["steps"] == k + 2 and summary["world_size"] == 2
    assert not (out / "resume").exists()


def test_commands_that_are_not_data_parallel_refuse_a_torchrun_launch(monkeypatch, capsys):
    from qstar.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "value", "--out", "unused"]) == 2
    assert "does not run data-parallel under torchrun" in capsys.readouterr().err
