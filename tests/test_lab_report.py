"""The lab's metrics IO, analysis (CIs, pooling, efficiency, verdicts), charts, tree viewer and report, on synthetic
metrics with hand-computed expectations."""

from __future__ import annotations

import base64
import json
import math
import re

import pytest

from qstar.lab import analysis
from qstar.lab.metrics import MetricsError, append_record, read_metrics
from qstar.lab.report import ReportConfig, pct, run_report
from qstar.lab.tree_view import normalize_tree, prune, tree_section


def test_record(strategy, budget, seed, outcomes, tokens, *, keys=None, oracle=False):
    keys = keys or [f"p{i}" for i in range(len(outcomes))]
    return {"kind": "test", "key": f"{strategy}|{budget}|{seed}", "model": "tiny", "strategy": strategy,
            "budget": budget, "seed": seed, "scorer": "prm", "oracle": oracle, "problems": keys,
            "outcomes": outcomes, "tokens": tokens, "flops": [t * 1e3 for t in tokens]}


test_record.__test__ = False  # a helper, not a test


def synthetic(path):
    """Train curve 10% -> 60%; majority flat; best_of_n rising; beam reaching bon's top cheaper; a tree."""
    for step, (stage, flops, correct) in enumerate([("sft", 1e12, 2), ("sft", 1e13, 8), ("rl", 2e13, 12)]):
        append_record(path, {"kind": "train", "stage": stage, "step": step * 10, "flops": flops, "n": 20,
                             "correct": correct})
    curves = {"majority": {1: [1, 0, 0, 0], 2: [1, 0, 0, 0], 4: [1, 0, 0, 0]},
              "best_of_n": {1: [1, 0, 0, 0], 2: [1, 1, 0, 0], 4: [1, 1, 1, 0]},
              "beam": {1: [1, 1, 0, 0], 2: [1, 1, 1, 1], 4: [1, 1, 1, 1]}}
    for strategy, pts in curves.items():
        for budget, outcomes in pts.items():
            for seed in (0, 1):
                append_record(path, test_record(strategy, budget, seed, outcomes, [10 * budget] * 4))
    tree = {"nodes": [{"id": 0, "parent": None, "step": "", "score": None, "visits": 3},
                      {"id": 1, "parent": 0, "step": "3*4=12", "score": 0.9, "visits": 2, "value": 0.8},
                      {"id": 2, "parent": 0, "step": "</script><b>x", "score": 0.1, "visits": 1},
                      {"id": 3, "parent": 1, "step": "Answer: 12", "score": 1.0, "visits": 1}], "chosen": [0, 1, 3]}
    append_record(path, {"kind": "tree", "strategy": "mcts", "question": "What is 3 times 4?", "answer": "12",
                         "gold": "12", "correct": True, "tree": tree})


def test_wilson_and_bootstrap_hand_values():
    lo, hi = analysis.wilson(5, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.2366, 0.7634)
    assert analysis.wilson(0, 10)[0] == 0.0 and round(analysis.wilson(0, 10)[1], 4) == 0.2775
    assert analysis.bootstrap_ci([1.0] * 8) == (1.0, 1.0)
    lo, hi = analysis.bootstrap_ci([0, 1] * 50, seed=3)
    assert 0.38 < lo < 0.45 and 0.55 < hi < 0.62


def test_pooling_over_seeds_averages_each_problem_first():
    recs = [test_record("majority", 2, 0, [1, 0], [10, 30], keys=["a", "b"]),
            test_record("majority", 2, 1, [1, 1], [20, 20], keys=["a", "b"])]
    (pt,) = analysis.test_curves(recs)["majority"]
    assert pt["accuracy"] == 0.75 and pt["tokens_per_problem"] == 20.0 and pt["seeds"] == [0, 1]
    assert pt["n_problems"] == 2 and pt["flops_per_problem"] == 20e3


def test_efficiency_interpolates_in_log_tokens():
    def pts(s, xs, ys):
        return [{"tokens_per_problem": x, "accuracy": y, "strategy": s, "oracle": False, "scorer_kind": "learned"}
                for x, y in zip(xs, ys)]
    curves = {"best_of_n": pts("best_of_n", [10, 20, 40], [0.2, 0.4, 0.5]),
              "beam": pts("beam", [5, 10, 20], [0.3, 0.45, 0.6])}
    eff = analysis.efficiency(curves)
    assert eff["strategy"] == "beam" and eff["exact"] is True
    assert eff["factor"] == pytest.approx(40 / (10 * 2 ** (1 / 3)))
    curves["beam"] = pts("beam", [5, 10], [0.1, 0.2])  # never reaches 0.5
    assert analysis.efficiency(curves)["factor"] is None
    assert analysis.efficiency({"beam": curves["beam"]})["note"].startswith("no best_of_n curve")
    zero = {"best_of_n": pts("best_of_n", [10, 20], [0.0, 0.0]), "beam": pts("beam", [5], [0.0])}
    assert analysis.efficiency(zero)["factor"] is None  # matching 0% accuracy is not an efficiency


def test_interpolate_never_extrapolates():
    pts = [{"tokens_per_problem": 10, "accuracy": 0.2}, {"tokens_per_problem": 40, "accuracy": 0.6}]
    assert analysis.interpolate(pts, 20) == pytest.approx(0.4)  # halfway in log2 space
    assert analysis.interpolate(pts, 5) is None and analysis.interpolate(pts, 80) is None
    assert analysis.interpolate(pts, 41) == 0.6 and analysis.interpolate(pts, 9.7) == 0.2  # within 5% of an end


