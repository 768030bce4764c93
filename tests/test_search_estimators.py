"""Estimators with hand-computed values: unbiased pass@k, maj@k, bootstrap CIs."""

from __future__ import annotations

import doctest
import importlib
import itertools
import math

import pytest

from qstar.search import bootstrap_ci, maj_at_k, pass_at_k


def test_pass_at_k_hand_values_and_brute_force():
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert (pass_at_k(5, 0, 3), pass_at_k(5, 5, 1), pass_at_k(5, 3, 3)) == (0.0, 1.0, 1.0)
    for n, c, k in itertools.product(range(1, 7), range(0, 7), range(1, 7)):
        if c <= n and k <= n:  # the fraction of size-k subsets holding at least one correct sample
            hits = [any(i < c for i in s) for s in itertools.combinations(range(n), k)]
            assert pass_at_k(n, c, k) == pytest.approx(sum(hits) / len(hits))
    for bad in ((3, 4, 1), (3, 1, 0), (3, 1, 4), (3, -1, 1)):
        with pytest.raises(ValueError, match="pass_at_k"):
            pass_at_k(*bad)


def test_maj_at_k_hand_values():
    ans, ok = ["a", "a", "b"], [True, True, False]
    assert maj_at_k(ans, ok, 1) == pytest.approx(2 / 3)
    assert maj_at_k(ans, ok, 2) == pytest.approx((1 + 0.5 + 0.5) / 3)  # {a,a}: 1, {a,b} twice: a tie, 1/2
    assert maj_at_k(ans, ok, 3) == 1.0
    assert maj_at_k(["a", None, None], [True, False, False], 2) == pytest.approx(2 / 3)  # None never wins
    assert maj_at_k(["b", "b", "a"], [False, False, True], 3) == 0.0
    # Monte Carlo branch agrees with the exact value
    ans, ok = ["a"] * 6 + ["b"] * 4, [True] * 6 + [False] * 4
    exact = maj_at_k(ans, ok, 5)
    assert maj_at_k(ans, ok, 5, max_subsets=100, seed=1) == pytest.approx(exact, abs=0.12)
    with pytest.raises(ValueError, match="maj_at_k"):
        maj_at_k(["a"], [True, False], 1)


def test_bootstrap_ci():
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)
    assert bootstrap_ci([0.0]) == (0.0, 0.0)
    vals = [1.0] * 50 + [0.0] * 50  # mean .5, standard error .05 -> about (.40, .60)
    lo, hi = bootstrap_ci(vals)
    assert lo == pytest.approx(0.40, abs=0.03) and hi == pytest.approx(0.60, abs=0.03)
    assert bootstrap_ci(vals, seed=3) == bootstrap_ci(vals, seed=3)
    lo90, hi90 = bootstrap_ci(vals, alpha=0.1)
    assert lo <= lo90 <= 0.5 <= hi90 <= hi
    for bad in ([], ):
        with pytest.raises(ValueError, match="at least one"):
            bootstrap_ci(bad)
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci([1.0], alpha=1.5)
    assert not math.isnan(bootstrap_ci([0.2, 0.4], n_boot=1)[0])


@pytest.mark.parametrize("module", ["estimators", "sampling", "sequential", "compute_optimal"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(f"qstar.search.{module}"))
    assert result.attempted > 0 and result.failed == 0
