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


def strategy_label(strategy: str, *, model: str | None = None, oracle: bool = False, kind: str | None = None) -> str:
    """Legend name of a curve; oracle scorers are always labelled as such, solvers as ceilings."""
    label = strategy + (f" [{model}]" if model else "")
    return label + (" (oracle)" if oracle or kind == "oracle" else " (ceiling)" if kind == "solver" else "")


def record_kind(r: dict) -> str:
    """The scorer kind of a test record (``qstar.scorers.kinds``): recorded, else worked out from its scorer name and
    its problems' tasks (records written before kinds existed); "unknown" for a scorer name no registry knows."""
    from qstar.scorers.kinds import KINDS, kind_over

    if r.get("scorer_kind") in KINDS:
        return r["scorer_kind"]
    if r.get("oracle"):
        return "oracle"
    try:
        return kind_over(r.get("scorer") or "none", {str(k).split(":", 1)[0] for k in r.get("problems", [])})
    except ValueError:
        return "unknown"


def deployable(points: list[dict]) -> bool:
    """A curve that may make headline verdicts: its scorer is a verifier or learned (not an oracle or a solver)."""
    return points[0].get("scorer_kind") in ("verifier", "learned")


def test_curves(records: list[dict], *, resamples: int = 2000) -> dict[str, list[dict]]:
    """One curve per (model, strategy, scorer kind), seeds pooled, points sorted by tokens per problem.

    A point: {strategy, model, oracle, scorer_kind, budget, tokens_per_problem, flops_per_problem, accuracy, ci_low,
    ci_high, seeds, n_problems, scorer, per_problem, per_problem_tokens}. Accuracy averages each problem over its
    seeds first, then over problems; the CI bootstraps over problems (seeds are not independent draws of the problem
    set). per_problem: problem key -> that mean (what paired comparisons resample); per_problem_tokens: problem key
    -> its mean tokens. Oracle and solver curves are labelled as ceilings.
    """
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if r["kind"] == "test":
            cells[(r["model"], r["strategy"], record_kind(r), r["budget"])].append(r)
    models = {k[0] for k in cells}
    curves: dict[str, list[dict]] = defaultdict(list)
    for (model, strategy, kind, budget), rs in sorted(cells.items(), key=lambda kv: str(kv[0])):
        by_problem: dict[str, list[float]] = defaultdict(list)
        by_problem_tokens: dict[str, list[float]] = defaultdict(list)
        tokens, flops = [], []
        for r in rs:
            for key, ok, t in zip(r["problems"], r["outcomes"], r["tokens"]):
                by_problem[key].append(float(ok))
                by_problem_tokens[key].append(float(t))
            tokens += [float(t) for t in r["tokens"]]
            flops += [float(f) for f in r["flops"]]
        per_problem = {k: sum(v) / len(v) for k, v in by_problem.items()}
        lo, hi = bootstrap_ci(list(per_problem.values()), resamples=resamples, seed=len(curves))
        label = strategy_label(strategy, model=model if len(models) > 1 else None, kind=kind)
        curves[label].append({
            "strategy": strategy, "model": model, "oracle": kind == "oracle", "scorer_kind": kind, "budget": budget,
            "tokens_per_problem": sum(tokens) / len(tokens), "flops_per_problem": sum(flops) / len(flops),
            "accuracy": sum(per_problem.values()) / len(per_problem), "ci_low": lo, "ci_high": hi,
            "seeds": sorted({r["seed"] for r in rs}), "n_problems": len(per_problem), "scorer": rs[0].get("scorer"),
            "per_problem": per_problem,
            "per_problem_tokens": {k: sum(v) / len(v) for k, v in by_problem_tokens.items()},
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


def efficiency(curves: dict[str, list[dict]], *, baseline: str = BASELINE, resamples: int = 1000) -> dict:
    """How many times fewer tokens the best deployable strategy needs to reach best-of-N's top accuracy, with a 95%
    paired bootstrap interval over problems.

    Only verifier and learned curves count (oracle and solver lines are ceilings), and each strategy is compared with
    the best-of-N curve of its own scorer kind. target = that best-of-N's highest pooled accuracy; its cost = tokens
    of its first point reaching it. factor = baseline tokens / strategy tokens (> 1 means cheaper). ci_low, ci_high:
    the 2.5/97.5 percentiles of the same factor (same strategy, same baseline) over ``resamples`` resamples of the
    problems, shared by both curves, each problem bringing its outcomes and its tokens (a strategy that reads
    best-of-N's own chains, as until_verified does, matches it problem by problem: then only the tokens vary); a
    resample where the strategy does not reach the target counts as factor 0. factor is None when no deployable
    baseline exists or nothing reaches it.
    """
    base = {pts[0].get("scorer_kind"): k for k, pts in curves.items()
            if pts[0]["strategy"] == baseline and deployable(pts)}
    out = {"factor": None, "strategy": None, "baseline": baseline, "target_accuracy": None, "baseline_tokens": None,
           "strategy_tokens": None, "exact": None, "ci_low": None, "ci_high": None, "scorer_kind": None}
    if not base:
        out["note"] = f"no {baseline} curve with a deployable (verifier or learned) scorer was measured"
        return out
    best, targets = None, {}
    for kind, bkey in base.items():
        bpts = curves[bkey]
        target = max(p["accuracy"] for p in bpts)
        btok = next(p["tokens_per_problem"] for p in bpts if p["accuracy"] == target)
        targets[kind] = (target, btok)
        for label, pts in curves.items():
            if label == bkey or pts[0].get("scorer_kind") != kind or target <= 0:
                continue
            hit = tokens_to_reach(pts, target)
            if hit and (best is None or btok / hit[0] > best[0]):
                best = (btok / hit[0], label, hit[0], hit[1], kind)
    kind = best[4] if best else max(targets, key=lambda k: targets[k][0])
    out.update(target_accuracy=targets[kind][0], baseline_tokens=targets[kind][1], scorer_kind=kind)
    if targets[kind][0] <= 0:
        out["note"] = f"{baseline} never solved a problem, so there is no accuracy to match"
        return out
    if best is None:
        out["note"] = (f"no other deployable strategy reached {baseline}'s top accuracy {targets[kind][0]:.1%} "
                       "within its measured budgets")
        return out
    out.update(factor=best[0], strategy=best[1], strategy_tokens=best[2], exact=best[3])
    out["ci_low"], out["ci_high"] = _factor_ci(curves[base[kind]], curves[best[1]], resamples=resamples)
    out["note"] = ("interpolated crossing" if best[3] else
                   "reached at its smallest budget, so the true factor is at least this")
    return out


def _outcomes(points: list[dict], keys: list[str]) -> np.ndarray:
    """Per-problem outcomes [len(points), len(keys)] of a curve's points (seeds averaged)."""
    return np.array([[p["per_problem"][k] for k in keys] for p in points], dtype=float)


def _shared_keys(*curves: list[dict]) -> list[str]:
    """Problems measured at every point of every curve (the sweep gives every cell the same problems)."""
    keys = None
    for pts in curves:
        for p in pts:
            ks = set(p.get("per_problem") or {})
            keys = ks if keys is None else keys & ks
    return sorted(keys or ())


def _resampled(curves: list[list[dict]], *, resamples: int, seed: int):
    """Yields, per paired bootstrap resample of the shared problems, each curve's points with resampled accuracy and,
    where the points carry per-problem tokens, resampled tokens per problem."""
    keys = _shared_keys(*curves)
    if not keys:
        return
    mats = [_outcomes(pts, keys) for pts in curves]
    toks = [np.array([[p["per_problem_tokens"][k] for k in keys] for p in pts], dtype=float)
            if all(set(keys) <= set(p.get("per_problem_tokens") or {}) for p in pts) else None for pts in curves]
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        idx = rng.integers(0, len(keys), size=len(keys))
        out = []
        for pts, m, t in zip(curves, mats, toks):
            cost = [p["tokens_per_problem"] for p in pts] if t is None else t[:, idx].mean(axis=1)
            out.append([{**p, "accuracy": float(acc), "tokens_per_problem": float(c)}
                        for p, acc, c in zip(pts, m[:, idx].mean(axis=1), cost)])
        yield out


def _factor_ci(bpts: list[dict], spts: list[dict], *, resamples: int, seed: int = 0) -> tuple:
    """(2.5%, 97.5%) percentiles of the factor over paired resamples; (None, None) without per-problem outcomes."""
    factors = []
    for b, s in _resampled([bpts, spts], resamples=resamples, seed=seed):
        target = max(p["accuracy"] for p in b)
        btok = next(p["tokens_per_problem"] for p in b if p["accuracy"] == target)
        hit = tokens_to_reach(s, target) if target > 0 else None
        factors.append(btok / hit[0] if hit else 0.0)
    if not factors:
        return (None, None)
    return float(np.quantile(factors, 0.025)), float(np.quantile(factors, 0.975))


def paired_difference(a: list[dict], b: list[dict], tokens: float, *, resamples: int = 2000,
                      seed: int = 0) -> dict | None:
    """Accuracy of curve ``a`` minus curve ``b`` at ``tokens`` per problem (each interpolated in log(tokens) as in
    ``interpolate``), with a 95% paired bootstrap interval: the same resampled problems for both curves, so the
    problem-to-problem spread both share cancels. None where either curve was not measured that far.

    Returns {tokens, diff, ci_low, ci_high, n_problems}; the difference is significant when the interval excludes 0.
    """
    if interpolate(a, tokens) is None or interpolate(b, tokens) is None:
        return None
    keys = _shared_keys(a, b)
    if not keys:
        return None
    va, vb = _at(a, keys, tokens), _at(b, keys, tokens)
    d = va - vb
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    return {"tokens": tokens, "diff": float(d.mean()), "ci_low": float(np.quantile(means, 0.025)),
            "ci_high": float(np.quantile(means, 0.975)), "n_problems": len(keys)}


def _at(points: list[dict], keys: list[str], tokens: float) -> np.ndarray:
    """Per-problem outcomes interpolated at ``tokens`` with ``interpolate``'s weights."""
    m = _outcomes(points, keys)
    xs = [p["tokens_per_problem"] for p in points]
    if tokens <= xs[0]:
        return m[0]
    if tokens >= xs[-1]:
        return m[-1]
    j = next(i for i in range(1, len(xs)) if xs[i] >= tokens)
    span = math.log(xs[j]) - math.log(xs[j - 1])
    frac = 0.0 if span == 0 else (math.log(tokens) - math.log(xs[j - 1])) / span
    return m[j - 1] + frac * (m[j] - m[j - 1])


def falls(points: list[dict], *, resamples: int = 2000, seed: int = 0) -> dict | None:
    """Does a curve fall with compute beyond its interval? Its last point minus its peak, per problem, with a 95%
    paired bootstrap interval: {peak_budget, last_budget, diff, ci_low, ci_high, falls} (falls: the interval lies
    below 0). None for a curve of fewer than two points or without per-problem outcomes."""
    keys = _shared_keys(points)
    if len(points) < 2 or not keys:
        return None
    peak, last = max(points, key=lambda p: p["accuracy"]), points[-1]
    d = _outcomes([last], keys)[0] - _outcomes([peak], keys)[0]
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    lo, hi = float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))
    return {"peak_budget": peak["budget"], "last_budget": last["budget"], "diff": float(d.mean()), "ci_low": lo,
            "ci_high": hi, "falls": hi < 0}


