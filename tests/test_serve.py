"""``qstar serve`` end to end: the official openai SDK over real HTTP against a real tiny checkpoint, plain and
streaming, token caps, auth, batching across concurrent users, and two chained qstar servers (A's policy is an
OpenAIPolicy pointing at B)."""

from __future__ import annotations

import math
import threading

import httpx
import openai
import pytest
from test_serve_fakes import serve_in_thread

from qstar.backends.openai_compat import OpenAIPolicy
from qstar.model.policy import ModelPolicy
from qstar.model.tokenizer import render_chat
from qstar.model.types import Prompt
from qstar.scorers import get_scorer
from qstar.search import get_strategy
from qstar.search.effort import LEVELS
from qstar.serve.app import create_app
from qstar.serve.config import ServeConfig
from qstar.serve.engine import make_problem, split_reasoning
from qstar.tasks import get_task

KEY = "sk-test"


@pytest.fixture(scope="module")
def policy(tiny_checkpoint):
    return ModelPolicy.from_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module")
def server(policy):
    app = create_app(policy, ServeConfig(api_key=KEY, name="tiny", default_max_completion_tokens=256))
    with serve_in_thread(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key=KEY, max_retries=0)


@pytest.fixture(scope="module")
def questions():
    return [p.question for p in get_task("decimals").generate(2, seed=5, split="test")] + \
        [p.question for p in get_task("mult", digits=(2, 2)).generate(1, seed=5, split="test")]


def direct_low(policy, question, prompt=None):
    """What reasoning_effort="low" (think with 48 thinking tokens) gives on the policy itself, without the server."""
    return get_strategy("think")(policy, get_scorer("none"), [make_problem(question, prompt=prompt)], 48)[0]


def test_plain_chat_matches_direct_search(client, policy, questions):
    answered = 0
    for q in questions:
        want = direct_low(policy, q)
        r = client.chat.completions.create(model="tiny", reasoning_effort="low",
                                           messages=[{"role": "user", "content": q}])
        choice, usage = r.choices[0], r.usage
        assert choice.message.content == (want.answer or "")
        assert choice.message.reasoning == choice.message.reasoning_content == split_reasoning(want.chain)
        assert choice.message.refusal is None
        assert choice.finish_reason == ("stop" if want.answer is not None else "length")
        assert usage.completion_tokens == want.ledger.generated_tokens
        assert usage.prompt_tokens == want.ledger.prompt_tokens > 0
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
        # the thinking is the reasoning; the answer the model wrote (a forced "Answer: " is not generated) the content
        content = want.info["answer_tokens"][0]
        assert usage.completion_tokens_details.reasoning_tokens == usage.completion_tokens - content
        assert usage.completion_tokens_details.reasoning_tokens == want.info["thinking_tokens"][0] <= 48
        answered += choice.message.content != ""
    assert answered >= 1  # the trained model does finish chains with an answer line


def test_whole_conversation_reaches_the_model(client, policy, questions):
    """System messages and earlier turns (their thinking under either name) are passed on, rendered by the chat
    template's rule; the answer is what the search gives on exactly that prompt."""
    msgs = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": questions[0]},
            {"role": "assistant", "content": "13.1", "reasoning_content": "compare"},
            {"role": "assistant", "content": "sure", "reasoning": "x"}, {"role": "user", "content": questions[1]}]
    prompt = render_chat(msgs)[:-1]
    assert prompt == f"Be terse. {questions[0]} 13.1 sure {questions[1]}"
    want = direct_low(policy, questions[1], prompt)
    r = client.chat.completions.create(model="tiny", reasoning_effort="low", messages=msgs)
    assert r.choices[0].message.reasoning == split_reasoning(want.chain)
    assert r.usage.prompt_tokens == want.ledger.prompt_tokens >= len(prompt) + 2  # <bos> + line + "\n"
    # a conversation longer than the context is refused whole (never cut), and the limit is configuration
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "7" * 600}])
    assert e.value.body["code"] == "context_length_exceeded" and "context is 512 tokens" in e.value.body["message"]


def test_every_effort_level_and_token_limit_name(client, questions):
    for level in LEVELS:
        r = client.chat.completions.create(model="tiny", reasoning_effort=level, max_completion_tokens=40,
                                           messages=[{"role": "user", "content": questions[2]}])
        assert r.qstar["effort"] == level and 0 < r.usage.completion_tokens <= 40
    r = client.chat.completions.create(model="tiny", max_tokens=30, messages=[{"role": "user", "content": "1+1"}],
                                       extra_body={"thinking_token_budget": 8})
    assert r.qstar["budget"] == 8 and r.usage.completion_tokens <= 30


