"""qstar.search under stress: ledgers add up, bad input fails clearly, garbage policies and NaN scorers never crash
or loop, oracle results are flagged."""

from __future__ import annotations

import json
import math

import pytest
from test_search_fakes import ScriptedPolicy, StepScorer, prob, table_script

from qstar.model.types import Completion
from qstar.scorers import get_scorer
from qstar.search import STRATEGIES, get_strategy

NAMES = sorted(STRATEGIES)

# three problems, chains of 2-3 steps with several answers, so every strategy branches
RICH = {"": [("a=1\n", -0.2), ("a=2\n", -0.9), ("b\n", -1.5)], "a=1\n": [("c=3\n", -0.1), ("Answer: 4", -0.3)],
        "a=2\n": [("Answer: 5", -0.2)], "b\n": [("Answer: 4", -0.4), ("b2\n", -0.1)], "a=1\nc=3\n": [("Answer: 4", 0)],
        "b\nb2\n": [("Answer: 6", 0)], "a=1\nc=3\nWait\n": [("Answer: 4", 0)]}
RICH_SCORES = {"a=1": 0.8, "a=2": 0.3, "b": 0.5, "c=3": 0.9, "Answer: 4": 0.7, "Answer: 5": 0.2, "Answer: 6": 0.4}


@pytest.mark.parametrize("name", NAMES)
def test_ledgers_add_up_to_the_policy_and_scorer_counts(name):
    policy, scorer = ScriptedPolicy(table_script(RICH)), StepScorer(RICH_SCORES, params=50)
    problems = [prob("q1"), prob("q22"), prob("q333")]
    rs = get_strategy(name)(policy, scorer, problems, 8, width=2) if STRATEGIES[name].tree else \
        get_strategy(name)(policy, scorer, problems, 8)
    assert len(rs) == 3 and all(r.info["strategy"] == name for r in rs)
    assert sum(r.ledger.generated_tokens for r in rs) == policy.generated > 0
    assert sum(r.ledger.prompt_tokens for r in rs) == policy.prompt > 0
    assert sum(r.ledger.scored_tokens for r in rs) == scorer.tokens
    for r in rs:
        lg = r.ledger
        assert lg.flops == 2 * 1000 * (lg.generated_tokens + lg.prompt_tokens) + 2 * 50 * lg.scored_tokens
        assert lg.seconds >= 0
        assert r.answer in (None, "4", "5", "6")
        json.dumps(r.to_json() | {"score": None})  # everything but NaN scores is plain JSON
    assert len(scorer.seen_prefixes) == len(set(scorer.seen_prefixes))


@pytest.mark.parametrize("name", NAMES)
def test_bad_budgets_and_empty_problem_lists(name):
    fn, policy, scorer = get_strategy(name), ScriptedPolicy(table_script(RICH)), StepScorer({})
    for budget in (-3, 2.5, True, "4") if name == "think" else (0, -3, 2.5, True, "4"):  # think: 0 tokens is valid
        with pytest.raises(ValueError, match="budget"):
            fn(policy, scorer, [prob()], budget)
    assert fn(policy, scorer, [], 4) == []
    with pytest.raises(ValueError, match="Problem"):
        fn(policy, scorer, ["what is 2+2?"], 4)
    with pytest.raises(ValueError, match="scorer"):
        fn(policy, object(), [prob()], 4)


def test_unknown_names_list_what_exists():
    with pytest.raises(ValueError, match="majority.*mcts"):
        get_strategy("magic")
    policy, scorer = ScriptedPolicy(table_script(RICH)), StepScorer({})
    for name, option in (("beam", {"aggregation": "mean"}), ("dvts", {"select": "vote"}),
                         ("mcts", {"value_source": "dreams"}), ("sequential", {"mode": "pray"}),
                         ("beam", {"width": 0}), ("mcts", {"simulations": 0})):
        with pytest.raises(ValueError, match=list(option)[0]):
            get_strategy(name)(policy, scorer, [prob()], 4, **option)


class GarbagePolicy:
    """Returns whatever ``make(prompt, j, max_tokens, stop_at_step)`` builds; counts tokens honestly."""

    name, params = "garbage", 10

    def __init__(self, make):
        self.make, self.draws = make, 0

    def sample(self, prompts, *, n=1, temperature=1.0, top_p=1.0, max_tokens=256, stop_at_step=False):
        out = []
        for p in prompts:
            row = []
            for _ in range(n):
                self.draws += 1
                text, finish = self.make(p, self.draws, max_tokens, stop_at_step)
                row.append(Completion(text, [-1.0] * len(text), len(text), 3, finish))
            out.append(row)
        return out


