"""KV-cache sampler and ModelPolicy: exactness against full forward passes, stopping, sharing, seeding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from qstar.model.checkpoint import save_checkpoint
from qstar.model.model import ModelConfig, Transformer
from qstar.model.policy import ModelPolicy
from qstar.model.sampler import generate, score_tokens
from qstar.model.tokenizer import CharTokenizer
from qstar.model.types import Completion, Policy, Prompt

TOK = CharTokenizer()
PROMPTS = [[1, 10, 20, 30, 40], [1, 5], [1, 7, 7, 7, 7, 7, 9, 11, 60]]


@pytest.fixture(scope="module")
def model() -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig.preset("tiny", n_kv_heads=2)).eval()


def _argmax_chain(model, prompt, steps):
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    return ids[len(prompt) :]


def test_sampled_logprobs_equal_full_forward(model):
    out = generate(model, PROMPTS, n=3, max_new_tokens=15, temperature=1.0, seed=0)
    assert [len(row) for row in out] == [3, 3, 3]
    for prompt, row in zip(PROMPTS, out):
        for s in row:
            assert len(s.tokens) == len(s.logprobs) == 15 and s.finish == "length"
            ref = score_tokens(model, prompt, s.tokens)
            assert max(abs(a - b) for a, b in zip(ref, s.logprobs)) < 1e-4


def test_long_decode_is_exact_over_both_cache_reads(model):
    """Early steps attend over the filled prefix of the cache, later ones over all of it (unfilled columns masked):
    both must give the full forward's logprobs, with padded rows in the batch."""
    out = generate(model, [[1, 5], PROMPTS[2]], max_new_tokens=80, temperature=1.0, seed=3)
    for prompt, (s,) in zip([[1, 5], PROMPTS[2]], out):
        ref = score_tokens(model, prompt, s.tokens)
        assert len(ref) == 80 and max(abs(a - b) for a, b in zip(ref, s.logprobs)) < 1e-4


def test_bf16_decoding_stays_close_to_the_fp32_forward(model):
    out = generate(model, PROMPTS, n=2, max_new_tokens=40, temperature=1.0, seed=0, dtype=torch.bfloat16)
    for prompt, row in zip(PROMPTS, out):
        for s in row:
            ref = score_tokens(model, prompt, s.tokens)
            gap = max(abs(a - b) for a, b in zip(ref, s.logprobs))
            assert 0 < gap < 0.1  # bf16 numerics: close, not identical
    again = generate(model, PROMPTS, n=2, max_new_tokens=40, temperature=1.0, seed=0, dtype=torch.bfloat16)
    assert [[s.tokens for s in r] for r in again] == [[s.tokens for s in r] for r in out]
    fp32 = generate(model, PROMPTS, n=2, max_new_tokens=40, temperature=1.0, seed=0)  # the fp32 snapshot is rebuilt
    ref = score_tokens(model, PROMPTS[0], fp32[0][0].tokens)
    assert max(abs(a - b) for a, b in zip(ref, fp32[0][0].logprobs)) < 1e-4
    (row,) = ModelPolicy(model, TOK, seed=0, dtype=torch.bfloat16).sample([Prompt("double 4")], n=2, max_tokens=5)
    assert len(row) == 2 and all(c.n_tokens == len(c.logprobs) > 0 for c in row)


def test_logprobs_are_untempered_and_unfiltered(model):
    s = generate(model, [PROMPTS[0]], max_new_tokens=6, temperature=0.5, top_p=0.8, seed=1)[0][0]
    ref = score_tokens(model, PROMPTS[0], s.tokens)
    assert max(abs(a - b) for a, b in zip(ref, s.logprobs)) < 1e-4


def test_greedy_equals_step_by_step_argmax_and_batching_is_invisible(model):
    batched = generate(model, PROMPTS, max_new_tokens=20, temperature=0)
    for prompt, row in zip(PROMPTS, batched):
        alone = generate(model, [prompt], max_new_tokens=20, temperature=0)[0][0]
        assert row[0].tokens == alone.tokens == _argmax_chain(model, prompt, 20)


