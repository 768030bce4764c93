"""Optimizers: the batched Muon is torch's Muon, MuonAdamW splits parameters and resumes exactly."""

import pytest
import torch

from qstar.learn.optim import BatchedMuon, MuonAdamW, make_optimizer
from qstar.model.model import ModelConfig, Transformer

SHAPES = [(16, 16), (16, 16), (40, 16), (16, 40), (40, 16)]  # square, tall and wide, several of each shape


def _grads(params, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=g) for p in params]


@pytest.mark.parametrize("adjust", ["match_rms_adamw", "original"])
def test_batched_muon_matches_torch_muon(adjust):
    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(s)) for s in SHAPES]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    kw = dict(lr=0.02, weight_decay=0.1, adjust_lr_fn=adjust)
    opt, ref_opt = BatchedMuon(ours, **kw), torch.optim.Muon(ref, **kw)
    start = [p.detach().clone() for p in ours]
    for step in range(3):
        for p, q, g in zip(ours, ref, _grads(ours, step)):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        ref_opt.step()
    for p, q, s in zip(ours, ref, start):
        moved = (q - s).abs().max()
        assert moved > 0.01  # the comparison below means something
        # torch orthogonalises in bf16, this class in fp32: equal to bf16 rounding of the update
        assert (p - q).abs().max() < 0.05 * moved


def _model():
    torch.manual_seed(0)
    return Transformer(ModelConfig(vocab_size=32, d_model=16, n_layers=2, n_heads=2, n_kv_heads=2, max_seq_len=16))


def _train(model, opt, steps, seed):
    ids = torch.randint(0, 32, (4, 12), generator=torch.Generator().manual_seed(seed))
    for _ in range(steps):
        opt.zero_grad()
        logits = model(ids[:, :-1])
        torch.nn.functional.cross_entropy(logits.reshape(-1, 32), ids[:, 1:].reshape(-1)).backward()
        opt.step()


def test_muon_adamw_splits_parameters():
    model = _model()
    opt = MuonAdamW(model, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.0)
    muon = {id(p) for g in opt.muon.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        expect = p.ndim == 2 and "embed" not in name and "lm_head" not in name
        assert (id(p) in muon) == expect, name
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_muon_adamw_state_dict_resumes_exactly():
    straight = _model()
    opt = make_optimizer("muon", straight, lr=3e-3)
    _train(straight, opt, 6, seed=1)

    first = _model()
    opt1 = make_optimizer("muon", first, lr=3e-3)
    _train(first, opt1, 3, seed=1)
    state = {k: v.clone() for k, v in first.state_dict().items()}
    saved = opt1.state_dict()
    resumed = _model()
    resumed.load_state_dict(state)
    opt2 = make_optimizer("muon", resumed, lr=3e-3)
    opt2.load_state_dict(saved)
    _train(resumed, opt2, 3, seed=1)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_schedule_reaches_both_parts():
    opt = make_optimizer("muon", _model(), lr=1e-3)
    for group in opt.param_groups:
        group["lr"] = 5e-4
    assert all(g["lr"] == 5e-4 for g in opt.adamw.param_groups + opt.muon.param_groups)


def test_bad_names_and_states_are_clear():
    with pytest.raises(ValueError, match="adamw, muon"):
        make_optimizer("sgd", _model(), lr=1e-3)
    with pytest.raises(ValueError, match="another --optimizer"):
        make_optimizer("muon", _model(), lr=1e-3).load_state_dict({"state": {}, "param_groups": []})
