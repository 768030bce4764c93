"""Unit tests of qstar.search strategy logic with scripted policies and scorers (no model)."""

from __future__ import annotations

import json
import math

import pytest
from test_search_fakes import ScriptedPolicy, StepScorer, prob, table_script

from qstar.search import get_strategy, tree_from_json, tree_to_json
from qstar.search.sampling import vote
from qstar.search.sequential import strip_answer
from qstar.tasks.format import CHECK_PREFIX, WAIT_STEP

# q1: sample 0 says A -> Answer: 1, sample 1 says B -> Answer: 2.
TWO_WAY = {"": [("A\n", -0.1), ("B\n", -1.0)], "A\n": [("Answer: 1", 0.0)], "B\n": [("Answer: 2", 0.0)]}


def run(name, table, problems=None, budget=4, scorer=None, **options):
    policy = ScriptedPolicy(table_script(table))
    scorer = scorer or StepScorer({})
    return policy, scorer, get_strategy(name)(policy, scorer, problems or [prob()], budget, **options)


# -- sampling strategies ----------------------------------------------------------------------------------------------
def test_vote_weights_and_ties():
    assert vote(["7", "5", "5", None]) == "5"
    assert vote(["7", "5", "5"], [0.9, 0.2, 0.3]) == "7"
    assert vote(["7", "5"], [0.5, 0.5]) == "7"  # tie -> first seen
    assert vote(["7", "5", "5"], [math.nan, 0.0, 0.0]) == "5"  # NaN weighs 0, then counts decide
    assert vote([None, None]) is None


def test_greedy_takes_draw_zero_once():
    policy, _, [r] = run("greedy", TWO_WAY, budget=8)
    assert (r.answer, r.chain, policy.calls) == ("1", "A\nAnswer: 1", 1)
    assert r.ledger.generated_tokens == len("A\nAnswer: 1") + 1


def test_majority_picks_the_mode_in_one_batched_call():
    policy, _, rs = run("majority", TWO_WAY, problems=[prob("q1"), prob("q2")], budget=3)
    assert policy.calls == 1
    # q1 draws 0,1,2 -> 1,2,1; q2 draws 3,4,5 -> 2,1,2
    assert [r.answer for r in rs] == ["1", "2"]
    assert rs[0].info["answers"] == ["1", "2", "1"] and rs[1].chain == "B\nAnswer: 2"


FOUR = {"": [("A\n", 0), ("B\n", 0), ("B2\n", 0), ("C\n", 0)], "A\n": [("Answer: 1", 0)], "B\n": [("Answer: 2", 0)],
        "B2\n": [("Answer: 2", 0)], "C\n": [("Answer: 3", 0)]}
FOUR_SCORES = {"A\nAnswer: 1": 0.9, "B\nAnswer: 2": 0.3, "B2\nAnswer: 2": 0.4, "C\nAnswer: 3": 0.1}


def test_best_of_n_picks_max_score_and_nan_ranks_last():
    _, _, [r] = run("best_of_n", FOUR, scorer=StepScorer(FOUR_SCORES))
    assert (r.answer, r.chain, r.score) == ("1", "A\nAnswer: 1", 0.9)
    _, _, [r] = run("best_of_n", FOUR, scorer=StepScorer({**FOUR_SCORES, "A\nAnswer: 1": math.nan}))
    assert (r.answer, r.chain, r.score) == ("2", "B2\nAnswer: 2", 0.4)


def test_weighted_best_of_n_sums_scores_per_answer():
    # sums: "1" 0.9, "2" 0.3 + 0.4 = 0.7 -> "1" (majority alone would say "2")
    _, _, [r] = run("weighted_best_of_n", FOUR, scorer=StepScorer(FOUR_SCORES))
    assert r.answer == "1" and r.info["scores"] == [0.9, 0.3, 0.4, 0.1]
    scores = {**FOUR_SCORES, "B\nAnswer: 2": 0.6}  # "2": 1.0 > 0.9; chain = best "2" chain
    _, _, [r] = run("weighted_best_of_n", FOUR, scorer=StepScorer(scores))
    assert (r.answer, r.chain, r.score) == ("2", "B\nAnswer: 2", 0.6)