def test_stop_ids_end_rows_independently_and_compaction_is_exact(model):
    free = generate(model, PROMPTS, max_new_tokens=20, temperature=0)
    stop_tok = free[0][0].tokens[4]  # force row 0 to stop at (or before) its 5th token
    k = free[0][0].tokens.index(stop_tok) + 1
    for compact_below in (0.0, 1.0):  # never / always drop finished rows from the batch
        out = generate(model, PROMPTS, max_new_tokens=20, temperature=0, stop_ids={stop_tok},
                       compact_below=compact_below)
        assert out[0][0].tokens == free[0][0].tokens[:k] and out[0][0].finish == "stop"
        for ref, row in zip(free, out):
            toks = ref[0].tokens
            cut = toks.index(stop_tok) + 1 if stop_tok in toks else len(toks)
            assert row[0].tokens == toks[:cut]
            assert row[0].finish == ("stop" if cut < len(toks) or toks[-1] == stop_tok else "length")
            assert len(row[0].logprobs) == cut


def test_fast_forward_cache_matches_full_forward(model):
    """Chunked prefill (T>1 onto a filled cache), a row-repeating select and T=1 decoding through the
    KV cache give the model's own logits."""
    from qstar.model.fast import FastForward

    fast, ids = FastForward(model), torch.tensor([[1, 10, 20, 30, 40, 50, 60], [1, 5, 6, 7, 8, 9, 2]])
    ref = model(ids)  # [2, 7, V]
    cache = fast.new_cache(2, 5)
    pos = torch.arange(7).expand(2, 7)
    assert torch.allclose(fast(ids[:, :3], pos[:, :3], cache), ref[:, 2], atol=1e-5)
    assert torch.allclose(fast(ids[:, 3:5], pos[:, 3:5], cache), ref[:, 4], atol=1e-5)
    cache = cache.select(torch.tensor([1, 0, 1]), max_len=7)  # rows 1, 0, 1 with room for 2 more columns
    for t in (5, 6):
        got = fast(ids[[1, 0, 1], t : t + 1], torch.full((3, 1), t), cache)
        assert torch.allclose(got, ref[[1, 0, 1], t], atol=1e-5)
    assert cache.length == 7 and cache.batch == 3


def test_n_samples_share_one_prefill(model):
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[0]]  # a duplicate prompt is prefilled once too
    out = generate(model, prompts, n=4, max_new_tokens=8, temperature=0)
    assert [[s.prompt_tokens for s in row] for row in out] == [[5, 0, 0, 0], [2, 0, 0, 0], [0, 0, 0, 0]]
    for row in out:  # greedy: all n samples identical
        assert all(s.tokens == row[0].tokens for s in row)
    sampled = generate(model, prompts, n=4, max_new_tokens=8, temperature=1.0, seed=0)
    assert len({tuple(s.tokens) for s in sampled[0]}) > 1


def test_seed_determinism(model):
    a = generate(model, PROMPTS, n=2, max_new_tokens=10, seed=123)
    b = generate(model, PROMPTS, n=2, max_new_tokens=10, generator=torch.Generator().manual_seed(123))
    c = generate(model, PROMPTS, n=2, max_new_tokens=10, seed=124)
    assert a == b and a != c


def test_per_prompt_seeds_make_a_prompts_chains_independent_of_its_batch(model):
    # stop ids end rows at different steps, so compaction reorders the batch rows too
    kw = dict(n=3, max_new_tokens=12, stop_ids=(5, 9, 17))
    together = generate(model, PROMPTS, seeds=[7, 8, 9], **kw)
    alone = [generate(model, [p], seeds=[s], **kw)[0] for p, s in zip(PROMPTS, [7, 8, 9])]
    split = generate(model, PROMPTS[:1], seeds=[7], **kw) + generate(model, PROMPTS[1:], seeds=[8, 9], **kw)
    assert [[s.tokens for s in row] for row in together] == [[s.tokens for s in row] for row in alone]
    assert [[s.tokens for s in row] for row in together] == [[s.tokens for s in row] for row in split]
    assert len({tuple(s.tokens) for row in together for s in row}) > 3  # sampled, not one chain
    assert generate(model, PROMPTS, seeds=[7, 8, 10], **kw)[2] != together[2]
    with pytest.raises(ValueError, match="one per prompt"):
        generate(model, PROMPTS, seeds=[1], **kw)


