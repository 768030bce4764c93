"""Shared fixtures. ``tiny_checkpoint`` is a real model trained in the test session (a few seconds), used by every
integration test that needs a checkpoint: search strategies, serving, learning stages, the lab."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "qstar" / "tasks" / "data"


def tiny_examples(n_per_task: int = 300, seed: int = 0) -> list[tuple[str, str]]:
    """(question, reference chain) pairs from three easy task families."""
    from qstar.tasks import get_task

    tasks = [get_task("decimals"), get_task("letters"), get_task("mult", digits=(2, 2))]
    out = []
    for task in tasks:
        for p in task.generate(n_per_task, seed=seed, split="train"):
            out.append((p.question, task.reference(p)))
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """HF checkpoint dir of a 0.2M-param model SFT-trained for 200 steps on decimals, letters and 2x2 mult."""
    import torch

    from qstar.learn.sft import fit
    from qstar.model.checkpoint import save_checkpoint
    from qstar.model.model import ModelConfig, Transformer
    from qstar.model.tokenizer import CharTokenizer

    torch.manual_seed(0)
    model, tok = Transformer(ModelConfig.preset("tiny")), CharTokenizer()
    stats = fit(model, tok, tiny_examples(), steps=200, lr=3e-3, batch_size=32, bf16=False, seed=0)
    out = tmp_path_factory.mktemp("tiny") / "checkpoint"
    save_checkpoint(out, model, tok, meta={"stage": "sft", "metrics": {"loss": stats["loss"]}})
    return out


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The benchmark files shipped in the package (GSM8K, MATH-500, Countdown, ...), at qstar/tasks/data."""
    return DATA


@pytest.fixture
def dies_on_call():
    """``dies_on_call(fn, n)``: a wrapper of ``fn`` that raises KeyboardInterrupt (a kill) on its n-th call."""

    def make(fn, n: int):
        calls = []

        def wrapper(*args, **kw):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return fn(*args, **kw)

        return wrapper

    return make


@pytest.fixture(scope="session")
def ray_session():
    """One local 2-CPU Ray cluster for the whole run (starting one takes seconds), shut down at the end. Ray is in
    the dev extras, so a missing Ray fails here rather than skipping."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield ray
    ray.shutdown()
