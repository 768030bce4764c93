"""Run independent units of work (sweep cells, evaluation shards, rollouts) in-process, in a process pool, or on Ray.

A *worker* is a stateful callable ``worker(item) -> result`` built by a picklable zero-argument factory once per
worker (the process, the pool process or the Ray actor), so a worker that loads a model loads it once and serves
every task sent to it. ``Executor.map(factory, items)`` yields a ``Done`` per item as tasks finish (not in order:
callers key results by ``Done.index``). Only the caller writes results, so a task that dies leaves nothing
half-written. A task whose worker raised is retried, one whose worker died is retried on a fresh worker, up to
``retries`` times; then it is reported failed (``Done.error``) while the other tasks go on. KeyboardInterrupt is never
retried: it stops the run.

    with get_executor("ray", workers=4, ray_address="auto") as ex:
        for done in ex.map(functools.partial(MyWorker, checkpoint), items):
            ...

Ray is imported only when ``ray`` is chosen (the ``ray`` / ``cluster`` extra); this module imports no model.
"""

from __future__ import annotations

import os
import pickle
import socket
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

EXECUTORS = ("local", "ray")
RAY_EXTRA = "pip install 'qstar[ray]'"

Factory = Callable[[], Callable[[Any], Any]]


@dataclass(frozen=True)
class Done:
    """The outcome of one item: its index in the input, the worker's result, or the last error after all attempts."""

    index: int
    value: Any = None
    error: str = ""
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class ExecutorOptions:
    """The executor flags, shared by every entrypoint whose units of work are independent (``qstar sweep``, ``qstar
    eval``, ``qstar relabel``, ``qstar train prm/orm``, ``qstar train expert-iteration``): a config inherits them."""

    executor: str = field(default="local", metadata={"choices": EXECUTORS})
    """Where units of work (sweep cells, shards of problems) run: local (this process, or a process pool for
    --workers > 1) or ray (Ray actors; needs `pip install 'qstar[ray]'`)."""
    ray_address: str = ""
    """Ray cluster to join (`auto`, `host:port` or `ray://host:port`); empty starts a local one (or uses
    $RAY_ADDRESS)."""
    workers: int = 1
    """Parallel workers (pool processes or Ray actors, one CPU each); each loads each checkpoint once."""
    retries: int = 2
    """Times a unit of work whose worker raised or died is run again before it is reported failed (a rerun retries
    it)."""

    def open_executor(self):
        """The executor these options name (a context manager)."""
        return get_executor(self.executor, workers=self.workers, ray_address=self.ray_address, retries=self.retries)

    @property
    def in_process(self) -> bool:
        """True when the one worker runs in this process, so it may use objects the caller already built."""
        return self.executor == "local" and self.workers == 1


def map_all(options: ExecutorOptions, factory: Factory, items: Sequence, *, what: str = "item") -> list:
    """Every item's result, in input order, through ``options``' executor; RuntimeError naming the items that still
    failed after the retries (raised once every item has run)."""
    values: list = [None] * len(items)
    failed = []
    with options.open_executor() as ex:
        for done in ex.map(factory, items):
            if done.ok:
                values[done.index] = done.value
            else:
                failed.append(f"{what} {done.index} ({done.error})")
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(items)} {what}s failed after {options.retries + 1} attempts each: "
                           f"{'; '.join(failed[:3])}")
    return values


def get_executor(name: str = "local", *, workers: int = 1, ray_address: str = "", retries: int = 2,
                 connect_timeout: float = 10.0):
    """``local`` (in-process for one worker, a process pool for more) or ``ray`` (one actor per worker)."""
    if workers < 1 or retries < 0:
        raise ValueError(f"need workers >= 1 and retries >= 0, got workers={workers}, retries={retries}")
    if name == "local":
        return LocalExecutor(workers=workers, retries=retries)
    if name == "ray":
        return RayExecutor(workers=workers, address=ray_address, retries=retries, connect_timeout=connect_timeout)
    raise ValueError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")


