"""until_verified: sample in batched rounds until the scorer accepts a chain; fall back to best-of-N's pick."""

from __future__ import annotations

import pytest
from test_search_fakes import ScriptedPolicy, StepScorer, prob, table_script

from qstar.model.types import Completion
from qstar.scorers import get_scorer
from qstar.search import get_strategy
from qstar.search.run import run_strategy
from qstar.tasks import get_task
from qstar.tasks.base import Problem

until_verified, best_of_n = get_strategy("until_verified"), get_strategy("best_of_n")


class PerProblem:
    """Policy whose k-th chain for a question is ``answers[question][k]`` whatever else is in the batch (one stream
    per question, so fewer chains per call draw a prefix of the same chains). Records (prompts, n) per call."""

    name, params = "per-problem", 100

    def __init__(self, answers):
        self.answers, self.drawn = answers, {q: 0 for q in answers}
        self.calls, self.generated, self.prompt = [], 0, 0

    def sample(self, prompts, *, n=1, temperature=1.0, top_p=1.0, max_tokens=256, stop_at_step=False):
        self.calls.append((len(prompts), n))
        out = []
        for q, _ in prompts:
            row = []
            for k in range(n):
                text = f"x\nAnswer: {self.answers[q][self.drawn[q]]}"
                self.drawn[q] += 1
                row.append(Completion(text, [], len(text) + 1, 0 if k else len(q) + 2, "eos"))
                self.generated, self.prompt = self.generated + len(text) + 1, self.prompt + (0 if k else len(q) + 2)
            out.append(row)
        return out


class Exact:
    """A 0/1 verifier of the toy problems: 1 when the chain's answer line gives the problem's answer."""

    name, oracle, params, scorer_kind = "exact", False, 7, "verifier"

    def __init__(self):
        self.calls = self.tokens = 0

    def score(self, problems, chains):
        self.calls += 1
        self.tokens += sum(len(p.question + "\n" + c) + 1 for p, c in zip(problems, chains))
        return [float(c.endswith(f"Answer: {p.answer}")) for p, c in zip(problems, chains)]

    def score_steps(self, problems, steps):
        raise AssertionError("until_verified scores whole chains only")


def toy(q, answer="1"):
    return Problem("toy", q, answer, q)


# right at draw: q1 the 1st, q2 the 2nd, q3 the 5th, q4 never
DRAWS = {"q1": ["1"] * 8, "q2": ["5", "1"] + ["5"] * 6, "q3": ["7", "5", "5", "6", "1", "1", "5", "5"], "q4": ["5"] * 8}


def test_stops_at_the_first_accepted_chain():
    policy = ScriptedPolicy(table_script({"": [("Answer: 5", 0), ("Answer: 1", 0), ("Answer: 1", 0)]}))
    scorer = StepScorer({"Answer: 5": 0.0, "Answer: 1": 1.0})
    (r,) = until_verified(policy, scorer, [prob()], 8)
    assert (r.answer, r.chain, r.score) == ("1", "Answer: 1", 1.0)
    assert r.info["answers"] == ["5", "1"] and r.info["scores"] == [0.0, 1.0]
    assert (r.info["accepted"], r.info["chosen"], r.info["rounds"], policy.draws) == (True, 1, 2, 2)


def test_falls_back_to_best_of_n_when_nothing_is_accepted():
    table = {"": [("Answer: 4", 0), ("Answer: 5", 0), ("Answer: 6", 0)]}
    scores = {"Answer: 4": 0.3, "Answer: 5": 0.6, "Answer: 6": 0.2}  # all below the default threshold (0.75)
    (r,) = until_verified(ScriptedPolicy(table_script(table)), StepScorer(scores), [prob()], 3)
    (b,) = best_of_n(ScriptedPolicy(table_script(table)), StepScorer(scores), [prob()], 3)
    assert (r.answer, r.chain, r.score) == (b.answer, b.chain, b.score) == ("5", "Answer: 5", 0.6)
    assert (r.info["accepted"], r.info["chosen"], r.info["answers"]) == (False, 1, b.info["answers"])
    # a lower threshold accepts the first chain
    (r,) = until_verified(ScriptedPolicy(table_script(table)), StepScorer(scores), [prob()], 3, threshold=0.25)
    assert (r.answer, r.info["answers"], r.info["accepted"]) == ("4", ["4"], True)
    # a score that reaches the threshold exactly is accepted
    (r,) = until_verified(ScriptedPolicy(table_script(table)), StepScorer(scores), [prob()], 3, threshold=0.6)
    assert (r.answer, r.info["answers"], r.info["accepted"]) == ("5", ["4", "5"], True)


def test_one_policy_call_and_one_scorer_call_per_round_over_the_open_problems():
    policy, scorer = PerProblem(DRAWS), Exact()
    rs = until_verified(policy, scorer, [toy(q) for q in DRAWS], 8)
    # rounds of 1, 1, 2, 4 chains; q1 closes in round 1, q2 in round 2, q3 in round 4 (its 5th chain), q4 never
    assert policy.calls == [(4, 1), (3, 1), (2, 2), (2, 4)] and scorer.calls == 4
    assert [r.info["rounds"] for r in rs] == [1, 2, 4, 4]
    assert [len(r.info["answers"]) for r in rs] == [1, 2, 8, 8]  # q3's round drew past its accepted chain
    assert [(r.answer, r.info["chosen"], r.info["accepted"]) for r in rs] == [
        ("1", 0, True), ("1", 1, True), ("1", 4, True), ("5", 0, False)]
    policy = PerProblem(DRAWS)
    until_verified(policy, Exact(), [toy(q) for q in DRAWS], 7, batch=3)
    assert policy.calls == [(4, 3), (2, 3), (1, 1)]  # fixed rounds; the last one fills the budget exactly


