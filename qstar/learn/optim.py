"""Optimizers for training qstar models, by name.

``muon`` (the SFT default) runs Muon on the hidden 2-D weight matrices (attention and MLP projections) and
AdamW on everything else (embeddings, the output head, norm gains), as Muon's authors recommend. Muon orthogonalises
each matrix's momentum, so every direction of a weight moves at the same rate. On this machine that is what let a tiny
model learn to copy from its prompt, the skill every task chain starts with: random strings were copied exactly 94.5%
of the time after 725 updates, against 12% after 2000 updates with AdamW at the same learning rate (LOG.md). Muon's
learning rate is matched to AdamW's update size (``adjust_lr_fn="match_rms_adamw"``), so one ``lr`` serves both parts.
The Muon part is :class:`BatchedMuon`, torch's ``torch.optim.Muon`` with its matrices orthogonalised in batches.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["OPTIMIZERS", "BatchedMuon", "MuonAdamW", "make_optimizer"]


class BatchedMuon(torch.optim.Muon):
    """torch's Muon with every same-shape matrix orthogonalised in one batched fp32 Newton-Schulz.

    torch orthogonalises one matrix at a time in bf16. At qstar's sizes on a CPU that is dozens of tiny matmuls plus
    casts per step: it made a `tiny` training step 1.8x slower than AdamW's (LOG.md). Same update, same
    hyper-parameters and state (``momentum_buffer``), torch's coefficients; only the batching and dtype differ.
    (bf16 iterations were 3.3x faster, 20 -> 6 ms per `small` step, but moved the demo's reasoner from 51.5% to 57%
    and chart 2's rise below its target; fp32 keeps the trajectories measured so far. LOG.md, 2026-12-02.)
    """

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            a, b, c = group["ns_coefficients"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            # momentum and weight decay as one foreach op each over all matrices (per-matrix ops cost more in
            # dispatch than in arithmetic at these sizes)
            grads = [p.grad for p in params]
            bufs = [self.state[p].setdefault("momentum_buffer", torch.zeros_like(p)) for p in params]
            torch._foreach_lerp_(bufs, grads, 1 - group["momentum"])
            updates = torch._foreach_lerp(grads, bufs, group["momentum"]) if group["nesterov"] else bufs
            if group["weight_decay"]:
                torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
            by_shape = defaultdict(list)
            for p, u in zip(params, updates):
                by_shape[tuple(p.shape)].append((p, u))
            for (rows, cols), items in by_shape.items():
                x = torch.stack([u for _, u in items]).float()
                if rows > cols:
                    x = x.transpose(1, 2)
                x = x / x.norm(dim=(1, 2), keepdim=True).clamp_min(group["eps"])  # spectral norm <= 1
                for _ in range(group["ns_steps"]):
                    gram = x @ x.transpose(1, 2)
                    x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
                if rows > cols:
                    x = x.transpose(1, 2)
                scale = {"match_rms_adamw": 0.2 * math.sqrt(max(rows, cols)),
                         "original": math.sqrt(max(1.0, rows / cols))}.get(group["adjust_lr_fn"] or "original", 1.0)
                ps = [p for p, _ in items]
                torch._foreach_add_(ps, list(x.to(ps[0].dtype).unbind(0)), alpha=-group["lr"] * scale)


class MuonAdamW:
    """Muon on hidden matrices plus AdamW on the rest, behaving as one optimizer.

    ``param_groups`` lists both optimizers' groups (the same dicts), so a learning-rate schedule that sets
    ``group["lr"]`` drives both; ``state_dict`` / ``load_state_dict`` round-trip both for resume.
    """

    def __init__(self, model: nn.Module, *, lr: float, betas: tuple[float, float], weight_decay: float) -> None:
        hidden, rest = [], []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            is_matrix = p.ndim == 2 and "embed" not in name and "lm_head" not in name
            (hidden if is_matrix else rest).append(p)
        self.adamw = torch.optim.AdamW(rest, lr=lr, betas=betas, weight_decay=weight_decay)
        self.muon = BatchedMuon(hidden, lr=lr, momentum=0.95, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw")
        self.param_groups = self.adamw.param_groups + self.muon.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.adamw.zero_grad(set_to_none=set_to_none)
        self.muon.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.adamw.step()
        self.muon.step()

    def state_dict(self) -> dict:
        return {"adamw": self.adamw.state_dict(), "muon": self.muon.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if set(state) != {"adamw", "muon"}:
            raise ValueError("optimizer state is not a muon state (was the run started with another --optimizer?)")
        self.adamw.load_state_dict(state["adamw"])
        self.muon.load_state_dict(state["muon"])


def _adamw(model: nn.Module, *, lr: float, betas: tuple[float, float], weight_decay: float):
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)


OPTIMIZERS: dict[str, Callable[..., object]] = {"adamw": _adamw, "muon": MuonAdamW}


def make_optimizer(name: str, model: nn.Module, *, lr: float, betas: tuple[float, float] = (0.9, 0.95),
                   weight_decay: float = 0.0):
    """The optimizer called ``name`` over ``model``'s parameters."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(sorted(OPTIMIZERS))}")
    return OPTIMIZERS[name](model, lr=lr, betas=betas, weight_decay=weight_decay)
