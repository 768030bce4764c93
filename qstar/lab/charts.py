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
        style = "--" if pts[0]["oracle"] else "-"
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
