"""metrics.jsonl: one JSON object per measured point, the single source the report is rendered from.

Record kinds (field ``kind``), documented once here:

- ``train``: pass@1 of one checkpoint on held-out problems.
  stage ("sft" | "rl" | ...), step (optimizer updates so far), flops (cumulative training FLOPs),
  n (problems evaluated), correct (how many greedy answers verified), seconds (cumulative train time).
- ``test``: one sweep cell (model x strategy x budget x seed).
  key (cell identity), model, strategy, budget (the strategy's N), seed, scorer, oracle (scorer reads the gold answer),
  scorer_kind (oracle | solver | verifier | learned, ``qstar.scorers.kinds``; absent in older records),
  problems (problem keys, [P]), outcomes (0/1 per problem, [P]), tokens (generated tokens per problem, [P]),
  flops (policy + scorer forward FLOPs per problem, [P]), seconds (wall time of the cell).
- ``tree``: one search tree to draw. strategy, question, answer, gold, correct, tree (SearchResult.tree JSON).

Appends are one ``write`` of one full line followed by fsync, so a killed writer leaves at most one torn last line,
which ``read_metrics(..., repair=True)`` drops.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from qstar.runio import atomic_write_text

KINDS = ("train", "test", "tree")
REQUIRED: dict[str, tuple[str, ...]] = {
    "train": ("stage", "step", "flops", "n", "correct"),
    "test": ("key", "model", "strategy", "budget", "seed", "problems", "outcomes", "tokens", "flops"),
    "tree": ("strategy", "question", "tree"),
}


class MetricsError(ValueError):
    """metrics.jsonl is missing, empty or malformed; the message names the file and the bad line numbers."""


def validate_record(rec: object) -> str | None:
    """Why ``rec`` is not a valid metrics record, or None when it is."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    kind = rec.get("kind")
    if kind not in REQUIRED:
        return f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})"
    missing = [k for k in REQUIRED[kind] if k not in rec]
    if missing:
        return f"{kind} record missing {', '.join(missing)}"
    if kind == "test":
        lengths = {len(rec[k]) if isinstance(rec[k], list) else -1 for k in ("problems", "outcomes", "tokens", "flops")}
        if len(lengths) != 1 or -1 in lengths:
            return "test record needs equal-length lists problems/outcomes/tokens/flops"
        if not rec["problems"]:
            return "test record has no problems"
    if kind == "train":
        n, correct = rec["n"], rec["correct"]
        if not (isinstance(n, int) and isinstance(correct, int) and n > 0 and 0 <= correct <= n):
            return "train record needs integers 0 <= correct <= n, n > 0"
        if not (isinstance(rec["flops"], (int, float)) and math.isfinite(rec["flops"]) and rec["flops"] >= 0):
            return "train record needs finite flops >= 0"
    return None


def append_records(path: str | Path, records: list[dict]) -> None:
    """Append records, validated, in ONE write + fsync: a kill tears at most the last line, never interleaves."""
    for rec in records:
        why = validate_record(rec)
        if why:
            raise ValueError(f"refusing to write an invalid metrics record: {why}")
    text = "".join(json.dumps(rec, sort_keys=True) + "\n" for rec in records)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def append_record(path: str | Path, rec: dict) -> None:
    """Append one record as one line, durably."""
    append_records(path, [rec])


def write_records(path: str | Path, records: list[dict]) -> None:
    """Replace ``path`` with ``records`` atomically (temp file + rename)."""
    atomic_write_text(path, "".join(json.dumps(rec, sort_keys=True) + "\n" for rec in records))


def _repair_torn_tail(path: Path) -> None:
    """Drop a last line without its newline (a writer killed mid-append); complete lines are kept."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def read_metrics(path: str | Path, *, repair: bool = False, allow_empty: bool = False) -> list[dict]:
    """All records of a metrics file, validated.

    repair: first drop a torn last line (used by resumable writers, never by the report).
    Raises MetricsError naming every malformed line (1-based) or an empty/missing file.
    """
    path = Path(path)
    if not path.is_file():
        if allow_empty:
            return []
        raise MetricsError(f"no metrics file at {path} (run `qstar demo` or `qstar sweep` to create one)")
    if repair:
        _repair_torn_tail(path)
    records, bad = [], []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            bad.append(f"line {i}: invalid JSON ({e.msg})")
            continue
        why = validate_record(rec)
        if why:
            bad.append(f"line {i}: {why}")
        else:
            records.append(rec)
    if bad:
        shown = "; ".join(bad[:10]) + (f"; ... {len(bad) - 10} more" if len(bad) > 10 else "")
        raise MetricsError(f"{path}: {len(bad)} malformed line(s): {shown}")
    if not records and not allow_empty:
        raise MetricsError(f"{path} is empty: no measured points to report")
    return records