def test_verdicts_call_flat_and_losing_curves_by_name(tmp_path):
    path = tmp_path / "metrics.jsonl"
    synthetic(path)
    res = run_report(ReportConfig(dir=str(tmp_path)))
    text = "\n".join(res["verdicts"])
    assert "majority is flat (span 0.0 points < 5)" in text
    assert "best_of_n rises by 50.0 points" in text
    assert "RL improved pass@1" in text and "40.0% -> 60.0%" in text
    sp = res["spans"]  # rises along increasing compute; a falling curve would not count
    assert sp["test"]["best_of_n"] == pytest.approx(50.0) and sp["test"]["majority"] == 0.0
    assert sp["test_best"] == pytest.approx(50.0) and "Span target" in text
    # beam reaches best-of-N's top (75%) between 10 tok (50%) and 20 tok (100%): at 10 * 2**0.5 tokens
    assert res["efficiency"]["factor"] == pytest.approx(40 / (10 * 2 ** 0.5))


def test_report_is_self_contained_and_matches_metrics(tmp_path):
    path = tmp_path / "metrics.jsonl"
    synthetic(path)
    run_report(ReportConfig(dir=str(tmp_path)))
    html = (tmp_path / "report.html").read_text()
    imgs = re.findall(r"src='data:image/png;base64,([^']+)'", html)
    assert len(imgs) == 2 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in imgs)
    assert (tmp_path / "train_compute.png").read_bytes()[:4] == b"\x89PNG"
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", html)  # nothing fetched from a network
    # every measured test point appears in the table with its pooled accuracy and token count
    table = html[html.index("id=\"test-points\""):html.index("id=\"train-points\"")]
    rows = re.findall(r"<tr><td>([^<]+)</td><td>(\d+)</td><td>(\d+)</td><td>[^<]+</td><td>([^<]+)</td>", table)
    by_cell = {}
    for rec in read_metrics(path):
        if rec["kind"] == "test":
            by_cell.setdefault((rec["strategy"], rec["budget"]), []).append(rec)
    assert len(rows) == len(by_cell) == 9
    for strategy, budget, tokens, acc in rows:
        recs = by_cell[(strategy, int(budget))]
        expected = sum(sum(r["outcomes"]) for r in recs) / sum(len(r["outcomes"]) for r in recs)
        assert acc == pct(expected) and int(tokens) == 10 * int(budget)
    train = html[html.index("id=\"train-points\""):]
    assert "<td>rl</td><td>20</td><td>2e+13</td><td>20</td><td>60.0%</td>" in train
    assert "majority is flat" in html and "2.83&times;</b> (95% interval " in html
    # the tree payload cannot close its <script> element early
    assert "</script><b>x" not in html and "<\\/script><b>x" in html


def test_tree_normalisation_flat_and_nested():
    flat = {"nodes": [{"id": 0, "parent": None, "step": ""}, {"id": 1, "parent": 0, "step": "a", "score": 0.5,
                                                                "visits": 2, "value": 0.7, "terminal": False}],
            "chosen": [0, 1]}
    root = normalize_tree(flat)
    (child,) = root["k"]
    assert child == {"t": "a", "s": 0.5, "v": 2.0, "c": True, "x": {"value": 0.7}, "k": []}
    nested = normalize_tree({"text": "", "children": [{"text": "b", "value": 0.2, "children": []}]})
    assert nested["k"][0]["t"] == "b" and nested["k"][0]["s"] == 0.2 and not nested["k"][0]["c"]
    with pytest.raises(ValueError, match="nodes"):
        normalize_tree({"foo": 1})
    wide = {"nodes": [{"id": 0, "parent": None}] + [{"id": i, "parent": 0, "step": str(i), "visits": i}
                                                   for i in range(1, 50)], "chosen": [0, 3]}
    pruned = prune(normalize_tree(wide), max_nodes=10)
    kept = [c["t"] for c in pruned["k"]]
    assert len(kept) == 9 and kept[0] == "3" and kept[1:4] == ["49", "48", "47"]
    assert "could not be drawn" in tree_section([{"strategy": "x", "question": "q", "tree": {"bad": 1}}])


def test_malformed_and_empty_metrics_give_clear_errors(tmp_path):
    with pytest.raises(MetricsError, match="no metrics file"):
        run_report(ReportConfig(dir=str(tmp_path)))
    (tmp_path / "metrics.jsonl").write_text("\n")
    with pytest.raises(MetricsError, match="empty"):
        run_report(ReportConfig(dir=str(tmp_path)))
    good = json.dumps({"kind": "train", "stage": "sft", "step": 1, "flops": 1.0, "n": 4, "correct": 2})
    (tmp_path / "metrics.jsonl").write_text("\n".join([good, "{not json", json.dumps({"kind": "test"}),
                                                       json.dumps({"kind": "train", "stage": "sft", "step": 1,
                                                                   "flops": math.inf, "n": 4, "correct": 9})]))
    with pytest.raises(MetricsError) as err:
        run_report(ReportConfig(dir=str(tmp_path)))
    msg = str(err.value)
    assert "3 malformed line(s)" in msg and "line 2: invalid JSON" in msg and "line 3: test record missing" in msg
    assert "line 4: train record needs integers" in msg and not (tmp_path / "report.html").exists()


def test_empty_sweep_and_train_still_render(tmp_path):
    append_record(tmp_path / "metrics.jsonl", {"kind": "train", "stage": "sft", "step": 1, "flops": 1e9, "n": 5,
                                               "correct": 1})
    res = run_report(ReportConfig(dir=str(tmp_path)))
    assert res["test_curves"] == {} and res["efficiency"]["factor"] is None
    assert "a single point" in res["verdicts"][0]
