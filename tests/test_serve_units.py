"""Unit tests of the serving logic with a scripted policy: effort specs, question -> Problem, the per-request token
cap, usage accounting, and cross-request batching."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_serve_fakes import EchoPolicy

from qstar.model.types import Prompt
from qstar.serve.batching import BatchingPolicy
from qstar.serve.engine import Cancelled, Effort, Reasoner, RequestPolicy, SearchTimeout, make_problem
from qstar.tasks.base import Problem


def test_effort_parse():
    assert Effort.parse("majority:4") == Effort("majority", 4, "none")
    assert Effort.parse("beam:16:checker") == Effort("beam", 16, "checker")
    assert Effort.parse("greedy") == Effort("greedy", 1, "none")
    assert Effort.parse("think:0") == Effort("think", 0, "none")  # think's budget is tokens: 0 = no thinking
    assert Effort.parse("think:64:parallel=2") == Effort("think", 64, "none", {"parallel": 2})
    for bad in ("", "a:b", "a:0", "a:1:b:c", "think:-1"):
        with pytest.raises(ValueError, match="effort spec"):
            Effort.parse(bad)


def test_config_levels_default_to_the_effort_table_and_can_be_replaced():
    from qstar.search.effort import EFFORTS
    from qstar.serve.config import ServeConfig, efforts_of

    assert efforts_of(ServeConfig()) == EFFORTS
    table = efforts_of(ServeConfig(effort_none="greedy", effort_xhigh="beam:16:checker"))
    assert table["none"] == Effort("greedy") and table["xhigh"] == Effort("beam", 16, "checker")
    assert table["medium"] == EFFORTS["medium"]


def test_reasoner_rejects_oracle_and_unknown_names():
    with pytest.raises(ValueError, match="oracle"):
        Reasoner(EchoPolicy(), {"low": Effort("greedy", 1, "oracle")})
    with pytest.raises(ValueError, match="unknown strategy"):
        Reasoner(EchoPolicy(), {"low": Effort("nope", 1)})


def test_make_problem_blanks_gold_and_survives_bad_parsers():
    p = make_problem("  what is\n 2+2 ? ")
    assert p == Problem("chat", "what is 2+2 ?", "", "chat:what is 2+2 ?")

    def boom(q):
        raise RuntimeError("parser bug")

    def recognise(q):
        return Problem("mult", q, "4", "mult:2*2", {"a": 2}) if "2*2" in q else None

    got = make_problem("2*2", [boom, recognise])
    assert (got.task, got.answer, got.key, got.data) == ("mult", "", "mult:2*2", {"a": 2})


@settings(max_examples=60, deadline=None)
@given(st.text())
def test_make_problem_never_raises(text):
    p = make_problem(text)
    assert p.task == "chat" and p.answer == "" and "\n" not in p.question


def test_request_policy_caps_total_tokens():
    echo = EchoPolicy()
    rp = RequestPolicy(echo, cap=10)
    out = rp.sample([Prompt("abc"), Prompt("de")], n=2)  # 4 rows share 10 tokens: 2 each
    assert [[c.text for c in row] for row in out] == [["le", "le"], ["le", "le"]]
    assert rp.used == 8 and echo.calls[-1][2]["max_tokens"] == 2
    rp.sample([Prompt("abc")], max_tokens=100)  # 1 row gets the 2 left
    assert rp.used == 10
    out = rp.sample([Prompt("abc")], n=3)  # nothing left: no model call at all
    assert len(echo.calls) == 2 and all(c.finish == "length" and c.n_tokens == 0 for c in out[0])


def test_request_policy_stops_on_cancel_and_deadline():
    stop = threading.Event()
    rp = RequestPolicy(EchoPolicy(), cap=100, cancelled=stop, deadline=time.monotonic() + 60)
    rp.sample([Prompt("a")])
    stop.set()
    with pytest.raises(Cancelled):
        rp.sample([Prompt("a")])
    with pytest.raises(SearchTimeout):
        RequestPolicy(EchoPolicy(), cap=100, deadline=time.monotonic() - 1).sample([Prompt("a")])


def test_reasoner_usage_is_hand_computed():
    r = Reasoner(EchoPolicy(), {"low": Effort("greedy", 1), "medium": Effort("majority", 4)})
    results, usage = r.run("abc", effort="low", max_tokens=100)
    assert results[0].answer == "3" and results[0].chain == "len 3\nAnswer: 3"
    # 15 chain characters + <eos> generated; prompt "abc" + <bos> + "\n" = 5; content "Answer: 3" + <eos> = 10,
    # so the reasoning is "len 3\n" = 6 tokens
    assert usage == {"prompt_tokens": 5, "completion_tokens": 16, "total_tokens": 21,
                     "completion_tokens_details": {"reasoning_tokens": 6}}
    # majority@4 for n=2 choices under a 20-token cap each: 8 rows x 5 tokens, no chain reaches its answer
    results, usage = r.run("abc", effort="medium", n=2, max_tokens=20)
    assert [x.answer for x in results] == [None, None]
    assert usage["completion_tokens"] == 40 and usage["completion_tokens_details"]["reasoning_tokens"] == 40


def test_reasoner_thinking_budget_usage():
    from qstar.search.effort import EFFORTS

    r = Reasoner(EchoPolicy(), EFFORTS)
    # "len 3\n" is 6 tokens of thinking: a budget of 4 cuts it ("len " + "\n" + "Answer: "), after which the echo
    # writes nothing (not its chain), so no answer; low's 48 tokens let it close its thinking and answer by itself
    results, usage = r.run("abc", effort="minimal", max_tokens=100, thinking=4)
    assert results[0].info["forced"] == [True] and results[0].chain == "len \nAnswer: " and not results[0].answer
    results, usage = r.run("abc", effort="low", max_tokens=100)
    assert results[0].answer == "3" and results[0].info["forced"] == [False]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 6 and usage["completion_tokens"] == 16
    results, usage = r.run("abc", effort="none", max_tokens=100)
    assert results[0].chain.startswith("Answer: ") and usage["completion_tokens_details"]["reasoning_tokens"] == 0
    eff, scorer, options, knobs = r.plan("xhigh", 12)
    assert (eff.strategy, eff.budget, knobs, scorer.name) == ("think", 12, {"parallel": 4}, "none")


def _concurrent(batcher, jobs):
    """Run jobs [(question, kwargs)] in threads that all enter a session before any samples."""
    barrier, out = threading.Barrier(len(jobs)), [None] * len(jobs)

    def run(i, q, kw):
        with batcher.session():
            barrier.wait()
            out[i] = batcher.sample([Prompt(q)], **kw)

    threads = [threading.Thread(target=run, args=(i, q, kw)) for i, (q, kw) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return out


def test_batching_merges_concurrent_calls_and_routes_rows():
    echo = EchoPolicy(delay=0.01)
    b = BatchingPolicy(echo, max_batch=64, max_wait_ms=5000)
    qs = ["a" * k for k in range(1, 9)]
    out = _concurrent(b, [(q, {"n": 2}) for q in qs])
    assert [[c.text for c in row[0]] for row in out] == [[EchoPolicy.chain(q)] * 2 for q in qs]
    assert [c[:2] for c in echo.calls] == [(8, 2)]  # one policy call for all 8 users
    assert b.stats == {"calls": 8, "batches": 1, "rows": 16}
    # different sampling settings are never merged
    echo.calls.clear()
    _concurrent(b, [("x", {"max_tokens": 5}), ("y", {"max_tokens": 6}), ("z", {"max_tokens": 5})])
    assert sorted(c[0] for c in echo.calls) == [1, 2]
    b.close()


def test_batching_lone_caller_does_not_wait_and_errors_propagate():
    b = BatchingPolicy(EchoPolicy(), max_wait_ms=10_000)
    t0 = time.monotonic()
    with b.session():
        assert b.sample([Prompt("ab")])[0][0].text == "len 2\nAnswer: 2"
    assert time.monotonic() - t0 < 2

    class Broken(EchoPolicy):
        def sample(self, prompts, **kw):
            raise ValueError("boom")

    bad = BatchingPolicy(Broken(), max_wait_ms=1)
    with pytest.raises(ValueError, match="boom"):
        bad.sample([Prompt("q")])
    with pytest.raises(ValueError, match="boom"):  # the dispatcher survived the first failure
        bad.sample([Prompt("q")])
    bad.close()
    b.close()
    with pytest.raises(RuntimeError, match="closed"):
        b.sample([Prompt("q")])


def test_reasoner_refuses_a_solver_scorer_naming_its_kind():
    with pytest.raises(ValueError, match="'checker' is a solver on .*recomputes the answer"):
        Reasoner(EchoPolicy(), {"high": Effort("beam", 2, "checker")})


def test_an_upstream_that_rejects_the_request_is_a_4xx_and_a_broken_one_a_5xx():
    from qstar.backends.openai_compat import UpstreamError
    from qstar.serve.app import _search_error

    too_long = _search_error(UpstreamError("400: maximum context length is 4096 tokens", status=400))
    assert (too_long.status, too_long.code) == (400, "upstream_rejected_request") and "context" in too_long.message
    assert _search_error(UpstreamError("404: no such model", status=404)).status == 502  # our configuration
    assert _search_error(UpstreamError("timed out", transport=True)).status == 503
