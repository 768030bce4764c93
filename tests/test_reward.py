"""Reward models: Math-Shepherd MC labels (scripted policy, hand-computed), the learned scorer protocol and its
save/load round trip, a tiny PRM fit that lowers its loss, AUC / selection maths, and train_prm/train_orm end to end
on the session's tiny checkpoint."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from qstar.learn.reward_eval import auc, reward_loss, selection_accuracy
from qstar.learn.reward_model import (
    RewardConfig,
    fit_reward,
    mc_step_labels,
    planted_error_records,
    reward_items,
    train_orm,
    train_prm,
)
from qstar.model.checkpoint import CheckpointError, save_checkpoint
from qstar.model.model import ModelConfig, Transformer
from qstar.model.policy import ModelPolicy
from qstar.model.tokenizer import CharTokenizer
from qstar.model.types import Completion
from qstar.scorers import get_scorer
from qstar.scorers.learned import (
    LearnedScorer,
    RewardModel,
    encode_steps,
    load_reward_model,
    load_scorer,
    save_reward_model,
)
from qstar.search import get_strategy
from qstar.search.types import Scorer
from qstar.tasks import get_task
from qstar.tasks.base import Problem
from qstar.tasks.format import chain_steps


class TablePolicy:
    """Returns scripted completions by partial chain (cycled to n); records every prompt it was asked for."""

    name, params = "table", 0

    def __init__(self, table: dict[str, list[str]]):
        self.table, self.prompts = table, []

    def sample(self, prompts, *, n=1, temperature=1.0, top_p=1.0, max_tokens=256, stop_at_step=False):
        self.prompts += [p.partial for p in prompts]
        return [[Completion(self.table[p.partial][i % len(self.table[p.partial])]) for i in range(n)]
                for p in prompts]


def mult_problem(a=12, b=34) -> Problem:
    return Problem("mult", f"What is {a} times {b}?", str(a * b), f"mult:{a}*{b}", {"a": a, "b": b})


def test_mc_labels_hand_computed():
    p = mult_problem()  # 12*34 = 408; reference steps: "12*34", "21*43", "4:...", "3:... 8040"
    s0, s1, s2, s3 = get_task("mult").steps(p)
    h = f"{s0}\n"
    right, wrong = f"{s2}\n{s3}\nAnswer: 408", "Answer: 400"
    policy = TablePolicy({
        h: [f"{s1}\n{right}"],  # 4 of 4
        f"{h}{s1}\n": [right, wrong, "no answer", right],  # 2 of 4 -> soft .5, hard 1
        f"{h}{s1}\n{s2}\n": ["Answer: 1"],  # 0 of 4
        f"{h}{s1}\n{s2}\n{s3}\n": ["Answer: 408", "Answer: 408", "Answer: 408", "Answer: 9"],  # 3 of 4
        f"{h}{s1}\nbad\n": ["Answer: 408", "x"],  # 2 of 4
    })
    chains = [f"{h}{s1}\n{s2}\n{s3}\nAnswer: 408", f"{h}{s1}\nbad\nAnswer: 7"]
    labels = mc_step_labels(policy, [p, p], chains, k=4, temperature=1.0, max_tokens=64)
    assert labels[0] == {"steps": [s0, s1, s2, s3, "Answer: 408"], "outcome": 1.0,
                         "soft": [1.0, 0.5, 0.0, 0.75, 1.0], "hard": [1.0, 1.0, 0.0, 1.0, 1.0]}
    assert labels[1] == {"steps": [s0, s1, "bad", "Answer: 7"], "outcome": 0.0,
                         "soft": [1.0, 0.5, 0.5, 0.0], "hard": [1.0, 1.0, 1.0, 0.0]}
    assert sorted(policy.prompts) == sorted(set(policy.prompts))  # the shared prefix s1 was sampled once
    items = reward_items([{"problem": p.to_json(), **lab} for lab in labels], kind="orm")
    assert items[1][2] == [0.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="k >= 1"):
        mc_step_labels(policy, [p], chains[:1], k=0, temperature=1.0, max_tokens=8)


def tiny_reward(kind: str, seed: int = 0) -> RewardModel:
    torch.manual_seed(seed)
    model = RewardModel(Transformer(ModelConfig.preset("tiny")), kind=kind)
    torch.nn.init.normal_(model.head.weight, std=0.5)
    return model.eval()


@pytest.mark.parametrize("name", ["mult", "letters", "countdown"])
def test_planted_errors_are_labelled_exactly(name):
    task = get_task(name)
    problems = task.generate(4, seed=3, split="train")
    recs = planted_error_records(task, problems, seed=1)
    assert len(recs) == 8
    for p, ref, bad in zip(problems, recs[0::2], recs[1::2]):
        assert ref["steps"][-1].startswith("Answer: ") and ref["soft"] == [1.0] * len(ref["steps"])
        assert ref["outcome"] == 1.0 and task.verify(p, task.extract_answer(ref["chain"]))
        first = bad["soft"].index(0.0)  # the planted step: right before it, wrong from it on, answer included
        assert bad["steps"][:first] == ref["steps"][:first] and bad["steps"][first] != ref["steps"][first]
        assert bad["soft"] == [1.0] * first + [0.0] * (len(bad["steps"]) - first) == bad["hard"]
        assert bad["outcome"] == 0.0 and not task.verify(p, task.extract_answer(bad["chain"]))
    items = reward_items(recs, kind="prm")
    assert [len(steps) for _, steps, _ in items] == [len(r["steps"]) for r in recs]


def test_encode_reads_step_ends():
    tok = CharTokenizer()
    ids, reads = encode_steps(tok, "Q?", ["a b", "cd", "Answer: 5"])
    assert [ids[r] for r in reads] == [tok.newline_id, tok.newline_id, tok.eos_id]
    assert tok.decode(ids[: reads[0] + 1]) == "Q?\na b\n"
    assert chain_steps("x\n\ny\nAnswer: 3\ntrailing") == ["x", "y", "Answer: 3"]
    ids, reads = encode_steps(tok, "Q?", ["a" * 50, "Answer: 1"], max_len=20)
    assert len(ids) == 20 and reads == [19, 19]


def test_scorer_protocol_and_round_trip(tmp_path):
    tok, p = CharTokenizer(), mult_problem()
    chains = ["21*43\n4:8400\n3:0630 8040\nAnswer: 408", "21*43\n4:8400\nAnswer: 99", "", "junk\x00\n\n\nno answer"]
    for kind in ("prm", "orm"):
        model = tiny_reward(kind, seed=len(kind))
        scorer = LearnedScorer(model, tok, aggregation="min")
        assert isinstance(scorer, Scorer) and not scorer.oracle and scorer.params == model.num_params()
        scores = scorer.score([p] * 4, chains)
        steps = scorer.score_steps([p] * 4, [chain_steps(c) for c in chains])
        assert [len(s) for s in steps] == [4, 3, 0, 2] and scores[2] == 0.0
        assert all(0 < x < 1 for row in steps for x in row)
        agg = (lambda s: s[-1]) if kind == "orm" else min
        assert scores[:2] == pytest.approx([agg(s) for s in steps[:2]], abs=1e-6)
        # causal: a step's score does not depend on the steps after it (padding and batching included)
        prefix = scorer.score_steps([p], [chain_steps(chains[0])[:2]])[0]
        assert prefix == pytest.approx(steps[0][:2], abs=1e-5)
        save_reward_model(tmp_path / kind, model, tok, meta={"stage": kind, "config": {"aggregation": "min"}})
        again = get_scorer(kind, checkpoint=str(tmp_path / kind))
        assert again.score([p] * 4, chains) == pytest.approx(scores, abs=1e-6)
        assert load_reward_model(tmp_path / kind)[2]["stage"] == kind
    with pytest.raises(ValueError, match="holds a prm reward model"):
        load_scorer("orm", checkpoint=tmp_path / "prm")
    with pytest.raises(ValueError, match="needs checkpoint"):
        load_scorer("prm")
    with pytest.raises(ValueError, match="aggregation"):
        LearnedScorer(tiny_reward("prm"), tok, aggregation="max")
    save_checkpoint(tmp_path / "policy", Transformer(ModelConfig.preset("tiny")), tok, meta={"stage": "sft"})
    with pytest.raises(CheckpointError, match="not a reward model"):
        load_scorer("prm", checkpoint=tmp_path / "policy")


def test_tiny_prm_fit_lowers_loss():
    # PRM targets: 1 for reference steps; a chain whose steps turn into scrambled text is 0 from the first such step
    import random

    task, rng = get_task("mult", digits=(2, 2)), random.Random(0)
    items = []
    for p in task.generate(32, seed=0):
        ref = task.steps(p)
        i = rng.randrange(len(ref))
        bad = ref[:i] + ["".join(rng.sample(s, len(s))) + "?" for s in ref[i:]]
        items.append((p.question, ref + ["Answer: " + p.answer], [1.0] * (len(ref) + 1)))
        items.append((p.question, bad, [1.0] * i + [0.0] * (len(bad) - i)))
    torch.manual_seed(0)
    model = RewardModel(Transformer(ModelConfig(d_model=32, n_layers=2, n_heads=2, n_kv_heads=2, ffn_hidden=64)),
                        kind="prm")
    tok = CharTokenizer()
    before = reward_loss(model, tok, items)
    stats = fit_reward(model, tok, items, steps=40, lr=3e-3, batch_size=16, bf16=False)
    after = reward_loss(model, tok, items)
    assert stats["steps"] == 40 and before == pytest.approx(math.log(2), abs=1e-3)  # zero head: p = 0.5
    assert after < 0.5 * before, (before, after)
    with pytest.raises(ValueError, match="no labelled chains"):
        fit_reward(model, tok, [], steps=1)
    with pytest.raises(ValueError, match="NaN"):
        fit_reward(model, tok, [("q", ["a"], [float("nan")])], steps=1)


def test_auc_and_selection():
    assert auc([0.9, 0.2, 0.5], [True, False, False]) == 1.0
    # positives .1, .5 vs negatives .2, .5: pairs (.1,.2) 0, (.1,.5) 0, (.5,.2) 1, (.5,.5) 1/2 -> 1.5 / 4
    assert auc([0.1, 0.2, 0.5, 0.5], [True, False, True, False]) == 0.375
    assert math.isnan(auc([0.3], [True]))
    answers, correct = ["7", "5", "5", None], [True, False, False, False]
    assert selection_accuracy("majority", [0, 0, 0, 0], answers, correct) == 0.0
    assert selection_accuracy("best", [0.9, 0.5, 0.6, 0.1], answers, correct) == 1.0
    assert selection_accuracy("weighted", [0.9, 0.5, 0.6, 0.1], answers, correct) == 0.0  # 1.1 for "5"
    assert selection_accuracy("best", [0.5, 0.5, 0.1, 0.1], answers, correct) == 0.5  # tie
    assert selection_accuracy("majority", [0, 0], [None, None], [False, False]) == 0.0


def test_train_prm_and_orm_end_to_end(tiny_checkpoint, tmp_path):
    cfg = RewardConfig(init=str(tiny_checkpoint), task="decimals", out=str(tmp_path / "prm"), problems=6, samples=2,
                       mc_samples=2, max_steps=4, seconds=0, batch_size=4, eval_problems=4, eval_samples=2)
    s = train_prm(cfg)
    assert s["stage"] == "prm" and s["train/chains"] == 12 and s["train/steps"] == 4
    assert 0 <= s["eval/best_of_n"] <= 1 and "eval/auc" in s
    scorer = get_scorer("prm", checkpoint=str(tmp_path / "prm"))
    assert scorer.name == "prm" and json.loads((tmp_path / "prm" / "summary.json").read_text())["kind"] == "prm"
    # the trained PRM guides a step-level search through the Scorer protocol
    problems = get_task("decimals").generate(2, seed=5, split="test")
    results = get_strategy("beam")(ModelPolicy.from_checkpoint(tiny_checkpoint), scorer, problems, 2, width=2)
    assert len(results) == 2 and all(r.ledger.scored_tokens > 0 and r.info["scorer"] == "prm" for r in results)
    with pytest.raises(ValueError, match="already holds a finished run"):
        train_prm(cfg)
    labels = tmp_path / "prm" / "labels.jsonl"
    o = train_orm(RewardConfig(**{**cfg.__dict__, "out": str(tmp_path / "orm"), "labels": str(labels),
                                  "trunk": "tiny", "eval_problems": 0}))
    assert o["stage"] == "orm" and o["train/chains"] == 12 and o["trunk"] == "tiny"
    with pytest.raises(ValueError, match="--init"):
        train_prm(RewardConfig(out=str(tmp_path / "x")))
    with pytest.raises(ValueError, match="preset"):
        train_prm(RewardConfig(init=str(tiny_checkpoint), trunk="huge", out=str(tmp_path / "x")))
    foreign = tmp_path / "gpt2"
    shutil.copytree(tiny_checkpoint, foreign)
    conf = json.loads((foreign / "config.json").read_text())
    (foreign / "config.json").write_text(json.dumps({**conf, "model_type": "gpt2", "architectures": ["GPT2"]}))
    with pytest.raises(ValueError, match="--init .*not supported"):
        train_orm(RewardConfig(init=str(foreign), out=str(tmp_path / "y")))
    assert not (tmp_path / "y").exists()
