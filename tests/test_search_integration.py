"""Every strategy on a real tiny checkpoint (conftest's ``tiny_checkpoint``): well-formed results, ledgers that add
up to the model's own token counts, trees that round-trip, and the ``qstar search`` entrypoint end to end."""

from __future__ import annotations

import json

import pytest

from qstar.scorers import get_scorer
from qstar.search import STRATEGIES, get_strategy, tree_from_json, tree_to_json
from qstar.search.cli import SearchConfig, run_search
from qstar.tasks import get_task


class Counting:
    """Wraps a real policy and totals the tokens it reports."""

    def __init__(self, policy):
        self.policy, self.name, self.params = policy, policy.name, policy.params
        self.generated = self.prompt = self.calls = 0

    def sample(self, prompts, **kw):
        out = self.policy.sample(prompts, **kw)
        self.calls += 1
        self.generated += sum(c.n_tokens for row in out for c in row)
        self.prompt += sum(c.prompt_tokens for row in out for c in row)
        return out


@pytest.fixture(scope="module")
def policy(tiny_checkpoint):
    import torch

    from qstar.model.policy import ModelPolicy

    torch.manual_seed(0)
    return ModelPolicy.from_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module")
def problems():
    return (get_task("mult", digits=(2, 2)).generate(2, seed=1, split="test")
            + get_task("letters").generate(1, seed=1, split="test")
            + get_task("decimals").generate(1, seed=1, split="test"))


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_on_a_real_checkpoint(name, policy, problems):
    counting, scorer = Counting(policy), get_scorer("checker")
    opts = {"max_tokens": 64} | ({"width": 2, "max_steps": 12} if STRATEGIES[name].tree else {})
    results = get_strategy(name)(counting, scorer, problems, 4, **opts)
    assert len(results) == len(problems)
    assert sum(r.ledger.generated_tokens for r in results) == counting.generated > 0
    assert sum(r.ledger.prompt_tokens for r in results) == counting.prompt
    assert counting.calls <= 40  # batched over problems: a handful of calls, not one per node
    for p, r in zip(problems, results):
        assert r.answer is None or (isinstance(r.answer, str) and r.answer == get_task(p.task).extract_answer(r.chain))
        assert r.ledger.flops == pytest.approx(2 * policy.params * (r.ledger.generated_tokens + r.ledger.prompt_tokens))
        assert r.ledger.seconds > 0 and r.info["scorer"] == "checker" and r.info["oracle"] is False
        if STRATEGIES[name].tree:
            json.dumps(r.tree, allow_nan=False)
            assert tree_to_json(tree_from_json(r.tree)) == r.tree
            chosen = r.tree["chosen"]
            assert chosen[0] == 0 and all(r.tree["nodes"][b]["parent"] == a for a, b in zip(chosen, chosen[1:]))


def test_qstar_search_writes_summary_and_results(tiny_checkpoint, tmp_path):
    cfg = SearchConfig(checkpoint=str(tiny_checkpoint), task="letters", strategy="best_of_n", budget=2, problems=3,
                       out=str(tmp_path), scorer="oracle", max_tokens=64)
    summary = run_search(cfg)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    for key in ("strategy", "budget", "accuracy", "ci_low", "ci_high", "tokens_per_problem", "flops_per_problem",
                "scorer", "oracle"):
        assert key in on_disk
    assert on_disk["oracle"] is True and "ORACLE" in on_disk["label"]
    assert on_disk["ci_low"] <= on_disk["accuracy"] <= on_disk["ci_high"]
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and {"answer", "correct", "chain", "ledger"} <= set(rows[0])
    assert on_disk["accuracy"] == sum(r["correct"] for r in rows) / 3
    with pytest.raises(ValueError, match="unknown strategy"):
        run_search(SearchConfig(checkpoint=str(tiny_checkpoint), strategy="telepathy", out=str(tmp_path)))
    with pytest.raises(ValueError, match="unknown scorer"):
        run_search(SearchConfig(checkpoint=str(tiny_checkpoint), scorer="vibes", out=str(tmp_path)))
    with pytest.raises(ValueError, match="unknown decode dtype 'fp8'; choose from float32, bfloat16"):
        run_search(SearchConfig(checkpoint=str(tiny_checkpoint), decode_dtype="fp8", out=str(tmp_path)))


def test_qstar_search_decodes_in_bf16(tiny_checkpoint, tmp_path):
    cfg = SearchConfig(checkpoint=str(tiny_checkpoint), task="letters", strategy="majority", budget=2, problems=3,
                       out=str(tmp_path), max_tokens=64, decode_dtype="bfloat16")
    summary = run_search(cfg)
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and summary["tokens_per_problem"] > 0 and all(r["chain"] for r in rows)


def test_qstar_search_defaults_to_the_checkpoints_task(tiny_checkpoint, tmp_path, capsys):
    from qstar.model.checkpoint import load_checkpoint, save_checkpoint

    model, tok, _ = load_checkpoint(tiny_checkpoint)
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoint", model, tok, meta={"stage": "sft", "config": {"task": "decimals"}})
    base = dict(checkpoint=str(run), strategy="greedy", budget=1, problems=2, max_tokens=48)
    assert run_search(SearchConfig(**base, out=str(tmp_path / "a")))["task"] == "decimals"
    assert "trained on task" not in capsys.readouterr().err
    assert run_search(SearchConfig(**base, task="letters", out=str(tmp_path / "b")))["task"] == "letters"
    assert "trained on task 'decimals'; evaluating it on task 'letters'" in capsys.readouterr().err
