"""Malformed and hostile requests over real HTTP never get a 5xx, and every error is in OpenAI's shape.

A scripted policy keeps each valid request fast; the same validation runs in front of every real policy.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_serve_fakes import EchoPolicy, serve_in_thread

from qstar.serve.app import create_app
from qstar.serve.config import ServeConfig

CFG = ServeConfig(max_messages=8, max_n=3, max_completion_tokens=200, max_body_bytes=4096, max_question_chars=64)


@pytest.fixture(scope="module")
def client():
    with serve_in_thread(create_app(EchoPolicy(), CFG)) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield c


def check(r: httpx.Response, *, stream: bool = False) -> None:
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and isinstance(err["message"], str)
    elif stream:
        assert r.text.rstrip().endswith("data: [DONE]")
    else:
        assert r.json()["choices"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
content = st.one_of(st.text(max_size=80), st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image"]),
                                                                          "text": st.text(max_size=20)})), json_values)
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "user", "system", "assistant", "robot", 3])},
                                optional={"content": content, "reasoning_content": content, "reasoning": content})
user = st.fixed_dictionaries({"role": st.just("user"), "content": st.text(min_size=1, max_size=70)})
# valid-looking values (so requests get past the first check) plus junk for a few fields at a time
chat_valid = {
    "model": st.just("echo"),
    "messages": st.one_of(st.lists(user, min_size=1, max_size=3), st.lists(message, max_size=10)),
    "reasoning_effort": st.sampled_from(["none", "minimal", "low", "medium", "high", "xhigh"]),
    "max_thinking_tokens": st.integers(-3, 10**7),
    "max_completion_tokens": st.integers(-5, 300),
    "n": st.integers(-1, 5),
    "temperature": st.floats(-1, 3),
    "top_p": st.floats(-1, 2),
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
}
completion_valid = {
    "model": st.just("echo"),
    "prompt": st.one_of(st.text(max_size=40), st.lists(st.text(max_size=20), max_size=5)),
    "max_tokens": st.integers(-2, 300),
    "stop": st.sampled_from(["\n", ["\n", "="], [""], "x" * 3, ["a"] * 5]),
    "logprobs": st.one_of(st.integers(-1, 7), st.booleans()),
    "temperature": st.floats(0, 2),
    "n": st.integers(0, 4),
    "echo": st.booleans(),
}
junk = st.one_of(json_values, st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["echo", True, -1]))


def bodies(valid: dict):
    """A mostly valid body: required fields present, optional ones sometimes, then 0-2 fields replaced by junk."""
    base = st.fixed_dictionaries({k: v for k, v in valid.items() if k in ("model", "messages", "prompt")},
                                 optional={k: v for k, v in valid.items() if k not in ("model", "messages", "prompt")})
    mutation = st.dictionaries(st.sampled_from(sorted(valid)), junk, max_size=2)
    drop = st.sets(st.sampled_from(sorted(valid)), max_size=1)
    return st.builds(lambda b, m, d: {k: v for k, v in {**b, **m}.items() if k not in d}, base, mutation, drop)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies(chat_valid))
def test_chat_fuzz_never_5xx(client, body):
    r = client.post("/v1/chat/completions", content=json.dumps(body))  # NaN/Infinity literals included
    check(r, stream=body.get("stream") is True)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies(completion_valid))
def test_completions_fuzz_never_5xx(client, body):
    check(client.post("/v1/completions", content=json.dumps(body)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.one_of(st.binary(max_size=64), json_values.map(lambda v: json.dumps(v).encode())))
def test_garbage_bodies_are_400(client, raw):
    for path in ("/v1/chat/completions", "/v1/completions"):
        r = client.post(path, content=raw)
        check(r)
        assert r.status_code == 400


def test_limits_and_routes(client):
    user = {"role": "user", "content": "hi"}
    cases = [
        ({"model": "echo", "messages": [user] * 9}, 400, "messages"),
        ({"model": "echo", "messages": [{"role": "user", "content": "x" * 65}]}, 400, "messages"),
        ({"model": "echo", "messages": [user], "n": 4}, 400, "n"),
        ({"model": "echo", "messages": [user], "max_completion_tokens": 201}, 400, "max_completion_tokens"),
        ({"model": "echo", "messages": [user], "reasoning_effort": "max"}, 400, "reasoning_effort"),
        ({"model": "echo", "messages": [user], "max_thinking_tokens": 0}, 400, "max_thinking_tokens"),
        ({"model": "echo", "messages": [user], "thinking_token_budget": -1}, 400, "thinking_token_budget"),
        ({"model": "echo", "messages": [user], "max_thinking_tokens": 8, "thinking_token_budget": 9}, 400,
         "thinking_token_budget"),
        ({"model": "echo", "messages": [user], "temperature": True}, 400, "temperature"),
        ({"model": "echo", "messages": [{"role": "system", "content": "be brief"}]}, 400, "messages"),
        ({"messages": [user]}, 400, "model"),
        ({"model": "gpt-4", "messages": [user]}, 404, "model"),
    ]
    for body, status, param in cases:
        r = client.post("/v1/chat/completions", json=body)
        assert (r.status_code, r.json()["error"]["param"]) == (status, param), body
    assert client.post("/v1/chat/completions", content=b"[" * 5000).status_code == 413
    deep = b"[" * 2000 + b"]" * 2000  # under the size cap, deeper than Python's recursion limit
    assert client.post("/v1/completions", content=deep).status_code == 400
    for r in (client.get("/nope"), client.get("/v1/chat/completions")):
        assert r.status_code in (404, 405) and "error" in r.json()
    # system prompt and earlier turns are passed on whole: the policy reads "sys first ok abcd" (17 characters)
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok", "reasoning_content": "hm"},
            {"role": "user", "content": [{"type": "text", "text": "abcd"}]}]
    r = client.post("/v1/chat/completions", json={"model": "echo", "messages": msgs, "reasoning_effort": "low"})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "17"
    bad = [{"role": "assistant", "content": "ok", "reasoning": 3}, user]
    r = client.post("/v1/chat/completions", json={"model": "echo", "messages": bad})
    assert (r.status_code, r.json()["error"]["param"]) == (400, "messages[0].reasoning")


def test_slow_search_times_out_with_504():
    cfg = ServeConfig(request_timeout_s=0.05, effort_low="beam:2")  # beam calls the policy once per step
    with serve_in_thread(create_app(EchoPolicy(delay=0.1), cfg)) as url:
        r = httpx.post(url + "/v1/chat/completions", json={"model": "echo", "reasoning_effort": "low",
                                                           "messages": [{"role": "user", "content": "abc"}]})
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
