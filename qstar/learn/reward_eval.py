"""Measuring verifiers: validation loss, AUC, and best-of-N / weighted-vote selection on given samples.

Used by ``qstar.learn.reward_model`` (the training summary) and ``benchmarks/prm.py`` (curves with CIs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from qstar.scorers.learned import RewardModel, encode_steps, pad_batch
from qstar.tasks import judge
from qstar.tasks.base import Problem

__all__ = ["reward_loss", "auc", "selection_accuracy", "evaluate_scorer"]


@torch.no_grad()
def reward_loss(model: RewardModel, tok, items: Sequence[tuple[str, list[str], list[float]]],
                batch_size: int = 64) -> float:
    """Mean unweighted BCE over every labelled step end of ``items`` (a validation loss; NaN targets skipped)."""
    model.eval()
    total, count = 0.0, 0
    max_len = model.trunk.cfg.max_seq_len
    for b in range(0, len(items), batch_size):
        enc = [(*encode_steps(tok, q, s, max_len=max_len), ts) for q, s, ts in items[b : b + batch_size]]
        logits = model(pad_batch([ids for ids, _, _ in enc], tok.pad_id)).float()
        for row, (_, reads, ts) in enumerate(enc):
            for r, t in zip(reads, ts):
                if not math.isnan(t):
                    total += F.binary_cross_entropy_with_logits(logits[row, r], torch.tensor(float(t))).item()
                    count += 1
    return total / count if count else float("nan")


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve (probability a random positive outscores a random negative; ties count 1/2).
    NaN when one class is missing.

    >>> auc([0.9, 0.2, 0.5], [True, False, False])
    1.0
    """
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return float("nan")
    ranked = sorted((s, i) for i, s in enumerate(list(pos) + list(neg)))
    ranks = [0.0] * len(ranked)
    i = 0
    while i < len(ranked):  # average ranks over ties
        j = i
        while j + 1 < len(ranked) and ranked[j + 1][0] == ranked[i][0]:
            j += 1
        for t in range(i, j + 1):
            ranks[ranked[t][1]] = (i + j) / 2 + 1
        i = j + 1
    r_pos = sum(ranks[: len(pos)])
    return (r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def selection_accuracy(method: str, scores: Sequence[float], answers: Sequence[str | None],
                       correct: Sequence[bool]) -> float:
    """Is the answer chosen among N samples right? method: "best" (highest score), "weighted" (answer with the
    largest score sum), "majority" (most frequent answer). Ties (and no answers at all) count fractionally."""
    if method == "best":
        top = max(scores)
        picks = [c for s, c in zip(scores, correct) if s == top]
        return sum(picks) / len(picks)
    weights = [1.0] * len(answers) if method == "majority" else list(scores)
    total: dict[str, float] = {}
    right: dict[str, bool] = {}
    for a, w, c in zip(answers, weights, correct):
        if a is not None:
            total[a] = total.get(a, 0.0) + w
            right[a] = right.get(a, False) or bool(c)
    if not total:
        return 0.0
    top = max(total.values())
    tied = [a for a, v in total.items() if v == top]
    return sum(right[a] for a in tied) / len(tied)


def evaluate_scorer(scorer, problems: Sequence[Problem], chains: Sequence[Sequence[str]]) -> dict:
    """AUC, mean pass@1 and N-sample selection accuracies (best, weighted, majority) on given samples."""
    flat_p = [p for p, row in zip(problems, chains) for _ in row]
    flat_c = [c for row in chains for c in row]
    flat_s = scorer.score(flat_p, flat_c)
    verdicts = [judge(p, c) for p, c in zip(flat_p, flat_c)]
    flat_y = [v.correct for v in verdicts]
    res = {"eval/auc": auc(flat_s, flat_y), "eval/pass@1": sum(flat_y) / max(1, len(flat_y))}
    acc = {m: 0.0 for m in ("best", "weighted", "majority")}
    i = 0
    for _, row in zip(problems, chains):
        s, y = flat_s[i : i + len(row)], flat_y[i : i + len(row)]
        a = [v.answer for v in verdicts[i : i + len(row)]]
        i += len(row)
        for m in acc:
            acc[m] += selection_accuracy(m, s, a, y) / len(problems)
    res.update({f"eval/{m}_of_n": v for m, v in acc.items()})
    return res
