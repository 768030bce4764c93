"""Scorers (verifiers) for test-time search: ``get_scorer(name, **kw) -> Scorer``.

Training-free (``qstar.scorers.programmatic``): "none" (constant 0.5), "oracle" (reads the gold answer; analysis
only, flagged ``oracle=True`` everywhere it appears), "checker" (reference-free task checks; 0.5 where a task has
none). Learned (``qstar.scorers.learned``, imported only when asked for): "orm" (outcome reward model) and "prm"
(process reward model), built by ``qstar.scorers.learned.load_scorer(kind, **kw)`` (e.g. ``checkpoint=DIR``).
Combined: "checker+orm" / "checker+prm" use the checker where it can judge and the learned model elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable

from qstar.scorers.programmatic import CheckedScorer, CheckerScorer, ConstantScorer, OracleScorer


def _learned(kind: str, *, checked: bool = False) -> Callable:
    def make(**kw):
        from qstar.scorers.learned import load_scorer  # torch-backed; loaded only on demand

        learned = load_scorer(kind, **kw)
        return CheckedScorer(learned) if checked else learned

    make.__name__ = f"{'checked' if checked else 'learned'}_{kind}"
    return make


#: name -> factory(**kw) returning a Scorer
SCORERS: dict[str, Callable] = {
    "none": ConstantScorer,
    "oracle": OracleScorer,
    "checker": CheckerScorer,
    "orm": _learned("orm"),
    "prm": _learned("prm"),
    "checker+orm": _learned("orm", checked=True),
    "checker+prm": _learned("prm", checked=True),
}


def learned_kind(name: str) -> str | None:
    """"orm"/"prm" when the scorer ``name`` needs a trained reward model (its checkpoint), else None."""
    kind = name.rsplit("+", 1)[-1]
    return kind if kind in ("orm", "prm") else None


def get_scorer(name: str, **kw):
    """Build the scorer registered as ``name``; ValueError listing the names for an unknown one."""
    if name not in SCORERS:
        raise ValueError(f"unknown scorer {name!r}; choose from {', '.join(SCORERS)}")
    return SCORERS[name](**kw)


__all__ = ["SCORERS", "get_scorer", "learned_kind", "CheckedScorer", "ConstantScorer", "OracleScorer", "CheckerScorer"]
