"""Compute accounting: measured matmul peak, FLOPs per token, thread setup.

FLOPs follow the usual dense-transformer estimate (Kaplan et al.): a forward pass costs ``2 * params`` FLOPs per
token and a training step (forward + backward) ``6 * params``; attention-score FLOPs are ignored (small at the
sequence lengths qstar uses).
"""

from __future__ import annotations

import os
import time

import torch

__all__ = ["matmul_peak_flops", "forward_flops", "train_flops", "configure_threads"]


def matmul_peak_flops(n: int = 1024, seconds: float = 1.0) -> float:
    """fp32 matmul throughput measured now, in FLOP/s (best of several timed bursts of ``n x n @ n x n``).

    Measured rather than looked up so that MFU/roofline figures reflect this machine and its current load.
    """
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)  # warm up the BLAS
    flops_per = 2.0 * n**3
    best, deadline = 0.0, time.perf_counter() + seconds
    while True:
        reps, t0 = 0, time.perf_counter()
        while reps < 2 or time.perf_counter() - t0 < 0.05:
            torch.mm(a, b, out=out)
            reps += 1
        now = time.perf_counter()
        best = max(best, reps * flops_per / (now - t0))
        if now >= deadline:
            return best


def forward_flops(params: int, tokens: int) -> float:
    """FLOPs to run ``tokens`` tokens forward through a model with ``params`` parameters (2 * N * D)."""
    return 2.0 * params * tokens


def train_flops(params: int, tokens: int) -> float:
    """FLOPs to train on ``tokens`` tokens (forward + backward, 6 * N * D)."""
    return 6.0 * params * tokens


def configure_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads to ``n`` (default: $OMP_NUM_THREADS, else the usable cores); returns it.

    Inter-op threads are set to 1 (qstar never runs independent ops concurrently). ``OMP_WAIT_POLICY=PASSIVE``
    must already be in the environment before torch loads (``import qstar`` first does that): with busy-waiting
    OpenMP threads two torch processes sharing cores ran ~7x slower.
    """
    if n is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        n = int(env) if env.isdigit() and int(env) > 0 else len(os.sched_getaffinity(0))
    torch.set_num_threads(max(1, n))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only allowed before the first parallel op; keep whatever is set
        pass
    return torch.get_num_threads()
