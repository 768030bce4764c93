"""Policy-gradient losses for RL with verifiable rewards: GRPO, Dr. GRPO and DAPO as plain functions.

Every loss has one signature::

    loss_fn(logp [B,T], old_logp [B,T], advantages [B], mask [B,T], *, cfg, ref_logp=None,
            n_rows=None, n_tokens=None) -> (loss, stats)

logp: log-probabilities (natural log) of the sampled tokens under the current policy, with grad.
old_logp: the same under the policy that sampled them (detached; equal to ``logp.detach()`` for a single on-policy
    update, so the ratio is 1 and clipping is inactive). advantages: one per sequence. mask: 1.0 on completion
    tokens, 0.0 on padding. ref_logp: the frozen reference policy's log-probabilities, needed when ``cfg.beta > 0``.
n_rows / n_tokens: the batch's sequence and completion-token counts when the caller splits a batch into
    micro-batches (or leaves out rows whose terms are all zero: advantage 0 and beta 0); the loss is then this
    part's share, and the parts' losses sum to the whole batch's loss. Default: this batch.
stats: floats ``clip_frac`` (share of completion tokens whose gradient the clip removes), ``clip_low_frac``,
    ``clip_high_frac``, ``ratio_mean`` and ``kl`` (k3 estimate of KL(policy || reference), 0 without a reference).

The three losses share the PPO-clip token term and differ only in how token terms are averaged (and, through
:data:`ADVANTAGES`, in how rewards become advantages):

- ``grpo`` (Shao et al. 2024): mean over each sequence's tokens, then mean over sequences; advantages
  ``(r - mean) / (std + eps)`` within each group.
- ``dr_grpo`` (Liu et al. 2025, "Understanding R1-Zero-like training"): sum over tokens divided by a constant
  (``cfg.max_len``), then mean over sequences; advantages ``r - mean`` (no std division). Both removals take away a
  bias: per-sequence means favour long wrong answers, std division over-weights nearly-solved and nearly-hopeless
  groups (low reward std).
- ``dapo`` (Yu et al. 2025): one mean over all completion tokens of the batch, and "clip-higher": a wider upper
  clip ``eps_high`` so unlikely tokens with positive advantage can still grow (against entropy collapse).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["LossConfig", "LOSSES", "ADVANTAGES", "group_normalised", "group_centred", "grpo_loss", "dr_grpo_loss",
           "dapo_loss"]


@dataclass(frozen=True)
class LossConfig:
    """Options every loss reads (keyword ``cfg``)."""

    clip_eps: float = 0.2
    """Lower clip: the ratio may fall to 1 - clip_eps before its gradient is cut."""
    clip_eps_high: float | None = None
    """Upper clip: the ratio may rise to 1 + clip_eps_high; None means clip_eps (DAPO uses 0.28)."""
    beta: float = 0.0
    """Weight of the k3 KL penalty to the reference policy; 0 needs no reference."""
    max_len: int | None = None
    """Dr. GRPO's constant divisor in tokens (the completion budget); None uses T of the batch."""

    @property
    def eps_high(self) -> float:
        return self.clip_eps if self.clip_eps_high is None else self.clip_eps_high


# --------------------------------------------------------------------------------------------------- advantages


def group_normalised(rewards: Tensor, group_size: int, *, eps: float = 1e-4) -> Tensor:
    """Advantages [B] = (r - group mean) / (group std + eps); rows ``[g*G, (g+1)*G)`` form group g.

    The std is the unbiased sample std (as in the GRPO paper and TRL). A group whose rewards are all equal gets
    advantage 0 for every member.

    >>> [round(a, 3) for a in group_normalised(torch.tensor([1., 0., 0., 1., 1., 1.]), 3).tolist()]
    [1.155, -0.577, -0.577, 0.0, 0.0, 0.0]
    """
    g = _groups(rewards, group_size)
    std = g.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(g[:, :1])
    return ((g - g.mean(dim=1, keepdim=True)) / (std + eps)).reshape(-1)


def group_centred(rewards: Tensor, group_size: int, *, eps: float = 1e-4) -> Tensor:
    """Advantages [B] = r - group mean (Dr. GRPO: no std division). ``eps`` is unused, kept for one signature.

    >>> [round(a, 3) for a in group_centred(torch.tensor([1., 0., 0., 1., 1., 1.]), 3).tolist()]
    [0.667, -0.333, -0.333, 0.0, 0.0, 0.0]
    """
    g = _groups(rewards, group_size)
    return (g - g.mean(dim=1, keepdim=True)).reshape(-1)