# -- beam / DVTS ------------------------------------------------------------------------------------------------------
BEAM = {"": [("A\n", 0), ("B\n", 0), ("C\n", 0), ("D\n", 0)],
        "A\n": [("A1\n", 0), ("A2\n", 0)], "D\n": [("D1\n", 0), ("D2\n", 0)], "B\n": [("B1\n", 0)],
        "C\n": [("C1\n", 0)], "A\nA2\n": [("Answer: 1", 0)], "D\nD1\n": [("Answer: 4", 0)],
        "D\nD2\n": [("Answer: 5", 0)], "A\nA1\n": [("Answer: 9", 0)]}
BEAM_SCORES = {"A": 0.9, "B": 0.2, "C": 0.5, "D": 0.7, "A1": 0.1, "A2": 0.95, "D1": 0.99, "D2": 0.98,
               "Answer: 1": 0.8, "Answer: 4": 0.6, "Answer: 5": 0.6, "Answer: 9": 0.0}


def expanded(tree, depth):
    """Step texts of nodes at ``depth`` that have children."""
    t = tree_from_json(tree)
    return sorted(n.step for n in t.nodes if n.children and t.depth(n.id) == depth)


@pytest.mark.parametrize("aggregation,kept,answer", [("min", ["A2", "D1"], "1"), ("prod", ["A2", "D1"], "1"),
                                                     ("last", ["D1", "D2"], "4")])
def test_beam_keeps_top_k_by_aggregated_step_score(aggregation, kept, answer):
    scorer = StepScorer(BEAM_SCORES)
    policy, _, [r] = run("beam", BEAM, budget=4, scorer=scorer, width=2, aggregation=aggregation)
    # level 1: root -> A B C D, keep 4 // 2 = 2 by score: A (.9), D (.7); level 2: A1 A2 D1 D2 ranked by aggregation
    assert expanded(r.tree, 1) == ["A", "D"]
    assert expanded(r.tree, 2) == kept
    assert r.answer == answer and r.tree["chosen"][0] == 0
    assert policy.calls == 3  # one call per level
    assert len(scorer.seen_prefixes) == len(set(scorer.seen_prefixes))  # nothing scored twice


def test_beam_breaks_aggregate_ties_by_the_last_step():
    # every first step scores 0, so min aggregation ties all paths at 0; the answer that checks out must win
    table = {"": [("x\n", 0), ("y\n", 0)], "x\n": [("Answer: 1", 0)], "y\n": [("Answer: 2", 0)]}
    scorer = StepScorer({"x": 0.0, "y": 0.0, "Answer: 2": 1.0, "Answer: 1": 0.0})
    _, _, [r] = run("beam", table, budget=4, width=2, scorer=scorer)
    assert (r.answer, r.score) == ("2", 0.0)


def test_dvts_grows_independent_greedy_subtrees():
    policy, _, [r] = run("dvts", BEAM, budget=4, scorer=StepScorer(BEAM_SCORES), width=2, select="best")
    # 2 subtrees: draws 0,1 -> A,B keeps A; draws 2,3 -> C,D keeps D; then A->A2 (min .9 > .1), D->D1 (tie .7, older)
    assert expanded(r.tree, 1) == ["A", "D"] and expanded(r.tree, 2) == ["A2", "D1"]
    assert sum(1 for n in r.tree["nodes"] if n["step"].startswith("Answer")) == 2
    assert r.answer == "1" and policy.calls == 3


# -- MCTS golden tree -------------------------------------------------------------------------------------------------
MCTS = {"": [("A\n", -0.1), ("B\n", -1.0)], "A\n": [("Answer: 1", -0.5), ("A2\n", -0.5)],
        "B\n": [("Answer: 2", 0.0)], "A\nA2\n": [("Answer: 3", 0.0)]}
MCTS_SCORES = {"A": 0.4, "B": 0.6, "Answer: 1": 0.2, "A2": 0.9, "Answer: 2": 1.0}
PA = round(math.exp(0.9) / (1 + math.exp(0.9)), 6)  # softmax(-0.1, -1.0)


def node(i, parent, step, score, visits, value, prior, terminal=False):
    return {"id": i, "parent": parent, "step": step, "score": score, "visits": visits, "value": value, "prior": prior,
            "terminal": terminal}