def test_per_chain_seeds_give_a_chain_that_does_not_depend_on_n_length_or_batch(model):
    # chain seeds 1..4 for prompt 0 in one call; the same seeds in other groupings, counts and lengths
    kw = dict(stop_ids=(5, 9, 17))
    four = generate(model, PROMPTS[:2], n=4, max_new_tokens=12, seeds=[[1, 2, 3, 4], [5, 6, 7, 8]], **kw)
    ones = [generate(model, [PROMPTS[0]], n=1, max_new_tokens=12, seeds=[[s]], **kw)[0][0] for s in (1, 2, 3, 4)]
    pairs = generate(model, [PROMPTS[0]] * 2, n=2, max_new_tokens=12, seeds=[[1, 2], [3, 4]], **kw)
    longer = generate(model, [PROMPTS[0]], n=4, max_new_tokens=30, seeds=[[1, 2, 3, 4]], **kw)[0]
    chains = [s.tokens for s in four[0]]
    assert chains == [s.tokens for s in ones] == [s.tokens for row in pairs for s in row]
    assert all(long.tokens[: len(c)] == c for long, c in zip(longer, chains))  # a longer cap extends, never redraws
    assert len({tuple(c) for c in chains}) > 1 and [s.tokens for s in four[1]] != chains
    with pytest.raises(ValueError, match="per-chain seeds must be n=4"):
        generate(model, PROMPTS[:1], n=4, max_new_tokens=4, seeds=[[1, 2]])


