"""`qstar report DIR`: render DIR/report.html (self-contained: charts as base64 PNG, inline CSS/JS, opens offline)
and the chart PNGs from DIR/metrics.jsonl alone. The demo calls ``render_report`` the same way after its sweep."""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qstar.lab import analysis, charts, tree_view
from qstar.lab.metrics import read_metrics
from qstar.runio import atomic_write_text

TRAIN_PNG, TEST_PNG, REPORT = "train_compute.png", "test_compute.png", "report.html"


@dataclass
class ReportConfig:
    """Re-render a run's report from its metrics.jsonl."""

    dir: str = field(default="runs/demo", metadata={"positional": True})
    """Run directory holding metrics.jsonl; report.html and the chart PNGs are written next to it."""
    baseline: str = analysis.BASELINE
    """Strategy the efficiency factor and the matched-compute table are measured against."""
    title: str = "qstar scaling lab"
    """Heading of the report."""


def run_report(cfg: ReportConfig) -> dict:
    """Read DIR/metrics.jsonl (MetricsError names malformed lines), write the report; returns the analysis."""
    out = Path(cfg.dir)
    records = read_metrics(out / "metrics.jsonl")
    result = render_report(records, out, baseline=cfg.baseline, title=cfg.title)
    print(f"wrote {out / REPORT}")
    return result


def analyze(records: list[dict], *, baseline: str = analysis.BASELINE, cut_short: Sequence[str] = (),
            task: str = "the task") -> dict:
    """Curves, matched-compute table, efficiency, the RL and thinking spans and verdict sentences, all computed
    from ``records``.

    cut_short: training stages a time cap stopped before their update budgets; every verdict then says so."""
    from qstar.lab import spans

    train = analysis.train_curve(records)
    curves = analysis.test_curves(records)
    table = analysis.matched_compute(curves, baseline=baseline)
    eff = analysis.efficiency(curves, baseline=baseline)
    paired = analysis.paired_vs_baseline(curves, table, baseline=baseline)
    sp = analysis.spans(train, curves)
    verdict = (f"Span target (a rise of {sp['target']:g} points on both charts): the train curve rises "
               f"{sp['train']:.1f} points, the best deployable test curve {sp['test_best']:.1f}: "
               f"{'met' if sp['met'] else 'NOT met'}.")
    rl, think = spans.rl_span(train), spans.thinking_span(records)
    own = []
    if rl is not None:
        seeds = "; ".join(f"seed {s['seed']}: {100 * s['before']:.1f}% -> {100 * s['after']:.1f}% after "
                          f"{s['updates']} updates ({'separated' if s['separated'] else 'intervals OVERLAP'})"
                          for s in rl["seeds"])
        own.append(f"RL span (held-out greedy pass@1, RL alone, seeds pooled): {100 * rl['span']:+.1f} points "
                   f"[{100 * rl['ci_low']:.1f}, {100 * rl['ci_high']:.1f}]; {seeds}; target "
                   f"{100 * spans.SPAN_TARGET:g} points with separated intervals: {'met' if rl['met'] else 'NOT met'}.")
    if think is not None:
        own.append(f"Thinking span (one greedy chain, no scorer, budget {think['largest_budget']} vs "
                   f"{think['smallest_budget']} thinking tokens): {100 * think['span']:+.1f} points "
                   f"[{100 * think['ci_low']:.1f}, {100 * think['ci_high']:.1f}] on {think['problems']} problems; "
                   f"target {100 * spans.SPAN_TARGET:g} points: {'met' if think['met'] else 'NOT met'}.")
    own += spans.winner(curves, task)
    verdicts = own + analysis.describe_train(train) + analysis.describe_test(curves, table, eff) + [verdict]
    if cut_short:
        note = (f"CUT SHORT: the time cap stopped {', '.join(cut_short)} before its update budget, so these figures "
                "are not those of the configured run")
        verdicts = [note + "."] + [f"{v} ({note.split(':')[0].lower()})" for v in verdicts]
    return {"train_curve": train, "test_curves": curves, "matched": table, "paired": paired, "efficiency": eff,
            "spans": sp,
            "rl_span": rl, "thinking_span": think, "verdicts": verdicts, "cut_short": list(cut_short)}


