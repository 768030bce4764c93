"""Request parsing and errors in OpenAI's shapes. Everything a client sends is checked here, so bad input becomes a
4xx ``{"error": {"message", "type", "param", "code"}}`` and never reaches a search.

Chat requests: the whole conversation (system and developer messages, earlier turns) is passed on, rendered by the
model's chat template rule (``qstar.model.tokenizer.render_chat``: every message's text in one question line, so a
single user turn is exactly the trained prompt ``question\\n``). The LAST user message alone is what a task's
recogniser reads (``engine.make_problem``). Assistant history may carry its thinking as ``reasoning`` or
``reasoning_content`` (accepted, not shown to the model, as in every reasoning API). Size limits are ``ServeConfig``
fields; a prompt longer than the model's context is refused by the app (400 ``context_length_exceeded``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

__all__ = ["APIError", "REASONING_FIELDS", "ChatRequest", "CompletionRequest", "parse_json", "parse_chat",
           "parse_completion"]

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
#: where an assistant message carries its thinking: vLLM's name and DeepSeek's / llama.cpp's / SGLang's
REASONING_FIELDS = ("reasoning", "reasoning_content")


class APIError(Exception):
    """An error answered as ``{"error": {...}}`` with HTTP ``status``."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _bad(message: str, param: str | None = None, code: str = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def parse_json(body: bytes) -> dict:
    """A request body as a JSON object; 400 for anything else."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise _bad(f"request body is not valid JSON ({type(e).__name__})", code="invalid_json") from None
    if not isinstance(data, dict):
        raise _bad(f"request body must be a JSON object, got {type(data).__name__}", code="invalid_json")
    return data


def _int(data: dict, name: str, *, lo: int, hi: int, default: int | None) -> int | None:
    v = data.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise _bad(f"'{name}' must be an integer, got {type(v).__name__}", name, "invalid_type")
    if not lo <= v <= hi:
        raise _bad(f"'{name}' must be between {lo} and {hi}, got {v}", name)
    return v


def _num(data: dict, name: str, *, lo: float, hi: float, lo_open: bool = False) -> float | None:
    v = data.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _bad(f"'{name}' must be a number, got {type(v).__name__}", name, "invalid_type")
    if not math.isfinite(v) or not (lo < v if lo_open else lo <= v) or v > hi:
        raise _bad(f"'{name}' must be in {'(' if lo_open else '['}{lo}, {hi}], got {v}", name)
    return float(v)


def _bool(data: dict, name: str, default: bool = False) -> bool:
    v = data.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise _bad(f"'{name}' must be a boolean, got {type(v).__name__}", name, "invalid_type")
    return v


def _model(data: dict, served: str) -> str:
    v = data.get("model")
    if v is None:
        raise _bad("you must provide a 'model' parameter", "model", "missing_required_parameter")
    if not isinstance(v, str):
        raise _bad(f"'model' must be a string, got {type(v).__name__}", "model", "invalid_type")
    if v != served:
        raise APIError(404, f"The model {v[:100]!r} does not exist; this server serves {served!r}", param="model",
                       code="model_not_found")
    return v


def _text(content, where: str, max_chars: int) -> str:
    """Text of a message's content: a string or a list of {"type": "text", "text": ...} parts."""
    if content is None:
        return ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise _bad(f"{where}: only text content parts ({{'type': 'text', 'text': ...}}) are supported", where)
            parts.append(part["text"])
        content = "\n".join(parts)
    if not isinstance(content, str):
        raise _bad(f"{where} must be a string or a list of text parts, got {type(content).__name__}", where,
                   "invalid_type")
    if len(content) > max_chars:
        raise _bad(f"{where} is {len(content)} characters; the limit is {max_chars}", where, "string_above_max_length")
    return content


@dataclass
class ChatRequest:
    """A validated chat request. question: the last user message (one line); prompt: the whole conversation as the
    model reads it (``render_chat``, without its final newline). max_tokens: per-choice cap on generated tokens
    (reasoning + answer). thinking: the request's ``max_thinking_tokens`` (>= 1, not yet clamped to the model's
    context), None when unset."""

    question: str
    effort: str
    n: int
    max_tokens: int
    temperature: float | None
    top_p: float | None
    stream: bool
    include_usage: bool
    thinking: int | None = None
    prompt: str = ""


def _thinking(data: dict) -> int | None:
    """``max_thinking_tokens`` (or vLLM's name for it, ``thinking_token_budget``), checked as
    ``qstar.search.thinking.thinking_budget`` does; clamping to the model's context is the app's (it knows it)."""
    from qstar.search.thinking import thinking_budget

    given = [k for k in ("max_thinking_tokens", "thinking_token_budget") if data.get(k) is not None]
    if not given:
        return None
    if len(given) == 2 and data[given[0]] != data[given[1]]:
        raise _bad("give one of 'max_thinking_tokens' and 'thinking_token_budget' (they are the same setting)",
                   given[1])
    value = data[given[0]]
    try:
        return thinking_budget(value)[0]
    except ValueError as e:
        code = "invalid_type" if isinstance(value, bool) or not isinstance(value, int) else "invalid_value"
        raise _bad(str(e).replace("max_thinking_tokens", f"'{given[0]}'", 1), given[0], code) from None


