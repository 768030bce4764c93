"""The executor seam (qstar.executor): local in-process and pool workers, Ray actors on a local 2-CPU cluster, retries
of tasks whose worker raised or died, the import guard and the unreachable-address error; and `qstar sweep` through
it (a real checkpoint swept on Ray gives the same records as in-process)."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from qstar.executor import RAY_EXTRA, get_executor
from qstar.lab.metrics import read_metrics
from qstar.lab.sweep import SweepConfig, run_sweep


def builds(add: int = 0) -> int:
    """Worker builds in this process, kept in its environment: a module global would travel with the class when Ray
    pickles this module by value, and a plain variable would be inherited by spawned processes."""
    key = f"QSTAR_TEST_BUILDS_{os.getpid()}"
    os.environ[key] = str(int(os.environ.get(key, "0")) + add)
    return int(os.environ[key])


class Echo:
    """A worker for the seam's logic: (kind, x, marker) -> (worker id, builds in its process, 2x).

    kind "raise" always raises; "flaky" raises, and "die" kills its process, the first time only (``marker`` is a
    file, so the record survives the process)."""

    def __init__(self):
        self.id = f"{os.getpid()}-{builds(1)}"

    def __call__(self, item):
        kind, x, marker = item
        first = marker and not os.path.exists(marker)
        if first:
            Path(marker).touch()
        if kind == "raise" or (kind == "flaky" and first):
            raise ValueError(f"bad item {x}")
        if kind == "die" and first:
            os._exit(1)
        return self.id, builds(), 2 * x


def items(tmp_path, kinds):
    return [(k, i, str(tmp_path / f"m{i}") if k in ("flaky", "die") else "") for i, k in enumerate(kinds)]


def check(outcomes, kinds, retries, shared_death=False):
    """Every item comes back once; good ones with 2x, raising ones failed after retries + 1 attempts. shared_death:
    a pool charges a dead process to every task then running, so a good one may take a second attempt."""
    by = {d.index: d for d in outcomes}
    assert sorted(by) == list(range(len(kinds)))
    for i, k in enumerate(kinds):
        d = by[i]
        if k == "raise":
            assert not d.ok and d.error == f"ValueError: bad item {i}" and d.attempts == retries + 1
        else:
            assert d.ok and d.value[2] == 2 * i, d
            assert d.attempts == (1 if k == "ok" else 2) or (shared_death and d.attempts == 2), d
    return by


def test_local_in_process_retries_then_reports_failure(tmp_path):
    kinds = ["ok", "flaky", "raise", "ok"]
    with get_executor("local", retries=2) as ex:
        by = check(list(ex.map(Echo, items(tmp_path, kinds))), kinds, retries=2)
    # one build, a fresh one after each raise (flaky once, raise three times)
    assert by[0].value[0] != by[3].value[0] and by[3].value[1] - by[0].value[1] == 4


def test_local_pool_retries_a_killed_process(tmp_path):
    kinds = ["ok", "die", "ok", "raise", "ok", "ok"]
    with get_executor("local", workers=2, retries=1) as ex:
        by = check(list(ex.map(Echo, items(tmp_path, kinds))), kinds, retries=1, shared_death=True)
    assert all(d.value[1] == 1 for d in by.values() if d.ok)  # each pool process built its worker once
    assert {d.value[0].split("-")[0] for d in by.values() if d.ok} != {str(os.getpid())}  # ran in other processes


def sweep_cli(monkeypatch, tmp_path, *flags) -> tuple[int, str]:
    """`qstar sweep --executor ray ...` up to the executor (no checkpoint is read): exit code and stderr."""
    from qstar.cli import main

    monkeypatch.setattr("qstar.lab.sweep.check_config", lambda cfg: None)
    monkeypatch.setattr("qstar.model.checkpoint.task_for", lambda *a, **k: "parity")
    return main(["sweep", "--out", str(tmp_path / "m.jsonl"), "--checkpoints", "x", "--executor", "ray", *flags])


def test_ray_missing_names_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'qstar\[ray\]'"):
        get_executor("ray")
    assert sweep_cli(monkeypatch, tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and RAY_EXTRA in err  # one line


def test_unreachable_ray_address_fails_fast(monkeypatch, tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
        t0 = time.perf_counter()
        with pytest.raises(ConnectionError, match="cannot reach the Ray cluster"):
            get_executor("ray", ray_address=address, connect_timeout=2)
        assert sweep_cli(monkeypatch, tmp_path, "--ray-address", address) == 2
        assert time.perf_counter() - t0 < 30  # the probe's timeout bounds it, not Ray's minutes of retries
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot reach the Ray cluster" in err


def test_failed_cells_are_reported_and_rerun(tmp_path):
    class FailsOnce:
        def __init__(self):
            self.bad = True

        def __call__(self, cell, cfg):
            if cell["strategy"] == "mcts" and self.bad:
                raise RuntimeError("worker out of memory")
            n = cfg.problems
            return {"scorer": "none", "oracle": False, "problems": [f"p{i}" for i in range(n)], "outcomes": [1] * n,
                    "tokens": [1] * n, "flops": [1.0] * n}, []

    cfg = SweepConfig(out=str(tmp_path / "m.jsonl"), checkpoints=["a"], strategies=["majority", "mcts"],
                      budgets=[1, 2], seeds=[0], problems=2, retries=1)
    runner = FailsOnce()
    with pytest.raises(RuntimeError, match="2 sweep cells failed after 2 attempts.*out of memory"):
        run_sweep(cfg, runner=runner)
    assert {r["strategy"] for r in read_metrics(cfg.out)} == {"majority"}  # the other cells are written
    runner.bad = False
    res = run_sweep(cfg, runner=runner)
    assert (res["ran"], res["skipped"], res["failed"]) == (2, 2, 0)


@pytest.fixture(scope="module")
def ray_cluster(ray_session):
    """The session's local 2-CPU Ray cluster (conftest), whose workers may unpickle this module's workers."""
    ray_session.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # they cannot import a test module
    yield ray_session


def test_ray_retries_a_killed_actor_and_loads_once_per_worker(ray_cluster, tmp_path):
    kinds = ["ok", "die", "ok", "raise", "flaky", "ok", "ok", "ok"]
    with get_executor("ray", workers=2, retries=1) as ex:
        by = check(list(ex.map(Echo, items(tmp_path, kinds))), kinds, retries=1)
        assert not ex.started  # the fixture's cluster is used, and left running
    good = [d.value for d in by.values() if d.ok]
    assert all(builds == 1 for _, builds, _ in good)  # every actor built its worker once, for all its tasks
    assert len({wid for wid, _, _ in good}) <= 3  # 2 actors, plus 1 in place of the killed one
    assert ray_cluster.is_initialized()


def test_sweep_on_ray_matches_local(ray_cluster, tiny_checkpoint, tmp_path):
    common = dict(checkpoints=[str(tiny_checkpoint)], task="decimals", strategies=["greedy", "majority"],
                  budgets=[1, 2], seeds=[0], problems=3, scorer="none", max_tokens=24)
    local = SweepConfig(out=str(tmp_path / "local.jsonl"), **common)
    remote = SweepConfig(out=str(tmp_path / "ray.jsonl"), executor="ray", workers=2, **common)
    run_sweep(local)
    # the Ray sweep resumes what a crashed run left: two finished cells and a torn line
    lines = Path(local.out).read_text().splitlines(keepends=True)
    Path(remote.out).write_text("".join(lines[:2]) + lines[2][:20])
    res = run_sweep(remote)
    assert (res["ran"], res["skipped"], res["failed"]) == (2, 2, 0)

    def records(path):
        return {r["key"]: json.dumps({k: v for k, v in r.items() if k != "seconds"}, sort_keys=True)
                for r in read_metrics(path) if r["kind"] == "test"}

    assert records(local.out) == records(remote.out) and len(records(local.out)) == 4
    assert run_sweep(remote)["skipped"] == 4
