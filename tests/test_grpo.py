"""GRPO trainer on the real tiny checkpoint: updates that move parameters and reward, the zero-variance warning,
resume after a kill, the NaN guard and bad input."""

import json

import pytest
import torch

import qstar.learn.grpo as grpo
from qstar.learn.grpo import GRPOConfig, train_grpo
from qstar.learn.losses import LOSSES
from qstar.model.checkpoint import load_checkpoint
from qstar.model.logprobs import completion_logprobs
from qstar.runio import read_jsonl

# letters: the tiny checkpoint's samples are right about half the time, so groups have reward variance from the start.
TOY = dict(task="letters", problems_per_batch=8, group_size=6, max_completion_tokens=64, eval_problems=0, seconds=0)


def weights(path):
    return load_checkpoint(path)[0].state_dict()


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def sampled_reward(path, n_problems=16, n=16, reward="correctness"):
    """Mean ``reward`` of n samples (T=1, fixed seed) on each of n_problems held-out letters problems."""
    from qstar.learn.rewards import REWARDS
    from qstar.model.sampler import generate
    from qstar.tasks import get_task, render_prompt

    model, tok, _ = load_checkpoint(path)
    problems = get_task("letters").generate(n_problems, seed=5, split="test")
    prompts = [tok.encode(render_prompt(p.question)) for p in problems]
    out = generate(model, prompts, n=n, max_new_tokens=64, stop_ids=(tok.eos_id,), seed=0)
    texts, done = [tok.decode(s.tokens) for row in out for s in row], [s.finish == "stop" for row in out for s in row]
    return sum(REWARDS[reward]([p for p in problems for _ in range(n)], texts, finished=done)) / len(texts)


def test_updates_log_and_change_parameters(tiny_checkpoint, tmp_path):
    # What a 20-update run does to the sampled reward depends on the CPU's kernels (one trajectory rose on one CPU
    # and fell on another); that an update raises the rewarded chains' probability is tested below, on any CPU.
    cfg = GRPOConfig(init=str(tiny_checkpoint), out=str(tmp_path / "run"), max_updates=20, lr=5e-4,
                     **{**TOY, "rewards": "format=1"})
    summary = train_grpo(cfg)
    assert summary["updates"] == 20 and summary["skipped_updates"] == 0 and summary["cut_short"] is False
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    for key in ("rl/reward_mean", "rl/frac_zero_std", "rl/entropy", "rl/response_len", "rl/clip_frac", "rl/kl",
                "train/loss"):
        assert all(key in r for r in rows), key
    assert all(r["rl/clip_frac"] == 0.0 and r["rl/logp_gap"] < 1e-3 for r in rows)  # on-policy, sampler agrees
    # FLOPs: each update spends at least its sampled tokens' forwards (2N each) and, when it learns, 6N per token more
    params = load_checkpoint(tiny_checkpoint)[0].num_params()
    updates = [r for r in rows if "rl/response_len" in r]
    spent = [b["flops"] - a["flops"] for a, b in zip([{"flops": 0.0}] + updates, updates)]
    sampled = [2 * params * TOY["problems_per_batch"] * TOY["group_size"] * r["rl/response_len"] for r in updates]
    assert all(s >= t for s, t in zip(spent, sampled)) and summary["train_flops"] == updates[-1]["flops"]
    assert any(s > 3 * t for s, t in zip(spent, sampled))  # some updates learn
    assert not same(weights(tiny_checkpoint), weights(tmp_path / "run" / "checkpoint"))
    _, _, meta = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert meta["stage"] == "grpo" and meta["config"]["task"] == "letters" and meta["metrics"]["updates"] == 20
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [row[0] for row in saved["reward_curve"]] == list(range(1, 21))
    assert not (tmp_path / "run" / "resume").exists()


