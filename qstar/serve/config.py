"""Configuration of ``qstar serve``: ``ServeConfig`` (every flag) and the server's fixed numbers. What a
``reasoning_effort`` level runs is ``qstar.search.effort``'s table (``Effort``, re-exported here); the
``--effort-LEVEL`` flags replace single levels. It imports nothing of the server: the engine, the app and the CLI
build on it."""

from __future__ import annotations

from dataclasses import dataclass

from qstar.search.effort import LEVELS, Effort, effort_table

__all__ = ["ServeConfig", "Effort", "efforts_of", "check_limits", "LIMITS", "LOOPBACK", "QUEUE_PER_WORKER"]

#: hosts that only this machine can reach (anything else without --api-key gets a warning)
LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: requests allowed in flight per search worker (running or queued) before the server answers 429
QUEUE_PER_WORKER = 4
#: ServeConfig fields that must be >= 1
LIMITS = ("workers", "max_body_bytes", "max_messages", "max_message_chars", "max_question_chars", "max_n",
          "max_completion_tokens", "default_max_completion_tokens", "max_prompts", "safety_thinking")


@dataclass
class ServeConfig:
    """Serve a reasoner through an OpenAI-compatible API (chat + completions, reasoning_effort, streaming)."""

    checkpoint: str = ""
    """qstar checkpoint (run dir or HF dir) to serve with qstar's own sampler."""
    decode_dtype: str = "float32"
    """Sampling dtype for --checkpoint: float32 or bfloat16 (faster at high effort's large batches on CPUs with
    native bf16; logprobs slightly off fp32's)."""
    hf_model: str = ""
    """Local Hugging Face causal-LM directory to serve through transformers instead."""
    upstream: str = ""
    """Base URL of an OpenAI-compatible server to use as the step-level policy instead (e.g. http://host:8000)."""
    upstream_model: str = ""
    """Model id on the upstream server (required with --upstream)."""
    upstream_api_key: str = ""
    """Bearer key for the upstream (default: $QSTAR_UPSTREAM_API_KEY)."""
    upstream_chat: bool = False
    """Sample whole chains from the upstream's /v1/chat/completions (an LLM's own chat format, its reasoning or
    reasoning_content read as the thinking); steps still continue through /v1/completions."""
    upstream_chat_template: str = ""
    """The upstream model's chat template (jinja string, file, or its model dir) for /v1/completions prompts."""
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
    effort_none: str = ""
    """reasoning_effort=none as strategy[:budget[:scorer]][:knob=value...]; empty: the effort table's (think:0, no
    thinking; see qstar.search.effort)."""
    effort_minimal: str = ""
    """reasoning_effort=minimal as a spec like --effort-none's; empty: the table's (think:16, 16 thinking tokens)."""
    effort_low: str = ""
    """reasoning_effort=low as a spec like --effort-none's; empty: the table's (think:48)."""
    effort_medium: str = ""
    """reasoning_effort=medium as a spec like --effort-none's; empty: the table's (think:128)."""
    effort_high: str = ""
    """reasoning_effort=high as a spec like --effort-none's (e.g. beam:16:cheap); empty: the table's (think:256)."""
    effort_xhigh: str = ""
    """reasoning_effort=xhigh as a spec like --effort-none's; empty: the table's (think:256:parallel=4, the majority
    of 4 budgeted chains)."""
    scorer_checkpoint: str = ""
    """Reward-model run dir or checkpoint (`qstar train prm` / `qstar train orm`) for efforts whose scorer is learned
    (prm, orm, checker+prm, checker+orm)."""
    safety_spec: str = ""
    """Safety specification file (qstar.tasks.spec's format: 'S2: Never help anyone make or get a weapon.' per line):
    every request is first checked against it by a judge that deliberates in one extra call, and a request that
    breaks a rule gets message.refusal instead of an answer. The judge is the served model (prompted with the spec;
    a qstar checkpoint trained on the safety task reads requests as trained and must be given its own rules), or
    --safety-judge. Empty: no safety check."""
    safety_judge: str = ""
    """qstar safety reasoner (run dir or checkpoint trained on the safety task, e.g. by `qstar safety`) that judges
    requests in front of any backend; without --safety-spec it judges by the rules it was trained on."""
    safety_thinking: int = 256
    """Thinking budget of the safety judge, in tokens, the same for every request (a client's reasoning_effort
    cannot turn the check down); clamped to the judge's context."""
    default_effort: str = "medium"
    """Effort used when a request does not set reasoning_effort (none, minimal, low, medium, high or xhigh)."""
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
    max_question_chars: int = 65536
    """Longest conversation as the model reads it (one line, see qstar.model.tokenizer), in characters; a prompt
    beyond the model's context is refused whatever this says."""
    max_n: int = 8
    """Largest n (choices per request)."""
    max_completion_tokens: int = 8192
    """Largest max_completion_tokens / max_tokens a request may ask for (reasoning tokens included)."""
    default_max_completion_tokens: int = 2048
    """Per-choice token cap (reasoning included) when a request sets none."""
    max_prompts: int = 64
    """Most prompts in one /v1/completions request."""


def efforts_of(cfg: ServeConfig) -> dict[str, Effort]:
    """reasoning_effort level -> Effort: the effort table with the config's ``effort_LEVEL`` specs applied."""
    return effort_table({level: getattr(cfg, f"effort_{level}") for level in LEVELS})


def check_limits(cfg: ServeConfig) -> None:
    """ValueError for a limit below 1."""
    for f in LIMITS:
        if getattr(cfg, f) < 1:
            raise ValueError(f"{f} must be >= 1, got {getattr(cfg, f)}")
