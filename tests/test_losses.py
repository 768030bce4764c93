"""GRPO / Dr. GRPO / DAPO losses against values computed by hand on a 2 x 3 batch."""

import doctest
import math

import pytest
import torch

import qstar.learn.losses as losses
from qstar.learn.losses import ADVANTAGES, LOSSES, LossConfig, group_centred, group_normalised

# Row 0: advantage +1, ratios 1.5, 0.5, 1.0 (3 tokens). Row 1: advantage -2, ratios 1.1, 0.7 and one padding token.
RATIOS = torch.tensor([[1.5, 0.5, 1.0], [1.1, 0.7, 1.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
ADV = torch.tensor([1.0, -2.0])
BASE = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -1.0, -4.0]])


def batch():
    logp = BASE.clone().requires_grad_(True)
    old = BASE - RATIOS.log()  # exp(logp - old) = RATIOS
    return logp, old


# Token terms with eps 0.2: row 0: -min(1.5, 1.2) = -1.2, -min(0.5, 0.8) = -0.5, -1.0  -> sum -2.7, mean -0.9
#                         row 1: -min(-2.2, -2.2) = 2.2, -min(-1.4, -1.6) = 1.6         -> sum  3.8, mean  1.9
@pytest.mark.parametrize(
    "name, cfg, expected",
    [
        ("grpo", LossConfig(clip_eps=0.2), (-0.9 + 1.9) / 2),
        ("dr_grpo", LossConfig(clip_eps=0.2, max_len=4), (-2.7 / 4 + 3.8 / 4) / 2),
        # clip-higher: 1.5 is clipped at 1.28, so row 0 sums to -2.78; one mean over the 5 real tokens
        ("dapo", LossConfig(clip_eps=0.2, clip_eps_high=0.28), (-2.78 + 3.8) / 5),
    ],
)
def test_loss_values_by_hand(name, cfg, expected):
    logp, old = batch()
    loss, stats = LOSSES[name](logp, old, ADV, MASK, cfg=cfg)
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    assert stats["kl"] == 0.0


def test_clip_fractions_and_zero_gradient_on_clipped_tokens():
    logp, old = batch()
    loss, stats = LOSSES["grpo"](logp, old, ADV, MASK, cfg=LossConfig(clip_eps=0.2))
    # clipped: row 0 token 0 (1.5 > 1.2 with A > 0), row 1 token 1 (0.7 < 0.8 with A < 0); 2 of 5 real tokens
    assert stats["clip_frac"] == pytest.approx(0.4)
    assert stats["clip_high_frac"] == pytest.approx(0.2) and stats["clip_low_frac"] == pytest.approx(0.2)
    assert stats["ratio_mean"] == pytest.approx((1.5 + 0.5 + 1.0 + 1.1 + 0.7) / 5)
    loss.backward()
    # d/dlogp of -A*r/n_tokens/B (r = exp(logp - old)): row 0 over 3 tokens, row 1 over 2, B = 2
    expected = torch.tensor([[0.0, -0.5 / 6, -1.0 / 6], [2.0 * 1.1 / 4, 0.0, 0.0]])
    assert torch.allclose(logp.grad, expected, atol=1e-6)


def test_dr_grpo_defaults_to_batch_width_and_dapo_weights_tokens():
    logp, old = batch()
    loss, _ = LOSSES["dr_grpo"](logp, old, ADV, MASK, cfg=LossConfig())
    assert loss.item() == pytest.approx((-2.7 + 3.8) / 3 / 2, abs=1e-5)
    # same per-token terms, different averaging: DAPO weighs the 3-token row more than GRPO does
    g, _ = LOSSES["grpo"](logp, old, ADV, MASK, cfg=LossConfig())
    d, _ = LOSSES["dapo"](logp, old, ADV, MASK, cfg=LossConfig())
    assert d.item() == pytest.approx((-2.7 + 3.8) / 5, abs=1e-5) and g.item() == pytest.approx(0.5, abs=1e-5)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradient_sign_on_policy(name):
    # On-policy (ratio 1): a positive advantage must raise every token's logp, a negative one lower it.
    logp = BASE.clone().requires_grad_(True)
    loss, stats = LOSSES[name](logp, logp.detach(), ADV, MASK, cfg=LossConfig())
    loss.backward()
    assert stats["clip_frac"] == 0.0 and stats["ratio_mean"] == pytest.approx(1.0)
    assert (logp.grad[0] < 0).all()  # gradient descent increases logp of the rewarded row
    assert (logp.grad[1, :2] > 0).all() and logp.grad[1, 2] == 0  # padding gets no gradient


def test_k3_kl_term():
    # ratio 1, zero advantages: the loss is beta * mean k3 with d = ref - logp; d = ln 2 gives 2 - ln 2 - 1.
    logp = torch.zeros(1, 2, requires_grad=True)
    ref = torch.tensor([[math.log(2.0), 0.0]])
    cfg = LossConfig(beta=0.1)
    loss, stats = LOSSES["grpo"](logp, logp.detach(), torch.zeros(1), torch.ones(1, 2), cfg=cfg, ref_logp=ref)
    k3 = 1.0 - math.log(2.0)
    assert stats["kl"] == pytest.approx(k3 / 2)
    assert loss.item() == pytest.approx(0.1 * k3 / 2)
    loss.backward()
    # d/dlogp of beta*(e^(ref-logp) - (ref-logp) - 1)/2 = beta*(1 - e^(ref-logp))/2: pulls logp toward ref
    assert logp.grad[0, 0].item() == pytest.approx(0.1 * (1 - 2.0) / 2) and logp.grad[0, 1].item() == 0.0
    with pytest.raises(ValueError, match="ref_logp"):
        LOSSES["grpo"](logp, logp.detach(), torch.zeros(1), torch.ones(1, 2), cfg=cfg)


def test_advantages():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5])
    a = group_normalised(r, 4, eps=0.0)
    std = math.sqrt((0.75**2 + 3 * 0.25**2) / 3)  # unbiased std of [1, 0, 0, 0]
    assert a[:4].tolist() == pytest.approx([0.75 / std, -0.25 / std, -0.25 / std, -0.25 / std])
    assert group_normalised(r, 4)[4:].tolist() == [0.0] * 4  # zero-variance group: no signal; eps avoids 0/0
    assert group_centred(r, 4).tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="groups of 3"):
        group_normalised(r, 3)


def test_registries_and_shape_errors():
    assert set(LOSSES) == set(ADVANTAGES) == {"grpo", "dr_grpo", "dapo"}
    assert ADVANTAGES["dr_grpo"] is group_centred
    with pytest.raises(ValueError, match="shape mismatch"):
        LOSSES["grpo"](torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), torch.ones(2, 3), cfg=LossConfig())
    assert doctest.testmod(losses).failed == 0


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_micro_batch_parts_sum_to_the_whole(name):
    # Row 1 alone and row 0 alone, each with the whole batch's normalisers, add up to the full loss and gradient.
    cfg = LossConfig(clip_eps=0.2, max_len=4)
    logp, old = batch()
    whole, _ = LOSSES[name](logp, old, ADV, MASK, cfg=cfg)
    whole.backward()
    parts_logp = BASE.clone().requires_grad_(True)
    total = 0.0
    for rows in ([0], [1]):
        part, _ = LOSSES[name](parts_logp[rows], old[rows], ADV[rows], MASK[rows], cfg=cfg, n_rows=2, n_tokens=5.0)
        part.backward()
        total += part.item()
    assert total == pytest.approx(whole.item(), abs=1e-6)
    assert torch.allclose(parts_logp.grad, logp.grad, atol=1e-7)
