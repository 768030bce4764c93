"""Scorers (verifiers) for test-time search: ``get_scorer(name, **kw) -> Scorer``.

Training-free (``qstar.scorers.programmatic``): "none" (constant 0.5), "oracle" (reads the gold answer; analysis
only, flagged ``oracle=True`` everywhere it appears), "checker" (reference-free task checks; 0.5 where a task has
none). Learned (``qstar.scorers.learned``, imported only when asked for): "orm" (outcome reward model) and "prm"
(process reward model), built by ``qstar.scorers.learned.load_scorer(kind, **kw)`` (e.g. ``checkpoint=DIR``).
"""

from __future__ import annotations

from collections.abc import Callable

from qstar.scorers.programmatic import CheckerScorer, ConstantScorer, OracleScorer


def _learned(kind: str) -> Callable:
    def make(**kw):
        from qstar.scorers.learned import load_scorer  # torch-backed; loaded only on demand

        return load_scorer(kind, **kw)

    make.__name__ = f"learned_{kind}"
    return make


#: name -> factory(**kw) returning a Scorer
SCORERS: dict[str, Callable] = {
    "none": ConstantScorer,
    "oracle": OracleScorer,
    "checker": CheckerScorer,
    "orm": _learned("orm"),
    "prm": _learned("prm"),
}


def get_scorer(name: str, **kw):
    """Build the scorer registered as ``name``; ValueError listing the names for an unknown one."""
    if name not in SCORERS:
        raise ValueError(f"unknown scorer {name!r}; choose from {', '.join(SCORERS)}")
    return SCORERS[name](**kw)


__all__ = ["SCORERS", "get_scorer", "ConstantScorer", "OracleScorer", "CheckerScorer"]
