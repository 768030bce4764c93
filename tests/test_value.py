"""The learned value and the AlphaZero loop: Monte-Carlo returns on a scripted policy, targets from a golden search
tree, the loop end to end at toy size on the session's tiny checkpoint (value scorer, round checkpoints, resume after
a kill), and values that belong to another architecture or tokenizer."""

from __future__ import annotations

import json
import math

import pytest

from qstar.learn import alphazero as az
from qstar.learn.alphazero import AlphaZeroConfig, train_alphazero
from qstar.learn.value import (
    ValueConfig,
    load_value,
    mc_items,
    save_value,
    train_value,
    tree_items,
    tree_targets,
    verified_in_trees,
)
from qstar.model.checkpoint import load_checkpoint
from qstar.model.model import ModelConfig, Transformer
from qstar.model.tokenizer import CharTokenizer
from qstar.model.types import Completion
from qstar.scorers import get_scorer
from qstar.scorers.learned import RewardModel, save_reward_model
from qstar.search.nodes import SearchTree, tree_to_json
from qstar.tasks import get_task

TASK = get_task("decimals")
P = TASK.generate(1, seed=0)[0]
RIGHT, WRONG = f"Answer: {P.answer}", "Answer: 0.5"


class ScriptedPolicy:
    """Completions by prompt prefix: ``script[partial]`` is cycled over the n samples of each prompt."""

    name, params = "scripted", 0

    def __init__(self, script):
        self.script, self.calls = script, []

    def sample(self, prompts, *, n=1, **kw):
        self.calls += [p.partial for p in prompts]
        return [[Completion(self.script[p.partial][i % len(self.script[p.partial])]) for i in range(n)]
                for p in prompts]


def test_monte_carlo_returns_of_a_scripted_policy():
    # rollouts: a right chain "s1, s2, answer" and a wrong one "t1, answer"; from "s1" half the completions are
    # right, from "s1 s2" all are, from "t1" none
    policy = ScriptedPolicy({
        "": [f"s1\ns2\n{RIGHT}", f"t1\n{WRONG}"],
        "s1\n": [f"s2\n{RIGHT}", f"s2\n{WRONG}"],
        "s1\ns2\n": [RIGHT],
        "t1\n": [WRONG],
    })
    items, verified = mc_items(policy, [P], samples=2, mc_samples=4, temperature=1.0, max_tokens=64)
    assert items == [(P.question, ["s1", "s2", RIGHT], [0.5, 1.0, 1.0]),  # the answer line: the outcome itself
                     (P.question, ["t1", WRONG], [0.0, 0.0])]
    assert verified == [(P.question, f"s1\ns2\n{RIGHT}")]
    # each distinct prefix is rolled out once (one batched call for all of them)
    assert sorted(policy.calls) == ["", "s1\n", "s1\ns2\n", "t1\n"]


def golden_tree() -> SearchTree:
    t = SearchTree()
    a = t.add(0, "a")
    a.visits, a.value_sum = 3, 3 * 0.9  # the search believed 0.9 below a
    right = t.add(a.id, RIGHT, terminal=True)
    right.visits = 2
    wrong = t.add(a.id, WRONG, terminal=True)
    wrong.visits = 1
    dead = t.add(0, "", terminal=True)  # an empty step: a dead end
    dead.visits = 1
    open_ = t.add(0, "c")  # expanded, never finished: no outcome below it
    open_.visits, open_.value_sum = 1, 0.4
    return t


def test_tree_targets_back_up_verified_outcomes_weighted_by_visits():
    t = golden_tree()
    # a: (2 visits x right 1 + 1 visit x wrong 0) / 3 = 2/3; the answers themselves 1 and 0; the dead end 0; c none
    assert tree_targets(t, P) == pytest.approx({1: 2 / 3, 2: 1.0, 3: 0.0, 4: 0.0})
    # mixing in the search's value: a -> 0.5 * 2/3 + 0.5 * 0.9; the dead end's value is 0 too
    mixed = tree_targets(t, P, search_weight=0.5)
    assert mixed[1] == pytest.approx(0.5 * 2 / 3 + 0.5 * 0.9) and mixed[4] == 0.0
    with pytest.raises(ValueError, match="search_weight"):
        tree_targets(t, P, search_weight=2.0)
    items = tree_items([tree_to_json(t)], [P])
    # one item per leaf, each node targeted once; c's leaf has no target at all and is dropped
    assert [(s, [None if math.isnan(x) else round(x, 6) for x in ts]) for _, s, ts in items] == [
        (["a", RIGHT], [round(2 / 3, 6), 1.0]), (["a", WRONG], [None, 0.0]), ([""], [0.0])]
    assert verified_in_trees([tree_to_json(t)], [P], max_per_problem=2) == [(P.question, f"a\n{RIGHT}")]


