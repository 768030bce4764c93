"""Log-probabilities of many sampled completions under a model, with gradients: what policy-gradient training
(qstar.learn.grpo) differentiates. Each distinct prompt runs once; its completions attend to that prompt's cached
keys and values, so a group of G samples of one prompt shares its forward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qstar.model.model import KVCache

__all__ = ["completion_logprobs", "RowCache"]


def completion_logprobs(model, prompts, rows, cids, mask) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities [n, T] of completion tokens ``cids`` after prompt ``prompts[rows[b]]`` (0 where ``mask`` is
    0; with grad when enabled) and the policy's entropy there (no grad). Each distinct prompt runs once (left-padded,
    keys/values cached); the completions then attend to that cache copied per row, so a group's G samples share
    their prompt's forward pass. Same values as one pass over prompt + completion."""
    L = max(map(len, prompts))
    lens = torch.tensor([len(p) for p in prompts])
    ids = torch.zeros(len(prompts), L, dtype=torch.long)
    for u, p in enumerate(prompts):
        ids[u, L - len(p) :] = torch.tensor(p, dtype=torch.long)
    cols = torch.arange(L)
    valid = cols[None, :] >= (L - lens)[:, None]  # [P, L] real (not padding) prompt columns
    cache = KVCache(model.cfg, len(prompts), L)
    pos = (cols[None, :] - (L - lens)[:, None]).clamp_min(0)
    h = model.hidden(ids, positions=pos, cache=cache, attn_mask=None if valid.all() else valid)[rows, -1:]
    if cids.shape[1] > 1:  # the last completion token is never an input
        T = cids.shape[1] - 1
        keys = torch.cat([valid[rows], torch.ones(len(rows), T, dtype=torch.bool)], dim=1)
        h_c = model.hidden(cids[:, :-1], positions=lens[rows, None] + torch.arange(T), attn_mask=keys,
                           cache=RowCache(cache, rows, T, model.cfg.n_layers))
        h = torch.cat([h, h_c], dim=1)  # [n, T]: the hidden state that predicts completion token t
    where = mask.nonzero(as_tuple=True)
    logp_all = F.log_softmax(model.lm_head(h[where]), dim=-1)  # [N, V] for the N completion tokens only
    with torch.no_grad():
        entropy = torch.zeros_like(mask).index_put(where, -(logp_all.exp() * logp_all).sum(-1))
    picked = logp_all.gather(-1, cids[where][:, None]).squeeze(-1)
    return torch.zeros_like(mask).index_put(where, picked), entropy


class RowCache:
    """KV-cache stand-in for the completion pass: per layer, the prompt's keys/values copied to each completion row,
    then room for ``extra`` columns. One tensor per layer (KVCache stacks layers in one tensor): the pass writes
    layer after layer, and a write into a shared tensor would invalidate what earlier layers saved for backward."""

    def __init__(self, cache: KVCache, rows: torch.Tensor, extra: int, n_layers: int) -> None:
        def grow(t: torch.Tensor) -> torch.Tensor:
            t = t[:, :, : cache.length].index_select(0, rows)
            return torch.cat([t, t.new_empty(*t.shape[:2], extra, t.shape[3])], dim=2)

        self.kv = [tuple(grow(t) for t in cache.layer(i)) for i in range(n_layers)]
        self.length, self.batch, self.max_len = cache.length, len(rows), cache.length + extra

    def layer(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.kv[i]
