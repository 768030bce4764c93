"""Tokenizer and Transformer: HF tokenizer equality, HF parameter names, cache / padding equivalences."""

from __future__ import annotations

import json
import string

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qstar.model.model import PRESETS, KVCache, ModelConfig, Transformer
from qstar.model.perf import (
    attention_flops,
    causal_pairs,
    configure_threads,
    forward_flops,
    matmul_peak_flops,
    train_flops,
)
from qstar.model.tokenizer import CharTokenizer

KNOWN = "".join(map(chr, range(32, 127))) + "\n"  # printable ASCII + newline: the whole character vocabulary
TOK = CharTokenizer()


@pytest.fixture(scope="module")
def hf_tok(tmp_path_factory):
    from transformers import AutoTokenizer

    d = tmp_path_factory.mktemp("tok")
    TOK.save(d)
    return AutoTokenizer.from_pretrained(d)


def test_tokenizer_vocabulary_golden():
    assert TOK.vocab_size == 100
    assert (TOK.pad_id, TOK.bos_id, TOK.eos_id, TOK.newline_id) == (0, 1, 2, 4)
    assert TOK.encode("a b\n") == [1, 70, 5, 71, 4]
    assert TOK.encode("~", bos=False, eos=True) == [99, 2]
    assert TOK.encode("é\t", bos=False) == [3, 3]
    assert TOK.decode([1, 38, 83, 88, 92, 74, 87, 31, 5, 25, 2, 0]) == "Answer: 4"


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=KNOWN, max_size=60))
def test_tokenizer_matches_hf_and_round_trips(hf_tok, text):
    ids = TOK.encode(text)
    assert hf_tok(text)["input_ids"] == ids
    assert TOK.decode(ids) == text == hf_tok.decode(ids, skip_special_tokens=True)
    assert len(ids) == len(text) + 1


@settings(max_examples=30, deadline=None)
@given(st.text(alphabet=string.printable + "é€\u2028😀", max_size=30))
def test_unknown_characters_map_to_unk_like_hf(hf_tok, text):
    ids = TOK.encode(text, bos=False)
    assert hf_tok(text, add_special_tokens=False)["input_ids"] == ids
    assert ids == [TOK.unk_id if c not in KNOWN else TOK.encode(c, bos=False)[0] for c in text]


def test_tokenizer_specials_in_text_are_plain_characters(hf_tok):
    # the chat template writes <bos> as text, so HF matches specials in text; sanitizing keeps a user's plain
    text = "<bos>x<eos>\n  <pad>"
    msgs = [{"role": "user", "content": text}]
    ids = hf_tok.apply_chat_template(msgs, add_generation_prompt=True, sanitize_control_tokens=True)["input_ids"]
    assert ids == TOK.encode(" ".join(text.split()) + "\n")
    assert hf_tok.decode(TOK.encode(text, eos=True), skip_special_tokens=True) == text
    assert (hf_tok.bos_token_id, hf_tok.eos_token_id, hf_tok.pad_token_id) == (1, 2, 0)


def test_load_rejects_other_vocabulary(tmp_path):
    TOK.save(tmp_path)
    data = json.loads((tmp_path / "tokenizer.json").read_text())
    data["model"]["vocab"]["~"] = 98
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="vocabulary differs"):
        CharTokenizer.load(tmp_path)


def _param_count(c: ModelConfig) -> int:
    hd = c.d_model // c.n_heads
    attn = 2 * c.d_model * c.n_heads * hd + 2 * c.d_model * c.n_kv_heads * hd
    per_layer = attn + 3 * c.d_model * c.ffn_hidden + 2 * c.d_model
    head = 0 if c.tie_embeddings else c.vocab_size * c.d_model
    return c.vocab_size * c.d_model + c.n_layers * per_layer + c.d_model + head


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_param_counts(name):
    cfg = ModelConfig.preset(name)
    assert Transformer(cfg).num_params() == _param_count(cfg)
    assert Transformer(ModelConfig.preset("tiny", tie_embeddings=False)).num_params() == _param_count(
        ModelConfig.preset("tiny", tie_embeddings=False)
    )


def test_bad_config_and_preset_errors():
    with pytest.raises(ValueError, match="unknown model preset 'huge'.*tiny"):
        ModelConfig.preset("huge")
    with pytest.raises(ValueError, match="n_kv_heads=3"):
        ModelConfig(n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="max_seq_len"):
        Transformer(ModelConfig.preset("tiny", max_seq_len=8))(torch.zeros(1, 9, dtype=torch.long))


def test_state_dict_names_match_hf_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    from qstar.model.checkpoint import hf_config

    cfg = ModelConfig.preset("tiny", n_kv_heads=2, tie_embeddings=False)
    ours = {k: v.shape for k, v in Transformer(cfg).state_dict().items()}
    hf_cfg = {k: v for k, v in hf_config(cfg, TOK).items() if k not in ("architectures", "model_type")}
    theirs = {k: v.shape for k, v in LlamaForCausalLM(LlamaConfig(**hf_cfg)).state_dict().items()}
    assert ours == theirs
    assert "model.layers.3.self_attn.k_proj.weight" in ours and ours["lm_head.weight"] == (128, 64)


def _model(**overrides) -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig.preset("tiny", **overrides)).eval()


@pytest.mark.parametrize("kv", [4, 2])
def test_kv_cache_incremental_equals_full_forward(kv):
    model = _model(n_kv_heads=kv)
    ids = torch.randint(0, 100, (2, 12))
    with torch.no_grad():
        full, hidden = model(ids, return_hidden=True)
        cache = KVCache(model.cfg, 2, 12)
        parts = [model(ids[:, :5], cache=cache)] + [model(ids[:, t : t + 1], cache=cache) for t in range(5, 12)]
    assert hidden.shape == (2, 12, 64) and full.shape == (2, 12, 128)
    assert cache.length == 12
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


def test_left_padding_with_positions_and_mask_equals_unpadded():
    model = _model()
    a, b = torch.randint(5, 100, (7,)), torch.randint(5, 100, (4,))
    ids = torch.stack([a, torch.cat([torch.zeros(3, dtype=torch.long), b])])
    valid = ids != 0
    valid[0] = True
    positions = (torch.arange(7) - (~valid).sum(1, keepdim=True)).clamp_min(0)
    with torch.no_grad():
        out = model(ids, positions=positions, attn_mask=valid)
        ref_a, ref_b = model(a[None])[0], model(b[None])[0]
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0], ref_a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1, 3:], ref_b, atol=1e-5, rtol=1e-5)


def test_backward_and_bf16_autocast():
    model = Transformer(ModelConfig.preset("tiny")).train()
    ids = torch.randint(0, 100, (2, 9))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(ids[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, 128), ids[:, 1:].reshape(-1))
    loss.backward()
    assert abs(loss.item() - torch.log(torch.tensor(128.0)).item()) < 0.1  # near-uniform at init
    assert model.model.embed_tokens.weight.grad is not None and model.lm_head.weight is model.model.embed_tokens.weight


def test_perf_helpers():
    assert forward_flops(1000, 10) == 20_000 and train_flops(1000, 10) == 60_000
    assert causal_pairs(2, 3) == 12  # each row: 1 + 2 + 3 query-key pairs
    assert attention_flops(4, 128, 12) == 4 * 4 * 128 * 12
    assert train_flops(1000, 10, attention=500.0) == 60_000 + 1500
    assert matmul_peak_flops(n=64, seconds=0.02) > 1e6
    assert configure_threads(1) == 1 == torch.get_num_threads()
