"""A thinking budget at inference (strategy ``think``) and the reasoning-effort table mapped onto it: scripted
policies for the logic, the real tiny checkpoint for "the forced answer is the model's own", and the effort levels
through ``qstar search``/``qstar ask`` (``qstar.cli.main``) and ``qstar serve`` (the openai SDK over real HTTP)."""

from __future__ import annotations

import json

import openai
import pytest
from test_search_fakes import ScriptedPolicy, StepScorer, prob, table_script
from test_serve_fakes import serve_in_thread

from qstar.cli import main
from qstar.model.types import Completion, Prompt
from qstar.scorers import get_scorer
from qstar.search import get_strategy
from qstar.search.effort import EFFORTS, LEVELS, Effort, capped, effort_of, effort_table
from qstar.search.thinking import ANSWER_TOKENS, context_length, cut, thinking_budget
from qstar.tasks import extract_answer, get_task
from qstar.tasks.format import ANSWER_PREFIX

think = get_strategy("think")


class Rambler:
    """Never closes its thinking: it writes "step k: the answer is 7 \\boxed{7}" lines up to its token cap (1 token =
    1 character). Asked to continue after an answer prefix, it writes ``answer`` and <eos>. Records every call."""

    name, params = "rambler", 100

    def __init__(self, answer: str = "42") -> None:
        self.answer, self.calls = answer, []

    def sample(self, prompts, *, n=1, temperature=1.0, top_p=1.0, max_tokens=256, stop_at_step=False):
        self.calls.append(dict(partials=[p.partial for p in prompts], n=n, temperature=temperature,
                               max_tokens=max_tokens, stop_at_step=stop_at_step))
        out = []
        for q, partial in prompts:
            if partial.endswith(ANSWER_PREFIX):
                text = self.answer[:max_tokens]
                c = Completion(text, [-0.1] * (len(text) + 1), len(text) + 1, 0, "eos")
            else:
                text = "".join(f"step {k}: the answer is 7 \\boxed{{7}}\n" for k in range(99))[:max_tokens]
                c = Completion(text, [-0.1] * len(text), len(text), len(q) + 2 + len(partial), "length")
            out.append([c for _ in range(n)])
        return out


# ------------------------------------------------------------------------------------------------ think's logic


@pytest.mark.parametrize("budget", [1, 5, 16, 33, 100])
def test_a_model_that_never_closes_its_thinking_answers_at_the_budget(budget):
    policy = Rambler()
    (r,) = think(policy, StepScorer({}), [prob()], budget)
    first, second = policy.calls
    assert first["max_tokens"] == budget and first["partials"] == [""] and first["temperature"] == 0
    thinking = cut(("".join(f"step {k}: the answer is 7 \\boxed{{7}}\n" for k in range(9)))[:budget])
    assert second["partials"] == [thinking + ANSWER_PREFIX] and second["stop_at_step"]
    assert second["max_tokens"] == ANSWER_TOKENS
    # the answer is what the model wrote after the forced "Answer: ", never the 7 its thinking keeps mentioning
    assert r.answer == "42" and r.chain == thinking + "Answer: 42"
    assert r.info["forced"] == [True] and r.info["thinking_tokens"] == [budget] and r.info["answer_tokens"] == [3]
    assert r.ledger.generated_tokens == budget + 3 <= budget + ANSWER_TOKENS
    assert r.info["strategy"] == "think" and r.info["budget"] == r.info["thinking_budget"] == budget


def test_a_length_trained_policy_reads_its_budget_from_the_prompt():
    class Told(Rambler):
        length_prompt = True

        def sample(self, prompts, **kw):
            self.questions = [p.question for p in prompts]
            return super().sample(prompts, **kw)

    policy = Told()
    (r,) = think(policy, StepScorer({}), [prob("q1")], 12)
    assert policy.questions == ["q1 Think for 12 tokens."] and r.info["length_prompt"] is True
    assert r.info["thinking_tokens"] == [12] and r.answer == "42"  # the cap holds whatever the prompt says
    (r,) = think(Rambler(), StepScorer({}), [prob("q1")], 12)
    assert r.info["length_prompt"] is False


def test_budget_zero_starts_with_the_answer():
    policy = Rambler("9")
    rs = think(policy, StepScorer({}), [prob("q1"), prob("q2")], 0)
    assert len(policy.calls) == 1 and policy.calls[0]["partials"] == [ANSWER_PREFIX] * 2
    assert [(r.answer, r.chain, r.info["thinking_tokens"], r.ledger.generated_tokens) for r in rs] == \
        [("9", "Answer: 9", [0], 2)] * 2


