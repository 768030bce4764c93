"""Data-parallel training under ``torchrun``: the one home of qstar's torch.distributed code.

``torchrun --nproc-per-node K -m qstar.cli train sft ...`` starts K processes; :func:`init` joins them into a process
group (gloo on CPU, NCCL when the model runs on CUDA) from the environment torchrun sets (``WORLD_SIZE``, ``RANK``,
``MASTER_ADDR``...). Without those variables everything here is a no-op and training runs as one process.

How a K-process update equals a one-process update (same ``--batch-size``, same ``--seed``):

1. every rank draws the same *global* batch from the same seeded stream (generating synthetic problems costs far
   less than training on them), then keeps its own rows (:func:`shard`);
2. each rank's loss is its rows' summed token loss divided by the *global* count of trained tokens, times K, and DDP
   averages the gradients over the K ranks: the result is the one-process mean-token-loss gradient, whatever the
   split of tokens between ranks;
3. DDP broadcasts rank 0's initial weights, every rank then applies the same averaged gradient with the same
   deterministic optimizer (Muon's Newton-Schulz included), so the ranks never drift apart;
4. wall-clock decisions (a ``--seconds`` cap) use rank 0's clock, shared with every rank (:func:`agree`), so all
   ranks stop at the same update.

Only rank 0 writes checkpoints, summaries, metrics and progress bars (:attr:`World.main`). A run's resume snapshot
records its world size; resuming with another is refused (:func:`check_resume`).

Reward models and GRPO accumulate gradients over micro-batches of uneven numbers per rank (GRPO's rank may even have
none), which DDP's one-sync-per-backward does not fit: they normalise their losses by *global* counts, keep DDP out,
and sum the gradients once per update (:func:`sum_gradients`) after :func:`sync_parameters` made the ranks start equal.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["World", "init", "world", "finish", "wrap", "span", "shard", "agree", "on_main", "say", "share", "gather",
           "done", "sync_parameters", "sum_gradients", "check_resume", "check_same_start"]

T = TypeVar("T")
_owned = False  # whether init() created the process group (finish() then destroys it)


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel ranks."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the only process that writes files and prints progress."""
        return self.rank == 0


def init(device: str | torch.device = "cpu") -> World:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1); else a one-process world.

    Returns the :class:`World`. Idempotent: a process group that already exists is reused.
    """
    global _owned
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        _owned = True
    return world()


def world() -> World:
    """The current world: the process group's rank and size, or (0, 1) when there is none."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def finish() -> None:
    """Leave the process group :func:`init` joined (after a last barrier, so no rank exits while another still talks
    to it); a group the caller created is left to the caller."""
    global _owned
    if _owned and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    _owned = False


def wrap(model: nn.Module) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel when there are several ranks (it broadcasts rank 0's weights and
    averages gradients during backward); ``model`` itself otherwise. The wrapper shares the model's parameters, so
    checkpoints and evaluation keep using ``model``."""
    if world().size == 1:
        return model
    # buffers are constants computed from the config (rotary tables): synced once at init, not every forward
    return nn.parallel.DistributedDataParallel(model, forward_sync_buffers=False)


def span(n: int, w: World | None = None, *, flag: str = "--batch-size") -> range:
    """This rank's indices of a global batch of ``n`` rows: contiguous, the first ``n % K`` ranks one more (as
    ``torch.tensor_split``). ValueError naming ``flag`` when some rank would get none."""
    w = w or world()
    if w.size == 1:
        return range(n)
    if n < w.size:
        raise ValueError(f"a global batch of {n} cannot be split over {w.size} processes; use {flag} {w.size} or more")
    base, extra = divmod(n, w.size)
    start = w.rank * base + min(w.rank, extra)
    return range(start, start + base + (w.rank < extra))


def shard(batch: torch.Tensor, w: World | None = None) -> torch.Tensor:
    """This rank's rows of a global batch [B, ...] (:func:`span`)."""
    rows = span(batch.size(0), w)
    return batch[rows.start : rows.stop]


