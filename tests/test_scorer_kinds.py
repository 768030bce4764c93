"""Scorer kinds (oracle, solver, verifier, learned): every registered scorer on every registered task, the table of
task checks held to the tasks themselves, the `cheap` verifier, and the refusals that name the kind."""

from __future__ import annotations

import random

import pytest

from qstar.scorers import SCORERS, get_scorer
from qstar.scorers.kinds import KINDS, TASK_CHECKS, kind_of, kind_over, require_deployable
from qstar.scorers.programmatic import CheckedScorer, ConstantScorer
from qstar.tasks import get_task, task_names
from qstar.tasks.format import render_chain

# the kinds the issue names, written out per task so that a change to any check shows up here; benchmark tasks
# (no checks at all) leave the checker nothing to judge with
BENCHMARKS = {"gsm8k", "math", "math500"}
UNCHECKED = BENCHMARKS | {"safety"}  # no programmatic check at all (safety's verdict needs the rules' triggers)
SOLVES = ("ages", "cipher", "mult", "letters", "decimals", "parity", "mixture")
EXPECTED = {
    "none": dict.fromkeys(task_names(), "verifier"),
    "oracle": dict.fromkeys(task_names(), "oracle"),
    "checker": {t: "solver" if t in SOLVES else "verifier" for t in task_names()},
    "cheap": dict.fromkeys(task_names(), "verifier"),
    "orm": dict.fromkeys(task_names(), "learned"),
    "prm": dict.fromkeys(task_names(), "learned"),
}
for _base, _learned in (("checker", "orm"), ("checker", "prm"), ("cheap", "orm"), ("cheap", "prm")):
    # the programmatic part's kind where it judges anything, the learned one elsewhere
    EXPECTED[f"{_base}+{_learned}"] = {t: "learned" if t in UNCHECKED or (
        _base == "cheap" and t in ("letters", "decimals", "parity")) else EXPECTED[_base][t] for t in task_names()}


@pytest.mark.parametrize("scorer", sorted(SCORERS))
def test_every_registered_scorer_has_one_kind_on_every_registered_task(scorer):
    # a registered learned model (the value scorer, any new one) is learned everywhere without an entry anywhere
    want = EXPECTED.get(scorer, dict.fromkeys(task_names(), "learned") if "+" not in scorer else None)
    assert want is not None, f"new composite scorer {scorer!r}: add its kinds to EXPECTED"
    got = {t: kind_of(scorer, t) for t in task_names()}
    assert got == want
    assert set(got.values()) <= set(KINDS)


def test_task_checks_table_matches_the_tasks():
    # every registered task (but the mixture, which takes its components') is classified, and "" means "has none"
    assert set(TASK_CHECKS) == set(task_names()) - {"mixture"}
    for name, checks in TASK_CHECKS.items():
        task = get_task(name)
        assert (checks.cheap == "") == (task.check_method == ""), name
        if name in BENCHMARKS:
            continue
        p = task.generate(1, seed=0, split="test")[0]
        assert (checks.outcome == "") == (task.check(p, p.answer) is None), name
        assert (checks.steps == "") == (task.check_step(p, [], task.steps(p)[0]) is None), name


def test_objects_and_composites_declare_their_kind():
    assert kind_of(get_scorer("checker"), "letters") == "solver"
    assert kind_of(get_scorer("cheap"), "letters") == "verifier"

    class Learned:
        name, params = "value", 1000  # a model that declares nothing is learned (the value scorer's default)

    assert kind_of(Learned(), "mult") == "learned"
    assert kind_of(CheckedScorer(Learned()), "countdown") == "verifier"  # the checker judges every countdown chain
    assert kind_of(CheckedScorer(Learned()), "gsm8k") == "learned"
    assert kind_over("checker", ["countdown", "letters"]) == "solver"
    with pytest.raises(ValueError, match="declares no scorer_kind"):
        kind_of(type("Fake", (), {"name": "fake"})(), "mult")
    with pytest.raises(ValueError, match="unknown scorer"):
        kind_of("gut_feeling", "mult")
    assert kind_of(ConstantScorer(), "chat") == "verifier"


def test_deployment_refuses_oracle_and_solver_naming_the_kind():
    assert require_deployable("cheap", task_names()) == "verifier"
    with pytest.raises(ValueError, match=r"'checker' is a solver on ages, cipher, decimals, letters, mixture, mult, "
                                         r"parity \(recomputes the answer from the question\)"):
        require_deployable("checker", task_names(), where="effort 'high'")
    with pytest.raises(ValueError, match=r"is an oracle on mult \(reads the gold answer\)"):
        require_deployable(get_scorer("oracle"), ["mult"])


@pytest.mark.parametrize("task", ["countdown", "ages", "cipher", "mult"])
def test_cheap_scorer_verifies_without_the_gold(task):
    t = get_task(task)
    p = t.generate(1, seed=1, split="test")[0]
    blind = type(p)(p.task, p.question, "", p.key, p.data)  # no gold answer to read
    s = get_scorer("cheap")
    right = t.reference(p)
    wrong = render_chain(t.corrupt(p, random.Random(0)), t.implied_answer(p, t.corrupt(p, random.Random(0))) or "7")
    assert s.score([blind], [right]) == [1.0]
    assert s.score([blind], [wrong])[0] < 1.0


def test_cheap_scorer_is_unknown_where_only_a_solver_could_judge():
    t = get_task("letters")
    p = t.generate(1, seed=0, split="test")[0]
    s = get_scorer("cheap")
    assert s.score([p], [t.reference(p)]) == [0.5]
    assert s.score_steps([p], [t.steps(p)[:2]]) == [[0.5, 0.5]]
