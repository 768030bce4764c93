"""The strategy options contract: SearchOptions, the registry's metadata (knobs, tree, deterministic) and
run_strategy, with scripted policies (no model)."""

from __future__ import annotations

import inspect
import random

import pytest
from test_search_fakes import ScriptedPolicy, StepScorer, prob, table_script

from qstar.model.types import Completion
from qstar.search import STRATEGIES, SearchOptions, get_strategy, strategy_knobs, strategy_spec
from qstar.search.options import FIELDS
from qstar.search.run import run_strategy

TABLE = {"": [("a\n", -0.1), ("b\n", -0.5)], "a\n": [("Answer: 1", 0.0)], "b\n": [("Answer: 2", 0.0)]}


def test_split_takes_the_shared_fields_and_leaves_the_knobs():
    options, knobs = SearchOptions(top_p=0.5).split({"max_tokens": 64, "width": 2, "temperature": None})
    assert (options.max_tokens, options.top_p, options.temperature, knobs) == (64, 0.5, None, {"width": 2})
    assert set(FIELDS) == {"temperature", "top_p", "max_tokens", "max_step_tokens", "max_steps", "seed"}


def test_the_registry_says_what_each_strategy_takes():
    assert {n for n, s in STRATEGIES.items() if s.tree} == {"beam", "dvts", "mcts"}
    assert {n for n, s in STRATEGIES.items() if s.deterministic} == {"greedy", "sequential", "think"}
    assert list(STRATEGIES)[:2] == ["greedy", "majority"] and list(STRATEGIES)[-1] == "compute_optimal"
    assert strategy_knobs("beam") == ("width", "aggregation", "select")
    assert strategy_knobs("majority") == () and strategy_knobs("sequential") == ("mode",)
    assert strategy_knobs("think") == ("parallel",)
    # compute_optimal passes the tree strategies' knobs on, so it takes them too
    assert {"probe", "table", "width", "c_puct"} <= set(strategy_knobs("compute_optimal"))
    for name, spec in STRATEGIES.items():
        assert spec.fn is get_strategy(name) and not set(spec.knobs) & set(FIELDS)
        params = inspect.signature(spec.fn).parameters
        assert all(params[k].kind is params[k].KEYWORD_ONLY for k in spec.knobs)
    with pytest.raises(ValueError, match="unknown strategy 'nope'; choose from greedy, majority"):
        strategy_spec("nope")


@pytest.mark.parametrize("name", ["majority", "beam", "sequential", "mcts"])
def test_options_and_plain_keywords_are_one_contract(name):
    knobs = {"width": 2} if STRATEGIES[name].tree else {}
    runs = []
    for kw in ({"options": SearchOptions(temperature=0.7, max_tokens=40, max_steps=5)},
               {"temperature": 0.7, "max_tokens": 40, "max_steps": 5},
               {"options": SearchOptions(temperature=0.1, max_tokens=9), "temperature": 0.7, "max_tokens": 40,
                "max_steps": 5}):
        policy = ScriptedPolicy(table_script(TABLE))
        rs = get_strategy(name)(policy, StepScorer({}), [prob("q1"), prob("q2")], 4, **kw, **knobs)
        runs.append([(r.answer, r.chain, r.ledger.generated_tokens, r.tree) for r in rs])
    assert runs[0] == runs[1] == runs[2]


class Recording(ScriptedPolicy):
    def __init__(self, script):
        super().__init__(script)
        self.temperatures = []

    def sample(self, prompts, **kw):
        self.temperatures.append(kw.get("temperature"))
        return super().sample(prompts, **kw)


def test_an_unset_temperature_is_the_strategys_default():
    for name, want in (("majority", 0.8), ("sequential", 0.0), ("greedy", 0.0), ("think", 0.0)):
        policy = Recording(table_script(TABLE))
        get_strategy(name)(policy, StepScorer({}), [prob()], 2)
        assert set(policy.temperatures) == {want}
    policy = Recording(table_script(TABLE))
    get_strategy("greedy")(policy, StepScorer({}), [prob()], 2, temperature=0.9)
    assert policy.temperatures == [0.0]  # greedy always decodes at 0


def test_run_strategy_returns_the_summary_and_the_rows():
    from qstar.tasks import get_task

    problems = get_task("letters").generate(2, seed=1, split="test")
    summary, rows = run_strategy(ScriptedPolicy(table_script(TABLE)), StepScorer({}), problems, strategy="beam",
                                 budget=4, options=SearchOptions(max_steps=4), width=2)
    assert [r.problem for r in rows] == problems and all(r.result.tree for r in rows)
    assert summary["strategy"] == "beam" and summary["problems"] == 2 and "nodes_per_second" in summary
    assert summary["accuracy"] == sum(r.correct for r in rows) / 2 and all(r.correct is not None for r in rows)
    summary, rows = run_strategy(ScriptedPolicy(table_script(TABLE)), StepScorer({}), problems, strategy="majority",
                                 budget=2, graded=False, max_tokens=30)
    assert "accuracy" not in summary and all(r.correct is None for r in rows)
    with pytest.raises(ValueError, match="strategy 'majority' takes no option 'width'"):
        run_strategy(ScriptedPolicy(table_script(TABLE)), StepScorer({}), problems, strategy="majority", budget=2,
                     width=2)


class Dice(ScriptedPolicy):
    """Draws its answers from Python's global RNG."""

    def sample(self, prompts, *, n=1, **kw):
        self.calls += 1
        return [[Completion(f"Answer: {random.randrange(100)}", [], 3, 1, "eos") for _ in range(n)] for _ in prompts]


def test_options_seed_seeds_the_global_rngs_before_the_run():
    answers = []
    for _ in range(2):
        random.seed(123 + len(answers))  # different states before each run
        _, rows = run_strategy(Dice(None), StepScorer({}), [prob()], strategy="majority", budget=3,
                               options=SearchOptions(seed=5), graded=False)
        answers.append(rows[0].result.info["answers"])
    assert answers[0] == answers[1]
