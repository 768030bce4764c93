"""OpenAIPolicy: request shape and response mapping (mock transport), retries and exhaustion against real local
servers, and the serving layer's 502/503 for a failing upstream."""

from __future__ import annotations

import json
import socket

import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from hypothesis import given, settings
from hypothesis import strategies as st
from test_serve_fakes import EchoPolicy, serve_in_thread

from qstar.backends.openai_compat import OpenAIPolicy, UpstreamError, split_steps
from qstar.model.types import Prompt
from qstar.serve.app import create_app
from qstar.serve.config import ServeConfig


def mock(handler, **kw) -> tuple[OpenAIPolicy, list[dict]]:
    seen: list[dict] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return handler(request)

    return OpenAIPolicy("http://up.test", "m", transport=httpx.MockTransport(respond), **kw), seen


def test_request_shape_and_response_mapping():
    choices = [  # deliberately out of order; vLLM-style stop_reason on the first two
        {"index": 1, "text": "b=2", "finish_reason": "stop", "stop_reason": None,
         "logprobs": {"token_logprobs": [-1.0, -2.0, -3.0]}},
        {"index": 0, "text": "a=1", "finish_reason": "stop", "stop_reason": "\n",
         "logprobs": {"token_logprobs": [-0.5, -0.5, -0.5]}},
        {"index": 2, "text": "Answer: 7", "finish_reason": "stop", "logprobs": None},  # plain OpenAI: no stop_reason
        {"index": 3, "text": "xyz", "finish_reason": "length", "logprobs": {"token_logprobs": [-1, None, -1]}},
    ]
    usage = {"prompt_tokens": 30, "completion_tokens": 18}
    policy, seen = mock(lambda r: httpx.Response(200, json={"choices": choices, "usage": usage}))
    out = policy.sample([Prompt("q one", "s1\n"), Prompt("q\ntwo")], n=2, temperature=0.7, max_tokens=9,
                        stop_at_step=True)
    assert seen == [{"model": "m", "prompt": ["q one\ns1\n", "q two\n"], "max_tokens": 9, "temperature": 0.7,
                     "top_p": 1.0, "n": 2, "stop": ["\n"], "logprobs": 0}]
    (a, b), (c, d) = out
    assert (a.text, a.finish, a.n_tokens, a.logprobs) == ("a=1\n", "step", 4, [-0.5, -0.5, -0.5, 0.0])
    assert (b.text, b.finish, b.n_tokens) == ("b=2", "eos", 4)
    assert (c.text, c.finish, c.logprobs, c.n_tokens) == ("Answer: 7", "eos", [], round(18 * 9 / 18))
    assert (d.text, d.finish, d.logprobs, d.n_tokens) == ("xyz", "length", [-1.0, 0.0, -1.0], 3)
    # the prompt is read once per prompt, not once per sample
    assert [x.prompt_tokens for x in (a, b, c, d)] == [15, 0, 15, 0]


def test_greedy_asks_once_and_copies_and_one_request_per_prompt_when_unbatched():
    reply = {"choices": [{"index": 0, "text": "Answer: 1", "finish_reason": "stop"}], "usage": {}}
    policy, seen = mock(lambda r: httpx.Response(200, json=reply), batch_prompts=False, logprobs=False)
    out = policy.sample([Prompt("a"), Prompt("b")], n=3, temperature=0)
    assert [s["n"] for s in seen] == [1, 1] and [s["prompt"] for s in seen] == [["a\n"], ["b\n"]]
    assert "logprobs" not in seen[0] and [len(r) for r in out] == [3, 3]
    assert out[0][2].text == "Answer: 1" and out[0][2] is not out[0][0]
    assert policy.sample([Prompt("a")], max_tokens=0)[0][0].finish == "length" and len(seen) == 2


@pytest.mark.parametrize("reply", [{"choices": "nope"}, {"choices": [{"text": 3}]}, ["not", "a", "dict"]])
def test_malformed_upstream_replies_raise_upstream_error(reply):
    policy, _ = mock(lambda r: httpx.Response(200, json=reply))
    with pytest.raises(UpstreamError):
        policy.sample([Prompt("a")])


def flaky_app(fail_times: int, status: int = 503) -> tuple[FastAPI, dict]:
    """A completions endpoint that fails ``fail_times`` times with ``status``, then answers."""
    app, state = FastAPI(), {"calls": 0}

    @app.post("/v1/completions")
    async def completions(request: Request):
        state["calls"] += 1
        body = await request.json()
        if state["calls"] <= fail_times:
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=status)
        return {"choices": [{"index": 0, "text": "Answer: " + body["prompt"][0].strip(), "finish_reason": "stop",
                             "logprobs": {"token_logprobs": [-0.1] * 9}}], "usage": {"prompt_tokens": 2}}

    return app, state