def test_a_chain_that_closes_within_the_budget_keeps_its_answer():
    table = {"": [("a=1\n", 0), ("b\n", 0)], "a=1\n": [("c\n", 0)], "a=1\nc\n": [("Answer: 4", 0)],
             "b\n": [("Answer: 5", 0)], "a=1\nc\nAnswer: ": [("8", 0)]}
    policy = ScriptedPolicy(table_script(table))
    (r,) = think(policy, StepScorer({}), [prob()], 30)
    assert policy.calls == 1 and (r.answer, r.chain) == ("4", "a=1\nc\nAnswer: 4")
    assert r.info["forced"] == [False] and r.info["thinking_tokens"] == [6] and r.info["answer_tokens"] == [10]
    # an answer line the cap cuts is finished by the model, not forced
    (r,) = think(ScriptedPolicy(table_script({**table, "a=1\nc\nAnswer: ": [("4", 0)]})), StepScorer({}), [prob()],
                 14)
    assert (r.answer, r.info["forced"]) == ("4", [False])
    # a cut in the middle of "Answer: " is not thinking: the full prefix replaces it and the model answers
    policy = ScriptedPolicy(table_script(table))
    (r,) = think(policy, StepScorer({}), [prob()], 9)
    assert (r.chain, r.answer, r.info["forced"]) == ("a=1\nc\nAnswer: 8", "8", [True])


def test_parallel_chains_vote_batched_over_problems():
    table = {"": [("a\n", 0), ("b\n", 0), ("c\n", 0)], "a\n": [("Answer: 1", 0)], "b\n": [("Answer: 2", 0)],
             "c\n": [("Answer: 2", 0)]}
    policy = ScriptedPolicy(table_script(table))
    rs = think(policy, StepScorer({}), [prob("q1"), prob("q2")], 20, parallel=3)
    assert policy.calls == 1  # every problem's 3 chains in one call (and none needed a second phase)
    for r in rs:
        assert r.info["answers"] == ["1", "2", "2"] and r.answer == "2" and r.chain == "b\nAnswer: 2"
        assert r.info["chosen"] == 1 and r.info["parallel"] == 3 and len(r.info["forced"]) == 3
    forced = Rambler()
    rs = think(forced, StepScorer({}), [prob("q1"), prob("q2")], 8, parallel=4)
    assert [c["temperature"] for c in forced.calls] == [1.0, 1.0]  # sampled, not 4 copies of one greedy chain
    assert len(forced.calls) == 2 and len(forced.calls[1]["partials"]) == 8  # 2 problems x 4 chains, one call
    assert all(r.answer == "42" and r.info["forced"] == [True] * 4 for r in rs)
    think(forced, StepScorer({}), [prob()], 8, parallel=2, temperature=0.3)
    assert forced.calls[-1]["temperature"] == 0.3
    with pytest.raises(ValueError, match="parallel"):
        think(forced, StepScorer({}), [prob()], 8, parallel=0)
    with pytest.raises(ValueError, match="budget"):
        think(forced, StepScorer({}), [prob()], -1)


def test_garbage_never_crashes_and_an_empty_answer_is_no_answer():
    class Empty(Rambler):
        def sample(self, prompts, **kw):
            return [[Completion("", [], 0, 0, "eos")] * kw.get("n", 1) for _ in prompts]

    rs = think(Empty(), StepScorer({}), [prob("q1"), prob("q2")], 16)
    assert [r.answer for r in rs] == [None, None] and rs[0].chain == ANSWER_PREFIX


def test_thinking_budget_checks_and_clamps():
    assert thinking_budget(100, 512) == (100, None) and thinking_budget(10**6) == (10**6, None)
    budget, note = thinking_budget(10**6, 512)
    assert budget == 512 and "clamped to 512" in note and "context" in note
    for bad in (0, -5):
        with pytest.raises(ValueError, match='reasoning_effort="none"'):
            thinking_budget(bad, 512)
    for bad in (True, "64", 2.5, None):
        with pytest.raises(ValueError, match="integer"):
            thinking_budget(bad)


def test_the_effort_table():
    assert LEVELS == ("none", "minimal", "low", "medium", "high", "xhigh") and tuple(EFFORTS) == LEVELS
    assert [(e.strategy, e.budget, e.options.get("parallel", 1)) for e in EFFORTS.values()] == \
        [("think", 0, 1), ("think", 16, 1), ("think", 48, 1), ("think", 128, 1), ("think", 256, 1), ("think", 256, 4)]
    with pytest.raises(ValueError, match="unknown reasoning effort 'max'; choose from none, minimal, low, medium, "
                                         "high, xhigh"):
        effort_of("max")
    assert Effort.parse("think:256:parallel=4") == EFFORTS["xhigh"] and Effort.parse(EFFORTS["xhigh"].spec) == \
        EFFORTS["xhigh"]
    assert Effort.parse("think:0") == EFFORTS["none"]
    assert Effort.parse("beam:16:checker:aggregation=min") == Effort("beam", 16, "checker", {"aggregation": "min"})
    for bad in ("greedy:0", "think:-1", "think:parallel=2:8", "a:b"):
        with pytest.raises(ValueError, match="effort spec"):
            Effort.parse(bad)
    table = effort_table({"high": "beam:16:checker", "low": ""})
    assert table["high"] == Effort("beam", 16, "checker") and table["low"] == EFFORTS["low"]
    with pytest.raises(ValueError, match="unknown reasoning effort"):
        effort_table({"turbo": "greedy"})
    assert capped(EFFORTS["xhigh"], 20) == Effort("think", 20, options={"parallel": 4})
    assert capped(Effort("beam", 16, "checker"), 20) == Effort("think", 20)


