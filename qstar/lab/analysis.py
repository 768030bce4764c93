"""Turn metrics records into curves, confidence intervals, the efficiency factor and plain-words verdicts.

Nothing here smooths or drops points: every curve point is one measured checkpoint or one (strategy, budget)
pooled over seeds, and every sentence is computed from those numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

FLAT_POINTS = 5.0  # a curve whose accuracy span is below this many percentage points is called "flat"
BASELINE = "best_of_n"  # the strategy the efficiency factor is measured against
SIMPLE_BASELINE = "majority"  # a strategy "loses" when it is below this one at matched compute
SPAN_TARGET = 30.0  # both demo curves should span at least this many points (the report says whether they do)
END_SLACK = 1.05  # matched-compute levels this close (ratio) beyond a curve's end use that end's measured value


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion (good at 0% and 100%, unlike the normal interval)."""
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_ci(per_problem: list[float], *, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean, resampling problems with replacement."""
    x = np.asarray(per_problem, dtype=float)
    if x.size == 0:
        return (0.0, 1.0)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    return (float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975)))


def train_curve(records: list[dict]) -> list[dict]:
    """Train records as chart points sorted by FLOPs: {flops, accuracy, ci_low, ci_high, stage, step, n, correct},
    plus an RL point's seed, rl_flops and held-out chain lengths where recorded."""
    points = []
    for r in records:
        if r["kind"] != "train":
            continue
        lo, hi = wilson(r["correct"], r["n"])
        points.append({"flops": float(r["flops"]), "accuracy": r["correct"] / r["n"], "ci_low": lo, "ci_high": hi,
                       "stage": r["stage"], "step": r["step"], "n": r["n"], "correct": r["correct"],
                       **{k: r[k] for k in ("seed", "rl_flops", "len_correct", "len_incorrect", "response_len")
                          if k in r}})
    return sorted(points, key=lambda p: (p["flops"], p["step"]))


def strategy_label(strategy: str, *, model: str | None = None, oracle: bool = False) -> str:
    """Legend name of a curve; oracle scorers are always labelled as such."""
    label = strategy + (f" [{model}]" if model else "")
    return label + (" (oracle)" if oracle else "")


def test_curves(records: list[dict], *, resamples: int = 2000) -> dict[str, list[dict]]:
    """One curve per (model, strategy, oracle), seeds pooled, points sorted by tokens per problem.

    A point: {strategy, model, oracle, budget, tokens_per_problem, flops_per_problem, accuracy, ci_low, ci_high,
    seeds, n_problems, scorer}. Accuracy averages each problem over its seeds first, then over problems; the CI
    bootstraps over problems (seeds are not independent draws of the problem set).
    """
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if r["kind"] == "test":
            cells[(r["model"], r["strategy"], bool(r.get("oracle", False)), r["budget"])].append(r)
    models = {k[0] for k in cells}
    curves: dict[str, list[dict]] = defaultdict(list)
    for (model, strategy, oracle, budget), rs in sorted(cells.items(), key=lambda kv: str(kv[0])):
        by_problem: dict[str, list[float]] = defaultdict(list)
        tokens, flops = [], []
        for r in rs:
            for key, ok in zip(r["problems"], r["outcomes"]):
                by_problem[key].append(float(ok))
            tokens += [float(t) for t in r["tokens"]]
            flops += [float(f) for f in r["flops"]]
        per_problem = [sum(v) / len(v) for v in by_problem.values()]
        lo, hi = bootstrap_ci(per_problem, resamples=resamples, seed=len(curves))
        label = strategy_label(strategy, model=model if len(models) > 1 else None, oracle=oracle)
        if "checker" in (rs[0].get("scorer") or "") and not oracle:  # recomputes some answers from the question
            label += " (ceiling)"
        curves[label].append({
            "strategy": strategy, "model": model, "oracle": oracle, "budget": budget,
            "tokens_per_problem": sum(tokens) / len(tokens), "flops_per_problem": sum(flops) / len(flops),
            "accuracy": sum(per_problem) / len(per_problem), "ci_low": lo, "ci_high": hi,
            "seeds": sorted({r["seed"] for r in rs}), "n_problems": len(per_problem), "scorer": rs[0].get("scorer"),
        })
    return {k: sorted(v, key=lambda p: (p["tokens_per_problem"], p["budget"])) for k, v in curves.items()}


def interpolate(points: list[dict], tokens: float) -> float | None:
    """Accuracy at ``tokens``: linear in log(tokens) between measured points; a level within ``END_SLACK`` of a
    curve's first or last point takes that point's measured value (costs at equal N differ by a few tokens);
    None further out (never extrapolated)."""
    if not points:
        return None
    lo, hi = points[0]["tokens_per_problem"], points[-1]["tokens_per_problem"]
    if tokens < lo / END_SLACK or tokens > hi * END_SLACK:
        return None
    if tokens <= lo:
        return points[0]["accuracy"]
    if tokens >= hi:
        return points[-1]["accuracy"]
    for a, b in zip(points, points[1:]):
        if a["tokens_per_problem"] <= tokens <= b["tokens_per_problem"]:
            span = math.log(b["tokens_per_problem"]) - math.log(a["tokens_per_problem"])
            frac = 0.0 if span == 0 else (math.log(tokens) - math.log(a["tokens_per_problem"])) / span
            return a["accuracy"] + frac * (b["accuracy"] - a["accuracy"])
    return None


def tokens_to_reach(points: list[dict], target: float) -> tuple[float, bool] | None:
    """(tokens per problem at which a curve first reaches ``target`` accuracy, exact?) or None if never.

    Between two measured points the crossing is interpolated linearly in log(tokens). If the curve's first point
    already reaches the target, its tokens are returned with exact=False: the true crossing is at most that.
    """
    if not points:
        return None
    if points[0]["accuracy"] >= target:
        return points[0]["tokens_per_problem"], False
    for a, b in zip(points, points[1:]):
        if a["accuracy"] < target <= b["accuracy"]:
            frac = (target - a["accuracy"]) / (b["accuracy"] - a["accuracy"])
            la, lb = math.log(a["tokens_per_problem"]), math.log(b["tokens_per_problem"])
            return math.exp(la + frac * (lb - la)), True
    return None


def efficiency(curves: dict[str, list[dict]], *, baseline: str = BASELINE) -> dict:
    """How many times fewer tokens the best deployable strategy needs to reach best-of-N's top accuracy.

    target = best-of-N's highest pooled accuracy; its cost = tokens of the first best-of-N point reaching it.
    factor = baseline tokens / strategy tokens (> 1 means cheaper). Oracle curves are excluded. factor is None
    when no baseline curve exists or no other strategy reaches the target within its measured range.
    """
    base = [k for k, pts in curves.items() if pts[0]["strategy"] == baseline and not pts[0]["oracle"]]
    out = {"factor": None, "strategy": None, "baseline": baseline, "target_accuracy": None,
           "baseline_tokens": None, "strategy_tokens": None, "exact": None}
    if not base:
        out["note"] = f"no {baseline} curve was measured"
        return out
    bpts = curves[base[0]]
    target = max(p["accuracy"] for p in bpts)
    btok = next(p["tokens_per_problem"] for p in bpts if p["accuracy"] == target)
    out.update(target_accuracy=target, baseline_tokens=btok)
    if target <= 0:
        out["note"] = f"{baseline} never solved a problem, so there is no accuracy to match"
        return out
    best = None
    for label, pts in curves.items():
        if label == base[0] or pts[0]["oracle"]:
            continue
        hit = tokens_to_reach(pts, target)
        if hit and (best is None or btok / hit[0] > best[0]):
            best = (btok / hit[0], label, hit[0], hit[1])
    if best is None:
        out["note"] = f"no other strategy reached {baseline}'s top accuracy {target:.1%} within its measured budgets"
        return out
    out.update(factor=best[0], strategy=best[1], strategy_tokens=best[2], exact=best[3])
    out["note"] = ("interpolated crossing" if best[3] else
                   "reached at its smallest budget, so the true factor is at least this")
    return out


def matched_compute(curves: dict[str, list[dict]], *, baseline: str = BASELINE) -> dict:
    """Accuracy of every curve at common token levels: {levels: [tokens], rows: {label: [accuracy | None]}}.

    Levels are the baseline's measured tokens (else a log grid over the overlap of all curves). Values are
    interpolated in log(tokens) and None where a curve was not measured that far (never extrapolated).
    """
    base = [k for k, pts in curves.items() if pts[0]["strategy"] == baseline]
    if base:
        levels = [p["tokens_per_problem"] for p in curves[base[0]]]
    else:
        xs = [p["tokens_per_problem"] for pts in curves.values() for p in pts]
        levels = list(np.geomspace(min(xs), max(xs), num=4)) if xs else []
    return {"levels": levels, "rows": {k: [interpolate(pts, t) for t in levels] for k, pts in curves.items()}}


def rise(points: list[dict]) -> float:
    """Largest accuracy gain (percentage points) from a point to any later (more compute) point; 0 if none rises."""
    best, low = 0.0, math.inf
    for p in points:
        low = min(low, p["accuracy"])
        best = max(best, p["accuracy"] - low)
    return 100 * best


def spans(train: list[dict], curves: dict[str, list[dict]], *, target: float = SPAN_TARGET) -> dict:
    """How far each curve rises with compute (``rise``: percentage points), for the train curve and each test curve.

    ``test_best`` is the largest rise of a deployable (non-oracle) test curve; ``met`` says whether both the train
    curve and that curve rise at least ``target`` points (the demo's target for both charts). A falling curve spans
    points too, but it is not scaling, so it does not count.
    """
    test = {label: rise(pts) for label, pts in curves.items()}
    best = max((v for label, v in test.items() if not curves[label][0].get("oracle")), default=0.0)
    return {"train": rise(train), "test": test, "test_best": best, "target": target,
            "met": rise(train) >= target and best >= target}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def describe_curve(name: str, points: list[dict], *, x: str, unit: str) -> str:
    """One sentence: range, span in points, and whether the curve is flat, rising or falling."""
    if not points:
        return f"{name}: no points were measured."
    if len(points) == 1:
        return f"{name}: a single point ({_pct(points[0]['accuracy'])}), so no trend can be read."
    accs = [p["accuracy"] for p in points]
    span = 100 * (max(accs) - min(accs))
    first, last = points[0], points[-1]
    delta = 100 * (last["accuracy"] - first["accuracy"])
    trend = (f"is flat (span {span:.1f} points < {FLAT_POINTS:g})" if span < FLAT_POINTS else
             f"rises by {delta:.1f} points" if delta > 0 else f"falls by {-delta:.1f} points")
    peak = max(points, key=lambda p: p["accuracy"])
    tail = ""
    if span >= FLAT_POINTS and last["accuracy"] < peak["accuracy"] - FLAT_POINTS / 100:
        tail = f"; it peaked at {_pct(peak['accuracy'])} ({peak[x]:.3g} {unit}) and then fell"
    return (f"{name} {trend}: {_pct(first['accuracy'])} at {first[x]:.3g} {unit} -> {_pct(last['accuracy'])} at "
            f"{last[x]:.3g} {unit} (span {span:.1f} points){tail}.")


def describe_train(points: list[dict]) -> list[str]:
    """Verdicts on the train-time curve, overall and per stage transition."""
    lines = [describe_curve("Held-out pass@1 vs training FLOPs", points, x="flops", unit="FLOPs")]
    stages = list(dict.fromkeys(p["stage"] for p in points))
    for prev, cur in zip(stages, stages[1:]):
        a = [p for p in points if p["stage"] == prev][-1]
        b = [p for p in points if p["stage"] == cur][-1]
        delta = 100 * (b["accuracy"] - a["accuracy"])
        verb = ("improved" if delta >= FLAT_POINTS else "lowered" if delta <= -FLAT_POINTS
                else f"did not clearly change (< {FLAT_POINTS:g} points)")
        lines.append(f"{cur.upper()} {verb} pass@1 relative to the end of {prev.upper()}: "
                     f"{_pct(a['accuracy'])} -> {_pct(b['accuracy'])} ({delta:+.1f} points).")
    return lines


def describe_test(curves: dict[str, list[dict]], table: dict, eff: dict) -> list[str]:
    """Verdicts on the test-time curves: each curve's trend, who loses to majority voting, the efficiency factor."""
    lines = [describe_curve(label, pts, x="tokens_per_problem", unit="tokens/problem") for label, pts in curves.items()]
    simple = [k for k, pts in curves.items() if pts[0]["strategy"] == SIMPLE_BASELINE and not pts[0]["oracle"]]
    if simple:
        ref = table["rows"][simple[0]]
        for label, row in table["rows"].items():
            if label == simple[0]:
                continue
            both = [(t, a, r) for t, a, r in zip(table["levels"], row, ref) if a is not None and r is not None]
            losses = [(t, a, r) for t, a, r in both if a < r]
            if both and len(losses) == len(both):
                t, a, r = losses[-1]
                lines.append(f"{label} loses to {SIMPLE_BASELINE} voting at every matched budget "
                             f"(e.g. {_pct(a)} vs {_pct(r)} at {t:.0f} tokens/problem).")
            elif losses:
                lines.append(f"{label} is below {SIMPLE_BASELINE} voting at {len(losses)} of {len(both)} "
                             "matched budgets.")
    if eff["factor"] is None:
        lines.append(f"Efficiency vs {eff['baseline']}: not reached ({eff.get('note', '')}).")
    else:
        lines.append(f"Efficiency vs {eff['baseline']}: {eff['strategy']} reaches {eff['baseline']}'s top accuracy "
                     f"{_pct(eff['target_accuracy'])} with {eff['factor']:.2f}x fewer tokens per problem "
                     f"({eff['strategy_tokens']:.0f} vs {eff['baseline_tokens']:.0f}; {eff['note']}).")
    return lines