def parse_chat(data: dict, cfg, *, served: str, efforts) -> ChatRequest:
    """Validate a /v1/chat/completions body against the limits in ``cfg`` (a ServeConfig)."""
    _model(data, served)
    msgs = data.get("messages")
    if msgs is None:
        raise _bad("you must provide a 'messages' parameter", "messages", "missing_required_parameter")
    if not isinstance(msgs, list) or not msgs:
        raise _bad("'messages' must be a non-empty array", "messages", "invalid_type")
    if len(msgs) > cfg.max_messages:
        raise _bad(f"'messages' has {len(msgs)} entries; the limit is {cfg.max_messages}", "messages")
    from qstar.model.tokenizer import render_chat

    question, history = None, []
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(f"{where} must be an object", where, "invalid_type")
        if m.get("role") not in ROLES:
            raise _bad(f"{where}.role must be one of {', '.join(ROLES)}, got {str(m.get('role'))[:40]!r}",
                       f"{where}.role")
        if "content" not in m and m["role"] != "assistant":
            raise _bad(f"{where}.content is required", f"{where}.content", "missing_required_parameter")
        text = _text(m.get("content"), f"{where}.content", cfg.max_message_chars)
        for field in REASONING_FIELDS if m["role"] == "assistant" else ():  # earlier thinking: checked, not shown
            _text(m.get(field), f"{where}.{field}", cfg.max_message_chars)
        if m["role"] == "user":
            question = text
        history.append({"role": m["role"], "content": text})
    if question is None:
        raise _bad("'messages' must contain a user message (the question)", "messages")
    question = " ".join(question.split())
    if not question:
        raise _bad("the last user message is empty", "messages")
    try:
        prompt = render_chat(history)[:-1]  # the template's rule; its final "\n" ends the question line
    except ValueError as e:
        raise _bad(str(e)[:300], "messages") from None
    if len(prompt) > cfg.max_question_chars:
        raise _bad(f"the conversation is {len(prompt)} characters as the model reads it; this server takes at most "
                   f"{cfg.max_question_chars} (--max-question-chars)", "messages", "string_above_max_length")
    effort = data.get("reasoning_effort")
    effort = cfg.default_effort if effort is None else effort
    if not isinstance(effort, str) or effort not in efforts:
        raise _bad(f"'reasoning_effort' must be one of {', '.join(efforts)}, got {str(effort)[:40]!r}",
                   "reasoning_effort")
    thinking = _thinking(data)
    cap = cfg.max_completion_tokens
    max_tokens = _int(data, "max_completion_tokens", lo=1, hi=cap, default=None)
    if max_tokens is None:
        max_tokens = _int(data, "max_tokens", lo=1, hi=cap, default=min(cap, cfg.default_max_completion_tokens))
    opts = data.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise _bad("'stream_options' must be an object", "stream_options", "invalid_type")
    return ChatRequest(
        question=question,
        prompt=prompt,
        effort=effort,
        n=_int(data, "n", lo=1, hi=cfg.max_n, default=1),  # type: ignore[arg-type]
        max_tokens=max_tokens,  # type: ignore[arg-type]
        temperature=_num(data, "temperature", lo=0.0, hi=2.0),
        top_p=_num(data, "top_p", lo=0.0, hi=1.0, lo_open=True),
        stream=_bool(data, "stream"),
        include_usage=_bool(opts or {}, "include_usage"),
        thinking=thinking,
    )


@dataclass
class CompletionRequest:
    """A validated /v1/completions request (raw continuation of qstar model text).

    prompts: (question, partial chain) per prompt string: the text up to its first "\\n" is the question, the
    rest the partial chain (a prompt without "\\n" is a bare question). stop_at_step: "\\n" was among the stops;
    stops: other stop strings, applied by truncation. logprobs: None or the requested top count (only the sampled
    token's log-probability is returned).
    """

    prompts: list[tuple[str, str]]
    n: int
    max_tokens: int
    temperature: float
    top_p: float
    stop_at_step: bool
    stops: list[str]
    logprobs: int | None


def parse_completion(data: dict, cfg, *, served: str) -> CompletionRequest:
    """Validate a /v1/completions body against the limits in ``cfg``."""
    _model(data, served)
    prompt = data.get("prompt")
    if prompt is None:
        raise _bad("you must provide a 'prompt' parameter", "prompt", "missing_required_parameter")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise _bad("'prompt' must be a string or a non-empty array of strings", "prompt", "invalid_type")
    if len(prompts) > cfg.max_prompts:
        raise _bad(f"'prompt' has {len(prompts)} entries; the limit is {cfg.max_prompts}", "prompt")
    parsed = []
    for p in prompts:
        if len(p) > cfg.max_message_chars:
            raise _bad(f"a prompt is {len(p)} characters; the limit is {cfg.max_message_chars}", "prompt",
                       "string_above_max_length")
        question, _, partial = p.partition("\n")
        parsed.append((question, partial))
    stop = data.get("stop")
    stops = [stop] if isinstance(stop, str) else ([] if stop is None else stop)
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise _bad("'stop' must be a non-empty string or an array of up to 4 of them", "stop", "invalid_type")
    if _bool(data, "echo"):
        raise _bad("'echo' is not supported", "echo")
    if _bool(data, "stream"):
        raise _bad("streaming is not supported on /v1/completions (use stream on /v1/chat/completions)", "stream")
    lp = data.get("logprobs")
    lp = 0 if lp is True else None if lp is False else _int(data, "logprobs", lo=0, hi=5, default=None)
    temperature, top_p = _num(data, "temperature", lo=0.0, hi=2.0), _num(data, "top_p", lo=0.0, hi=1.0, lo_open=True)
    return CompletionRequest(
        prompts=parsed,
        n=_int(data, "n", lo=1, hi=cfg.max_n, default=1),  # type: ignore[arg-type]
        max_tokens=_int(data, "max_tokens", lo=0, hi=cfg.max_completion_tokens, default=16),  # type: ignore[arg-type]
        temperature=1.0 if temperature is None else temperature,
        top_p=1.0 if top_p is None else top_p,
        stop_at_step="\n" in stops,
        stops=[s for s in stops if s != "\n"],
        logprobs=lp,
    )
