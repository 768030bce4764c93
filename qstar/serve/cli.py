"""``qstar serve``: any reasoner behind an o1-style OpenAI-compatible API.

    qstar serve --checkpoint runs/sft                      # qstar's own model
    qstar serve --hf-model ~/models/qwen                   # any local Hugging Face causal LM
    qstar serve --upstream http://gpu:8000 --upstream-model Qwen/Qwen2.5-0.5B   # vLLM/SGLang/Ollama/another qstar
    qstar serve --checkpoint runs/safety/seed0/rl --safety-spec qstar/tasks/specs/default.txt   # refuse by a spec

then ``openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=...)`` and ``reasoning_effort="high"``.
"""

from __future__ import annotations

import os

from qstar.serve.config import LOOPBACK, ServeConfig

__all__ = ["ServeConfig", "run_serve", "load_policy"]


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
                        max_retries=cfg.upstream_retries, chat=cfg.upstream_chat,
                        chat_template=cfg.upstream_chat_template)


def run_serve(cfg: ServeConfig) -> int:
    """Load the policy and serve until interrupted."""
    import uvicorn

    from qstar.serve.app import create_app

    if not cfg.api_key and os.environ.get("QSTAR_API_KEY"):
        cfg.api_key = os.environ["QSTAR_API_KEY"]
    if cfg.host not in LOOPBACK and not cfg.api_key:
        print(f"qstar serve: warning: listening on {cfg.host} without --api-key")
    from qstar.serve.safety import spec_of

    spec_of(cfg)  # a bad --safety-spec fails before a (slow) model load
    app = create_app(load_policy(cfg), cfg)  # validates efforts, limits and the safety judge before binding
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info")
    return 0
