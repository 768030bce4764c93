"""o1's two claims, measured: RL raises held-out pass@1 (the RL span), and so does thinking longer (the thinking
span); plus which way of spending test-time tokens wins, and example chains from before and after RL.

Every figure is computed from the lab's records (``train`` points of each RL seed, ``test`` cells of the sweep), with
95% intervals, and the sentences say "not met" or "falls" where the numbers do.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

from qstar.lab.analysis import bootstrap_ci, deployable, interpolate, record_kind, wilson
from qstar.scorers.kinds import DEPLOYABLE

SPAN_TARGET = 0.30  # both spans should reach 30 points (the thinking issue's targets)
THINK = "think"  # the strategy whose budget is the thinking budget (qstar.search.thinking)


def rl_span(train: list[dict]) -> dict | None:
    """Held-out greedy pass@1 after RL minus the SFT base, pooled over RL seeds, from each seed's own first and last
    evaluation (the same problems before and after). CI: normal interval of a difference of proportions. Per seed:
    before/after with Wilson intervals and whether they are separated (after's low end above before's high end)."""
    seeds: dict[int, list[dict]] = defaultdict(list)
    for p in train:
        if p["stage"] == "rl":
            seeds[p.get("seed", 0)].append(p)
    if not seeds:
        return None
    per_seed, nb = [], [0, 0, 0, 0]  # correct before, n before, correct after, n after
    for seed, pts in sorted(seeds.items()):
        pts = sorted(pts, key=lambda p: p["step"])
        a, b = pts[0], pts[-1]
        lo_a, hi_a = wilson(a["correct"], a["n"])
        lo_b, hi_b = wilson(b["correct"], b["n"])
        per_seed.append({"seed": seed, "before": a["correct"] / a["n"], "after": b["correct"] / b["n"],
                         "before_ci": [lo_a, hi_a], "after_ci": [lo_b, hi_b], "updates": b["step"],
                         "separated": lo_b > hi_a})
        nb = [nb[0] + a["correct"], nb[1] + a["n"], nb[2] + b["correct"], nb[3] + b["n"]]
    p0, p1 = nb[0] / nb[1], nb[2] / nb[3]
    half = 1.96 * math.sqrt(p0 * (1 - p0) / nb[1] + p1 * (1 - p1) / nb[3])
    span = p1 - p0
    return {"span": span, "ci_low": span - half, "ci_high": span + half, "before": p0, "after": p1,
            "seeds": per_seed, "met": span >= SPAN_TARGET and all(s["separated"] for s in per_seed)}


def thinking_span(records: list[dict], *, resamples: int = 2000) -> dict | None:
    """Accuracy of one chain at the largest thinking budget minus at the smallest (``think`` sweep cells), every
    model and seed pooled per problem; CI: paired bootstrap over problems. None without think cells."""
    by_budget: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    tokens: dict[int, list[float]] = defaultdict(list)
    for r in records:
        if r["kind"] == "test" and r["strategy"] == THINK and record_kind(r) in DEPLOYABLE:
            for key, ok in zip(r["problems"], r["outcomes"]):
                by_budget[r["budget"]][key].append(float(ok))
            tokens[r["budget"]] += [float(t) for t in r["tokens"]]
    if len(by_budget) < 2:
        return None
    small, large = min(by_budget), max(by_budget)
    keys = sorted(set(by_budget[small]) & set(by_budget[large]))
    diff = [sum(by_budget[large][k]) / len(by_budget[large][k]) - sum(by_budget[small][k]) / len(by_budget[small][k])
            for k in keys]
    lo, hi = bootstrap_ci(diff, resamples=resamples)
    span = sum(diff) / max(1, len(diff))
    acc = {b: sum(sum(v) / len(v) for v in by_budget[b].values()) / len(by_budget[b]) for b in sorted(by_budget)}
    return {"span": span, "ci_low": lo, "ci_high": hi, "smallest_budget": small, "largest_budget": large,
            "accuracy": acc, "tokens": {b: sum(t) / len(t) for b, t in sorted(tokens.items()) if t},
            "problems": len(keys), "met": span >= SPAN_TARGET and lo > 0}


def winner(curves: dict[str, list[dict]], task: str, *, tie: float = 0.05) -> list[str]:
    """Which way of spending tokens wins, in words, per model: at each parallel curve's measured costs, the thinking
    line (interpolated in log tokens, never extrapolated) against that curve, a difference under ``tie`` being a tie;
    and what the parallel strategies buy beyond the thinking line's end. Deployable lines only (verifier and learned
    scorers: no oracle or solver)."""
    think = {k: v for k, v in curves.items() if v[0]["strategy"] == THINK}
    others = {k: v for k, v in curves.items() if v[0]["strategy"] != THINK and deployable(v)}
    lines = []
    for tl, tpts in think.items():
        end = max(tpts, key=lambda p: p["tokens_per_problem"])
        for label, pts in others.items():
            if pts[0]["model"] != tpts[0]["model"]:
                continue
            both = [(p["tokens_per_problem"], interpolate(tpts, p["tokens_per_problem"]), p["accuracy"]) for p in pts]
            both = [(t, a, b) for t, a, b in both if a is not None]
            if both:
                t, a, b = both[-1]
                verdict = ("about equal" if abs(a - b) < tie else f"{tl} wins" if a > b else f"{label} wins")
                lines.append(f"{task}: at equal tokens, one thinking chain ({tl}) against {label}: {verdict} "
                             f"({100 * a:.1f}% vs {100 * b:.1f}% at {t:.0f} tokens/problem).")
            beyond = [p for p in pts if p["tokens_per_problem"] > end["tokens_per_problem"] * 1.05]
            if beyond:
                top = max(beyond, key=lambda p: p["accuracy"])
                gain = 100 * (top["accuracy"] - end["accuracy"])
                lines.append(f"{task}: past the thinking line's end ({end['tokens_per_problem']:.0f} tokens/problem, "
                             f"{100 * end['accuracy']:.1f}%), {label} spends up to "
                             f"{top['tokens_per_problem'] / end['tokens_per_problem']:.1f}x the tokens for "
                             f"{gain:+.1f} points ({100 * top['accuracy']:.1f}% at its best).")
    return lines


def example_chains(before: str, after: str, heldout: str, *, problems: int = 64, shown: int = 3) -> list[dict]:
    """Greedy chains of the SFT base (``before``) and the RL model (``after``) on the first held-out problems,
    preferring problems the base got wrong and RL right, then chains that check or retry."""
    from qstar.learn.evaluate import chain_budget
    from qstar.model.policy import load_policy
    from qstar.model.types import Prompt
    from qstar.tasks import judge, task_of
    from qstar.tasks.base import Problem
    from qstar.tasks.thinking import thinking_stats

    probs = [Problem.from_json(json.loads(line)) for line in Path(heldout).read_text().splitlines() if line.strip()]
    probs = probs[:problems]
    if not probs:
        return []
    budget = chain_budget(task_of(probs[0].task), probs)
    chains = {}
    for name, ckpt in (("before", before), ("after", after)):
        policy = load_policy(ckpt, flag="--checkpoint")
        outs = policy.sample([Prompt(p.question) for p in probs], n=1, temperature=0.0, max_tokens=budget)
        chains[name] = [row[0].text for row in outs]
    rows = []
    for i, p in enumerate(probs):
        b, a = chains["before"][i], chains["after"][i]
        ok_b, ok_a = judge(p, b).correct, judge(p, a).correct
        stats = thinking_stats(a)
        rank = (not ok_b and ok_a, stats["retries"] + stats["checks"] > 0, ok_a)
        rows.append((rank, {"question": p.question, "gold": p.answer, "before": b, "before_correct": ok_b,
                            "after": a, "after_correct": ok_a}))
    rows.sort(key=lambda r: r[0], reverse=True)
    return [r for _, r in rows[:shown]]
