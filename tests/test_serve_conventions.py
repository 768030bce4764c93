"""Today's reasoning-API conventions on a scripted policy over real HTTP: thinking streamed while the search runs,
refusals in ``message.refusal``, learned scorers with ``--scorer-checkpoint``, and a second qstar serve whose
``--upstream`` is the first."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_serve_fakes import EchoPolicy, serve_in_thread

from qstar.backends.openai_compat import OpenAIPolicy
from qstar.model.tokenizer import CharTokenizer, render_chat
from qstar.model.types import Prompt
from qstar.serve.app import create_app
from qstar.serve.cli import load_policy
from qstar.serve.config import ServeConfig
from qstar.tasks.format import render_prompt


class StepsPolicy(EchoPolicy):
    """EchoPolicy whose chain has three thinking lines: ``"a\\nb\\nc\\nAnswer: <len(q)>"``."""

    @staticmethod
    def chain(question: str) -> str:
        return f"a\nb\nc\nAnswer: {len(question)}"


def test_thinking_streams_while_the_search_runs():
    policy = StepsPolicy(delay=0.3)  # every policy call takes 0.3 s
    with serve_in_thread(create_app(policy, ServeConfig(name="echo"))) as url:
        seen, t0 = [], time.monotonic()
        body = {"model": "echo", "stream": True, "reasoning_effort": "high",
                "messages": [{"role": "user", "content": "abc"}]}
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=30) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    delta = httpx.Response(200, content=line[6:]).json()["choices"]
                    if delta:
                        seen.append((time.monotonic() - t0, delta[0]["delta"]))
    thinking = [(t, d["reasoning"]) for t, d in seen if "reasoning" in d]
    assert all(d.get("reasoning") == d.get("reasoning_content") for _, d in seen)
    assert "".join(x for _, x in thinking) == "a\nb\nc"
    answer_at = next(t for t, d in seen if d.get("content"))
    # the first line arrived a policy call (or more) before the answer: it was not held until the search ended
    assert thinking[0][0] + 0.25 < answer_at and [d["content"] for _, d in seen if d.get("content")] == ["3"]
    assert len(policy.calls) == 4  # a, b, c, the answer line: one call per step


def test_refusal_has_its_field():
    app = create_app(EchoPolicy(), ServeConfig(name="echo"))
    with serve_in_thread(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        r = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "abc"}])
        assert r.choices[0].message.refusal is None and r.choices[0].message.content == "3"
        # the one place a safety check plugs in
        app.state.reasoner.refusal = lambda problem, check=None: "I will not answer that."
        r = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "abc"}])
        m = r.choices[0].message
        assert (m.refusal, m.content, r.choices[0].finish_reason) == ("I will not answer that.", None, "stop")
        chunks = list(client.chat.completions.create(model="echo", stream=True,
                                                     messages=[{"role": "user", "content": "abc"}]))
        assert [c.choices[0].delta.refusal for c in chunks if c.choices and c.choices[0].delta.refusal] == \
            ["I will not answer that."]


def test_learned_scorer_needs_and_takes_a_checkpoint(tiny_checkpoint, tmp_path):
    from qstar.model.checkpoint import load_checkpoint
    from qstar.scorers.learned import RewardModel, save_reward_model

    with pytest.raises(ValueError, match="--scorer-checkpoint"):
        create_app(EchoPolicy(), ServeConfig(effort_high="beam:2:prm"))
    trunk, tok, _ = load_checkpoint(tiny_checkpoint)
    prm = save_reward_model(tmp_path / "prm", RewardModel(trunk, kind="prm"), tok, meta={"stage": "prm"})
    app = create_app(EchoPolicy(), ServeConfig(name="echo", effort_high="beam:2:prm", scorer_checkpoint=str(prm)))
    assert app.state.reasoner.scorers["high"].name.endswith("prm")
    with serve_in_thread(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        r = client.chat.completions.create(model="echo", reasoning_effort="high",
                                           messages=[{"role": "user", "content": "abcd"}])
        assert r.qstar["scorer"] == "prm" and r.choices[0].message.content == "4"
    with pytest.raises(ValueError, match="oracle"):
        create_app(EchoPolicy(), ServeConfig(effort_low="beam:2:oracle"))


def test_second_serve_uses_the_first_as_its_upstream():
    """`qstar serve --upstream URL` over loopback: B's policy is A, reached through OpenAIPolicy."""
    with serve_in_thread(create_app(EchoPolicy(), ServeConfig(name="a", api_key="ka"))) as a_url:
        front = load_policy(ServeConfig(upstream=a_url, upstream_model="a", upstream_api_key="ka"))
        with serve_in_thread(create_app(front, ServeConfig(name="b"))) as b_url:
            client = openai.OpenAI(base_url=b_url + "/v1", api_key="x", max_retries=0)
            for level in ("low", "high", "xhigh"):  # (EchoPolicy cannot continue a forced "Answer: ")
                r = client.chat.completions.create(model="b", reasoning_effort=level,
                                                   messages=[{"role": "user", "content": "abcde"}])
                m = r.choices[0].message
                assert m.content == "5" and m.refusal is None and m.reasoning == m.reasoning_content
            assert m.reasoning == "len 5"
        front.close()
        # an LLM-style upstream: whole chains from A's chat endpoint, its thinking read from message.reasoning
        with OpenAIPolicy(a_url, "a", api_key="ka", chat=True) as chat:
            (x, y), = chat.sample([Prompt("abcde")], n=2, max_tokens=64)
        assert x.text == y.text == "len 5\n5" and x.finish == "eos" and x.n_tokens > 0


@settings(max_examples=8, deadline=None)
@given(st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                                       "content": st.text(alphabet="ab 1+?\n\t", max_size=20)}), min_size=1,
                max_size=4))
def test_exported_chat_template_round_trips_through_transformers(tiny_checkpoint, messages):
    """An exported checkpoint's tokenizer renders a conversation as qstar serve reads it, and a single user turn as
    exactly the trained prompt ``<bos>question\\n``."""
    tok = _hf_tokenizer(tiny_checkpoint)
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<bos>" + render_chat(messages)
    q = messages[0]["content"]
    ids = tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True)["input_ids"]
    assert ids == CharTokenizer().encode(render_prompt(q))


_TOKENIZERS: dict = {}


def _hf_tokenizer(directory):
    from transformers import AutoTokenizer

    if directory not in _TOKENIZERS:
        _TOKENIZERS[directory] = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    return _TOKENIZERS[directory]