GARBAGE = {
    "empty": lambda p, j, m, s: ("", "eos"),
    "blank_lines": lambda p, j, m, s: ("\n", "step"),
    "junk": lambda p, j, m, s: (("\x00é€☃" * 99 + "Answer" * 9)[: m], "length"),
    "never_answers": lambda p, j, m, s: ("x\n" if s else "x\n" * (m // 2), "step" if s else "length"),
    "multi_line_steps": lambda p, j, m, s: (f"s{j}\nAnswer: {j % 3}\nmore", "eos"),
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
@pytest.mark.parametrize("name", NAMES)
def test_garbage_policies_never_crash_or_loop(name, kind):
    policy = GarbagePolicy(GARBAGE[kind])
    rs = get_strategy(name)(policy, StepScorer({}), [prob("q1"), prob("q2")], 4, max_tokens=32)
    assert len(rs) == 2 and policy.draws < 2000
    for r in rs:
        assert isinstance(r.chain, str) and (r.answer is None or isinstance(r.answer, str))
        if kind != "multi_line_steps" and name != "think":  # think forces an answer line; the model fills it
            assert r.answer is None
        if r.tree is not None:
            json.dumps(r.tree, allow_nan=False)


def test_policy_returning_the_wrong_shape_is_a_clear_error():
    class Short(GarbagePolicy):
        def sample(self, prompts, **kw):
            return super().sample(prompts, **kw)[:-1]

    with pytest.raises(ValueError, match="completions for each"):
        get_strategy("majority")(Short(GARBAGE["empty"]), StepScorer({}), [prob("q1"), prob("q2")], 2)


class NaNScorer(StepScorer):
    def score(self, problems, chains):
        return [math.nan] * len(chains)

    def score_steps(self, problems, steps):
        return [[math.nan] * len(s) for s in steps]


@pytest.mark.parametrize("name", NAMES)
def test_nan_scores_rank_last_and_never_crash(name):
    budget = 64 if name == "think" else 4  # think's budget is thinking tokens
    rs = get_strategy(name)(ScriptedPolicy(table_script(RICH)), NaNScorer({}), [prob("q1")], budget)
    assert rs[0].answer in ("4", "5", "6")
    if rs[0].tree is not None:
        json.dumps(rs[0].tree, allow_nan=False)


@pytest.mark.parametrize("name", NAMES)
def test_oracle_selection_is_flagged_in_every_result(name):
    rs = get_strategy(name)(ScriptedPolicy(table_script(RICH)), get_scorer("oracle"), [prob("q1")], 2)
    assert rs[0].info["oracle"] is True and rs[0].info["scorer"] == "oracle"
    if name == "until_verified":  # it refuses a scorer that can accept nothing
        with pytest.raises(ValueError, match="scorer 'none' judges nothing"):
            get_strategy(name)(ScriptedPolicy(table_script(RICH)), get_scorer("none"), [prob("q1")], 2)
        return
    rs = get_strategy(name)(ScriptedPolicy(table_script(RICH)), get_scorer("none"), [prob("q1")], 2)
    assert rs[0].info["oracle"] is False


class SmallContext(ScriptedPolicy):
    """Refuses (ValueError) any batch holding a prompt longer than ``limit`` characters, like a full context."""

    def __init__(self, script, limit):
        super().__init__(script)
        self.limit = limit

    def sample(self, prompts, **kw):
        if any(len(q) + len(partial) > self.limit for q, partial in prompts):
            raise ValueError("prompt leaves no room within the context")
        return super().sample(prompts, **kw)


@pytest.mark.parametrize("name", ["sequential", "beam", "mcts"])
def test_a_full_context_ends_only_the_chains_that_grew_too_long(name):
    # sequential: a, Answer: 1, Wait, a, Answer: 1, ...; trees: a, a, a, ... (never answers)
    seq = {**{"a\n" + "Wait\na\n" * k: [("Answer: 1", 0)] for k in range(20)},
           **{"a\n" + "Wait\na\n" * k + "Wait\n": [("a\n", 0)] for k in range(20)}}
    loop = {"": [("a\n", 0)], **(seq if name == "sequential" else {"a\n" * k: [("a\n", 0)] for k in range(1, 40)})}
    policy = SmallContext(table_script(loop), limit=24)
    rs = get_strategy(name)(policy, StepScorer({}), [prob("q1"), prob("q1longer_question")], 16, max_tokens=64)
    assert "refused" in rs[0].info and "no room" in rs[0].info["refused"]
    if name == "sequential":
        assert rs[0].answer == "1" and rs[0].info["forced"] >= 2
    with pytest.raises(ValueError, match="no room"):  # a root prompt the policy refuses is a real error
        get_strategy(name)(SmallContext(table_script(loop), limit=1), StepScorer({}), [prob("q1")], 2)
