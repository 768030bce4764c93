"""Inference-only forward pass with fused weights, used by the sampler.

Same function as :meth:`Transformer.forward` (to float rounding) with fewer, larger ops, because at qstar's sizes
per-op overhead and memory traffic, not FLOPs, dominate decoding on a CPU:

- q/k/v and gate/up projections are fused into one matmul each, with weights pre-transposed to [in, out];
- RMSNorm gains are folded into the following matmul's weights, and 1/sqrt(head_dim) into the query weights;
- residual adds ride on the output projections (``addmm``);
- RoPE is one complex multiply on rotary-ordered q/k channels, as in :class:`qstar.model.model.Attention` (so the
  KV cache layout is the model's);
- single-token decoding attends with two batched matmuls over the cache instead of building 4-D masks.

``dtype=torch.bfloat16`` keeps the weights, activations and KV cache in bf16 (RoPE, softmax, the final norm and the
output head stay fp32, so logits and logprobs are fp32 numbers of a bf16 forward). On CPUs with AVX512-BF16 the
weight matmuls run 3-4x faster and the cache, which decoding at large batch streams from memory once per token,
is half the bytes. Sampled logprobs then differ from the fp32 training forward by ~1e-2: fine for search and for
GRPO (which recomputes its old logprobs in fp32), not for tests that compare the two exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from qstar.model.model import KVCache, Transformer, causal_mask


class FastForward:
    """Fused-weight snapshot of a :class:`Transformer` (rebuild it after the weights change)."""

    def __init__(self, model: Transformer, dtype: torch.dtype | None = None) -> None:
        cfg = self.cfg = model.cfg
        self.dtype = dtype or model.lm_head.weight.dtype
        # Decoding reads the cache as [rows, columns, hd] blocks. A filled prefix [:, :S] is a strided batch, and the
        # fp32 batched matmul ran ~1.4x slower on it than on the whole (zero-initialised, masked) cache once S passed
        # a quarter of it; bf16's kernel was the other way round (A/B at batch 256, LOG.md 2026-12-02).
        self.full_cache_from = 0.25 if self.dtype == torch.float32 else float("inf")
        D, H, Hkv, hd = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.dims = (D, H, Hkv, hd, cfg.ffn_hidden)
        with torch.no_grad():
            scale = model.lm_head.weight.new_ones((H + 2 * Hkv) * hd, 1)
            scale[: H * hd] = hd**-0.5  # attention's 1/sqrt(hd), on the queries
            self.layers = []
            for layer in model.model.layers:
                a, m = layer.self_attn, layer.mlp
                qkv = a.qkv_weight() * scale * layer.input_layernorm.weight
                gate_up = torch.cat([m.gate_proj.weight, m.up_proj.weight]) * layer.post_attention_layernorm.weight
                ws = (qkv, a.o_proj.weight, gate_up, m.down_proj.weight)
                self.layers.append(tuple(w.t().to(self.dtype).contiguous() for w in ws))  # [in, out] for x @ w
            self.head = (model.lm_head.weight * model.model.norm.weight).t().contiguous()  # [D, V], model dtype
            self.embed = model.model.embed_tokens.weight.detach().to(self.dtype)
            self.rope = model.rope_cis  # [max_seq_len, hd/2]

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        return KVCache(self.cfg, batch, max_len, dtype=self.dtype, device=self.head.device)

    def decode_bias(self, key_valid: Tensor) -> Tensor:
        """Additive attention bias [B*n_kv_heads, 1, S] (0 or -inf) from key_valid [B,S] bool, for T=1 calls."""
        bias = torch.zeros(key_valid.shape, dtype=self.head.dtype, device=key_valid.device)  # scores are fp32
        bias.masked_fill_(~key_valid, -torch.inf)
        return bias.repeat_interleave(self.cfg.n_kv_heads, dim=0).unsqueeze(1)

    def __call__(
        self, ids: Tensor, positions: Tensor, cache: KVCache, *, key_valid: Tensor | None = None,
        bias: Tensor | None = None,
    ) -> Tensor:
        """Logits [B,V] of the last position after appending ``ids`` [B,T] to ``cache``.

        positions: [B,T] rotary positions (int64).
        key_valid: [B,S] bool over the cache columns after this call (False = padding); None = no padding.
        bias: for T=1, :meth:`decode_bias` of key_valid (at least S columns; precompute it once per batch).
        """
        D, H, Hkv, hd, ffn = self.dims
        B, T = ids.shape
        start, S = cache.length, cache.length + T
        BT, G, nqk = B * T, H // Hkv, (H + Hkv) * hd
        x = F.embedding(ids.reshape(BT), self.embed)
        rot = self.rope[positions.reshape(BT)].unsqueeze(1)  # [BT,1,hd/2]
        if T == 1:
            if bias is None and key_valid is not None:
                bias = self.decode_bias(key_valid)
        else:
            mask = causal_mask(T, start, key_valid, ids.device)
        for i, (w_qkv, w_o, w_gu, w_down) in enumerate(self.layers):
            qkv = F.rms_norm(x, (D,), None, self.cfg.norm_eps) @ w_qkv  # [BT, (H+2Hkv)*hd]
            qk = torch.view_as_complex(qkv[:, :nqk].float().reshape(BT, H + Hkv, hd // 2, 2)) * rot
            qk = torch.view_as_real(qk).view(BT, H + Hkv, hd).to(qkv.dtype)
            v = qkv[:, nqk:].view(B, T, Hkv, hd)
            K, V = cache.layer(i)  # [B,Hkv,max_len,hd] each
            k = qk[:, H:].view(B, T, Hkv, hd)
            K[:, :, start:S] = k.transpose(1, 2)
            V[:, :, start:S] = v.transpose(1, 2)
            if T == 1:
                q = qk[:, :H].reshape(B * Hkv, G, hd)
                Kr, Vr = K.view(B * Hkv, -1, hd), V.view(B * Hkv, -1, hd)
                W = Kr.shape[1] if S >= self.full_cache_from * Kr.shape[1] else S
                # K @ q^T rather than q @ K^T: the same products, and bf16's batched kernel was 2x faster this way
                scores = torch.bmm(Kr[:, :W], q.transpose(1, 2)).transpose(1, 2).float()  # [B*Hkv, G, W], fp32
                if W > S:
                    scores[:, :, S:] = -torch.inf
                if bias is not None:
                    scores += bias[:, :, :W]
                p = scores.softmax(dim=-1).to(x.dtype)
                o = torch.bmm(p, Vr[:, :W]).view(B, H * hd)
            else:
                q = qk[:, :H].view(B, T, H, hd).transpose(1, 2)
                if start:  # attend over the cache; on an empty cache the new keys/values are everything
                    k, v = K[:, :, :S], V[:, :, :S]
                else:
                    k, v = k.transpose(1, 2), v.transpose(1, 2)
                o = F.scaled_dot_product_attention(  # prefill in fp32 (CPU's bf16 kernel was slower)
                    q.float(), k.float(), v.float(), attn_mask=mask, is_causal=mask is None, scale=1.0, enable_gqa=G > 1
                ).transpose(1, 2).reshape(BT, H * hd).to(x.dtype)
            x = torch.addmm(x, o, w_o)
            gu = F.rms_norm(x, (D,), None, self.cfg.norm_eps) @ w_gu  # [BT, 2*ffn]
            x = torch.addmm(x, F.silu(gu[:, :ffn]).mul_(gu[:, ffn:]), w_down)
        cache.length = S
        last = x.view(B, T, D)[:, -1]
        return F.rms_norm(last.to(self.head.dtype), (D,), None, self.cfg.norm_eps) @ self.head