@pytest.mark.parametrize("budget", [1, 2, 3, 5, 8])
def test_the_budget_caps_the_chains_of_a_problem_never_accepted(budget):
    policy = PerProblem({"q": ["5"] * 8, "r": ["6"] * 8})
    rs = until_verified(policy, Exact(), [toy("q"), toy("r")], budget)
    assert [len(r.info["answers"]) for r in rs] == [budget, budget] and policy.drawn == {"q": budget, "r": budget}
    assert sum(n for _, n in policy.calls) == budget  # both problems in every call


def test_the_ledger_counts_exactly_what_was_generated_and_scored():
    policy, scorer = PerProblem(DRAWS), Exact()
    problems = [toy(q) for q in DRAWS]
    rs = until_verified(policy, scorer, problems, 8)
    assert sum(r.ledger.generated_tokens for r in rs) == policy.generated
    assert sum(r.ledger.prompt_tokens for r in rs) == policy.prompt
    assert sum(r.ledger.scored_tokens for r in rs) == scorer.tokens
    for p, r in zip(problems, rs):
        chains = len(r.info["answers"])
        assert r.ledger.generated_tokens == chains * len("x\nAnswer: 1") + chains  # one-character answers, + <eos>
        assert r.ledger.prompt_tokens == r.info["rounds"] * (len(p.question) + 2)  # one prefill per round
        assert r.ledger.scored_tokens == chains * (len(p.question) + 1 + len("x\nAnswer: 1") + 1)
        assert r.ledger.flops == 2 * 100 * (r.ledger.generated_tokens + r.ledger.prompt_tokens) + \
            2 * 7 * r.ledger.scored_tokens


@pytest.mark.parametrize("budget", [1, 2, 4, 8])
def test_best_of_n_accuracy_at_the_same_budget_with_fewer_tokens(budget):
    problems = [toy(q) for q in DRAWS]
    uv, uv_rows = run_strategy(PerProblem(DRAWS), Exact(), problems, strategy="until_verified", budget=budget)
    bn, bn_rows = run_strategy(PerProblem(DRAWS), Exact(), problems, strategy="best_of_n", budget=budget)
    assert uv["accuracy"] == bn["accuracy"] == {1: 0.25, 2: 0.5, 4: 0.5, 8: 0.75}[budget]
    assert uv["generated_per_problem"] < bn["generated_per_problem"] or budget == 1
    for (_, u, cu), (_, b, cb) in zip(uv_rows, bn_rows):
        assert b.info["answers"][: len(u.info["answers"])] == u.info["answers"]  # a prefix of best_of_n's chains
        assert (u.answer, u.chain, cu) == (b.answer, b.chain, cb)  # 0/1 scores: the same pick


def test_refuses_a_scorer_that_can_accept_nothing():
    with pytest.raises(ValueError, match="scorer 'none' judges nothing on toy"):
        until_verified(PerProblem(DRAWS), get_scorer("none"), [toy("q1")], 4)
    # cheap verifies countdown but has no check on decimals
    decimals = get_task("decimals").generate(1, seed=0)
    with pytest.raises(ValueError, match="scorer 'cheap' judges nothing on decimals"):
        until_verified(PerProblem({decimals[0].question: ["1"]}), get_scorer("cheap"), decimals, 2)
    countdown = get_task("countdown").generate(1, seed=0)
    (r,) = until_verified(PerProblem({countdown[0].question: ["1", "2"]}), get_scorer("cheap"), countdown, 2)
    assert len(r.info["answers"]) == 2 and not r.info["accepted"]


@pytest.mark.parametrize("knob", [{"threshold": float("nan")}, {"threshold": "high"}, {"threshold": True},
                                  {"batch": -1}, {"batch": 1.5}, {"batch": True}])
def test_bad_knobs_are_clear_errors(knob):
    with pytest.raises(ValueError, match=list(knob)[0]):
        until_verified(PerProblem(DRAWS), Exact(), [toy("q1")], 4, **knob)


def test_on_a_trained_checkpoint_it_reads_best_of_ns_chains_whatever_the_batch(tiny_checkpoint):
    # qstar's policy seeds a problem's k-th chain by (seed, problem, k): until_verified's rounds of 1, 1, 2, 4 read
    # best_of_n's 8 chains, and a problem's chains are the same alone as beside others
    from qstar.model.policy import load_policy

    class Never:  # accepts no chain, so until_verified draws all 8 (a scorer declaring no kind is taken at its word)
        name, oracle, params = "never", False, 0

        def score(self, problems, chains):
            return [0.0] * len(chains)

        def score_steps(self, problems, steps):
            return [[0.0] * len(s) for s in steps]

    problems = get_task("letters").generate(3, seed=0, split="test")
    policy = load_policy(tiny_checkpoint, seed=5)
    (uv,) = until_verified(policy, Never(), problems[:1], 8, temperature=1.0, max_tokens=40)
    bn = best_of_n(policy, Never(), problems, 8, temperature=1.0, max_tokens=40)
    assert uv.info["rounds"] == 4 and uv.info["answers"] == bn[0].info["answers"]
    alone = best_of_n(policy, Never(), problems[2:], 8, temperature=1.0, max_tokens=40)
    assert alone[0].info["answers"] == bn[2].info["answers"]
    assert len(set(bn[0].info["answers"])) > 1  # sampled, not one chain