def test_high_effort_n2_and_token_cap(client, questions):
    r = client.chat.completions.create(model="tiny", reasoning_effort="high", n=2, max_completion_tokens=200,
                                       messages=[{"role": "user", "content": questions[0]}])
    assert len(r.choices) == 2 and r.qstar["strategy"] == "think" and r.qstar["budget"] == 256
    assert 0 < r.usage.completion_tokens <= 2 * 200
    # a cap smaller than the thinking: nothing is left for the answer, so no answer and finish_reason "length"
    r = client.chat.completions.create(model="tiny", reasoning_effort="high", max_completion_tokens=10,
                                       messages=[{"role": "user", "content": questions[1]}])
    assert r.usage.completion_tokens <= 10 and r.choices[0].finish_reason == "length"
    assert r.choices[0].message.content == ""


def test_streaming_matches_plain(client, policy, questions):
    q = questions[2]
    want = direct_low(policy, q)
    chunks = list(client.chat.completions.create(model="tiny", reasoning_effort="low", stream=True,
                                                 stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": q}]))
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert all(getattr(d, "reasoning", None) == getattr(d, "reasoning_content", None) for d in deltas)
    # one chain: its lines are streamed as the model writes them (one policy call per step), nothing else
    assert "".join(getattr(d, "reasoning", None) or "" for d in deltas) == split_reasoning(want.chain)
    assert "".join(d.content or "" for d in deltas) == (want.answer or "")
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["stop" if want.answer is not None else "length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == want.ledger.generated_tokens


def test_auth(server):
    url, _ = server
    bad = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "1+1"}])
    assert e.value.body["code"] == "invalid_api_key"
    r = httpx.post(url + "/v1/completions", json={"model": "tiny", "prompt": "1+1"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(url + "/health").json()["model"] == "tiny"  # health needs no key
    models = openai.OpenAI(base_url=url + "/v1", api_key=KEY).models.list()
    assert [m.id for m in models.data] == ["tiny"]


def test_concurrent_users_share_batches(client, server, questions):
    stats = server[1].state.policy.stats
    before = dict(stats)
    out: list = [None] * 8

    def ask(i):
        out[i] = client.chat.completions.create(model="tiny", reasoning_effort="medium", max_completion_tokens=128,
                                                messages=[{"role": "user", "content": questions[i % 3]}])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None and r.usage.completion_tokens <= 128 for r in out)
    calls, batches = stats["calls"] - before["calls"], stats["batches"] - before["batches"]
    assert calls >= 8 and batches < calls  # think: one or two sample calls per request; some were merged


def test_chained_servers(server, policy, questions):
    """Server A serves an OpenAIPolicy that samples from server B over /v1/completions."""
    b_url, _ = server
    upstream = OpenAIPolicy(b_url, "tiny", api_key=KEY, max_retries=0)
    # the HTTP policy reproduces the local one: greedy step continuations, token counts and log-probabilities
    prompts = [Prompt(questions[0]), Prompt(questions[1])]
    local = policy.sample(prompts, temperature=0, max_tokens=64, stop_at_step=True)
    remote = upstream.sample(prompts, temperature=0, max_tokens=64, stop_at_step=True)
    for (lc,), (rc,) in zip(local, remote):
        assert (rc.text, rc.finish, rc.n_tokens) == (lc.text, lc.finish, lc.n_tokens)
        assert all(math.isclose(a, b, abs_tol=1e-4) for a, b in zip(rc.logprobs[:-1], lc.logprobs[:-1]))
    front = create_app(upstream, ServeConfig(name="front", effort_high="beam:4:cheap"))
    with serve_in_thread(front) as a_url:
        client = openai.OpenAI(base_url=a_url + "/v1", api_key="unused", max_retries=0)
        want = direct_low(policy, questions[2])
        r = client.chat.completions.create(model="front", reasoning_effort="low",
                                           messages=[{"role": "user", "content": questions[2]}])
        assert r.choices[0].message.content == (want.answer or "")
        assert r.choices[0].message.reasoning == split_reasoning(want.chain)
        r = client.chat.completions.create(model="front", reasoning_effort="high", max_completion_tokens=300,
                                           messages=[{"role": "user", "content": questions[0]}])
        assert r.qstar["strategy"] == "beam" and 0 < r.usage.completion_tokens <= 300
    upstream.close()


def test_load_policy_takes_a_decode_dtype(tiny_checkpoint):
    import torch

    from qstar.serve.cli import load_policy

    assert load_policy(ServeConfig(checkpoint=str(tiny_checkpoint), decode_dtype="bfloat16")).dtype == torch.bfloat16
    assert load_policy(ServeConfig(checkpoint=str(tiny_checkpoint))).dtype is None
    with pytest.raises(ValueError, match="unknown decode dtype"):
        load_policy(ServeConfig(checkpoint=str(tiny_checkpoint), decode_dtype="int4"))
    with pytest.raises(ValueError, match="exactly one of"):
        load_policy(ServeConfig())