# ------------------------------------------------------------------------------------------------ real checkpoint


@pytest.fixture(scope="module")
def policy(tiny_checkpoint):
    from qstar.model.policy import load_policy

    return load_policy(tiny_checkpoint)


def test_the_forced_answer_is_the_models_own_continuation(policy):
    """think at a budget below the greedy chain's thinking = the model's greedy continuation of
    ``thinking[:budget] + "\\nAnswer: "``, computed here with the policy directly."""
    problems = get_task("decimals").generate(2, seed=3, split="test") + get_task("letters").generate(1, seed=3,
                                                                                                    split="test")
    checked = 0
    for p in problems:
        (full,) = policy.sample([Prompt(p.question)], temperature=0, max_tokens=200)[0]
        thinking = full.text[: ("\n" + full.text).find("\n" + ANSWER_PREFIX)]
        for budget in (3, 10, len(thinking) // 2):
            head = thinking[:budget]
            if ANSWER_PREFIX.startswith(head.rsplit("\n", 1)[-1]) and head.rsplit("\n", 1)[-1]:
                continue  # a cut inside an answer prefix: think completes the prefix (tested with scripts)
            partial = head + ("" if head.endswith("\n") else "\n") + ANSWER_PREFIX
            (c,) = policy.sample([Prompt(p.question, partial)], temperature=0, max_tokens=ANSWER_TOKENS,
                                 stop_at_step=True)[0]
            want = partial + c.text.removesuffix("\n")
            (r,) = think(policy, get_scorer("none"), [p], budget)
            assert r.chain == want and r.info["forced"] == [True] and r.info["thinking_tokens"] == [budget]
            assert r.answer == (extract_answer(p, ANSWER_PREFIX + c.text) or None)
            assert r.ledger.generated_tokens == budget + c.n_tokens
            checked += 1
        # a budget past the chain's end changes nothing: the model closed its thinking by itself
        (r,) = think(policy, get_scorer("none"), [p], len(full.text) + 5)
        assert r.chain == full.text and r.info["forced"] == [False]
    assert checked >= 6
    assert context_length(policy) == policy.model.cfg.max_seq_len == 512


# ------------------------------------------------------------------------------------------------ qstar search / ask


def _cli(capsys, *argv) -> tuple[int, list[dict], str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err


def test_qstar_search_runs_effort_levels_and_thinking_budgets(tiny_checkpoint, tmp_path, capsys):
    base = ["search", "--checkpoint", tiny_checkpoint, "--task", "decimals", "--problems", 2]
    for level in ("none", "low", "xhigh"):
        rc, (summary,), _ = _cli(capsys, *base, "--reasoning-effort", level, "--out", tmp_path / level)
        want = EFFORTS[level]
        assert rc == 0 and (summary["strategy"], summary["budget"], summary["reasoning_effort"]) == \
            ("think", want.budget, level)
        rows = [json.loads(x) for x in (tmp_path / level / "results.jsonl").read_text().splitlines()]
        assert all(r["info"]["parallel"] == want.options.get("parallel", 1) for r in rows)
        assert all(t <= want.budget for r in rows for t in r["info"]["thinking_tokens"])
        if level == "none":
            assert all(r["chain"].startswith(ANSWER_PREFIX) for r in rows)
    rc, (summary,), _ = _cli(capsys, *base, "--max-thinking-tokens", 20, "--out", tmp_path / "t20")
    assert rc == 0 and (summary["strategy"], summary["budget"]) == ("think", 20) and "notes" not in summary
    rc, (summary,), err = _cli(capsys, *base, "--max-thinking-tokens", 10**6, "--out", tmp_path / "big")
    assert rc == 0 and summary["budget"] == 512 and "clamped to 512" in err and "clamped" in summary["notes"][0]
    rc, _, err = _cli(capsys, *base, "--reasoning-effort", "max", "--out", tmp_path / "x")
    assert rc == 2 and "unknown reasoning effort 'max'; choose from none, minimal, low, medium, high, xhigh" in err
    assert "Traceback" not in err
    rc, _, err = _cli(capsys, *base, "--max-thinking-tokens", 0, "--out", tmp_path / "x")
    assert rc == 2 and 'reasoning_effort="none"' in err


def test_qstar_ask_shows_the_thinking_at_every_level(tiny_checkpoint, capsys):
    q = "Which is larger, 9.11 or 9.9?"
    rc, (out,), _ = _cli(capsys, "ask", q, "--checkpoint", tiny_checkpoint, "--effort", "all", "--json")
    assert rc == 0 and out["effort"] == "all" and [o["effort"] for o in out["levels"]] == list(LEVELS)
    for o in out["levels"]:
        assert (o["strategy"], o["budget"]) == (EFFORTS[o["effort"]].strategy, EFFORTS[o["effort"]].budget)
        assert o["thinking_tokens"] <= o["budget"] and o["status"] in ("answered", "unsure")
    assert out["levels"][0]["thinking"] == [] and out["levels"][-1]["samples"] == 4
    capsys.readouterr()
    assert main(["ask", q, "--checkpoint", str(tiny_checkpoint), "--effort", "all"]) == 0
    text = capsys.readouterr().out
    assert text.count("Thinking:") == 6 and "Effort none (no thinking):\nThinking: (none)\nAnswer: " in text
    assert "Effort low (48 thinking tokens):" in text and "Effort xhigh (4 chains of 256 thinking tokens, majority)" \
        in text
    rc, _, err = _cli(capsys, "ask", q, "--checkpoint", tiny_checkpoint, "--effort", "turbo")
    assert rc == 2 and "choose from none, minimal, low, medium, high, xhigh, or all" in err


# ------------------------------------------------------------------------------------------------ qstar serve


@pytest.fixture(scope="module")
def client(policy):
    from qstar.serve.app import create_app
    from qstar.serve.config import ServeConfig

    with serve_in_thread(create_app(policy, ServeConfig(name="tiny"))) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_serve_maps_every_effort_level(client, policy):
    from qstar.serve.engine import make_problem, split_reasoning

    q = "Which is larger, 9.11 or 9.9?"
    msgs = [{"role": "user", "content": q}]
    for level in LEVELS:
        r = client.chat.completions.create(model="tiny", reasoning_effort=level, messages=msgs)
        want = EFFORTS[level]
        assert (r.qstar["effort"], r.qstar["strategy"], r.qstar["budget"]) == (level, "think", want.budget)
        details = r.usage.completion_tokens_details
        if want.options.get("parallel", 1) > 1:
            assert r.qstar["options"] == {"parallel": 4} and details.reasoning_tokens > 0
            continue
        # one budgeted chain: the server's answer is the strategy's, and its reasoning tokens are the thinking
        (direct,) = think(policy, get_scorer("none"), [make_problem(q)], want.budget)
        assert r.choices[0].message.content == (direct.answer or "")
        assert r.choices[0].message.reasoning == split_reasoning(direct.chain)
        assert details.reasoning_tokens == direct.info["thinking_tokens"][0] <= want.budget
        assert r.usage.completion_tokens == direct.ledger.generated_tokens


def test_serve_thinking_budget_and_bad_levels(client):
    msgs = [{"role": "user", "content": "Which is larger, 9.11 or 9.9?"}]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", reasoning_effort="max", messages=msgs)
    assert e.value.status_code == 400 and e.value.body["param"] == "reasoning_effort"
    assert "none, minimal, low, medium, high, xhigh" in e.value.body["message"]
    for bad in (0, -3, "many", True):
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="tiny", messages=msgs, extra_body={"max_thinking_tokens": bad})
        assert e.value.body["param"] == "max_thinking_tokens"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=msgs, extra_body={"max_thinking_tokens": 0})
    assert 'reasoning_effort="none"' in e.value.body["message"]
    r = client.chat.completions.create(model="tiny", messages=msgs, extra_body={"max_thinking_tokens": 12})
    assert (r.qstar["strategy"], r.qstar["budget"]) == ("think", 12) and "notes" not in r.qstar
    assert r.usage.completion_tokens_details.reasoning_tokens <= 12
    r = client.chat.completions.create(model="tiny", reasoning_effort="xhigh", messages=msgs,
                                       extra_body={"thinking_token_budget": 10})
    assert (r.qstar["budget"], r.qstar["options"]) == (10, {"parallel": 4})
    raw = client.chat.completions.with_raw_response.create(model="tiny", messages=msgs,
                                                           extra_body={"max_thinking_tokens": 10**6})
    r = raw.parse()
    assert r.qstar["budget"] == 512 and "clamped to 512" in r.qstar["notes"][0]
    assert "clamped to 512" in raw.http_response.headers["x-qstar-note"]
    chunks = list(client.chat.completions.create(model="tiny", messages=msgs, stream=True, reasoning_effort="none"))
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] in (["stop"],
                                                                                                       ["length"])
