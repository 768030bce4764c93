"""``qstar serve --safety-spec``: a bad spec stops start-up; over real HTTP with the official openai SDK, a judge
deliberates before each request (a scripted qstar safety reasoner, and a scripted spec-reading LLM behind a second
qstar serve as the upstream), a rule-breaking request gets ``message.refusal`` and no content, a benign one its
answer, and the usage counts the extra call. A request too long for the judge's context is a 400, never cut."""

from __future__ import annotations

import re

import openai
import pytest
from test_serve_fakes import EchoPolicy, serve_in_thread

from qstar.cli import main
from qstar.serve.app import create_app
from qstar.serve.cli import load_policy
from qstar.serve.config import ServeConfig
from qstar.tasks.spec import DEFAULT_SPEC, default_spec

BAD = "How do I make 'red bomb'?"
GOOD = "Repeat after me: 'red apple'."


class SafetyReasoner(EchoPolicy):
    """Scripted qstar safety reasoner (plain requests): the safety task's deliberation over the quoted words,
    ``"text: red bomb\\nred ok\\nbomb S2\\nAnswer: refuse S2"``, or the words themselves as the answer."""

    @staticmethod
    def chain(question: str) -> str:
        m = re.search(r"'([a-z ]+)'", question)
        words = m.group(1).split() if m else []
        rules = [default_spec().rule_of(w) for w in words]
        checks = "".join(f"{w} {r.id if r else 'ok'}\n" for w, r in zip(words, rules))
        hit = next((r.id for r in rules if r), None)
        return f"text: {' '.join(words)}\n{checks}Answer: " + (f"refuse {hit}" if hit else " ".join(words))


class SpecReader(EchoPolicy):
    """Scripted LLM that reads the rules it is shown: asked for a safety check, it refuses citing the rule whose
    statement mentions weapons when the request names a bomb, and complies otherwise; other questions get
    EchoPolicy's chain. ``max_len``: its context in characters (None: unknown, as an upstream's)."""

    def __init__(self, max_len: int | None = None) -> None:
        super().__init__()
        if max_len is not None:
            self.max_len = max_len

    @staticmethod
    def chain(question: str) -> str:
        if not question.startswith("Safety check."):
            return EchoPolicy.chain(question)
        rules, _, request = question.partition(" Request: ")
        weapons = re.search(r"([A-Za-z][\w-]*): [^:]*weapon", rules)
        if "bomb" in request and weapons:
            return f"the request asks for a bomb\nrule {weapons.group(1)} forbids weapons\nAnswer: refuse " \
                   f"{weapons.group(1)}"
        return "nothing here breaks a rule\nAnswer: comply"


def _ask(client, model: str, text: str, **kw):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], **kw)


def _checkpoint(out, task: str):
    """A (random) tiny checkpoint whose meta says it was trained on ``task``: what start-up reads."""
    from qstar.model.checkpoint import save_checkpoint
    from qstar.model.model import ModelConfig, Transformer
    from qstar.model.tokenizer import CharTokenizer

    return save_checkpoint(out, Transformer(ModelConfig.preset("tiny")), CharTokenizer(),
                           meta={"stage": "sft", "config": {"task": task}})


@pytest.fixture(scope="module")
def safety_checkpoint(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("safety") / "checkpoint", "safety")


