"""``BatchingPolicy``: coalesces concurrent ``sample`` calls from many request threads into batched policy calls.

Each request's search runs in its own worker thread and calls ``sample`` whenever it needs continuations. The
wrapper queues the call; one dispatcher thread merges every queued call with the same sampling settings (n,
temperature, top_p, max_tokens, stop_at_step) into ONE ``policy.sample`` over the concatenated prompts, then hands
each caller its own rows. The underlying policy is only ever called from the dispatcher, so it needs no locking.

When to dispatch: at once when every active session (a search in flight, see :meth:`session`) has a call
waiting, when ``max_batch`` rows (prompts x n) are queued, or ``max_wait_ms`` after the oldest call arrived.
A lone user therefore never waits, and 32 lock-stepped searches become one batched call per search step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager

from qstar.model.types import Completion, Policy, Prompt

__all__ = ["BatchingPolicy"]


class _Call:
    __slots__ = ("prompts", "n", "key", "kwargs", "arrived", "done", "result", "error")

    def __init__(self, prompts: list[Prompt], n: int, kwargs: dict) -> None:
        self.prompts, self.n, self.kwargs = prompts, n, kwargs
        self.key = (n, *sorted(kwargs.items()))
        self.arrived = time.monotonic()
        self.done = threading.Event()
        self.result: list[list[Completion]] | None = None
        self.error: BaseException | None = None


class BatchingPolicy:
    """Policy wrapper that batches concurrent calls. Thread-safe; ``name`` and ``params`` are the wrapped policy's.

    max_batch: rows (prompts x n) merged into one call at most (a single larger call still runs, alone).
    max_wait_ms: longest a queued call waits for company.
    stats: {"calls": sample calls received, "batches": policy calls made, "rows": rows sampled}.
    """

    def __init__(self, policy: Policy, *, max_batch: int = 64, max_wait_ms: float = 5.0) -> None:
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"need max_batch >= 1 and max_wait_ms >= 0 (got {max_batch}, {max_wait_ms})")
        self.policy, self.max_batch, self.max_wait = policy, max_batch, max_wait_ms / 1000.0
        self.name, self.params = policy.name, int(getattr(policy, "params", 0) or 0)
        self.stats = {"calls": 0, "batches": 0, "rows": 0}
        self._cv = threading.Condition()
        self._queue: list[_Call] = []
        self._active = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    def __getattr__(self, name: str):
        # optional extras of the wrapped policy (count_tokens, tokenizer, max_len, ...) stay visible
        if name == "policy":
            raise AttributeError(name)
        return getattr(self.policy, name)

    @contextmanager
    def session(self):
        """Mark the calling thread's search as in flight, so the dispatcher knows how many callers to wait for."""
        with self._cv:
            self._active += 1
        try:
            yield self
        finally:
            with self._cv:
                self._active -= 1
                self._cv.notify_all()

    def sample(
        self,
        prompts: Sequence[Prompt],
        *,
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_tokens: int = 256,
        stop_at_step: bool = False,
    ) -> list[list[Completion]]:
        """Same contract as ``Policy.sample``; blocks until the merged batch containing this call has run."""
        if not prompts:
            return []
        call = _Call([Prompt(*p) for p in prompts], n, dict(temperature=temperature, top_p=top_p,
                                                             max_tokens=max_tokens, stop_at_step=stop_at_step))
        with self._cv:
            if self._closed:
                raise RuntimeError("BatchingPolicy is closed")
            self._queue.append(call)
            self.stats["calls"] += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="qstar-batcher", daemon=True)
                self._thread.start()
            self._cv.notify_all()
        call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the dispatcher after the queued calls have run."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # -- dispatcher ---------------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._dispatch(batch)

    def _next_batch(self) -> list[_Call] | None:
        with self._cv:
            while not self._queue:
                if self._closed:
                    return None
                self._cv.wait()
            deadline = self._queue[0].arrived + self.max_wait
            while not self._closed:
                rows = sum(len(c.prompts) * c.n for c in self._queue)
                left = deadline - time.monotonic()
                if rows >= self.max_batch or len(self._queue) >= max(1, self._active) or left <= 0:
                    break
                self._cv.wait(left)
            # the oldest call's settings pick the batch; compatible calls join it up to max_batch rows
            key, batch, rows = self._queue[0].key, [], 0
            for c in list(self._queue):
                size = len(c.prompts) * c.n
                if c.key == key and (not batch or rows + size <= self.max_batch):
                    batch.append(c)
                    rows += size
                    self._queue.remove(c)
            self.stats["batches"] += 1
            self.stats["rows"] += rows
            return batch

    def _dispatch(self, batch: list[_Call]) -> None:
        prompts = [p for c in batch for p in c.prompts]
        try:
            out = self.policy.sample(prompts, n=batch[0].n, **batch[0].kwargs)
            if len(out) != len(prompts):
                raise ValueError(f"policy {self.name} returned {len(out)} rows for {len(prompts)} prompts")
        except BaseException as e:  # every caller of the batch gets the failure; the dispatcher lives on
            for c in batch:
                c.error = e
                c.done.set()
            return
        i = 0
        for c in batch:
            c.result, i = out[i:i + len(c.prompts)], i + len(c.prompts)
            c.done.set()