def _groups(rewards: Tensor, group_size: int) -> Tensor:
    if group_size < 1 or rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards of shape {tuple(rewards.shape)} do not split into groups of {group_size}")
    return rewards.float().reshape(-1, group_size)


# --------------------------------------------------------------------------------------------------- losses


def _token_terms(logp, old_logp, advantages, mask, cfg: LossConfig, ref_logp):
    """Per-token loss [B,T] (PPO-clip surrogate, negated, plus beta * k3 KL) and stats."""
    if logp.shape != old_logp.shape or logp.shape != mask.shape or advantages.shape != logp.shape[:1]:
        raise ValueError(f"shape mismatch: logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)}, "
                         f"mask {tuple(mask.shape)}, advantages {tuple(advantages.shape)} (want [B,T],[B,T],[B,T],[B])")
    mask = mask.to(logp.dtype)
    adv = advantages.to(logp.dtype)[:, None]
    ratio = torch.exp(logp - old_logp)
    lo, hi = 1.0 - cfg.clip_eps, 1.0 + cfg.eps_high
    # min(ratio*A, clip(ratio)*A): the clip binds (zero gradient) only when it makes the objective smaller.
    per_token = -torch.minimum(ratio * adv, ratio.clamp(lo, hi) * adv)
    n = mask.sum().clamp(min=1.0)
    clip_low = ((ratio < lo) & (adv < 0)).to(logp.dtype)
    clip_high = ((ratio > hi) & (adv > 0)).to(logp.dtype)
    kl = torch.zeros_like(logp)
    if cfg.beta > 0:
        if ref_logp is None:
            raise ValueError("beta > 0 needs ref_logp (the reference policy's log-probabilities)")
        # k3 estimator (Schulman): exp(d) - d - 1 with d = ref - logp; unbiased, always >= 0.
        d = ref_logp - logp
        kl = torch.exp(d) - d - 1.0
        per_token = per_token + cfg.beta * kl
    stats = {
        "clip_low_frac": float((clip_low * mask).sum() / n),
        "clip_high_frac": float((clip_high * mask).sum() / n),
        "clip_frac": float(((clip_low + clip_high) * mask).sum() / n),
        "ratio_mean": float((ratio.detach() * mask).sum() / n),
        "kl": float((kl.detach() * mask).sum() / n),
    }
    return per_token * mask, mask, stats


def grpo_loss(logp, old_logp, advantages, mask, *, cfg: LossConfig, ref_logp=None, n_rows=None, n_tokens=None):
    """GRPO: token mean within each sequence, then mean over the B sequences (empty sequences count as 0)."""
    terms, mask, stats = _token_terms(logp, old_logp, advantages, mask, cfg, ref_logp)
    per_seq = terms.sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    return per_seq.sum() / (n_rows or logp.shape[0]), stats


def dr_grpo_loss(logp, old_logp, advantages, mask, *, cfg: LossConfig, ref_logp=None, n_rows=None, n_tokens=None):
    """Dr. GRPO: token sum of each sequence divided by the constant ``cfg.max_len`` (default T), mean over B."""
    terms, _, stats = _token_terms(logp, old_logp, advantages, mask, cfg, ref_logp)
    max_len = cfg.max_len or logp.shape[1]
    return terms.sum() / max_len / (n_rows or logp.shape[0]), stats


def dapo_loss(logp, old_logp, advantages, mask, *, cfg: LossConfig, ref_logp=None, n_rows=None, n_tokens=None):
    """DAPO: one mean over every completion token in the batch (long sequences weigh by their length)."""
    terms, mask, stats = _token_terms(logp, old_logp, advantages, mask, cfg, ref_logp)
    return terms.sum() / (n_tokens or mask.sum().clamp(min=1.0)), stats


LossFn = Callable[..., tuple[Tensor, dict]]
#: loss name -> loss function.
LOSSES: dict[str, LossFn] = {"grpo": grpo_loss, "dr_grpo": dr_grpo_loss, "dapo": dapo_loss}
#: loss name -> how that method turns group rewards into advantages.
ADVANTAGES: dict[str, Callable[..., Tensor]] = {
    "grpo": group_normalised,
    "dr_grpo": group_centred,
    "dapo": group_normalised,
}
