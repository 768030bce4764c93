"""Helpers shared by the serving tests (no tests here): a uvicorn server in a thread, a scripted policy."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from qstar.model.types import Completion


@contextlib.contextmanager
def serve_in_thread(app):
    """Run an ASGI app with uvicorn on a free 127.0.0.1 port; yields the base URL (no /v1)."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        if not thread.is_alive() or time.monotonic() - t0 > 20:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


class EchoPolicy:
    """Deterministic policy: the chain for question q is ``"len <k>\\nAnswer: <k>"`` with k = len(q).

    Tokens are characters (+1 <eos> after the answer line, +0 for the step's "\\n", which is a character);
    every sampled token has log-probability -0.5. Records each call's (number of prompts, n, kwargs).
    """

    name = "echo"
    params = 10

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[int, int, dict]] = []
        self.delay = delay
        self._lock = threading.Lock()

    @staticmethod
    def chain(question: str) -> str:
        return f"len {len(question)}\nAnswer: {len(question)}"

    def sample(self, prompts, *, n=1, temperature=1.0, top_p=1.0, max_tokens=256, stop_at_step=False):
        with self._lock:
            self.calls.append((len(prompts), n, dict(temperature=temperature, max_tokens=max_tokens,
                                                     stop_at_step=stop_at_step)))
        if self.delay:
            time.sleep(self.delay)
        out = []
        for q, partial in prompts:
            rest = self.chain(q)[len(partial):] if self.chain(q).startswith(partial) else ""
            if stop_at_step and "\n" in rest:
                rest, finish = rest[: rest.index("\n") + 1], "step"
            else:
                finish = "eos"
            toks = len(rest) + (finish == "eos")
            if toks > max_tokens:
                rest, finish, toks = rest[:max_tokens], "length", max_tokens
            out.append([Completion(rest, [-0.5] * toks, toks, len(q) + 2 + len(partial), finish) for _ in range(n)])
        return out
