"""``qstar serve``: any reasoner behind an o1-style OpenAI-compatible API.

    qstar serve --checkpoint runs/sft                      # qstar's own model
    qstar serve --hf-model ~/models/qwen                   # any local Hugging Face causal LM
    qstar serve --upstream http://gpu:8000 --upstream-model Qwen/Qwen2.5-0.5B   # vLLM/SGLang/Ollama/another qstar

then ``openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=...)`` and ``reasoning_effort="high"``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["ServeConfig", "run_serve", "load_policy", "efforts_of"]


@dataclass
class ServeConfig:
    """Serve a reasoner through an OpenAI-compatible API (chat + completions, reasoning_effort, streaming)."""

    checkpoint: str = ""
    """qstar checkpoint (run dir or HF dir) to serve with qstar's own sampler."""
    decode_dtype: str = "float32"
    """Sampling dtype for --checkpoint: float32 or bfloat16 (faster at high effort's large batches on CPUs with
    AVX512-BF16; logprobs ~1e-2 from fp32's)."""
    hf_model: str = ""
    """Local Hugging Face causal-LM directory to serve through transformers instead."""
    upstream: str = ""
    """Base URL of an OpenAI-compatible server to use as the step-level policy instead (e.g. http://host:8000)."""
    upstream_model: str = ""
    """Model id on the upstream server (required with --upstream)."""
    upstream_api_key: str = ""
    """Bearer key for the upstream (default: $QSTAR_UPSTREAM_API_KEY)."""
    upstream_timeout_s: float = 60.0
    """Seconds per upstream request before it counts as failed (and is retried)."""
    upstream_retries: int = 3
    """Retries after the first attempt on upstream 5xx/429/timeouts/connection errors (exponential backoff)."""
    name: str = ""
    """Model id served in /v1/models and expected in requests (default: the checkpoint dir name or upstream model)."""
    host: str = "127.0.0.1"
    """Interface to bind; keep loopback unless an API key is set."""
    port: int = 8000
    """TCP port."""
    api_key: str = ""
    """Require 'Authorization: Bearer KEY' on /v1 endpoints (default: $QSTAR_API_KEY; empty = no auth)."""
    device: str = "cpu"
    """Torch device for local models."""
    effort_low: str = "greedy:1"
    """reasoning_effort=low as strategy[:budget[:scorer]]."""
    effort_medium: str = "majority:4"
    """reasoning_effort=medium as strategy[:budget[:scorer]]."""
    effort_high: str = "weighted_best_of_n:16:checker"
    """reasoning_effort=high as strategy[:budget[:scorer]] (e.g. beam:16:checker)."""
    default_effort: str = "medium"
    """Effort used when a request does not set reasoning_effort."""
    max_batch: int = 64
    """Most rows (prompts x samples) merged from concurrent requests into one policy call."""
    max_wait_ms: float = 5.0
    """Longest a policy call waits for concurrent calls to batch with."""
    workers: int = 64
    """Searches running at once (threads); further requests queue."""
    request_timeout_s: float = 300.0
    """A search still running after this many seconds is stopped (HTTP 504)."""
    max_body_bytes: int = 1 << 20
    """Largest request body accepted (HTTP 413 beyond)."""
    max_messages: int = 64
    """Most messages in a chat request."""
    max_message_chars: int = 16384
    """Longest message content / completions prompt, in characters."""
    max_question_chars: int = 400
    """Longest question (last user message, whitespace collapsed) in characters."""
    max_n: int = 8
    """Largest n (choices per request)."""
    max_completion_tokens: int = 8192
    """Largest max_completion_tokens / max_tokens a request may ask for (reasoning tokens included)."""
    default_max_completion_tokens: int = 2048
    """Per-choice token cap (reasoning included) when a request sets none."""
    max_prompts: int = 64
    """Most prompts in one /v1/completions request."""


def efforts_of(cfg: ServeConfig) -> dict:
    """reasoning_effort level -> Effort, from the config's specs."""
    from qstar.serve.engine import Effort

    return {"low": Effort.parse(cfg.effort_low), "medium": Effort.parse(cfg.effort_medium),
            "high": Effort.parse(cfg.effort_high)}


def load_policy(cfg: ServeConfig):
    """The Policy named by exactly one of --checkpoint / --hf-model / --upstream."""
    chosen = [f for f in ("checkpoint", "hf_model", "upstream") if getattr(cfg, f)]
    if len(chosen) != 1:
        raise ValueError("give exactly one of --checkpoint DIR, --hf-model DIR, --upstream URL "
                         f"(got {', '.join('--' + c.replace('_', '-') for c in chosen) or 'none'})")
    if cfg.checkpoint:
        from qstar.model.policy import load_policy as policy_of

        # torch's global generator: many users' requests interleave in one policy, so no private stream would replay
        return policy_of(cfg.checkpoint, dtype=cfg.decode_dtype, seed=None)
    if cfg.hf_model:
        from qstar.backends.hf import HFPolicy

        return HFPolicy.from_pretrained(cfg.hf_model, device=cfg.device)
    if not cfg.upstream_model:
        raise ValueError("--upstream needs --upstream-model (the model id on that server)")
    from qstar.backends.openai_compat import OpenAIPolicy

    key = cfg.upstream_api_key or os.environ.get("QSTAR_UPSTREAM_API_KEY") or None
    return OpenAIPolicy(cfg.upstream, cfg.upstream_model, api_key=key, timeout=cfg.upstream_timeout_s,
                        max_retries=cfg.upstream_retries)


def run_serve(cfg: ServeConfig) -> int:
    """Load the policy and serve until interrupted."""
    import uvicorn

    from qstar.serve.app import create_app

    if not cfg.api_key and os.environ.get("QSTAR_API_KEY"):
        cfg.api_key = os.environ["QSTAR_API_KEY"]
    if cfg.host not in ("127.0.0.1", "localhost", "::1") and not cfg.api_key:
        print(f"qstar serve: warning: listening on {cfg.host} without --api-key")
    app = create_app(load_policy(cfg), cfg)  # validates efforts and limits before binding
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info")
    return 0
