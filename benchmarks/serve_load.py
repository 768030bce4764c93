"""Load test of ``qstar serve`` on loopback: throughput and latency at 1, 8 and 32 concurrent clients.

Starts ``qstar serve`` in a subprocess on 127.0.0.1 (a random-init "tiny" checkpoint unless --checkpoint is given),
then for each concurrency runs that many async clients (httpx) sending chat requests for a bounded number of
requests / seconds, with ~10% malformed requests mixed in. Prints one JSON line per concurrency:

    {"concurrency", "requests", "rps", "p50_ms", "p99_ms", "errors_5xx", "errors_other", "malformed", ...}

(rps, p50/p99 over the well-formed requests; errors_5xx must be 0; errors_other = well-formed requests that did not
get a 200 or malformed ones that did not get a 4xx) and a final line {"batching_gain": rps@32 / rps@1}. Each level's
budget is a number of requests; ``--seconds`` is only a safety cap, and a level it stops before its requests are sent
says ``"cut_short": true`` (so does the final line), its figures then resting on fewer requests.

    python benchmarks/serve_load.py [--checkpoint DIR] [--effort low] [--max-tokens 48] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import cut_short

ROOT = Path(__file__).resolve().parents[1]
_ASK = {"model": "bench", "messages": [{"role": "user", "content": "1+1"}]}
MALFORMED = [
    b"{not json",
    json.dumps({"model": "bench", "messages": "hi"}).encode(),
    json.dumps({**_ASK, "n": -3}).encode(),
    json.dumps({**_ASK, "reasoning_effort": "max"}).encode(),
    json.dumps({"model": "bench", "messages": [{"role": "user", "content": "x" * 5000}]}).encode(),
    json.dumps({**_ASK, "temperature": "hot"}).encode(),
]


def tiny_checkpoint(directory: Path) -> Path:
    import torch

    from qstar.model.checkpoint import save_checkpoint
    from qstar.model.model import ModelConfig, Transformer
    from qstar.model.tokenizer import CharTokenizer

    torch.manual_seed(0)
    return save_checkpoint(directory / "checkpoint", Transformer(ModelConfig.preset("tiny")), CharTokenizer(),
                           meta={"stage": "random-init"})


def questions(n: int) -> list[str]:
    from qstar.tasks import get_task

    return [p.question for p in get_task("decimals").generate(n, seed=0, split="test")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def level(url: str, concurrency: int, qs: list[str], args) -> dict:
    import httpx

    lat: list[float] = []
    counts = {"ok": 0, "errors_5xx": 0, "errors_other": 0, "malformed": 0}
    sent = 0
    deadline = time.perf_counter() + args.seconds
    budget = max(args.min_requests, args.requests_per_client * concurrency)

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < budget and time.perf_counter() < deadline:
            i, sent = sent, sent + 1
            bad = i % 10 == 9  # ~10% malformed
            body = MALFORMED[i % len(MALFORMED)] if bad else json.dumps({
                "model": "bench", "messages": [{"role": "user", "content": qs[i % len(qs)]}],
                "reasoning_effort": args.effort, "max_completion_tokens": args.max_tokens}).encode()
            t0 = time.perf_counter()
            r = await c.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
            dt = time.perf_counter() - t0
            counts["malformed"] += bad
            if r.status_code >= 500:
                counts["errors_5xx"] += 1
            elif bad != (400 <= r.status_code < 500):
                counts["errors_other"] += 1
            elif not bad:
                counts["ok"] += 1
                lat.append(dt)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat.sort()
    pick = lambda q: round(1000 * lat[min(len(lat) - 1, int(q * len(lat)))], 1) if lat else None
    return {"concurrency": concurrency, "requests": sent, "request_budget": budget,
            "cut_short": cut_short(sent, budget), "rps": round(counts["ok"] / wall, 2),
            "p50_ms": pick(0.5), "p99_ms": pick(0.99), **counts, "seconds": round(wall, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="", help="checkpoint to serve (default: a random-init tiny model)")
    ap.add_argument("--effort", default="low", help="reasoning_effort of the well-formed requests")
    ap.add_argument("--max-tokens", type=int, default=48, help="max_completion_tokens per request")
    ap.add_argument("--seconds", type=float, default=60.0,
                    help="safety cap in seconds per concurrency level (a level it stops is cut_short)")
    ap.add_argument("--requests-per-client", type=int, default=8, help="request limit per client per level")
    ap.add_argument("--max-wait-ms", type=float, default=5.0, help="server's batching window (qstar serve flag)")
    ap.add_argument("--min-requests", type=int, default=40, help="request limit per level at least this")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or str(tiny_checkpoint(Path(tmp)))
        port = free_port()
        cmd = [sys.executable, "-m", "qstar.cli", "serve", "--checkpoint", ckpt, "--host", "127.0.0.1",
               "--port", str(port), "--name", "bench", "--max-wait-ms", str(args.max_wait_ms)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        server = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            import httpx

            url = f"http://127.0.0.1:{port}"
            for _ in range(600):
                if server.poll() is not None:
                    raise SystemExit(f"server exited: {server.stderr.read().decode()[-2000:]}")
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            qs = questions(64)
            results = {}
            for c in args.levels:
                results[c] = asyncio.run(level(url, c, qs, args))
                print(json.dumps(results[c]), flush=True)
            stats = httpx.get(url + "/health", timeout=5).json()["batching"]
            lo, hi = min(args.levels), max(args.levels)
            gain = results[hi]["rps"] / results[lo]["rps"] if results[lo]["rps"] else None
            print(json.dumps({"batching_gain": round(gain, 2) if gain else None, "levels": [lo, hi],
                              "effort": args.effort, "max_tokens": args.max_tokens, "max_wait_ms": args.max_wait_ms,
                              "cut_short": any(r["cut_short"] for r in results.values()), "batcher": stats}),
                  flush=True)
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    main()
