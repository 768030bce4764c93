"""Statistics that separate strategies: paired bootstrap at matched compute, the efficiency factor's interval, a
curve's fall beyond its interval, kinds in the analysis, and benchmarks/search.py's last line on a real checkpoint."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

from qstar.lab import analysis

KEYS = [f"mult:p{i}" for i in range(100)]


def rec(strategy, budget, outcomes, tokens, *, seed=0, kind="verifier", scorer="cheap"):
    return {"kind": "test", "key": f"{strategy}/{budget}/{seed}", "model": "m", "strategy": strategy,
            "budget": budget, "seed": seed, "scorer": scorer, "oracle": kind == "oracle", "scorer_kind": kind,
            "problems": KEYS, "outcomes": list(outcomes), "tokens": [tokens] * len(KEYS), "flops": [1.0] * len(KEYS)}


def solved(n, rng=None):
    """Outcomes with the first ``n`` problems right (or ``n`` random ones with ``rng``)."""
    idx = set(rng.sample(range(len(KEYS)), n)) if rng else set(range(n))
    return [int(i in idx) for i in range(len(KEYS))]


def test_paired_interval_is_tight_where_the_problems_agree_and_unpaired_is_not():
    # beam solves exactly best-of-N's problems plus 5 more: the paired difference is +5 points with a narrow
    # interval that excludes 0, while each curve's own interval (about +-10 points at 100 problems) overlaps the other
    curves = analysis.test_curves([rec("best_of_n", 4, solved(50), 100), rec("beam", 4, solved(55), 100)])
    b, s = curves["best_of_n"], curves["beam"]
    assert b[0]["ci_high"] > s[0]["ci_low"]  # the unpaired intervals overlap
    d = analysis.paired_difference(s, b, 100.0)
    assert d["diff"] == pytest.approx(0.05) and 0 < d["ci_low"] <= 0.05 <= d["ci_high"] < 0.11
    assert analysis.paired_difference(s, b, 1000.0) is None  # not measured that far: never extrapolated
    table = analysis.matched_compute(curves)
    assert analysis.paired_vs_baseline(curves, table)["beam"][0]["diff"] == pytest.approx(0.05)


def test_efficiency_has_a_paired_interval_and_uses_only_deployable_kinds():
    rng = random.Random(0)
    recs = [rec("best_of_n", 1, solved(30), 50), rec("best_of_n", 4, solved(60), 200),
            rec("beam", 1, solved(45), 40), rec("beam", 2, solved(62), 60)]
    eff = analysis.efficiency(analysis.test_curves(recs))
    # target .60 at 200 tokens; beam crosses .60 between (40, .45) and (60, .62): log-linear at frac 15/17
    assert eff["strategy"] == "beam" and eff["scorer_kind"] == "verifier"
    assert eff["factor"] == pytest.approx(200 / (40 * 1.5 ** (15 / 17)))
    assert eff["ci_low"] <= eff["factor"] <= eff["ci_high"]
    # a solver's best-of-N cannot be the baseline, and a solver line cannot win
    ceiling = [rec("best_of_n", 1, solved(90), 50, kind="solver", scorer="checker"),
               rec("beam", 1, solved(99, rng), 10, kind="solver", scorer="checker")]
    curves = analysis.test_curves(recs + ceiling)
    assert analysis.efficiency(curves)["strategy"] == "beam"
    assert "best_of_n (ceiling)" in curves and not analysis.deployable(curves["beam (ceiling)"])
    assert analysis.efficiency(analysis.test_curves(ceiling))["factor"] is None


def test_efficiency_interval_resamples_tokens_when_outcomes_match_problem_by_problem():
    # until_verified reads best_of_n's chains: the same problems solved, so only the per-problem tokens can vary.
    # Solved problems stop after 1 chain (10 tokens), unsolved ones pay all 8 (80): the factor is 800 / mean tokens.
    out = solved(70)
    uv = {**rec("until_verified", 8, out, 0), "tokens": [10 if o else 80 for o in out]}
    eff = analysis.efficiency(analysis.test_curves([rec("best_of_n", 8, out, 80), uv]))
    assert eff["factor"] == pytest.approx(80 / (0.7 * 10 + 0.3 * 80))
    assert eff["ci_low"] < eff["factor"] < eff["ci_high"]  # fixed tokens would make this interval a point
    assert eff["ci_high"] / eff["ci_low"] < 1.6


def test_old_records_get_their_kind_from_scorer_and_tasks():
    old = rec("best_of_n", 1, solved(5), 10)
    del old["scorer_kind"]
    assert analysis.record_kind({**old, "scorer": "checker"}) == "solver"  # mult: step checks against the reference
    assert analysis.record_kind({**old, "scorer": "prm"}) == "learned"
    assert analysis.record_kind({**old, "oracle": True}) == "oracle"


def test_falls_beyond_the_interval():
    up = analysis.test_curves([rec("mcts", b, solved(n), 10 * b) for b, n in ((1, 30), (4, 50), (16, 52))])
    down = analysis.test_curves([rec("mcts", b, solved(n), 10 * b) for b, n in ((1, 30), (4, 60), (16, 40))])
    assert analysis.falls(up["mcts"])["falls"] is False
    f = analysis.falls(down["mcts"])
    assert f["falls"] is True and f["peak_budget"] == 4 and f["diff"] == pytest.approx(-0.2)


def test_benchmark_search_ends_with_the_verdict_line(tiny_checkpoint, capsys):
    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench))
    try:
        import search as bench_search
    finally:
        sys.path.remove(str(bench))
    bench_search.main(["--checkpoint", str(tiny_checkpoint), "--task", "mult", "--problems", "3", "--seeds", "0",
                       "--budgets", "1", "2", "--strategies", "best_of_n", "mcts_gumbel", "--max-tokens", "40"])
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 2 * 2 + 1
    assert {x["scorer_kind"] for x in lines[:-1]} == {"verifier"}
    assert {x["strategy"] for x in lines[:-1]} == {"best_of_n", "mcts_gumbel"}
    last = lines[-1]
    assert {"efficiency_vs_best_of_n", "ci_low", "ci_high", "strategy", "scorer_kind"} <= set(last)
    assert last["scorer_kind"] == "verifier" and set(last["mcts_falls"]) == {"mcts_gumbel"}
