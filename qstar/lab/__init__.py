"""qstar.lab: the scaling lab. One command reproduces both o1 scaling charts from scratch.

    qstar demo --out runs/demo     data -> SFT -> PRM -> GRPO -> test-time sweep -> report (demo.py, stages.py)
    qstar sweep ...                model x strategy x budget x seed grid into a resumable jsonl (sweep.py)
    qstar report DIR               re-render DIR/report.html from DIR/metrics.jsonl alone (report.py)
    qstar ask "How many r's are in strawberry?"   the reasoner thinks out loud, or says it can't (ask.py, routes.py)

metrics.py documents the metrics.jsonl records; analysis.py turns them into curves, CIs, the efficiency factor and
plain-words verdicts; charts.py and tree_view.py draw them. Nothing here is imported by lower layers.
"""
