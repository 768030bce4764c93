"""Scorers (verifiers) for test-time search: ``get_scorer(name, **kw) -> Scorer``.

Training-free (``qstar.scorers.programmatic``): "none" (constant 0.5), "oracle" (reads the gold answer; analysis
only, flagged ``oracle=True`` everywhere it appears), "checker" (reference-free task checks; 0.5 where a task has
none). Learned (``qstar.scorers.learned``, imported only when asked for): "orm" (outcome reward model), "prm"
(process reward model) and "value" (a learned value, ``qstar.learn.value``), built by
``qstar.scorers.learned.load_scorer(kind, **kw)`` (e.g. ``checkpoint=DIR``).
"cheap" (only the checks that verify without solving again, e.g. Countdown's evaluation, casting out nines).
Combined: "checker+orm" / "checker+prm" (and "cheap+orm" / "cheap+prm") use the checker where it can judge and the
learned model elsewhere. Each scorer has a kind per task, ``kind_of(scorer, task)`` in ``qstar.scorers.kinds``:
oracle, solver (recomputes the answer from the question: the checker on most tasks), verifier or learned.
"""

from __future__ import annotations

from collections.abc import Callable

from qstar.scorers.kinds import KINDS, kind_of, kind_over, require_deployable
from qstar.scorers.programmatic import CheapScorer, CheckedScorer, CheckerScorer, ConstantScorer, OracleScorer


def _learned(kind: str, *, checked: bool = False, cheap: bool = False) -> Callable:
    def make(**kw):
        from qstar.scorers.learned import load_scorer  # torch-backed; loaded only on demand

        learned = load_scorer(kind, **kw)
        if cheap:
            return CheckedScorer(learned, checker=CheapScorer())
        return CheckedScorer(learned) if checked else learned

    make.__name__ = f"{'cheap' if cheap else 'checked' if checked else 'learned'}_{kind}"
    return make


#: name -> factory(**kw) returning a Scorer
SCORERS: dict[str, Callable] = {
    "none": ConstantScorer,
    "oracle": OracleScorer,
    "checker": CheckerScorer,
    "cheap": CheapScorer,
    "orm": _learned("orm"),
    "prm": _learned("prm"),
    "value": _learned("value"),  # qstar.learn.value: a learned value, P(the prefix ends correct)
    "checker+orm": _learned("orm", checked=True),
    "checker+prm": _learned("prm", checked=True),
    "cheap+orm": _learned("orm", cheap=True),
    "cheap+prm": _learned("prm", cheap=True),
}


def learned_kind(name: str) -> str | None:
    """"orm"/"prm" when the scorer ``name`` needs a trained reward model (its checkpoint), else None."""
    kind = name.rsplit("+", 1)[-1]
    return kind if kind in ("orm", "prm", "value") else None


def get_scorer(name: str, **kw):
    """Build the scorer registered as ``name``; ValueError listing the names for an unknown one."""
    if name not in SCORERS:
        raise ValueError(f"unknown scorer {name!r}; choose from {', '.join(SCORERS)}")
    return SCORERS[name](**kw)


__all__ = ["SCORERS", "KINDS", "get_scorer", "kind_of", "kind_over", "learned_kind", "require_deployable",
           "CheapScorer", "CheckedScorer", "ConstantScorer", "OracleScorer", "CheckerScorer"]
