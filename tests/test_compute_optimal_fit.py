"""compute_optimal's fitted table: fitting on a scripted validation sweep, saving and loading it, and the clear
error + hand-table fallback (said once) for a table that does not match the task."""

from __future__ import annotations

import json

import pytest
from test_search_fakes import ScriptedPolicy, prob, table_script

from qstar.scorers import get_scorer
from qstar.search import get_strategy
from qstar.search.compute_optimal import TABLE, TableError, fit_table, load_table, load_table_or_hand


def test_fit_picks_the_cheapest_candidate_near_each_bins_best():
    # 6 validation problems: 0-1 easy, 2-3 medium, 4-5 hard (bins as the probe gave them)
    bins = ["easy", "easy", "medium", "medium", "hard", "hard"]
    stop = [True, True, True, False, False, False]  # the probe's vote
    cells = {
        ("majority", 4): ([True, True, True, True, False, False], [40.0] * 6),
        ("weighted_best_of_n", 4): ([True, True, True, True, True, False], [44.0] * 6),
        ("beam", 8): ([True, True, False, True, True, True], [120.0] * 6),
    }
    doc = fit_table(bins, stop, cells, tolerance=0.0)
    # easy: stop already 2/2 at 0 extra tokens; medium: majority and weighted 2/2, majority cheaper (40 < 44);
    # hard: beam alone 2/2 (weighted 1/2, the rest 0/2)
    assert doc["table"] == {"easy": ["stop", 0], "medium": ["majority", 4], "hard": ["beam", 8]}
    assert doc["fit"]["hard"]["accuracy"] == 1.0 and doc["fit"]["hard"]["tokens_per_problem"] == 120.0
    # with tolerance .5 the hard bin takes weighted best-of-N at 1/2: cheaper and within .5 of beam's 2/2
    assert fit_table(bins, stop, cells, tolerance=0.5)["table"]["hard"] == ["weighted_best_of_n", 4]
    # a bin no validation problem fell in keeps the hand entry
    assert fit_table(["easy"], [True], {})["table"]["hard"] == list(TABLE["hard"])


def save(tmp_path, task="toy", table=None):
    path = tmp_path / "compute_optimal.json"
    path.write_text(json.dumps({"task": task, "table": table or {"easy": ["stop", 0], "medium": ["majority", 2],
                                                                 "hard": ["best_of_n", 6]}}))
    return path


def test_load_checks_the_task_and_the_entries(tmp_path):
    assert load_table(save(tmp_path), {"toy"})["hard"] == ("best_of_n", 6.0)
    assert load_table(save(tmp_path, task="mixture"), {"mult", "letters"})["medium"] == ("majority", 2.0)
    with pytest.raises(TableError, match="fitted on task 'mult', not on letters"):
        load_table(save(tmp_path, task="mult"), {"letters"})
    with pytest.raises(TableError, match="unknown strategy"):
        load_table(save(tmp_path, table={"easy": ["stop", 0], "medium": ["nope", 1], "hard": ["beam", 1]}), {"toy"})
    with pytest.raises(TableError, match="cannot run inside"):
        load_table(save(tmp_path, table={b: ["compute_optimal", 1] for b in ("easy", "medium", "hard")}), {"toy"})
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(TableError, match="not a fitted compute-optimal table"):
        load_table(tmp_path / "junk.json", {"toy"})


def test_a_mismatched_table_falls_back_to_the_hand_table_said_once(tmp_path, capsys):
    path = save(tmp_path, task="mult")
    assert load_table_or_hand(path, {"letters"}) is TABLE
    assert load_table_or_hand(path, {"letters"}) is TABLE
    err = capsys.readouterr().err
    assert err.count("fitted on task 'mult'") == 1 and "using the hand-written table" in err


def test_the_strategy_runs_a_fitted_table(tmp_path):
    # the hard problem's probe disagrees (4 answers): the fitted table sends it to best_of_n, not the hand beam
    table = {("hard", ""): [(f"H{k}\n", 0) for k in range(4)],
             **{("hard", f"H{k}\n"): [(f"Answer: {k}", 0)] for k in range(4)}}
    policy = ScriptedPolicy(table_script(table))
    [r] = get_strategy("compute_optimal")(policy, get_scorer("none"), [prob("hard")], 8, table=str(save(tmp_path)))
    assert (r.info["difficulty"], r.info["chosen"], r.info["table"]) == ("hard", "best_of_n", "fitted")
    [r] = get_strategy("compute_optimal")(policy, get_scorer("none"), [prob("hard")], 8,
                                          table=str(save(tmp_path, task="mult")))
    assert (r.info["chosen"], r.info["table"]) == ("beam", "hand (fallback)")


def test_fit_command_writes_the_table_beside_the_checkpoint_and_search_loads_it(tiny_checkpoint, tmp_path):
    import shutil

    from qstar.search.cli import SearchConfig, run_search
    from qstar.search.compute_optimal import FitConfig, fit_compute_optimal, table_path

    ck = tmp_path / "checkpoint"
    shutil.copytree(tiny_checkpoint, ck)
    doc = fit_compute_optimal(FitConfig(checkpoint=str(ck), task="mult", problems=3, strategies=["majority"],
                                        budgets=[2], probe=2, max_tokens=40))
    assert table_path(ck).is_file() and json.loads(table_path(ck).read_text())["table"] == doc["table"]
    assert doc["scorer_kind"] == "verifier" and doc["validation"]["split"] == "train"
    summary = run_search(SearchConfig(checkpoint=str(ck), task="mult", strategy="compute_optimal", budget=4,
                                      problems=2, out=str(tmp_path / "s"), max_tokens=40, scorer="cheap"))
    assert summary["scorer_kind"] == "verifier"
    rows = [json.loads(x) for x in (tmp_path / "s" / "results.jsonl").read_text().splitlines()]
    assert {r["info"]["table"] for r in rows} == {"fitted"} and {r["info"]["scorer_kind"] for r in rows} == {"verifier"}