def render_report(records: list[dict], out_dir: str | Path, *, baseline: str = analysis.BASELINE,
                  title: str = "qstar scaling lab", run_info: dict | None = None,
                  cut_short: Sequence[str] = (), examples: Sequence[dict] = (), task: str = "the task") -> dict:
    """Write out_dir/report.html, train_compute.png and test_compute.png; return ``analyze(records)``.

    Chart 1 is pass@1 against RL FLOPs when RL was evaluated, else against training FLOPs; ``examples`` are chains
    from before and after RL (``qstar.lab.spans.example_chains``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = analyze(records, baseline=baseline, cut_short=cut_short, task=task)
    rl = any(p["stage"] == "rl" for p in res["train_curve"])
    png_train = charts.rl_chart(res["train_curve"]) if rl else charts.train_chart(res["train_curve"])
    png_test = charts.test_chart(res["test_curves"])
    (out / TRAIN_PNG).write_bytes(png_train)
    (out / TEST_PNG).write_bytes(png_test)
    trees = [r for r in records if r["kind"] == "tree"]
    page = _page(res, png_train, png_test, trees, title=title, run_info=run_info or {})
    atomic_write_text(out / REPORT, page.replace("<!--examples-->", _examples(examples)))
    (out / REPORT).chmod(0o644)  # the temp file was private; a report is meant to be shared
    return res


# -- HTML -------------------------------------------------------------------------------------------------------------

def pct(x: float | None) -> str:
    """Accuracy as the report prints it (tests compare against this)."""
    return "&ndash;" if x is None else f"{100 * x:.1f}%"


def _examples(examples: Sequence[dict]) -> str:
    if not examples:
        return ""
    def block(text: str, ok: bool) -> str:
        return f"<pre class='chain'>{html.escape(text)}</pre><p class='note'>{'right' if ok else 'wrong'}</p>"
    rows = "".join(f"<tr><td>{html.escape(e['question'])}<br><span class='note'>gold: {html.escape(e['gold'])}</span>"
                   f"</td><td>{block(e['before'], e['before_correct'])}</td><td>{block(e['after'], e['after_correct'])}"
                   "</td></tr>" for e in examples)
    return ("<section id='examples'><h2>Chains before and after RL</h2><p class='note'>Greedy chains of the SFT base "
            "and of the RL model on held-out problems (problems the base got wrong and RL right first, then chains "
            "with checks or retries).</p><table><tr><th>question</th><th>before RL</th><th>after RL</th></tr>"
            f"{rows}</table></section>")


def _img(png: bytes, alt: str) -> str:
    return f"<img alt='{alt}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def _table(head: list[str], rows: list[list[str]], cls: str) -> str:
    if not rows:
        return f"<p class='note {cls}'>No points were measured.</p>"
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table class='{cls}'><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _train_table(points: list[dict]) -> str:
    rows = [[html.escape(p["stage"]), str(p["step"]), f"{p['flops']:.3g}", str(p["n"]), pct(p["accuracy"]),
             f"{pct(p['ci_low'])} &ndash; {pct(p['ci_high'])}"] for p in points]
    return _table(["stage", "step", "training FLOPs", "problems", "pass@1", "95% CI (Wilson)"], rows, "train")


def _test_table(curves: dict[str, list[dict]]) -> str:
    rows = [[html.escape(label), str(p["budget"]), f"{p['tokens_per_problem']:.0f}", f"{p['flops_per_problem']:.3g}",
             pct(p["accuracy"]), f"{pct(p['ci_low'])} &ndash; {pct(p['ci_high'])}", str(len(p["seeds"])),
             str(p["n_problems"])] for label, pts in curves.items() for p in pts]
    return _table(["strategy", "budget N", "tokens / problem", "FLOPs / problem", "accuracy", "95% CI (bootstrap)",
                   "seeds", "problems"], rows, "test")


def _matched_table(table: dict) -> str:
    head = ["strategy"] + [f"{t:.0f} tok" for t in table["levels"]]
    rows = [[html.escape(label)] + [pct(a) for a in accs] for label, accs in table["rows"].items()]
    return _table(head, rows, "matched")


def _efficiency(eff: dict) -> str:
    if eff["factor"] is None:
        return f"<p class='eff'>Efficiency vs {html.escape(eff['baseline'])}: <b>not reached</b> &mdash; " \
               f"{html.escape(eff.get('note', ''))}.</p>"
    ci = (f" (95% interval {eff['ci_low']:.2f}&ndash;{eff['ci_high']:.2f}&times;)"
          if eff.get("ci_low") is not None else "")
    return (f"<p class='eff'>Efficiency vs {html.escape(eff['baseline'])} ({html.escape(str(eff['scorer_kind']))} "
            f"scorers): <b>{eff['factor']:.2f}&times;</b>{ci} fewer "
            f"tokens per problem for <b>{html.escape(eff['strategy'])}</b> to reach {html.escape(eff['baseline'])}'s "
            f"top accuracy {pct(eff['target_accuracy'])} ({eff['strategy_tokens']:.0f} vs "
            f"{eff['baseline_tokens']:.0f} tokens; {html.escape(eff['note'])}).</p>")


def _paired_table(table: dict, paired: dict) -> str:
    """Each curve minus its baseline at the matched levels, with the paired 95% interval; bold where it excludes 0."""
    def cell(d: dict | None) -> str:
        if d is None:
            return "&ndash;"
        txt = f"{100 * d['diff']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]"
        return f"<b>{txt}</b>" if d["ci_low"] > 0 or d["ci_high"] < 0 else txt
    head = ["strategy"] + [f"{t:.0f} tok" for t in table["levels"]]
    return _table(head, [[html.escape(label)] + [cell(d) for d in row] for label, row in paired.items()], "paired")


def _fmt(v) -> str:
    """Run-info values for people: 3 significant digits, thousands separators, dicts as 'key value' pairs."""
    if isinstance(v, dict):
        return " &middot; ".join(f"{html.escape(str(k))} {_fmt(x)}" for k, x in v.items()) or "&ndash;"
    if isinstance(v, bool) or v is None:
        return html.escape(str(v))
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.3g}"
    return html.escape(v if isinstance(v, str) else json.dumps(v))


def _page(res: dict, png_train: bytes, png_test: bytes, trees: list[dict], *, title: str, run_info: dict) -> str:
    info = "".join(f"<li><b>{html.escape(str(k))}</b>: {_fmt(v)}</li>" for k, v in run_info.items())
    verdicts = "".join(f"<li>{html.escape(v)}</li>" for v in res["verdicts"])
    kinds = {pts[0].get("scorer_kind") for pts in res["test_curves"].values()}
    oracle, solver = "oracle" in kinds, "solver" in kinds
    scorers = {pts[0].get("scorer") or "" for pts in res["test_curves"].values()}
    learned = sorted(sc for sc in scorers if sc in ("prm", "orm"))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{CSS}</style></head><body><main>
<h1>{html.escape(title)}</h1>
<p class="lead">Does a tiny reasoner get better with more train-time compute and more test-time compute?
Every number below is computed from <code>metrics.jsonl</code>; nothing is smoothed or dropped.</p>
{f"<ul class='info'>{info}</ul>" if info else ""}
<section id="verdicts"><h2>What the numbers say</h2><ul>{verdicts}</ul>
<p class="note">A curve is called flat when its accuracy span is under {analysis.FLAT_POINTS:g} points.
{"Curves marked (oracle) use a scorer that reads the gold answer: analysis only, not deployable." if oracle else ""}
{"Curves marked (ceiling) use a solver scorer: it never reads the gold answer, but it recomputes the answer or "
 "the reference chain from the question (the <code>checker</code> on letters, decimals and every step check that "
 "compares with the reference chain), so it selects as an oracle would: a ceiling, not a result. Headline verdicts "
 "use only verifier and learned scorers." if solver else ""}
{f"Lines named <code>@{learned[0]}</code> rank with the learned {learned[0].upper()} alone." if learned else ""}
</p></section>
<section class="charts">
<figure id="chart-train">{_img(png_train, "train-time compute chart")}<figcaption>Chart 1 &middot; pass@1 on held-out
problems vs RL training FLOPs from the SFT base (dashed), one line per RL seed, with the lengths of correct and
incorrect chains below (or vs training FLOPs when RL was not run); bands are 95% Wilson intervals.</figcaption></figure>
<figure id="chart-test">{_img(png_test, "test-time compute chart")}<figcaption>Chart 2 &middot; accuracy vs generated
tokens per problem: <code>think</code> is one greedy chain under a growing thinking budget (no scorer), the others
spend the same tokens in parallel; one line per strategy, seeds pooled; bands are 95% bootstrap intervals over
problems; dashed lines use an oracle or solver scorer and are ceilings, not results.
</figcaption></figure></section>
<!--examples-->
<section id="efficiency"><h2>Efficiency</h2>{_efficiency(res["efficiency"])}
<p class="note">Target = best-of-N's highest measured accuracy; its cost = tokens of its first point reaching it.
Another strategy's cost = where its curve first crosses the target, interpolated linearly in log(tokens) between
measured points, never extrapolated.</p></section>
<section id="matched"><h2>Accuracy at matched compute</h2>{_matched_table(res["matched"])}
<p class="note">Each curve minus the baseline of its scorer kind at the same columns, in points, with a 95% paired
bootstrap interval over problems (the same resampled problems for both; bold: the interval excludes 0):</p>
{_paired_table(res["matched"], res.get("paired", {}))}
<p class="note">Columns are the baseline's measured token costs; other curves are interpolated in log(tokens)
(a column within {round(100 * (analysis.END_SLACK - 1))}% of a curve's end takes that end's measured value);
&ndash; means that curve was not measured that far.</p></section>
<section id="test-points"><h2>Every test-time point</h2>{_test_table(res["test_curves"])}</section>
<section id="train-points"><h2>Every train-time checkpoint</h2>{_train_table(res["train_curve"])}</section>
<section id="trees"><h2>Search trees</h2><p class="note">Click a node to collapse or expand it; hover for its step
text and numbers. Node colour = score (red low, green high), size = visits, orange = chosen path.</p>
{tree_view.tree_section(trees)}</section>
</main></body></html>
"""


CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; background: #fafafa; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 18px 28px 60px; }
h1 { margin: 8px 0 4px; } h2 { margin-top: 30px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.lead { color: #444; } .note { color: #666; font-size: 13px; } .info { font-size: 13px; color: #444; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; margin-top: 18px; }
figure { flex: 1 1 520px; margin: 0; background: #fff; border: 1px solid #e3e3e3; border-radius: 6px; padding: 8px; }
figure img { width: 100%; height: auto; } figcaption { font-size: 13px; color: #555; }
table { border-collapse: collapse; background: #fff; font-size: 13px; margin: 6px 0; }
th, td { border: 1px solid #e0e0e0; padding: 3px 8px; text-align: right; } th { background: #f0f0f0; }
td:first-child, th:first-child { text-align: left; }
pre.chain { text-align: left; font-size: 12px; margin: 0; white-space: pre-wrap; }
.eff { font-size: 16px; } .warn { color: #a33; }
.tree { background: #fff; border: 1px solid #e3e3e3; border-radius: 6px; padding: 6px 10px; margin: 10px 0; }
.treebox { overflow-x: auto; } .node { cursor: pointer; }
.tip { position: absolute; display: none; max-width: 420px; background: #fffef2; border: 1px solid #bbb;
  padding: 6px 8px; font-size: 12px; box-shadow: 0 2px 6px rgba(0,0,0,.15); pointer-events: none; }
.tipstep { font-family: ui-monospace, monospace; margin-bottom: 3px; white-space: pre-wrap; }
"""