def test_top_p_samples_only_from_the_nucleus():
    torch.manual_seed(0)
    model = Transformer(ModelConfig.preset("tiny")).eval()
    with torch.no_grad():
        model.model.norm.weight.mul_(5.0)  # sharpen the near-uniform initial distribution
    prompt = PROMPTS[2]
    with torch.no_grad():
        probs = F.softmax(model(torch.tensor([prompt]))[0, -1], dim=-1)
    sorted_p, order = probs.sort(descending=True)
    nucleus = set(order[: int((sorted_p.cumsum(0) < 0.6).sum()) + 1].tolist())
    firsts = {s.tokens[0] for s in generate(model, [prompt], n=64, max_new_tokens=1, top_p=0.6, seed=0)[0]}
    assert firsts <= nucleus and len(nucleus) < 20
    tiny_p = generate(model, [prompt], n=16, max_new_tokens=6, top_p=1e-6, seed=0)[0]
    greedy = generate(model, [prompt], max_new_tokens=6, temperature=0)[0][0].tokens
    assert all(s.tokens == greedy for s in tiny_p)
    full = {s.tokens[0] for s in generate(model, [prompt], n=64, max_new_tokens=1, seed=0)[0]}
    assert len(full) > len(firsts)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"prompts": []}, "prompts is empty"),
        ({"prompts": [[]]}, "at least one token"),
        ({"prompts": [[1, 500]]}, r"\[0, 128\)"),
        ({"max_new_tokens": 600}, "max_seq_len=512"),
        ({"top_p": 0.0}, "top_p"),
        ({"temperature": -1.0}, "temperature"),
        ({"n": 0}, "n >= 1"),
    ],
)
def test_bad_arguments_raise_value_error(model, kwargs, message):
    args = {"prompts": PROMPTS, "max_new_tokens": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate(model, args.pop("prompts"), **args)


# A model trained in the test to answer two questions with memorised chains, for the Policy's stop semantics.
CHAINS = {"add 2 3": "2+3=5\nAnswer: 5", "double 4": "4*2=8\nAnswer: 8"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> ModelPolicy:
    from qstar.tasks.format import render_prompt

    torch.manual_seed(0)
    net = Transformer(ModelConfig.preset("tiny", n_layers=2, max_seq_len=64))
    seqs = [TOK.encode(render_prompt(q) + c, eos=True) for q, c in CHAINS.items()]
    L = max(map(len, seqs))
    ids = torch.tensor([s + [TOK.pad_id] * (L - len(s)) for s in seqs])
    target = ids[:, 1:].masked_fill(ids[:, 1:] == TOK.pad_id, -100)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    for _ in range(150):
        loss = F.cross_entropy(net(ids[:, :-1]).reshape(-1, 128), target.reshape(-1), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    d = tmp_path_factory.mktemp("trained") / "ckpt"
    save_checkpoint(d, net, TOK, meta={"stage": "test"})
    return ModelPolicy.from_checkpoint(d, max_batch=3, seed=0)


def test_policy_step_eos_and_length(trained):
    assert isinstance(trained, Policy) and trained.name == "ckpt" and trained.params > 0
    (step,), (answer,), (cut,) = trained.sample(
        [Prompt("add 2 3"), Prompt("add 2 3", "2+3=5\n"), Prompt("double 4")], temperature=0, stop_at_step=True,
        max_tokens=40,
    )[0:1] + trained.sample([Prompt("add 2 3", "2+3=5\n")], temperature=0, stop_at_step=True) + trained.sample(
        [Prompt("double 4")], temperature=0, max_tokens=3
    )
    assert (step.text, step.finish, step.n_tokens) == ("2+3=5\n", "step", 6)
    assert (answer.text, answer.finish, answer.n_tokens) == ("Answer: 5", "eos", 10)
    assert answer.token_ids[-1] == TOK.eos_id and len(answer.logprobs) == 10
    assert (cut.text, cut.finish, cut.n_tokens) == ("4*2", "length", 3)
    full = trained.sample([Prompt("double 4")], temperature=0)[0][0]
    assert (full.text, full.finish) == ("4*2=8\nAnswer: 8", "eos")
    ref = trained.logprobs(trained.encode(Prompt("double 4")), full.token_ids)
    assert max(abs(a - b) for a, b in zip(ref, full.logprobs)) < 1e-4
    assert full.logprob > -0.5  # memorised


def test_policy_chunks_by_max_batch(trained):
    prompts = [Prompt("add 2 3"), Prompt("double 4"), Prompt("add 2 3", "2+3=5\n")]
    out = trained.sample(prompts, n=2, temperature=0, stop_at_step=True)  # max_batch=3: one prompt per call
    assert [[c.text for c in row] for row in out] == [["2+3=5\n"] * 2, ["4*2=8\n"] * 2, ["Answer: 5"] * 2]
    assert [c.prompt_tokens for c in out[1]] == [len(trained.encode(prompts[1])), 0]
    wide = trained.sample([Prompt("double 4")], n=7, temperature=1.0)  # n > max_batch: split across calls
    assert len(wide[0]) == 7 and all(isinstance(c, Completion) for c in wide[0])
    assert sum(c.prompt_tokens > 0 for c in wide[0]) == 3
    with pytest.raises(ValueError, match="max_seq_len=64"):
        trained.sample([Prompt("x" * 80)])


@pytest.mark.parametrize("temperature", [1.0, 0.5])
@pytest.mark.parametrize("streams", ["one", "per prompt"])
def test_sampling_frequencies_follow_the_tempered_distribution(temperature, streams):
    torch.manual_seed(0)
    model = Transformer(ModelConfig.preset("tiny")).eval()
    with torch.no_grad():
        model.model.norm.weight.mul_(4.0)
        probs = F.softmax(model(torch.tensor([PROMPTS[1]]))[0, -1] / temperature, dim=-1)
    n = 4000
    seeding = {"seed": 0} if streams == "one" else {"seeds": [3, 4]}  # two prompts of 2000 draws, a stream each
    rows = generate(model, [PROMPTS[1]] * len(seeding.get("seeds", [0])), n=n // len(seeding.get("seeds", [0])),
                    max_new_tokens=1, temperature=temperature, **seeding)
    draws = [s for row in rows for s in row]
    freq = torch.bincount(torch.tensor([s.tokens[0] for s in draws]), minlength=128).float() / n
    top = probs.topk(5).indices
    sigma = (probs[top] * (1 - probs[top]) / n).sqrt()
    assert ((freq[top] - probs[top]).abs() < 4 * sigma).all(), (freq[top], probs[top])
    assert 0.5 * (freq - probs).abs().sum() < 0.1  # total variation, mostly sampling noise in the tail
