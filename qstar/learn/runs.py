"""Run directories: every trainer starts one with ``start_run`` (a finished run is refused unless --force), and
multi-round learning (expert iteration, distillation) finishes and resumes its stages here.

A finished stage directory holds ``checkpoint/`` (HF dir; meta {"stage", "config", "metrics"}) and
``summary.json``, written last: a directory with a summary is done, one without is redone after a kill.
Example files (``*.jsonl`` of {"question", "chain"}) are written atomically so a resumed run reads whole files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from qstar.model.checkpoint import save_checkpoint
from qstar.runio import atomic_write_json, atomic_write_text, read_jsonl, reset_run_dir

__all__ = ["start_run", "finish_stage", "stage_done", "save_examples", "load_examples", "read_summary"]


def start_run(out: str | Path, *, force: bool) -> Path:
    """Create the run directory; ValueError if it already holds a finished run (OUT/summary.json) unless force, which
    removes it first."""
    out = Path(out)
    if (out / "summary.json").exists() and not force:
        raise ValueError(f"{out} already holds a finished run; use --force to overwrite it or choose another --out")
    if force:
        reset_run_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def stage_done(directory: str | Path) -> bool:
    """True when the stage directory has its summary (everything else was written before it)."""
    return (Path(directory) / "summary.json").exists()


def read_summary(directory: str | Path) -> dict:
    """A finished stage's summary as ``finish_stage`` returned it (without the config)."""
    summary = json.loads((Path(directory) / "summary.json").read_text())
    summary.pop("config", None)
    return summary


def finish_stage(directory: str | Path, model, tokenizer, *, stage: str, config: dict, metrics: dict) -> dict:
    """Write ``directory/checkpoint`` (when ``model`` is given) then ``directory/summary.json``; returns the summary."""
    directory = Path(directory)
    summary = {"stage": stage, **metrics}
    if model is not None:
        summary["checkpoint"] = str(directory / "checkpoint")
        save_checkpoint(directory / "checkpoint", model, tokenizer,
                        meta={"stage": stage, "config": config, "metrics": summary})
    atomic_write_json(directory / "summary.json", {**summary, "config": config})
    return summary


def save_examples(path: str | Path, examples: Sequence[tuple[str, str]]) -> None:
    """(question, chain) pairs as JSONL, atomically."""
    atomic_write_text(path, "".join(json.dumps({"question": q, "chain": c}) + "\n" for q, c in examples))


def load_examples(path: str | Path) -> list[tuple[str, str]]:
    return [(r["question"], r["chain"]) for r in read_jsonl(path)]
