"""Compute accounting: measured matmul peak, FLOPs per token, thread setup.

FLOPs follow the usual dense-transformer estimate (Kaplan et al.; PaLM's MFU adds attention): a forward pass costs
``2 * params`` FLOPs per token plus the attention products (q.k scores and the weighted sum of values, 4 FLOPs per
query-key pair per attention channel per layer), and a training step (forward + backward) three times that. Pairs are
counted causally (a query at position t scores t + 1 keys), the work a causal kernel has to do; PaLM and nanoGPT count
every query against all T keys, which would add about twice as much. At qstar's chain lengths (100-300 tokens)
attention is 5-14% of a `small` step's FLOPs and 12-37% of a `tiny` one's, too much to leave out.
"""

from __future__ import annotations

import os
import time

import torch

__all__ = ["matmul_peak_flops", "forward_flops", "train_flops", "causal_pairs", "attention_flops", "configure_threads",
           "native_bf16"]


def matmul_peak_flops(n: int = 1024, seconds: float = 1.0, dtype: torch.dtype = torch.float32) -> float:
    """Matmul throughput in ``dtype`` measured now, in FLOP/s (best of several timed bursts of ``n x n @ n x n``).

    Measured rather than looked up so that MFU/roofline figures reflect this machine and its current load. Compare
    work done in bf16 with the bf16 peak (here about 4x the fp32 one), not the fp32 one.
    """
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    out = torch.empty(n, n, dtype=dtype)
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


def forward_flops(params: int, tokens: int, *, attention: float = 0.0) -> float:
    """FLOPs to run ``tokens`` tokens forward through a model with ``params`` parameters (2 * N * D), plus
    ``attention`` (:func:`attention_flops` of the same tokens)."""
    return 2.0 * params * tokens + attention


def train_flops(params: int, tokens: int, *, attention: float = 0.0) -> float:
    """FLOPs to train on ``tokens`` tokens: forward + backward, three forwards (6 * N * D + 3 * attention)."""
    return 3.0 * forward_flops(params, tokens, attention=attention)


def causal_pairs(batch: int, seq_len: int) -> int:
    """Query-key pairs a causal forward over ``batch`` rows of ``seq_len`` tokens scores: B * T * (T + 1) / 2."""
    return batch * seq_len * (seq_len + 1) // 2


def attention_flops(n_layers: int, attn_width: int, pairs: int) -> float:
    """Forward attention FLOPs for ``pairs`` query-key pairs: q.k and p.v, 2 FLOPs each per channel, per layer.

    attn_width: query channels per layer (n_heads * head_dim; grouped-query attention shares keys, not products).
    """
    return 4.0 * n_layers * attn_width * pairs


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


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX): there bf16 matmuls ran ~4x faster than fp32;
    without it oneDNN emulates them and bf16 is slower."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # private helpers: assume no on a torch without them
        return False
