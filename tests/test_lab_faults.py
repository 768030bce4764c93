"""`qstar demo` killed with SIGKILL inside each of its stages continues when rerun and ends with a valid report.

The demo runs as a real subprocess (`python -m qstar.cli demo --quick`); the test waits until a stage has begun (the
stage before it has its DONE.json marker), sleeps a random part of that stage's expected length and kills the
process. A kill that lands after the stage finished does not count, and the stage is tried again with a shorter wait.
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
#: seconds a stage of ARGS' demo takes here, roughly (the kill lands at a random point within it)
LENGTH = {"data": 0.3, "sft": 6.0, "prm": 4.0, "rl": 4.0, "sweep": 3.0, "report": 1.0}


def _start(out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "TQDM_DISABLE": "1"}
    return subprocess.Popen([sys.executable, "-m", "qstar.cli", "demo", "--out", str(out), *ARGS], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _done(out: Path, stage: str) -> bool:
    return (out / "stages" / stage / MARKER).is_file()


def _kill_inside(out: Path, stage: str, rng: random.Random, tries: int = 4) -> bool:
    """Start the demo, SIGKILL it while ``stage`` runs; True once a kill landed inside it."""
    names = list(STAGES)
    before = names[names.index(stage) - 1] if names.index(stage) else None
    for attempt in range(tries):
        proc = _start(out)
        try:
            deadline = time.monotonic() + 120
            # the stage has begun once the one before it is done (the data stage: once the process is up)
            while before and not _done(out, before) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.05, LENGTH[stage]) / (attempt + 1))
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
