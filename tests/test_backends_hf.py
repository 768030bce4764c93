"""HFPolicy: a qstar checkpoint loaded through transformers reproduces qstar's own sampler, and honours the Policy
contract (steps end at "\\n", <eos> is counted but not in the text, context overflow is a "length" stop)."""

from __future__ import annotations

import math

import pytest

from qstar.backends.hf import HFPolicy
from qstar.model.policy import ModelPolicy
from qstar.model.types import Policy, Prompt
from qstar.tasks import get_task


@pytest.fixture(scope="module")
def hf(tiny_checkpoint):
    return HFPolicy.from_pretrained(tiny_checkpoint)


def test_hf_matches_model_policy_greedy(hf, tiny_checkpoint):
    assert isinstance(hf, Policy) and hf.name == tiny_checkpoint.name and 1e5 < hf.params < 1e6
    assert hf.use_chat_template  # a qstar checkpoint's chat template renders its own prompt format
    mine = ModelPolicy.from_checkpoint(tiny_checkpoint)
    problems = get_task("decimals").generate(2, seed=3, split="test") + get_task("letters").generate(1, seed=3)
    prompts = [Prompt(p.question) for p in problems] + [Prompt(problems[0].question, "x\n")]
    for stop in (False, True):
        a = hf.sample(prompts, temperature=0, max_tokens=80, stop_at_step=stop)
        b = mine.sample(prompts, temperature=0, max_tokens=80, stop_at_step=stop)
        for (x,), (y,) in zip(a, b):
            assert (x.text, x.finish, x.n_tokens) == (y.text, y.finish, y.n_tokens)
            assert len(x.logprobs) == x.n_tokens
            assert all(math.isclose(u, v, abs_tol=1e-4) for u, v in zip(x.logprobs, y.logprobs))
            if stop and x.finish == "step":
                assert x.text.endswith("\n") and x.text.count("\n") == 1
        if not stop:  # the trained model finishes chains with an answer line
            assert any(row[0].finish == "eos" and "Answer: " in row[0].text for row in a)


def test_hf_sampling_shapes_and_limits(hf):
    out = hf.sample([Prompt("1.5+2.25"), Prompt("abc")], n=3, temperature=1.0, top_p=0.9, max_tokens=5)
    assert [len(r) for r in out] == [3, 3]
    assert all(c.n_tokens <= 5 and len(c.logprobs) == c.n_tokens and c.prompt_tokens > 0 for r in out for c in r)
    greedy = hf.sample([Prompt("1.5+2.25")], n=2, temperature=0, max_tokens=5)[0]
    assert greedy[0].text == greedy[1].text and greedy[0].logprobs is not greedy[1].logprobs
    long = hf.sample([Prompt("9" * (hf.max_len + 5))], max_tokens=5)[0][0]
    assert (long.text, long.finish, long.n_tokens) == ("", "length", 0)
    with pytest.raises(ValueError, match="top_p"):
        hf.sample([Prompt("q")], top_p=0)
    with pytest.raises(ValueError, match="not a Hugging Face model directory"):
        HFPolicy.from_pretrained("/nonexistent/dir")


def test_hf_chat_template_rendering(hf, tiny_checkpoint):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    tok.chat_template = ("{% for m in messages %}[{{ m['content'] }}]{% endfor %}"
                         "{% if add_generation_prompt %}=>{% endif %}")
    chat = HFPolicy(hf.model, tok, name="chat")
    assert chat.use_chat_template and chat.render(Prompt("1+1", "a\n")) == "[1+1]=>a\n"
    assert not HFPolicy(hf.model, tok, use_chat_template=False).use_chat_template
    (c,), = chat.sample([Prompt("1+1")], temperature=0, max_tokens=8)
    assert c.prompt_tokens == len("[1+1]=>") and c.n_tokens <= 8  # template text only: no <bos> added on top