def _error(e: BaseException) -> str:
    """One line: the exception's type and the first line of its message."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


class LocalExecutor:
    """One worker runs in this process; several run in a spawned process pool, one torch thread share each."""

    def __init__(self, *, workers: int = 1, retries: int = 2):
        self.workers, self.retries = workers, retries

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pass

    def map(self, factory: Factory, items: Sequence) -> Iterator[Done]:
        if self.workers == 1 or len(items) <= 1:
            yield from self._serial(factory, items)
        else:
            yield from self._pool(factory, items)

    def _serial(self, factory: Factory, items: Sequence) -> Iterator[Done]:
        worker = None
        for i, item in enumerate(items):
            for attempt in range(1, self.retries + 2):
                try:
                    worker = worker or factory()
                    value = worker(item)
                except Exception as e:  # noqa: BLE001 - any task error is retried, then reported
                    worker = None  # a worker that raised may hold broken state: the retry builds a fresh one
                    if attempt > self.retries:
                        yield Done(i, error=_error(e), attempts=attempt)
                else:
                    yield Done(i, value, attempts=attempt)
                    break

    def _pool(self, factory: Factory, items: Sequence) -> Iterator[Done]:
        import multiprocessing

        # spawn, not fork: a forked copy of a process that already runs torch threads can deadlock
        blob, threads = pickle.dumps(factory), _threads_per_worker(self.workers)
        attempts, todo = [0] * len(items), deque(range(len(items)))
        while todo:  # one pool per round; a pool that lost a process is replaced by a fresh one
            pool = ProcessPoolExecutor(min(self.workers, len(todo)), mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_pool_init, initargs=(blob, threads))
            running, broken = {}, False
            try:
                while running or (todo and not broken):
                    # at most one task per process in flight, so a dying process charges only the tasks it stopped
                    while todo and not broken and len(running) < self.workers:
                        i = todo.popleft()
                        running[pool.submit(_pool_call, items[i])] = i
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        i = running.pop(fut)
                        attempts[i] += 1
                        if fut.exception() is None:
                            yield Done(i, fut.result(), attempts=attempts[i])
                            continue
                        broken |= isinstance(fut.exception(), BrokenProcessPool)  # a process died
                        if attempts[i] > self.retries:
                            yield Done(i, error=_error(fut.exception()), attempts=attempts[i])
                        else:
                            todo.append(i)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)


_WORKER: Callable | None = None


def _pool_init(blob: bytes, threads: int) -> None:
    global _WORKER
    os.environ["OMP_NUM_THREADS"] = str(threads)  # before the factory's modules load torch
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    _WORKER = pickle.loads(blob)()


def _pool_call(item):
    assert _WORKER is not None, "pool process was not initialised"
    return _WORKER(item)


def import_ray():
    """The ray module, or ImportError with one line naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise ImportError(f"the ray executor needs Ray: {RAY_EXTRA}") from None
    return ray


def check_address(address: str, timeout: float) -> None:
    """ConnectionError within ``timeout`` seconds when ``host:port`` or ``ray://host:port`` does not answer; ray.init
    itself keeps retrying an unreachable cluster for minutes."""
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if address in ("", "auto", "local") or not sep:
        return
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as e:
        raise ConnectionError(f"cannot reach the Ray cluster at {address!r} within {timeout:g} s ({_error(e)}); start "
                              f"one with `ray start --head`, or leave --ray-address empty for a local one") from None


class _Actor:
    """A Ray actor around one worker: the factory runs once, in the actor's process."""

    def __init__(self, blob: bytes, threads: int):
        _pool_init(blob, threads)

    def run(self, item):
        return _pool_call(item)


class RayExecutor:
    """One Ray actor per worker (1 CPU each), at most one task in flight per actor. A task that raises is retried
    on the same actor; one whose actor dies (killed, out of memory) on a fresh actor."""

    def __init__(self, *, workers: int = 1, address: str = "", retries: int = 2, connect_timeout: float = 10.0):
        self.ray = import_ray()
        self.workers, self.retries = workers, retries
        self.started = False
        address = address or os.environ.get("RAY_ADDRESS", "")
        check_address(address, connect_timeout)
        if not self.ray.is_initialized():  # a caller that ran ray.init itself keeps its cluster
            if address:
                self.ray.init(address=address)
            else:  # a local cluster for this run only: no dashboard to start
                self.ray.init(num_cpus=max(os.cpu_count() or 1, workers), include_dashboard=False)
            self.started = True
        cpus = int(self.ray.cluster_resources().get("CPU", 0))
        if 0 < cpus < workers:  # an actor that never gets a CPU would hold its tasks forever
            print(f"qstar: the Ray cluster has {cpus} CPUs: running {cpus} workers, not {workers}", file=sys.stderr)
            self.workers = cpus

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
        self.started = False

    def map(self, factory: Factory, items: Sequence) -> Iterator[Done]:
        ray = self.ray
        actor_cls = ray.remote(num_cpus=1)(_Actor)
        blob = ray.cloudpickle.dumps(factory)  # by value where the caller registered it, like Ray's own args
        refs = [ray.put(item) for item in items]
        actors = [actor_cls.remote(blob, 1) for _ in range(min(self.workers, len(items)))]
        idle, todo = list(actors), deque(range(len(items)))
        attempts, running = [0] * len(items), {}
        try:
            while todo or running:
                while idle and todo:
                    actor, i = idle.pop(), todo.popleft()
                    running[actor.run.remote(refs[i])] = (actor, i)
                ready, _ = ray.wait(list(running), num_returns=1)
                actor, i = running.pop(ready[0])
                attempts[i] += 1
                try:
                    value = ray.get(ready[0])
                except ray.exceptions.RayActorError as e:  # the worker process died: replace it
                    ray.kill(actor)
                    idle.append(actor_cls.remote(blob, 1))
                    error = "worker died: " + _error(e)
                except ray.exceptions.RayTaskError as e:
                    idle.append(actor)
                    error = _error(e.cause) if e.cause is not None else _error(e)
                else:
                    idle.append(actor)
                    yield Done(i, value, attempts=attempts[i])
                    continue
                if attempts[i] > self.retries:
                    yield Done(i, error=error, attempts=attempts[i])
                else:
                    todo.appendleft(i)
        finally:
            for actor in idle + [a for a, _ in running.values()]:
                ray.kill(actor)
