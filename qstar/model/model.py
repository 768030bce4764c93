"""A Llama-style decoder in plain PyTorch whose state dict maps 1:1 onto Hugging Face ``LlamaForCausalLM``.

RMSNorm, rotary embeddings (HF's ``rotate_half`` convention, computed as one complex multiply), SwiGLU MLP,
``F.scaled_dot_product_attention``, optional grouped-query attention and tied embeddings. Parameter names are HF's
(``model.embed_tokens.weight``, ``model.layers.{i}.self_attn.q_proj.weight``, ..., ``model.norm.weight``,
``lm_head.weight``), so a checkpoint is a valid HF model directory (see ``qstar.model.checkpoint``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class ModelConfig:
    """Architecture of a :class:`Transformer`. Field names are qstar's; checkpoint.py maps them to LlamaConfig."""

    vocab_size: int = 128
    """Embedding rows; ids >= the tokenizer's 100 are unused (128 keeps matmuls aligned)."""
    d_model: int = 128
    """Residual stream width (HF hidden_size)."""
    n_layers: int = 4
    """Decoder blocks (HF num_hidden_layers)."""
    n_heads: int = 4
    """Query heads; head_dim = d_model // n_heads."""
    n_kv_heads: int = 4
    """Key/value heads (< n_heads means grouped-query attention); must divide n_heads."""
    ffn_hidden: int = 512
    """SwiGLU hidden width (HF intermediate_size)."""
    max_seq_len: int = 512
    """Longest sequence (prompt + generation) in tokens; sizes the rotary table."""
    rope_theta: float = 10000.0
    """Rotary base frequency."""
    norm_eps: float = 1e-5
    """RMSNorm epsilon."""
    tie_embeddings: bool = True
    """Share the input embedding with the output projection (lm_head)."""

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model={self.d_model} must split into n_heads={self.n_heads} heads of even size")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_kv_heads={self.n_kv_heads} must divide n_heads={self.n_heads}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def preset(cls, name: str, **overrides) -> ModelConfig:
        """A named size from :data:`PRESETS` with optional field overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown model preset {name!r}; choose from {sorted(PRESETS)}")
        return replace(PRESETS[name], **overrides)


PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(d_model=64, n_layers=4, n_heads=4, n_kv_heads=4, ffn_hidden=176),  # 0.21M, for tests
    # Full multi-head attention: with one shared key/value head (GQA 4:1) 3x3 multiplication SFT reached loss 0.24
    # in 300 s against 0.12 with four (LOG.md, 2026-11-22); "base" keeps GQA 4:2 for cheaper decoding.
    "small": ModelConfig(d_model=128, n_layers=4, n_heads=4, n_kv_heads=4, ffn_hidden=512),  # 1.07M
    "base": ModelConfig(d_model=256, n_layers=4, n_heads=8, n_kv_heads=2, ffn_hidden=704),  # 2.85M
}


class KVCache:
    """Preallocated keys and values for all layers; columns ``[0, length)`` are filled.

    k, v: [n_layers, B, n_kv_heads, max_len, head_dim]. A forward pass with a cache writes its T new columns at
    ``length`` and advances ``length`` by T. Key channels are in :func:`rotary_order` (see :class:`Attention`), so
    a cache belongs to qstar's forward passes only.
    """

    def __init__(self, cfg: ModelConfig, batch: int, max_len: int, *, dtype=torch.float32, device=None) -> None:
        if max_len > cfg.max_seq_len:
            raise ValueError(f"cache length {max_len} exceeds max_seq_len={cfg.max_seq_len}")
        shape = (cfg.n_layers, batch, cfg.n_kv_heads, max_len, cfg.head_dim)
        # zeros, not empty: decoding may multiply unfilled columns (masked to -inf) and 0 * garbage can be NaN
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.length = 0

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    def _new(self, k: Tensor, v: Tensor) -> KVCache:
        new = KVCache.__new__(KVCache)
        new.k, new.v, new.length = k, v, self.length
        return new

    def rows(self, start: int, stop: int) -> KVCache:
        """A cache over batch rows ``start:stop`` sharing this cache's memory (writes land here too)."""
        return self._new(self.k[:, start:stop], self.v[:, start:stop])

    def select(self, rows: Tensor, *, max_len: int | None = None) -> KVCache:
        """A new cache holding batch rows ``rows`` (int64 [B']; repeats allowed, e.g. to share a prompt's prefill
        among its samples), optionally with room for ``max_len`` columns."""
        if max_len is None or max_len == self.max_len:
            return self._new(self.k.index_select(1, rows), self.v.index_select(1, rows))
        if max_len < self.length:
            raise ValueError(f"max_len={max_len} is shorter than the {self.length} filled columns")
        n, shape = self.length, list(self.k.shape)
        shape[1], shape[3] = len(rows), max_len
        k, v = self.k.new_zeros(shape), self.v.new_zeros(shape)
        k[:, :, :, :n] = self.k[:, :, :, :n].index_select(1, rows)
        v[:, :, :, :n] = self.v[:, :, :, :n].index_select(1, rows)
        return self._new(k, v)

    def layer(self, i: int) -> tuple[Tensor, Tensor]:
        """Layer i's (keys, values), each [B, n_kv_heads, max_len, head_dim]."""
        return self.k[i], self.v[i]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


