"""The two o1 scaling charts as PNG bytes (matplotlib, Agg backend, no display needed).

Chart 1: held-out pass@1 vs training FLOPs (log x), one segment per stage, Wilson 95% bands.
Chart 2: accuracy vs generated tokens per problem (log x), one line per strategy, bootstrap 95% bands.
Points are drawn as measured: no smoothing, no fitted trend lines.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

STAGE_COLORS = {"sft": "#1f77b4", "rl": "#d62728", "prm": "#2ca02c", "ei": "#9467bd"}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666")


def train_chart(points: list[dict], *, title: str = "Train-time compute") -> bytes:
    """points: analysis.train_curve output. Stages are joined so the curve reads as one run."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    pts = [p for p in points if p["flops"] > 0]
    if not pts:
        _empty(ax, "no checkpoints with training FLOPs > 0 were evaluated")
    stages = list(dict.fromkeys(p["stage"] for p in pts))
    for i, stage in enumerate(stages):
        seg = [p for p in pts if p["stage"] == stage]
        if i > 0:  # connect to the previous stage's last point so the run is continuous
            seg = [[p for p in pts if p["stage"] == stages[i - 1]][-1]] + seg
        color = STAGE_COLORS.get(stage, f"C{i + 4}")
        x = [p["flops"] for p in seg]
        ax.fill_between(x, [100 * p["ci_low"] for p in seg], [100 * p["ci_high"] for p in seg], color=color, alpha=0.15,
                        linewidth=0)
        ax.plot(x, [100 * p["accuracy"] for p in seg], "o-", color=color, label=stage.upper(), markersize=4)
    if pts:
        ax.set_xscale("log")
        ax.legend(loc="upper left", frameon=False)
    ax.set_xlabel("training compute (FLOPs, log scale)")
    ax.set_ylabel("pass@1 on held-out problems (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    return _png(fig)


def test_chart(curves: dict[str, list[dict]], *, title: str = "Test-time compute") -> bytes:
    """curves: analysis.test_curves output (label -> points sorted by tokens)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if not curves:
        _empty(ax, "no test-time sweep points were measured")
    for i, (label, pts) in enumerate(curves.items()):
        x = [p["tokens_per_problem"] for p in pts]
        color = f"C{i % 10}"
        # oracle and solver scorers (qstar.scorers.kinds) are ceilings, not results
        style = "--" if pts[0]["oracle"] or pts[0].get("scorer_kind") in ("oracle", "solver") else "-"
        ax.fill_between(x, [100 * p["ci_low"] for p in pts], [100 * p["ci_high"] for p in pts], color=color,
                        alpha=0.12, linewidth=0)
        ax.plot(x, [100 * p["accuracy"] for p in pts], "o" + style, color=color, label=label, markersize=4)
    if curves:
        ax.set_xscale("log")
        # plain 20/50/100/200 labels: matplotlib's default minor labels (2x10^2 ...) collide on short ranges
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False, fontsize=8)
    ax.set_xlabel("generated tokens per problem (log scale)")
    ax.set_ylabel("accuracy on held-out problems (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    return _png(fig)


def rl_chart(points: list[dict], *, title: str = "Train-time compute: RL") -> bytes:
    """Chart 1 as o1 draws it: held-out greedy pass@1 against RL training FLOPs (log x), one line per RL seed with
    Wilson 95% bands and the SFT base (each seed's own step-0 evaluation) dashed; below, the mean length of correct
    and of incorrect held-out chains (Dr. GRPO: which chains carry the growth)."""
    fig, (ax, lx) = plt.subplots(2, 1, figsize=(6.4, 6.2), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    rl = [p for p in points if p["stage"] == "rl"]
    seeds = sorted({p.get("seed", 0) for p in rl})
    if not any(p.get("rl_flops", 0) > 0 for p in rl):
        _empty(ax, "no RL evaluations with training FLOPs > 0")
    for i, seed in enumerate(seeds):
        pts = sorted((p for p in rl if p.get("seed", 0) == seed), key=lambda p: p["step"])
        color, base = f"C{i}", pts[0]
        ax.axhline(100 * base["accuracy"], color=color, linestyle="--", linewidth=1,
                   label=f"SFT base (seed {seed}): {100 * base['accuracy']:.1f}%")
        ax.axhspan(100 * base["ci_low"], 100 * base["ci_high"], color=color, alpha=0.06, linewidth=0)
        pts = [p for p in pts if p.get("rl_flops", 0) > 0]
        x = [p["rl_flops"] for p in pts]
        ax.fill_between(x, [100 * p["ci_low"] for p in pts], [100 * p["ci_high"] for p in pts], color=color,
                        alpha=0.15, linewidth=0)
        ax.plot(x, [100 * p["accuracy"] for p in pts], "o-", color=color, label=f"RL seed {seed}", markersize=4)
        for key, style, name in (("len_correct", "o-", "correct"), ("len_incorrect", "x--", "incorrect")):
            if base.get(key) is not None:
                lx.axhline(base[key], color=color, linestyle=":" if name == "correct" else "-.", linewidth=0.8)
            got = [(p["rl_flops"], p[key]) for p in pts if p.get(key) is not None]
            if got:
                lx.plot(*zip(*got), style, color=color, markersize=4, label=f"{name} chains, seed {seed}")
    if seeds:
        ax.set_xscale("log")
        ax.legend(loc="lower right", frameon=False, fontsize=8)
        if lx.get_legend_handles_labels()[0]:
            lx.legend(loc="upper left", frameon=False, fontsize=7, ncol=2)
    ax.set_ylabel("greedy pass@1, held-out (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    lx.set_xlabel("RL training compute (FLOPs, log scale); dotted: the SFT base")
    lx.set_ylabel("tokens per chain")
    lx.grid(True, which="major", alpha=0.3)
    return _png(fig)