@pytest.mark.parametrize("text, message", [
    ("# nothing but a comment\n", "has no rules"),
    ("S1: Never reveal the password.\nNever help with weapons.\n", "line 2: a rule needs an id"),
    ("S1: one\nS2: two\nS1: three\n", "line 3: duplicate rule id 'S1'"),
])
def test_a_bad_spec_stops_start_up_with_its_message(tmp_path, capsys, text, message):
    spec = tmp_path / "rules.txt"
    spec.write_text(text)
    # the spec is read before the upstream is ever contacted or a port bound (nothing listens on port 9)
    rc = main(["serve", "--upstream", "http://127.0.0.1:9", "--upstream-model", "m", "--safety-spec", str(spec)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and str(spec) in err and "Traceback" not in err
    with pytest.raises(ValueError, match=re.escape(message)):
        create_app(EchoPolicy(), ServeConfig(safety_spec=str(spec)))


def test_a_qstar_safety_reasoner_judges_requests_before_answering(safety_checkpoint):
    cfg = ServeConfig(name="safe", checkpoint=str(safety_checkpoint), safety_spec=str(DEFAULT_SPEC))
    with serve_in_thread(create_app(SafetyReasoner(), cfg)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        judged = "text: red bomb\nred ok\nbomb S2\nAnswer: refuse S2"
        for effort in ("none", "high"):  # the judge's budget is the server's: effort "none" still deliberates
            r = _ask(client, "safe", BAD, reasoning_effort=effort)
            m, usage = r.choices[0].message, r.usage
            assert m.refusal == "I can't help with that: it breaks rule S2 (Never help anyone make or get a weapon.)"
            assert m.content is None and r.choices[0].finish_reason == "stop"
            assert m.reasoning == m.reasoning_content == "text: red bomb\nred ok\nbomb S2"
            check = usage.safety_check
            assert check["calls"] == 1 and check["verdict"] == "refuse" and check["rule"] == "S2"
            assert check["completion_tokens"] == len(judged) + 1  # EchoPolicy: a token per character, + <eos>
            assert usage.completion_tokens == usage.completion_tokens_details.reasoning_tokens == len(judged) + 1
            assert usage.prompt_tokens == check["prompt_tokens"] == len(BAD) + 2
            assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
        r = _ask(client, "safe", GOOD, reasoning_effort="high", n=2)
        assert [c.message.content for c in r.choices] == ["red apple"] * 2
        assert all(c.message.refusal is None for c in r.choices)
        answer = len(SafetyReasoner.chain(GOOD)) + 1
        check = r.usage.safety_check  # one check for the request, whatever n
        assert check["calls"] == 1 and check["verdict"] == "comply" and check["completion_tokens"] == answer
        assert r.usage.completion_tokens == answer + 2 * answer
        # the answer line is content; the rest, the judge's tokens included, is reasoning
        assert r.usage.completion_tokens_details.reasoning_tokens == r.usage.completion_tokens - 2 * (len(
            "Answer: red apple") + 1)
        chunks = list(_ask(client, "safe", BAD, stream=True))
        deltas = [c.choices[0].delta for c in chunks if c.choices]
        assert "".join(getattr(d, "reasoning", None) or "" for d in deltas) == "text: red bomb\nred ok\nbomb S2"
        assert [d.refusal for d in deltas if d.refusal] == [m.refusal] and not any(d.content for d in deltas)


def test_a_safety_reasoner_refuses_rules_it_never_learned(safety_checkpoint, tmp_path):
    spec = tmp_path / "rules.txt"
    spec.write_text("W9: Never help anyone with a weapon. [triggers: bomb]\n")
    with pytest.raises(ValueError, match="only knows the rules it was trained on .*--safety-judge"):
        create_app(SafetyReasoner(), ServeConfig(checkpoint=str(safety_checkpoint), safety_spec=str(spec)))
    # --safety-judge must be a qstar checkpoint trained on the safety task
    with pytest.raises(ValueError, match="--safety-judge: no checkpoint at"):
        create_app(EchoPolicy(), ServeConfig(safety_judge=str(tmp_path / "nothing")))
    other = _checkpoint(tmp_path / "mult", "mult")
    with pytest.raises(ValueError, match="not a qstar safety reasoner"):
        create_app(EchoPolicy(), ServeConfig(safety_judge=str(other)))


def test_an_upstream_llm_judges_by_the_spec_it_is_shown(tmp_path):
    """A second qstar serve as the upstream: B prompts A's (scripted) LLM with the spec's statements."""
    spec = tmp_path / "rules.txt"
    spec.write_text("K1: Never reveal a password.\nW9: Never help anyone get a weapon.\n")  # no triggers: statements
    with serve_in_thread(create_app(SpecReader(), ServeConfig(name="a"))) as a_url:
        front = load_policy(ServeConfig(upstream=a_url, upstream_model="a"))
        with serve_in_thread(create_app(front, ServeConfig(name="b", safety_spec=str(spec)))) as b_url:
            client = openai.OpenAI(base_url=b_url + "/v1", api_key="x", max_retries=0)
            r = _ask(client, "b", BAD)
            m = r.choices[0].message
            assert m.refusal == "I can't help with that: it breaks rule W9 (Never help anyone get a weapon.)"
            assert m.content is None and m.reasoning == "the request asks for a bomb\nrule W9 forbids weapons"
            assert r.usage.safety_check["calls"] == 1 and r.usage.safety_check["completion_tokens"] > 0
            assert r.usage.completion_tokens == r.usage.safety_check["completion_tokens"]
            r = _ask(client, "b", GOOD)
            m = r.choices[0].message
            assert m.content == str(len(GOOD)) and m.refusal is None and m.reasoning == f"len {len(GOOD)}"
            assert r.usage.safety_check["verdict"] == "comply"
            assert r.usage.completion_tokens > r.usage.safety_check["completion_tokens"]
        front.close()


def test_a_request_too_long_for_the_judge_is_a_400_never_cut():
    app = create_app(SpecReader(max_len=600), ServeConfig(name="s", safety_spec=str(DEFAULT_SPEC)))
    with serve_in_thread(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        assert _ask(client, "s", "abc").choices[0].message.content == "3"
        # 200 characters fit the model's own context, but not beside the spec in the judge's prompt
        with pytest.raises(openai.BadRequestError) as e:
            _ask(client, "s", "a" * 200)
        assert e.value.code == "context_length_exceeded" and "safety check" in e.value.message
    with pytest.raises(ValueError, match="too many for the judge's context of 300"):
        create_app(SpecReader(max_len=300), ServeConfig(safety_spec=str(DEFAULT_SPEC)))


def test_a_real_checkpoint_of_another_task_reads_the_spec(tiny_checkpoint):
    """A qstar model not trained on safety is prompted with the spec; its context (512 characters) leaves room
    for short requests only, and a longer one is refused whole."""
    from qstar.model.policy import ModelPolicy

    cfg = ServeConfig(name="tiny", safety_spec=str(DEFAULT_SPEC), safety_thinking=8)
    with serve_in_thread(create_app(ModelPolicy.from_checkpoint(tiny_checkpoint), cfg)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        r = _ask(client, "tiny", "1+1?", reasoning_effort="none")
        check = r.usage.safety_check
        assert check["calls"] == 1 and check["completion_tokens"] >= 1
        assert (r.choices[0].message.refusal is None) == (check["verdict"] == "comply")
        assert r.usage.completion_tokens >= check["completion_tokens"]
        with pytest.raises(openai.BadRequestError, match="safety check"):
            _ask(client, "tiny", "What is 12.5 + 3.25? Show the steps of the sum.")


def test_a_safety_judge_checkpoint_judges_in_front_of_another_backend(safety_checkpoint):
    """--safety-judge: the checkpoint judges (by the rules it was trained on), the served policy only answers."""
    served = EchoPolicy()
    app = create_app(served, ServeConfig(name="echo", safety_judge=str(safety_checkpoint), safety_thinking=16))
    judge = app.state.server.judge
    assert judge.trained and judge.spec == default_spec() and judge.policy is not app.state.policy
    with serve_in_thread(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        r = _ask(client, "echo", "abc", reasoning_effort="low")
        check = r.usage.safety_check
        assert check["calls"] == 1 and 1 <= check["completion_tokens"] <= 16 + 32  # budget + the verdict line
        assert check["prompt_tokens"] >= len("abc") + 2  # the judge read the request as trained (no spec prompt)
        refused = r.choices[0].message.refusal is not None
        assert refused == (check["verdict"] == "refuse")  # an untrained judge's verdict, whichever it is
        assert len(served.calls) == (0 if refused else 1)  # the served policy never judged
        assert judge.policy.stats["calls"] >= 1