def rotary_order(n_heads: int, head_dim: int) -> Tensor:
    """Channel order taking HF's half-split rotary pairs (i, i + hd/2) of every head to adjacent pairs (2j, 2j+1)."""
    half = head_dim // 2
    within = torch.stack([torch.arange(half), torch.arange(half) + half], dim=1).flatten()
    return (torch.arange(n_heads)[:, None] * head_dim + within).flatten()


def apply_rope(x: Tensor, rope: Tensor) -> Tensor:
    """Rotate x [..., n, hd] (adjacent-pair channel order) by rope, complex [..., 1, hd/2]; returns float32 or x's
    dtype if wider. One complex multiply instead of HF's rotate_half (two copies, four elementwise ops)."""
    if x.dtype not in (torch.float32, torch.float64):  # no bf16 complex type: rotate in float32
        x = x.float()
    xc = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * rope).flatten(-2)


class Attention(nn.Module):
    """Grouped-query attention with HF Llama's parameters.

    The projections use q/k weight rows reordered from HF's half-split rotary pairs to adjacent pairs
    (:func:`rotary_order`, a cheap gather of weight rows), so RoPE is one complex multiply. Reordering q and k alike
    leaves every q.k product, hence the output, unchanged (a KV cache holds keys in this order).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_heads * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=False)
        self.register_buffer("q_order", rotary_order(cfg.n_heads, cfg.head_dim), persistent=False)
        self.register_buffer("k_order", rotary_order(cfg.n_kv_heads, cfg.head_dim), persistent=False)

    def qkv_weight(self) -> Tensor:
        """Fused [(H + 2*Hkv) * hd, D] weight: rotary-ordered q rows, rotary-ordered k rows, then v rows."""
        wq, wk = self.q_proj.weight[self.q_order], self.k_proj.weight[self.k_order]
        return torch.cat([wq, wk, self.v_proj.weight])

    def forward(self, x: Tensor, rope: Tensor, mask: Tensor | None, kv: tuple[Tensor, Tensor] | None, start: int):
        """x [B,T,D]; rope complex [T|B,T,1,hd/2]; mask bool [B|1,1,T,S] or None (causal);
        kv: this layer's cache (KVCache.layer) or None; start: cache columns already filled."""
        B, T, _ = x.shape
        H, Hkv, hd = self.n_heads, self.n_kv_heads, self.head_dim
        # Separate projections, not one fused matmul: slicing a fused output costs more in the backward pass.
        q = apply_rope(F.linear(x, self.q_proj.weight[self.q_order]).unflatten(-1, (H, hd)), rope).transpose(1, 2)
        k = apply_rope(F.linear(x, self.k_proj.weight[self.k_order]).unflatten(-1, (Hkv, hd)), rope).transpose(1, 2)
        v = self.v_proj(x).unflatten(-1, (Hkv, hd)).transpose(1, 2)
        if kv is not None:
            kc, vc = kv
            kc[:, :, start : start + T] = k
            vc[:, :, start : start + T] = v
            if start:  # attend over the whole cache; on an empty cache the new keys/values are everything
                k, v = kc[:, :, : start + T], vc[:, :, : start + T]
        causal = mask is None and T > 1
        if torch.is_autocast_enabled("cpu"):  # under bf16 autocast, attend in fp32: the CPU's bf16 attention
            with torch.autocast("cpu", enabled=False):  # backward ran 3.6x slower than the fp32 one
                y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask, is_causal=causal,
                                                   enable_gqa=Hkv != H)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=Hkv != H)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.ffn_hidden, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.ffn_hidden, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_hidden, cfg.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, rope, mask, kv, start):
        x = x + self.self_attn(self.input_layernorm(x), rope, mask, kv, start)
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    """HF's ``LlamaModel``: embeddings, blocks, final norm (named ``model`` inside :class:`Transformer`)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)


class Transformer(nn.Module):
    """Causal language model. ``forward(ids [B,T]) -> logits [B,T,vocab_size]``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = Decoder(cfg)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float32) / cfg.head_dim))
        freqs = torch.outer(torch.arange(cfg.max_seq_len, dtype=torch.float32), inv_freq)
        # cos + i sin of HF's fp32 angles, [max_seq_len, head_dim/2]. Not persistent: the state dict holds exactly
        # HF's parameters.
        self.register_buffer("rope_cis", torch.complex(freqs.cos(), freqs.sin()), persistent=False)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):  # GPT-2 style: keep the residual stream O(1)
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def num_params(self) -> int:
        """Distinct parameters (a tied embedding counts once)."""
        return sum(p.numel() for p in self.parameters())

    def rope(self, T: int, start: int, positions: Tensor | None) -> Tensor:
        """Rotations for positions ``start..start+T`` (complex [T,1,hd/2]) or ``positions`` [B,T] ([B,T,1,hd/2])."""
        if positions is None:
            end = start + T
            if end > self.cfg.max_seq_len:
                raise ValueError(f"sequence of {end} tokens exceeds max_seq_len={self.cfg.max_seq_len}")
            return self.rope_cis[start:end, None]
        if positions.numel() and int(positions.max()) >= self.cfg.max_seq_len:
            raise ValueError(f"position {int(positions.max())} exceeds max_seq_len={self.cfg.max_seq_len}")
        return self.rope_cis[positions].unsqueeze(-2)

    def hidden(
        self,
        ids: Tensor,
        *,
        positions: Tensor | None = None,
        cache: KVCache | None = None,
        attn_mask: Tensor | None = None,
    ) -> Tensor:
        """Final normed hidden state [B,T,D]. See :meth:`forward` for the arguments."""
        B, T = ids.shape
        start = 0 if cache is None else cache.length
        S = start + T
        if cache is not None and (S > cache.max_len or B != cache.batch):
            raise ValueError(f"cache holds {cache.batch} rows x {cache.max_len} columns; got {B} x {start}+{T}")
        x = self.model.embed_tokens(ids)
        rope = self.rope(T, start, positions)
        mask = causal_mask(T, start, attn_mask, ids.device)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, rope, mask, None if cache is None else cache.layer(i), start)
        if cache is not None:
            cache.length = S
        return self.model.norm(x)

    def forward(
        self,
        ids: Tensor,
        *,
        positions: Tensor | None = None,
        cache: KVCache | None = None,
        attn_mask: Tensor | None = None,
        return_hidden: bool = False,
    ):
        """Logits [B,T,V] for token ids [B,T] (int64), or (logits, hidden [B,T,D]) with ``return_hidden``.

        positions: [B,T] rotary positions (default ``cache.length + arange(T)``), e.g. per-row offsets for
            left-padded batches.
        cache: a :class:`KVCache`; the new keys/values are appended and attention covers all filled columns.
        attn_mask: [B,S] bool, True where key column s holds a real token (False = padding), S = cache.length + T
            (T without a cache). Combined with causality; a query always sees itself so padded rows stay finite.
        """
        h = self.hidden(ids, positions=positions, cache=cache, attn_mask=attn_mask)
        logits = self.lm_head(h)
        return (logits, h) if return_hidden else logits


def causal_mask(T: int, start: int, key_valid: Tensor | None, device) -> Tensor | None:
    """Boolean SDPA mask [B|1,1,T,S] (True = attend), or None when plain causal attention (or full, T=1) is right."""
    if key_valid is None and (start == 0 or T == 1):
        return None
    S = start + T
    if key_valid is not None and key_valid.shape[-1] != S:
        raise ValueError(f"attn_mask covers {key_valid.shape[-1]} key columns, expected {S}")
    if T == 1:
        return key_valid[:, None, None, :]
    q_pos = torch.arange(start, S, device=device)[:, None]
    k_pos = torch.arange(S, device=device)[None, :]
    mask = k_pos <= q_pos  # [T,S]
    if key_valid is None:
        return mask[None, None]
    return (mask & key_valid[:, None, None, :]) | (k_pos == q_pos)