@pytest.mark.parametrize("loss", ["grpo", "dr_grpo", "dapo"])
def test_an_update_raises_the_rewarded_chains_probability(tiny_checkpoint, loss):
    """The policy-gradient step's first-order effect: on the batch it learned from, the advantage-weighted
    log-probability rises (Adam's first step moves each weight by about lr along its gradient's sign, so at a small lr
    this holds whatever the CPU's rounding). Checked on three independently sampled batches."""
    from qstar.learn.losses import ADVANTAGES, LossConfig
    from qstar.learn.rewards import correctness
    from qstar.model.sampler import generate
    from qstar.tasks import get_task, render_prompt

    G = 6
    for seed in range(3):
        model, tok, _ = load_checkpoint(tiny_checkpoint)
        problems = get_task("letters").generate(8, seed=100 + seed, split="train")
        prompts = [tok.encode(render_prompt(p.question)) for p in problems]
        samples = [s for row in generate(model, prompts, n=G, max_new_tokens=64, stop_ids=(tok.eos_id,), seed=seed)
                   for s in row]
        rewards = torch.tensor(correctness([p for p in problems for _ in range(G)],
                                           [tok.decode(s.tokens) for s in samples]))
        adv = ADVANTAGES[loss](rewards, G)
        assert (adv != 0).any(), "the tiny checkpoint should be right on some letters samples and wrong on others"
        owner = [i // G for i in range(len(samples))]
        chunk = grpo._chunk(None, prompts, owner, samples, adv, list(range(len(samples))))

        def objective(model=model, chunk=chunk, adv=adv):  # this iteration's batch
            with torch.no_grad():
                logp, _ = completion_logprobs(model, *chunk["inputs"], chunk["mask"])
            return float((adv[:, None] * logp * chunk["mask"]).sum())

        before = objective()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.99), weight_decay=0.0)
        norms = {"n_rows": len(samples), "n_tokens": sum(len(s.tokens) for s in samples)}
        out = grpo._update(model, opt, None, prompts, owner, samples, adv, LOSSES[loss], LossConfig(),
                           GRPOConfig(init="x", loss=loss), norms)
        assert not out["nonfinite"]
        assert objective() > before, (seed, before, objective())


@pytest.mark.parametrize("loss", ["dr_grpo", "dapo"])
def test_variants_with_kl_and_dynamic_sampling(tiny_checkpoint, tmp_path, loss):
    cfg = GRPOConfig(init=str(tiny_checkpoint), out=str(tmp_path / loss), max_updates=2, loss=loss, beta=0.05,
                     clip_eps_high=0.28, epochs=2, dynamic_sampling=True, **{**TOY, "eval_problems": 8})
    summary = train_grpo(cfg)
    rows = [r for r in read_jsonl(tmp_path / loss / "metrics.jsonl") if "rl/reward_mean" in r]
    assert all(r["rl/groups_kept"] == round(8 * (1 - r["rl/frac_zero_std"])) for r in rows)
    assert all(r["rl/kl"] > 0 for r in rows)  # the second epoch has moved away from the reference
    assert 0.0 <= summary["greedy_accuracy_before"] <= 1.0 and 0.0 <= summary["greedy_accuracy_after"] <= 1.0


def test_zero_variance_warns_and_skips(tiny_checkpoint, tmp_path, capsys):
    # countdown is far beyond the tiny model: every chain is wrong, so no group has reward variance.
    cfg = GRPOConfig(init=str(tiny_checkpoint), out=str(tmp_path / "run"), max_updates=2,
                     **{**TOY, "task": "countdown", "max_completion_tokens": 16})
    summary = train_grpo(cfg)
    assert "zero reward variance" in capsys.readouterr().err
    assert summary["zero_signal_updates"] == 2
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert all(r["rl/all_zero_std"] == 1.0 for r in rows if "rl/response_len" in r)
    # a skipped update spends only its sampling: 2N per token, not the 8N of one that learns
    params = load_checkpoint(tiny_checkpoint)[0].num_params()
    first = next(r for r in rows if "rl/response_len" in r)
    tokens = first["flops"] / (2 * params)
    assert TOY["problems_per_batch"] * TOY["group_size"] * first["rl/response_len"] <= tokens < 2 * (
        TOY["problems_per_batch"] * TOY["group_size"] * (first["rl/response_len"] + 64))
    assert same(weights(tiny_checkpoint), weights(tmp_path / "run" / "checkpoint"))