def agree(local: list[float], main_only: list[float] = ()) -> tuple[list[float], list[float]]:
    """One all-reduce: the sum over ranks of ``local``, and rank 0's values of ``main_only`` (e.g. its clock)."""
    w = world()
    if w.size == 1:
        return list(local), list(main_only)
    t = torch.tensor([*local, *(main_only if w.main else [0.0] * len(main_only))], dtype=torch.float64)
    dist.all_reduce(t)
    values = t.tolist()
    return values[: len(local)], values[len(local):]


def on_main(fn: Callable[[], T]) -> T | None:
    """Run ``fn`` on rank 0 only and make every rank raise its ValueError / FileNotFoundError too (instead of the
    others waiting forever at the next collective). Returns ``fn``'s result on rank 0, None elsewhere."""
    w = world()
    if w.size == 1:
        return fn()
    result, caught, error = None, None, [None]
    if w.main:
        try:
            result = fn()
        except (ValueError, FileNotFoundError) as e:
            caught, error = e, [f"{type(e).__name__}: {e}"]
    dist.broadcast_object_list(error, src=0)
    if caught is not None:
        raise caught
    if error[0] is not None:
        raise ValueError(f"rank 0 failed: {error[0]}")
    return result


def say(message: str) -> None:
    """Print ``message`` to stderr on rank 0 only (K ranks would print it K times)."""
    if world().main:
        print(message, file=sys.stderr)


def share(obj: T) -> T:
    """Rank 0's ``obj`` (any picklable value) on every rank."""
    if world().size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def done(summary: T) -> T:
    """A run's end on every rank: rank 0's ``summary`` (others pass None) shared with all, then :func:`finish`."""
    summary = share(summary)
    finish()
    return summary


def gather(items: list[T]) -> list[T]:
    """Every rank's ``items`` (picklable), joined in rank order, on every rank."""
    w = world()
    if w.size == 1:
        return list(items)
    parts: list = [None] * w.size
    dist.all_gather_object(parts, list(items))
    return [x for part in parts for x in part]


def sync_parameters(model: nn.Module) -> None:
    """Copy rank 0's parameters to every rank (what DDP does when it wraps a model)."""
    if world().size > 1:
        for p in model.parameters():
            dist.broadcast(p.data, src=0)


def sum_gradients(params, *, poison: bool = False) -> None:
    """Replace each parameter's gradient with its sum over ranks (one all-reduce of one flat buffer); with losses
    normalised by the global batch's counts this is the one-process gradient. A rank without a gradient for a
    parameter adds zeros; a parameter no rank has a gradient for keeps none, as in one process (AdamW then leaves it
    alone). ``poison``: this rank met a non-finite loss; the summed gradients become NaN on every rank, so the
    gradient-norm check skips the update everywhere (and in one process too)."""
    params = [p for p in params if p.requires_grad]
    if poison:
        for p in params:
            p.grad = torch.full_like(p, float("nan"))
    if world().size == 1:
        return
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32)
    dist.all_reduce(has)
    used = [p for p, h in zip(params, has.tolist()) if h > 0]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in used])
    dist.all_reduce(flat)
    for p, g in zip(used, flat.split([p.numel() for p in used])):
        p.grad = g.view_as(p)


def check_resume(saved_world_size: int, w: World | None = None) -> None:
    """Refuse to resume a snapshot written by a run with another number of processes."""
    w = w or world()
    if saved_world_size != w.size:
        raise ValueError(f"this run's resume snapshot was written by {saved_world_size} process(es) but "
                         f"{w.size} are running now; resume it with `torchrun --nproc-per-node {saved_world_size}` "
                         f"(or without torchrun for 1), or start a new --out")


def check_same_start(step: int, out) -> None:
    """Refuse to train when the ranks resume from different steps (each read its own ``out``: not a shared one)."""
    w = world()
    if agree([step])[0][0] != step * w.size:
        raise ValueError(f"the {w.size} processes found different resume snapshots in {out}: put --out on a "
                         "filesystem every node shares")
