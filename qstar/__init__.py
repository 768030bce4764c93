"""qstar: reasoning models that improve with train-time and test-time compute."""

import os

# Must be set before torch loads its OpenMP runtime: with the default (active) wait policy two torch processes on
# 2 cores ran 7x slower. Users can still override it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _keep_freed_memory() -> None:
    """Ask glibc's malloc to reuse freed blocks instead of returning them to the kernel.

    A training step frees and re-allocates activation tensors of a few MB; by default glibc serves those with fresh
    mmaps, so each step of the demo's SFT paid ~4k page faults and 17 ms of kernel time; keeping up to 1 GiB of
    freed memory cut that to ~600 faults and 9 ms (LOG.md, 2026-12-01). No-op off glibc; QSTAR_SYSTEM_MALLOC=1
    opts out.
    """
    if os.environ.get("QSTAR_SYSTEM_MALLOC") == "1":
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: allocations below this come from the heap
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to this much free memory at the heap's top
    except (OSError, AttributeError):
        pass


_keep_freed_memory()

__version__ = "0.1.0"