def paired_vs_baseline(curves: dict[str, list[dict]], table: dict, *, baseline: str = BASELINE,
                       resamples: int = 2000) -> dict[str, list[dict | None]]:
    """``paired_difference`` of every curve against the baseline's curve of its scorer kind (else any baseline
    curve) at each of ``table``'s matched token levels (``matched_compute``): label -> [diff or None per level]."""
    bases = {pts[0].get("scorer_kind"): k for k, pts in curves.items() if pts[0]["strategy"] == baseline}
    out = {}
    for label, pts in curves.items():
        bkey = bases.get(pts[0].get("scorer_kind")) or next(iter(bases.values()), None)
        if bkey is None or bkey == label:
            continue
        out[label] = [paired_difference(pts, curves[bkey], t, resamples=resamples) for t in table["levels"]]
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

    ``test_best`` is the largest rise of a deployable (verifier or learned scorer) test curve; ``met`` says whether
    both the train curve and that curve rise at least ``target`` points (the demo's target for both charts). A falling
    curve spans points too, but it is not scaling, so it does not count.
    """
    test = {label: rise(pts) for label, pts in curves.items()}
    best = max((v for label, v in test.items() if deployable(curves[label])), default=0.0)
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
    simple = [k for k, pts in curves.items() if pts[0]["strategy"] == SIMPLE_BASELINE and deployable(pts)]
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
        ci = (f", 95% interval {eff['ci_low']:.2f}-{eff['ci_high']:.2f}x" if eff.get("ci_low") is not None else "")
        lines.append(f"Efficiency vs {eff['baseline']} ({eff['scorer_kind']} scorers): {eff['strategy']} reaches "
                     f"{eff['baseline']}'s top accuracy {_pct(eff['target_accuracy'])} with {eff['factor']:.2f}x "
                     f"fewer tokens per problem{ci} ({eff['strategy_tokens']:.0f} vs {eff['baseline_tokens']:.0f}; "
                     f"{eff['note']}).")
    return lines