def test_mcts_golden_tree():
    # sim 1: expand root -> A (.4), B (.6). sim 2: PUCT A = .4 + .711*sqrt(2)/2 = .903 > B = .6 + .289*.707 = .804
    # -> expand A -> "Answer: 1" (.2), A2 (.9), A = (.4+.2+.9)/3 = .5. sim 3: A = .5 + .711*2/4 = .855 < B =
    # .6 + .289*2/2 = .889 -> expand B -> "Answer: 2" twice (deduped, prior 1) (1.0). Most visited: A (3) then A2
    # (ties "Answer: 1" on visits, higher value), unexpanded -> greedy completion "Answer: 3".
    policy, _, [r] = run("mcts", MCTS, budget=3, scorer=StepScorer(MCTS_SCORES), width=2, c_puct=1.0)
    expected = {"nodes": [
        node(0, None, "", None, 5, 0.62, 1.0),
        node(1, 0, "A", 0.4, 3, 0.5, PA),
        node(2, 0, "B", 0.6, 2, 0.8, round(1 - PA, 6)),
        node(3, 1, "Answer: 1", 0.2, 1, 0.2, 0.5, True),
        node(4, 1, "A2", 0.9, 1, 0.9, 0.5),
        node(5, 2, "Answer: 2", 1.0, 1, 1.0, 1.0, True),
        node(6, 4, "Answer: 3", None, 0, None, 1.0, True),
    ], "chosen": [0, 1, 4, 6]}
    assert r.tree == expected
    assert (r.answer, r.chain) == ("3", "A\nA2\nAnswer: 3")
    assert policy.calls == 4 and r.info["simulations"] == 3


# -- Gumbel MCTS golden tree ------------------------------------------------------------------------------------------
GUMBEL = {"": [("A\n", 0.0), ("B\n", 0.0), ("C\n", 0.0), ("D\n", 0.0)], "A\n": [("Answer: 1", 0.0)],
          "B\n": [("Answer: 2", 0.0)], "C\n": [("Answer: 3", 0.0)], "D\n": [("Answer: 4", 0.0)]}
GUMBEL_SCORES = {"A": 0.4, "B": 0.6, "C": 0.3, "D": 0.5, "Answer: 1": 0.2, "Answer: 2": 1.0, "Answer: 3": 0.9,
                 "Answer: 4": 0.1}


def test_gumbel_sequential_halving_golden_tree():
    # gumbel_scale=0: no noise, and equal priors (log .25 each), so a root child's score g + log P + sigma(Q),
    # sigma(Q) = (50 + max N) * 1 * Q, ranks the children by Q. sim 1 expands the root: A .4, B .6, C .3, D .5.
    # The other 6 simulations follow halving_schedule(4, 6) = [0, 0, 0, 0, 1, 1]: phase 1 gives each of the 4
    # children max(1, 6 // (2 * 4)) = 1 simulation, phase 2 each of the best 2 max(1, 6 // (2 * 2)) = 1 more.
    # sim 2 (want 0 sims): B (.6) -> "Answer: 2" (1.0), B = (.6 + 1) / 2 = .8. sim 3: of A .4, C .3, D .5 -> D ->
    # "Answer: 4" (.1), D = .3. sim 4: of A .4, C .3 -> A -> "Answer: 1" (.2), A = .3. sim 5: C -> "Answer: 3"
    # (.9), C = .6. sim 6 (want 1 sim): A .3, B .8, C .6, D .3 -> B; below it PUCT reaches the finished
    # "Answer: 2" and backs up 1.0 again without the policy: B = 2.6 / 3. sim 7: of A, C, D -> C (.6), .9 again:
    # C = 2.1 / 3 = .7. Choice: the most simulated (B, C: 2 each) with the highest score: B (.867 > .7).
    # PUCT (c_puct 1.5) on the same tree spends sims 2-7 all under B and never expands A, C or D.
    policy, _, [r] = run("mcts", GUMBEL, budget=7, scorer=StepScorer(GUMBEL_SCORES), width=4, root="gumbel",
                         gumbel_scale=0.0)
    expected = {"nodes": [
        node(0, None, "", None, 10, 0.59, 1.0),
        node(1, 0, "A", 0.4, 2, 0.3, 0.25),
        node(2, 0, "B", 0.6, 3, 0.866667, 0.25),
        node(3, 0, "C", 0.3, 3, 0.7, 0.25),
        node(4, 0, "D", 0.5, 2, 0.3, 0.25),
        node(5, 2, "Answer: 2", 1.0, 2, 1.0, 1.0, True),
        node(6, 4, "Answer: 4", 0.1, 1, 0.1, 1.0, True),
        node(7, 1, "Answer: 1", 0.2, 1, 0.2, 1.0, True),
        node(8, 3, "Answer: 3", 0.9, 2, 0.9, 1.0, True),
    ], "chosen": [0, 2, 5]}
    assert r.tree == expected
    assert (r.answer, r.info["root"], policy.calls) == ("2", "gumbel", 5)  # sims 6 and 7 called no policy