def test_resume_after_kill_matches_uninterrupted_run(tiny_checkpoint, tmp_path, monkeypatch, dies_on_call):
    base = dict(init=str(tiny_checkpoint), max_updates=4, save_every=0.0, **{**TOY, "problems_per_batch": 4})
    train_grpo(GRPOConfig(out=str(tmp_path / "straight"), **base))

    real = grpo.combine
    monkeypatch.setattr(grpo, "combine", dies_on_call(real, 3))  # killed on the third batch
    with pytest.raises(KeyboardInterrupt):
        train_grpo(GRPOConfig(out=str(tmp_path / "killed"), **base))
    assert not (tmp_path / "killed" / "summary.json").exists()
    assert load_checkpoint(tmp_path / "killed" / "resume")[2]["train_state"]["step"] == 2
    monkeypatch.setattr(grpo, "combine", real)
    summary = train_grpo(GRPOConfig(out=str(tmp_path / "killed"), **base))
    assert summary["updates"] == 4 and [row[0] for row in summary["reward_curve"]] == [1, 2, 3, 4]
    # problems and samples depend only on (seed, step) and the optimizer state was restored: identical weights
    a, b = weights(tmp_path / "straight" / "checkpoint"), weights(tmp_path / "killed" / "checkpoint")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_nan_loss_is_skipped_and_never_saved(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    def nan_loss(logp, old_logp, advantages, mask, *, cfg, **_):
        return logp.sum() * float("nan"), {"clip_frac": 0.0, "clip_high_frac": 0.0, "kl": 0.0, "ratio_mean": 1.0}

    monkeypatch.setitem(LOSSES, "grpo", nan_loss)
    summary = train_grpo(GRPOConfig(init=str(tiny_checkpoint), out=str(tmp_path / "run"), max_updates=2, loss="grpo",
                                    **TOY))
    assert "non-finite" in capsys.readouterr().err
    assert summary["skipped_updates"] == 2
    assert same(weights(tiny_checkpoint), weights(tmp_path / "run" / "checkpoint"))


def test_bad_input(tiny_checkpoint, tmp_path):
    ok = dict(init=str(tiny_checkpoint), out=str(tmp_path / "x"), max_updates=1, **TOY)
    other = tmp_path / "gpt2"
    other.mkdir()
    for f in ("model.safetensors", "tokenizer.json"):
        (other / f).write_text("{}")
    (other / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(ValueError, match="gpt2.*not supported"):
        train_grpo(GRPOConfig(**{**ok, "init": str(other)}))
    with pytest.raises(ValueError, match="--init: .*no checkpoint here"):
        train_grpo(GRPOConfig(**{**ok, "init": str(tmp_path / "nowhere")}))
    for bad, match in [({"problems_per_batch": 0}, "problems-per-batch must be >= 1"),
                       ({"group_size": 1}, "group-size must be >= 2"), ({"task": "chess"}, "unknown task"),
                       ({"rewards": "speed=1"}, "unknown reward"), ({"loss": "ppo"}, "unknown loss"),
                       ({"init": ""}, "--init is required"), ({"length_targets": "16,lots"}, "token counts"),
                       ({"rewards": "correctness=1,length_target=1"}, "needs --length-targets")]:
        with pytest.raises(ValueError, match=match):
            train_grpo(GRPOConfig(**{**ok, **bad}))
    train_grpo(GRPOConfig(**ok))
    with pytest.raises(ValueError, match="already holds a finished run"):
        train_grpo(GRPOConfig(**ok))


def test_length_targets_go_in_the_prompts_the_reward_and_the_checkpoint(tiny_checkpoint, tmp_path, monkeypatch):
    from qstar.model.policy import load_policy
    from qstar.model.tokenizer import CharTokenizer

    seen, real = [], grpo.generate
    monkeypatch.setattr(grpo, "generate", lambda model, prompts, **kw: seen.extend(prompts) or real(model, prompts,
                                                                                                    **kw))
    cfg = GRPOConfig(init=str(tiny_checkpoint), out=str(tmp_path / "l1"), max_updates=2, length_targets="0,8",
                     **{**TOY, "rewards": "correctness=1,length_target=1"})
    train_grpo(cfg)
    tok = CharTokenizer()
    endings = {tok.decode(ids).rstrip("\n").rpartition("?")[2] for ids in seen}
    assert endings == {" Think for 0 tokens.", " Think for 8 tokens."}  # every prompt states one of the targets
    rows = [r for r in read_jsonl(tmp_path / "l1" / "metrics.jsonl") if "reward/length_target" in r]
    assert len(rows) == 2 and all(-1 <= r["reward/length_target"] < 0 for r in rows)  # 64-token chains miss 0 and 8
    assert load_checkpoint(tmp_path / "l1" / "checkpoint")[2]["length_prompt"] is True
    assert load_policy(tmp_path / "l1").length_prompt and not load_policy(tiny_checkpoint).length_prompt


class GradRecorder:
    """Optimizer stand-in that keeps the gradient it was asked to apply."""

    def __init__(self, model):
        self.model, self.grads = model, None

    def zero_grad(self, set_to_none=True):
        self.model.zero_grad(set_to_none=set_to_none)

    def step(self):
        self.grads = torch.cat([p.grad.flatten() for p in self.model.parameters()])


def test_micro_batches_and_skipped_zero_rows_give_the_same_gradient(tiny_checkpoint):
    from qstar.learn.losses import ADVANTAGES, LossConfig
    from qstar.learn.rewards import correctness
    from qstar.model.sampler import generate
    from qstar.tasks import get_task, render_prompt

    model, tok, _ = load_checkpoint(tiny_checkpoint)
    problems = [p for p in get_task("letters").generate(6, seed=1) for _ in range(4)]  # 6 groups of 4
    prompts = [tok.encode(render_prompt(p.question)) for p in problems]
    samples = [s for row in generate(model, prompts[::4], n=4, max_new_tokens=40, stop_ids=(2,), seed=0) for s in row]
    rewards = torch.tensor(correctness(problems, [tok.decode(s.tokens) for s in samples]))
    adv = ADVANTAGES["dapo"](rewards, 4)
    assert (adv == 0).any() and (adv != 0).any()
    norms = {"n_rows": 24, "n_tokens": sum(len(s.tokens) for s in samples)}
    grads = {}
    for name, rows, mb in [("whole", range(24), 64), ("micro", range(24), 5),
                           ("skip", [i for i in range(24) if adv[i] != 0], 64)]:
        rec = GradRecorder(model)
        cfg = GRPOConfig(init="x", loss="dapo", micro_batch=mb, grad_clip=1e9)
        out = grpo._update(model, rec, None, prompts[::4], [i // 4 for i in rows], [samples[i] for i in rows],
                           adv[list(rows)], LOSSES["dapo"], LossConfig(), cfg, norms)
        assert not out["nonfinite"]
        grads[name] = rec.grads
    assert torch.allclose(grads["micro"], grads["whole"], atol=1e-7, rtol=1e-4)
    assert torch.allclose(grads["skip"], grads["whole"], atol=1e-7, rtol=1e-4)


def test_shared_prompt_forward_matches_one_plain_pass():
    # Prompts of different lengths (left padding), completions of different lengths (right padding), repeated owners.
    from qstar.model.model import ModelConfig, Transformer

    torch.manual_seed(0)
    model = Transformer(ModelConfig.preset("tiny"))
    prompts = [[1, 10, 11, 12, 4], [1, 20, 4], [1, 30, 31, 32, 33, 34, 4]]
    owner = [0, 0, 1, 2, 2, 1]
    comps = [[40, 41, 2], [42], [43, 44, 45, 46, 2], [47, 48], [49, 50, 51, 52, 53, 54], [55, 2]]
    T = max(map(len, comps))
    cids, mask = torch.zeros(6, T, dtype=torch.long), torch.zeros(6, T)
    for b, c in enumerate(comps):
        cids[b, : len(c)], mask[b, : len(c)] = torch.tensor(c), 1.0
    logp, entropy = completion_logprobs(model, prompts, torch.tensor(owner), cids, mask)
    (logp * torch.arange(1.0, 7.0)[:, None]).sum().backward()  # distinct weights per row
    shared = torch.cat([p.grad.flatten() for p in model.parameters()])
    model.zero_grad()
    total = 0.0
    for b, c in enumerate(comps):  # reference: one plain forward over prompt + completion per row
        ids = torch.tensor([prompts[owner[b]] + c])
        lp = torch.log_softmax(model(ids[:, :-1])[0, len(prompts[owner[b]]) - 1 :], -1)
        row = lp.gather(-1, torch.tensor(c)[:, None]).squeeze(-1)
        assert torch.allclose(logp[b, : len(c)], row, atol=1e-5) and (logp[b, len(c) :] == 0).all()
        assert torch.allclose(entropy[b, : len(c)], -(lp.exp() * lp).sum(-1), atol=1e-5)
        total = total + (b + 1) * row.sum()
    total.backward()
    plain = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert torch.allclose(shared, plain, atol=1e-6, rtol=1e-4)
