"""`qstar demo` killed with SIGKILL inside each of its stages continues when rerun and ends with a valid report.

The demo runs as a real subprocess (`python -m qstar.cli demo --quick`); the test waits until a stage shows progress
of this process (a file the stage writes while it works), sleeps a random fraction of a second and kills the process.
The short stages (data, report) leave no such file: they are killed at a random time after the stage before them.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from qstar.lab.demo import MARKER
from qstar.lab.metrics import read_metrics
from qstar.lab.stages import STAGES

ARGS = ["--quick", "--strategies", "majority", "best_of_n", "beam", "--budgets", "1", "2", "--sft-steps", "60",
        "--rl-updates", "4", "--eval-problems", "8"]
#: files a stage writes while it works (under stages/); the kill follows the first of them this process writes
PROGRESS = {"sft": ["sft/metrics.jsonl"], "prm": ["prm/labels.jsonl.tmp", "prm/labels.jsonl"],
            "rl": ["rl/seed0/metrics.jsonl"], "sweep": ["sweep/think.jsonl"]}
#: seconds the short stages take, roughly (their kill lands at a random point within it)
LENGTH = {"data": 0.3, "report": 1.0}


def _start(out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "TQDM_DISABLE": "1"}
    return subprocess.Popen([sys.executable, "-m", "qstar.cli", "demo", "--out", str(out), *ARGS], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _done(out: Path, stage: str) -> bool:
    return (out / "stages" / stage / MARKER).is_file()


def _progressed(out: Path, stage: str, since: float) -> bool:
    files = [out / "stages" / f for f in PROGRESS[stage]]
    return any(f.is_file() and f.stat().st_mtime >= since and f.stat().st_size > 0 for f in files)


def _kill_inside(out: Path, stage: str, rng: random.Random, tries: int = 4) -> bool:
    """Start the demo, SIGKILL it while ``stage`` runs; True once a kill landed inside it."""
    names = list(STAGES)
    before = names[names.index(stage) - 1] if names.index(stage) else None
    for _ in range(tries):
        if _done(out, stage):
            return False  # a kill came too late and the stage finished: it cannot be hit again in this run dir
        since = time.time() - 1  # mtime resolution
        proc = _start(out)
        try:
            deadline = time.monotonic() + 120
            if stage in PROGRESS:
                while not _progressed(out, stage, since) and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(rng.uniform(0.0, 0.3))
            else:
                while before and not _done(out, before) and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(rng.uniform(0.05, LENGTH[stage]))
            inside = proc.poll() is None and not _done(out, stage)
        finally:
            proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate()
        assert proc.returncode in (0, -signal.SIGKILL), err[-2000:]
        if inside:
            return True
    return False


def test_demo_killed_inside_every_stage_resumes_to_a_valid_report(tmp_path):
    out, rng = tmp_path / "demo", random.Random(0)
    killed = [stage for stage in STAGES if _kill_inside(out, stage, rng)]
    # data and report last a fraction of a second; the training and search stages must have been hit
    assert {"sft", "prm", "rl", "sweep"} <= set(killed), killed
    proc = _start(out)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cut_short"] == [] and summary["train_curve"] and summary["test_curves"]
    assert Path(summary["checkpoint"], "config.json").is_file()
    records = read_metrics(out / "metrics.jsonl")  # every line well-formed: no half-written record survived
    assert {r["kind"] for r in records} >= {"train", "test"}
    html = (out / "report.html").read_text()
    assert "What the numbers say" in html and html.rstrip().endswith("</html>")