def test_gumbel_noise_is_seeded_and_bad_root_rules_are_refused():
    def tree(seed, scale=5.0):
        return run("mcts", GUMBEL, budget=5, scorer=StepScorer(GUMBEL_SCORES), width=4, root="gumbel",
                   gumbel_scale=scale, seed=seed)[2][0].tree
    assert tree(0) == tree(0) and tree(0) != tree(0, scale=0.0)  # the draws reorder the phase-1 visits
    with pytest.raises(ValueError, match="root rule"):
        run("mcts", GUMBEL, budget=2, root="uct")


def test_tree_json_round_trip_and_strict_json():
    for name in ("beam", "dvts", "mcts"):
        _, _, [r] = run(name, MCTS, budget=3, scorer=StepScorer({**MCTS_SCORES, "B": math.nan}), width=2)
        json.dumps(r.tree, allow_nan=False)
        assert tree_to_json(tree_from_json(r.tree)) == r.tree
    with pytest.raises(ValueError, match="nodes"):
        tree_from_json({"children": []})


# -- sequential ------------------------------------------------------------------------------------------
SEQ = {"": [("S1\n", 0)], "S1\n": [("Answer: 1", 0)], "S1\nWait\n": [("S2\n", 0)], "S1\nWait\nS2\n": [("Answer: 2", 0)],
       "S1\nCheck: ": [("ok\n", 0)], "S1\nCheck: ok\n": [("Answer: 1", 0)]}


def test_sequential_budget_forcing_appends_wait():
    _, _, [r] = run("sequential", SEQ, budget=1)
    assert (r.answer, r.chain, r.info["forced"]) == ("1", "S1\nAnswer: 1", 0)
    _, _, [r] = run("sequential", SEQ, budget=2)
    assert (r.answer, r.chain, r.info["forced"]) == ("2", f"S1\n{WAIT_STEP}\nS2\nAnswer: 2", 1)
    assert r.info["answers"] == ["1", "2"]
    # budget 8: after the second answer "Wait" again, then the model says nothing -> stops, keeps the last answer
    policy, _, [r] = run("sequential", SEQ, budget=8)
    assert r.answer == "2" and r.info["forced"] == 2 and policy.calls == 3


def test_sequential_check_mode_stops_when_the_check_confirms():
    _, _, [r] = run("sequential", SEQ, budget=8, mode="check")
    assert (r.answer, r.chain, r.info["forced"]) == ("1", f"S1\n{CHECK_PREFIX}ok\nAnswer: 1", 1)
    assert strip_answer("S1\nAnswer: 1") == "S1\n" and strip_answer("Answer: 1") == ""


def test_sequential_respects_the_token_cap():
    loop = {"": [("x" * 7 + "\n", 0)]}  # never answers, 8 tokens per call with max_tokens=8
    policy, _, [r] = run("sequential", {**loop, **{("q1", "x" * 7 + "\n" * k): loop[""] for k in range(1, 9)}},
                         budget=3, max_tokens=8)
    assert r.answer is None and r.ledger.generated_tokens <= 3 * 8 + 8


# -- compute-optimal ------------------------------------------------------------------------------------------
def test_compute_optimal_spends_budget_on_the_hard_problem():
    from qstar.scorers import get_scorer

    table = {("easy", ""): [("E\n", 0)], ("easy", "E\n"): [("Answer: 7", 0)],
             **{("hard", ""): [(f"H{k}\n", 0) for k in range(4)]},
             **{("hard", f"H{k}\n"): [(f"Answer: {k}", 0)] for k in range(4)}}
    policy = ScriptedPolicy(table_script(table))
    rs = get_strategy("compute_optimal")(policy, get_scorer("none"), [prob("easy"), prob("hard")], 8)
    easy, hard = rs
    assert (easy.info["difficulty"], easy.info["chosen"], easy.info["extra_budget"]) == ("easy", "stop", 0)
    assert easy.answer == "7"
    # probe 4 answers 0..3 -> agreement .25 -> hard; the spare (8 - 4) * 2 = 8 chains all go to it, via beam
    assert (hard.info["difficulty"], hard.info["chosen"], hard.info["extra_budget"]) == ("hard", "beam", 8)
    assert hard.info["unspent_budget"] == 0 and hard.tree is not None
    assert hard.ledger.generated_tokens > easy.ledger.generated_tokens
    assert sum(r.ledger.generated_tokens for r in rs) == policy.generated