def test_retries_then_succeeds_over_http():
    app, state = flaky_app(fail_times=2)
    with serve_in_thread(app) as url:
        policy = OpenAIPolicy(url + "/v1", "m", max_retries=3, backoff_s=0.01)
        c = policy.sample([Prompt("7")])[0][0]
    assert state["calls"] == 3 and (c.text, c.finish, c.n_tokens) == ("Answer: 7", "eos", 10)


def test_retry_exhaustion_and_non_retryable_errors():
    app, state = flaky_app(fail_times=100)
    with serve_in_thread(app) as url:
        with pytest.raises(UpstreamError, match="after 3 attempts") as e:
            OpenAIPolicy(url, "m", max_retries=2, backoff_s=0.01).sample([Prompt("7")])
        assert (e.value.status, e.value.transport, e.value.attempts, state["calls"]) == (503, False, 3, 3)
    app, state = flaky_app(fail_times=100, status=400)  # a client error is not retried
    with serve_in_thread(app) as url:
        with pytest.raises(UpstreamError, match="rejected") as e:
            OpenAIPolicy(url, "m", max_retries=5, backoff_s=0.01).sample([Prompt("7")])
        assert (e.value.status, e.value.attempts, state["calls"]) == (400, 1, 1)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(UpstreamError) as e:
        OpenAIPolicy(dead, "m", max_retries=1, backoff_s=0.01).sample([Prompt("7")])
    assert (e.value.transport, e.value.attempts, e.value.status) == (True, 2, None)


def test_server_maps_upstream_failure_to_502_503():
    dead_port = socket.socket()
    dead_port.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{dead_port.getsockname()[1]}"
    app, _ = flaky_app(fail_times=100, status=500)
    with serve_in_thread(app) as broken:
        for upstream, status in ((dead, 503), (broken, 502)):
            policy = OpenAIPolicy(upstream, "m", max_retries=1, backoff_s=0.01)
            with serve_in_thread(create_app(policy, ServeConfig(name="front"))) as url:
                client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
                for stream in (False, True):
                    with pytest.raises(openai.APIStatusError) as e:
                        client.chat.completions.create(model="front", messages=[{"role": "user", "content": "1+1"}],
                                                       reasoning_effort="low", stream=stream)
                    assert e.value.status_code == status and e.value.body["type"] == "upstream_error"
    dead_port.close()


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="http"):
        OpenAIPolicy("localhost:8000", "m")
    with pytest.raises(ValueError, match="default_effort"):
        create_app(EchoPolicy(), ServeConfig(default_effort="max"))
    with pytest.raises(ValueError, match="unknown strategy"):
        create_app(EchoPolicy(), ServeConfig(effort_high="nope:4"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list("ab1.) \n\t\ré") + ["Step 2:", "\n\n", "3) "]), max_size=30).map("".join)
       | st.text(max_size=60))
def test_split_steps_never_raises_and_keeps_every_word(text):
    steps = split_steps(text)
    assert all(s and "\n" not in s and s == " ".join(s.split()) for s in steps)
    assert " ".join(steps).split() == text.split()


@given(st.lists(st.text(alphabet="ab =+-", min_size=1, max_size=12).filter(str.strip), max_size=6))
def test_split_steps_reads_blank_line_and_numbered_steps_back(steps):
    steps = [" ".join(s.split()) for s in steps]
    assert split_steps("\n\n".join(steps)) == steps
    numbered = [f"{i + 1}. {s}" for i, s in enumerate(steps)]
    assert split_steps("\n".join(numbered)) == numbered


def test_chat_endpoint_reads_either_thinking_field_and_asks_again_for_missing_samples():
    replies = iter([
        {"choices": [{"message": {"content": "So the answer is \\boxed{9}.", "reasoning_content": "1. a\n2. b"},
                      "finish_reason": "stop"}], "usage": {"prompt_tokens": 7, "completion_tokens": 12}},
        {"choices": [{"message": {"content": "9", "reasoning": "think\n\nmore"}, "finish_reason": "length"}]},
    ])
    policy, seen = mock(lambda r: httpx.Response(200, json=next(replies)), chat=True)
    (a, b), = policy.sample([Prompt("what  is\n3*3")], n=2, max_tokens=50)
    assert [s["n"] for s in seen] == [2, 1]  # a server that ignores n is asked again for the rest
    assert seen[0]["messages"] == [{"role": "user", "content": "what is 3*3"}]
    assert (a.text, a.finish, a.n_tokens, a.prompt_tokens) == ("1. a\n2. b\nSo the answer is \\boxed{9}.", "eos", 12, 7)
    assert (b.text, b.finish) == ("think\nmore\n9", "length")
    # a partial chain or one step continues through /v1/completions, with the model's chat template rendered
    tpl = "{{ bos_token }}<|user|>{{ messages[0]['content'] }}<|assistant|>"
    policy, seen = mock(lambda r: httpx.Response(200, json={"choices": [{"text": "x\n", "finish_reason": "stop"}]}),
                        chat=True, chat_template=tpl)
    policy.sample([Prompt("q", "s1\n")], stop_at_step=True)
    assert seen[0]["prompt"] == ["<|user|>q<|assistant|>s1\n"]