TOY = dict(task="decimals", rounds=2, problems=3, budget=2, width=2, samples=2, mc_samples=2, value_steps=3,
           policy_steps=2, batch_size=4, eval_problems=2)


def test_alphazero_loop_end_to_end_and_resume(tiny_checkpoint, tmp_path, dies_on_call, capsys):
    out = tmp_path / "az"
    cfg = AlphaZeroConfig(init=str(tiny_checkpoint), out=str(out), **TOY)
    # a kill during round 2's value training: round 1 is finished, round 2 never wrote its summary
    real = az.fit_value
    az.fit_value = dies_on_call(real, 2)
    try:
        with pytest.raises(KeyboardInterrupt):
            train_alphazero(cfg)
    finally:
        az.fit_value = real
    assert (out / "az-round-1" / "summary.json").exists() and not (out / "az-round-2" / "summary.json").exists()
    round1 = (out / "az-round-1" / "value" / "model.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    s = train_alphazero(cfg)
    assert "round 1 already done" in capsys.readouterr().err
    assert (out / "az-round-1" / "value" / "model.safetensors").stat().st_mtime_ns == round1
    assert [r["round"] for r in s["rounds"]] == [1, 2] and s["value"] == str(out / "az-round-2" / "value")
    for k in (1, 2):
        r = s["rounds"][k - 1]
        assert r["value/items"] > 0 and r["value/steps"] == 3
        for key in ("eval/greedy_accuracy", "eval/search_accuracy", "eval/best_of_n_accuracy"):
            assert 0.0 <= r[key] <= 1.0
        assert load_checkpoint(out / f"az-round-{k}" / "checkpoint")[2]["stage"] == f"az-round-{k}"
    assert json.loads((out / "value-0" / "summary.json").read_text())["kind"] == "value"
    # the trained value serves as the registered scorer "value", a learned one, on chains and on partial chains
    scorer = get_scorer("value", checkpoint=str(out / "az-round-2" / "value"))
    assert scorer.name == "value" and scorer.scorer_kind == "learned"
    chain = TASK.reference(P)
    (score,) = scorer.score([P], [chain])
    (steps,) = scorer.score_steps([P], [chain.splitlines()])
    assert 0.0 <= score <= 1.0 and score == pytest.approx(steps[-1])  # a chain's score is its last step's value
    with pytest.raises(ValueError, match="already holds a finished run"):
        train_alphazero(cfg)


def test_values_of_another_architecture_or_tokenizer_are_refused(tiny_checkpoint, tmp_path):
    from qstar.cli import main

    tok = CharTokenizer()
    other = ModelConfig.preset("tiny", n_layers=2)
    save_value(tmp_path / "other", RewardModel(Transformer(other), kind="value"), tok, policy_cfg=other,
               meta={"stage": "value"})
    with pytest.raises(ValueError, match=r"another architecture \(n_layers 2 vs 4\)"):
        train_alphazero(AlphaZeroConfig(init=str(tiny_checkpoint), value_init=str(tmp_path / "other"),
                                        out=str(tmp_path / "az"), **TOY))
    assert main(["train", "alphazero", "--init", str(tiny_checkpoint), "--value-init", str(tmp_path / "other"),
                 "--task", "decimals", "--out", str(tmp_path / "az2")]) == 2
    with pytest.raises(ValueError, match="another architecture"):
        train_value(ValueConfig(init=str(tiny_checkpoint), value_init=str(tmp_path / "other"), task="decimals",
                                out=str(tmp_path / "v")))
    assert main(["train", "value", "--out", str(tmp_path / "v2")]) == 2  # no --init policy
    # a process reward model is not a value; neither is a value whose tokenizer is not qstar's
    save_reward_model(tmp_path / "prm", RewardModel(Transformer(other), kind="prm"), tok, meta={"stage": "prm"})
    with pytest.raises(ValueError, match="prm reward model, not a value model"):
        load_value(tmp_path / "prm")
    spec = json.loads((tmp_path / "other" / "tokenizer.json").read_text())
    spec["model"]["vocab"]["@"] = 999
    (tmp_path / "other" / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="value model .*tokenizer"):
        load_value(tmp_path / "other")
