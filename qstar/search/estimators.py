"""Estimators for test-time scaling curves: unbiased pass@k, maj@k, and bootstrap confidence intervals."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021) from ``n`` samples of which ``c`` are correct: 1 - C(n-c, k) / C(n, k).

    >>> pass_at_k(4, 1, 2)
    0.5
    """
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # the product form avoids huge binomials: C(n-c, k) / C(n, k) = prod_{i=n-c+1..n} (1 - k / i)
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def _maj_correct(subset: Sequence[int], answers: Sequence[str | None], right: dict) -> float:
    """Expected correctness of a majority vote over ``subset`` with ties broken uniformly at random."""
    counts = Counter(answers[i] for i in subset if answers[i] is not None)
    if not counts:
        return 0.0
    top = max(counts.values())
    tied = [a for a, v in counts.items() if v == top]
    return sum(right[a] for a in tied) / len(tied)


def maj_at_k(answers: Sequence[str | None], correct: Sequence[bool], k: int, *, max_subsets: int = 20000,
             seed: int = 0) -> float:
    """Expected accuracy of a majority vote over ``k`` of the ``n`` samples drawn without replacement.

    answers: the n extracted answers (None = no answer, never wins). correct: whether each sample's answer is right.
    Exact over all C(n, k) subsets when there are at most ``max_subsets``, else a seeded Monte Carlo estimate with
    ``max_subsets`` draws. Ties count the fraction of tied answers that are right (random tie-breaking).

    >>> maj_at_k(["a", "a", "b"], [True, True, False], 2)  # {a,a}: 1; {a,b} twice: 1/2 -> (1 + .5 + .5) / 3
    0.6666666666666666
    """
    n = len(answers)
    if len(correct) != n or not 1 <= k <= n:
        raise ValueError(f"maj_at_k needs len(correct) == len(answers) and 1 <= k <= n; got n={n}, k={k}")
    right = {}
    for a, c in zip(answers, correct):
        if a is not None:
            right[a] = right.get(a, False) or bool(c)
    if math.comb(n, k) <= max_subsets:
        subsets = list(itertools.combinations(range(n), k))
    else:
        rng = random.Random(seed)
        subsets = [rng.sample(range(n), k) for _ in range(max_subsets)]
    return sum(_maj_correct(s, answers, right) for s in subsets) / len(subsets)


def bootstrap_ci(values: Sequence[float], n_boot: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) confidence interval of the mean of ``values`` (e.g. per-problem
    correctness), resampling problems with replacement ``n_boot`` times with a seeded RNG.

    >>> bootstrap_ci([1.0, 1.0, 1.0])
    (1.0, 1.0)
    """
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("bootstrap_ci needs at least one value")
    if n_boot < 1 or not 0 < alpha < 1:
        raise ValueError(f"bootstrap_ci needs n_boot >= 1 and 0 < alpha < 1; got n_boot={n_boot}, alpha={alpha}")
    rng = random.Random(seed)
    n = len(vals)
    means = sorted(sum(rng.choices(vals, k=n)) / n for _ in range(n_boot))
    return _quantile(means, alpha / 2), _quantile(means, 1 - alpha / 2)


def _quantile(sorted_vals: list[float], q: float) -> float:
    """Linear-interpolated quantile of sorted values."""
    pos = q * (len(sorted_vals) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)
