"""``OpenAIPolicy``: any OpenAI-compatible server (vLLM, SGLang, Ollama, another ``qstar serve``) as a Policy.

Whole chains (no partial chain, not one step) go to ``POST /v1/chat/completions`` with ``chat=True``: the question
as the user message, ``n`` samples per request (servers that return fewer choices are asked again for the rest); the
reply's thinking is read from ``message.reasoning`` or ``message.reasoning_content`` and its ``content`` follows it,
both split into one-line steps by :func:`split_steps`. Continuations (a partial chain, one step) use the raw-text
``POST /v1/completions`` endpoint (chat endpoints cannot continue a partial chain): prompt = the chat template
rendered with the question as the user turn (``chat_template``: a jinja string, a template file or a model
directory; ``qstar.model.tokenizer.render_chat``), else ``prompt_template.format(question=...)``, then the partial
chain; ``stop=["\\n"]`` for one step, ``logprobs=0`` for the sampled tokens' log-probabilities where the server
provides them. All prompts x n of one ``sample`` call go in one request (``prompt`` as a list), unless
``batch_prompts=False`` for servers that take a single prompt.

Steps in free LLM text (:func:`split_steps`, the one rule): paragraphs separated by blank lines are steps, and inside
a paragraph a line that opens a numbered item ("1.", "2)", "Step 3:") starts a new step; each step is collapsed to one
line, empty ones dropped.

OpenAI-style servers strip the stop string and do not report the <eos> token, so a step continuation gets its
"\\n" back, and the stop token is counted in ``n_tokens`` with log-probability 0.0 (unknown) appended.

Failures: 5xx / 408 / 429, timeouts and connection errors are retried with exponential backoff (``Retry-After``
honoured up to ``backoff_max_s``); other 4xx fail at once. Either way the caller gets an :class:`UpstreamError`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from qstar.model.types import Completion, Prompt, check_sample_args
from qstar.tasks.format import ANSWER_PREFIX, STEP_END, clean_line

__all__ = ["OpenAIPolicy", "UpstreamError", "split_steps"]

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_NUMBERED = re.compile(r"\s*(?:step\s*\d+\s*[:.)]|\d+\s*[.)])(?:\s|$)", re.IGNORECASE)


def split_steps(text: str) -> list[str]:
    """One-line steps of free LLM text (the rule in the module docstring). Never raises.

    >>> split_steps("First, add.\\nThen carry.\\n\\n1. x = 2\\n2) y = 3\\nso y > x")
    ['First, add. Then carry.', '1. x = 2', '2) y = 3 so y > x']
    """
    steps: list[str] = []
    for para in re.split(r"\n[ \t\r\f\v]*\n", str(text)):
        current: list[str] = []
        for line in para.split("\n"):
            if current and _NUMBERED.match(line):
                steps.append(" ".join(current))
                current = []
            current.append(line)
        steps.append(" ".join(current))
    return [s for s in (clean_line(s) for s in steps) if s]


def _template(spec: str) -> tuple[str, str]:
    """(jinja template, bos token) from a template string, a template file or a model directory's tokenizer files."""
    path = Path(spec) if len(spec) < 4096 and "{" not in spec else None
    if path is not None and path.is_dir():
        try:
            cfg = json.loads((path / "tokenizer_config.json").read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: no readable tokenizer_config.json with a chat template ({e})") from None
        bos = cfg.get("bos_token")
        bos = bos.get("content", "") if isinstance(bos, dict) else bos or ""
        if not isinstance(cfg.get("chat_template"), str):
            raise ValueError(f"{path}/tokenizer_config.json has no chat template")
        return cfg["chat_template"], bos
    if path is not None and path.is_file():
        return path.read_text(), ""
    return spec, ""


class UpstreamError(RuntimeError):
    """The upstream server failed (after retries where retrying made sense).

    status: last HTTP status (None when no response came back). transport: True when the last failure was a
    timeout or connection error (the upstream is unreachable rather than misbehaving). attempts: requests made.
    """

    def __init__(self, message: str, *, status: int | None = None, transport: bool = False, attempts: int = 1):
        super().__init__(message)
        self.status, self.transport, self.attempts = status, transport, attempts


class OpenAIPolicy:
    """Policy backed by an OpenAI-compatible ``/v1/completions`` endpoint.

    base_url: server root, with or without the trailing ``/v1``. model: the upstream model id.
    timeout: seconds per request. max_retries: extra attempts after the first on retryable failures.
    backoff_s: first retry delay, doubled per attempt, capped at backoff_max_s.
    params: parameter count for the FLOPs ledger (0 = unknown).
    chat: sample whole chains through /v1/chat/completions (an LLM's own chat format and thinking).
    chat_template: the model's chat template (jinja string, file, or model dir) for /v1/completions prompts.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff_s: float = 0.25,
        backoff_max_s: float = 4.0,
        logprobs: bool = True,
        prompt_template: str = "{question}" + STEP_END,
        batch_prompts: bool = True,
        params: int = 0,
        transport: httpx.BaseTransport | None = None,
        chat: bool = False,
        chat_template: str = "",
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"upstream URL must start with http:// or https:// (got {base_url!r})")
        if max_retries < 0 or timeout <= 0:
            raise ValueError("need max_retries >= 0 and timeout > 0")
        root = base_url.rstrip("/")
        self.url = (root if root.endswith("/v1") else root + "/v1") + "/completions"
        self.chat_url = self.url.removesuffix("/completions") + "/chat/completions"
        self.chat = chat
        self.template = _template(chat_template) if chat_template else None
        self.name, self.params = model, params
        self.max_retries, self.backoff_s, self.backoff_max_s = max_retries, backoff_s, backoff_max_s
        self.logprobs, self.prompt_template, self.batch_prompts = logprobs, prompt_template, batch_prompts
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers, transport=transport)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIPolicy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def render(self, prompt: Prompt) -> str:
        if self.template is not None:
            from qstar.model.tokenizer import render_chat

            template, bos = self.template
            messages = [{"role": "user", "content": clean_line(prompt.question)}]
            return render_chat(messages, bos=bos, template=template) + prompt.partial
        return self.prompt_template.format(question=clean_line(prompt.question)) + prompt.partial

    def sample(
        self,
        prompts: Sequence[Prompt],
        *,
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_tokens: int = 256,
        stop_at_step: bool = False,
    ) -> list[list[Completion]]:
        """``n`` completions per prompt, shape [len(prompts)][n]. Raises UpstreamError when the server fails."""
        check_sample_args(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens)
        if not prompts:
            return []
        if max_tokens == 0:
            return [[Completion("", finish="length") for _ in range(n)] for _ in prompts]
        n_req = 1 if temperature == 0 else n  # greedy copies are identical; some servers reject greedy with n > 1
        if self.chat and not stop_at_step and not any(Prompt(*p).partial for p in prompts):
            rows = [self._chat(Prompt(*p).question, n_req, temperature, top_p, max_tokens) for p in prompts]
        else:
            rows = self._complete([self.render(Prompt(*p)) for p in prompts], n_req, temperature, top_p, max_tokens,
                                  stop_at_step)
        if n_req != n:
            rows = [[row[0]] + [Completion(row[0].text, list(row[0].logprobs), row[0].n_tokens, 0, row[0].finish)
                                for _ in range(n - 1)] for row in rows]
        return rows

    def _chat(self, question: str, n: int, temperature: float, top_p: float, max_tokens: int) -> list[Completion]:
        """``n`` whole chains for one question from /v1/chat/completions, asking again while choices are missing."""
        out: list[Completion] = []
        while len(out) < n:
            body = {"model": self.name, "messages": [{"role": "user", "content": clean_line(question)}],
                    "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "n": n - len(out)}
            data = self._post(body, self.chat_url)
            choices = data.get("choices")
            if not isinstance(choices, list) or not choices:
                raise UpstreamError(f"{self.chat_url}: no choices in the response")
            usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
            tokens = int(usage.get("completion_tokens") or 0) // len(choices)
            for ch in choices[: n - len(out)]:
                msg = ch.get("message") if isinstance(ch, dict) else None
                if not isinstance(msg, dict):
                    raise UpstreamError(f"{self.chat_url}: malformed choice {str(ch)[:200]}")
                thinking = next((msg[k] for k in ("reasoning", "reasoning_content") if isinstance(msg.get(k), str)),
                                "")
                content = msg.get("content") if isinstance(msg.get("content"), str) else ""
                text = STEP_END.join(split_steps(thinking) + split_steps(content))
                finish = "length" if ch.get("finish_reason") == "length" else "eos"
                prompt = int(usage.get("prompt_tokens") or 0) if not out else 0
                out.append(Completion(text, [], tokens or len(text), prompt, finish))
        return out

    def _complete(self, texts: list[str], n_req: int, temperature: float, top_p: float, max_tokens: int,
                  stop_at_step: bool) -> list[list[Completion]]:
        body = {"model": self.name, "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "n": n_req,
                **({"stop": [STEP_END]} if stop_at_step else {}), **({"logprobs": 0} if self.logprobs else {})}
        groups = [texts] if self.batch_prompts else [[t] for t in texts]
        rows: list[list[Completion]] = []
        for group in groups:
            try:
                data = self._post({**body, "prompt": group})
            except UpstreamError as e:
                if e.status == 404:  # a chat-only server, or a model it does not serve: say both, with its words
                    raise UpstreamError(f"{self.url}: 404 ({e}): the server does not serve model {self.model!r}, or "
                                        "offers no /v1/completions, which continuing a partial chain needs "
                                        "(step-level strategies, think's forced answer); whole-chain strategies "
                                        "with chat=True need only chat", status=404, attempts=e.attempts) from None
                raise
            rows += self._parse(data, len(group), n_req, stop_at_step)
        return rows

    def _post(self, body: dict, url: str | None = None) -> dict:
        """POST with retries; returns the decoded JSON object."""
        last, status, transport, url = "", None, False, url or self.url
        for attempt in range(self.max_retries + 1):
            delay = min(self.backoff_max_s, self.backoff_s * 2**attempt)
            try:
                r = self._client.post(url, json=body)
            except httpx.TransportError as e:  # timeouts, refused/reset connections, protocol errors
                last, status, transport = f"{type(e).__name__}: {e}", None, True
            else:
                status, transport = r.status_code, False
                if r.status_code < 400:
                    try:
                        data = r.json()
                    except ValueError:
                        data = None
                    if not isinstance(data, dict):
                        raise UpstreamError(f"{url}: response is not a JSON object", status=status,
                                            attempts=attempt + 1)
                    return data
                last = f"HTTP {r.status_code}: {r.text[:300]}"
                if r.status_code not in RETRY_STATUS:
                    raise UpstreamError(f"{url} rejected the request ({last})", status=status,
                                        attempts=attempt + 1)
                delay = min(self.backoff_max_s, max(delay, _retry_after(r)))
            if attempt < self.max_retries:
                time.sleep(delay)
        raise UpstreamError(f"{url} failed after {self.max_retries + 1} attempts ({last})", status=status,
                            transport=transport, attempts=self.max_retries + 1)

    def _parse(self, data: dict, n_prompts: int, n: int, stop_at_step: bool) -> list[list[Completion]]:
        choices = data.get("choices")
        if not isinstance(choices, list) or len(choices) != n_prompts * n:
            raise UpstreamError(f"{self.url}: expected {n_prompts * n} choices, got "
                                f"{len(choices) if isinstance(choices, list) else type(choices).__name__}")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        prompt_share = int(usage.get("prompt_tokens") or 0) // n_prompts
        total_chars = sum(len(str(c.get("text", ""))) if isinstance(c, dict) else 0 for c in choices) or 1
        rows: list[list[Completion | None]] = [[None] * n for _ in range(n_prompts)]
        for pos, ch in enumerate(choices):
            if not isinstance(ch, dict) or not isinstance(ch.get("text"), str):
                raise UpstreamError(f"{self.url}: malformed choice {str(ch)[:200]}")
            idx = ch.get("index", pos)
            idx = idx if isinstance(idx, int) and 0 <= idx < n_prompts * n else pos
            text, finish = ch["text"], _finish(ch, stop_at_step)
            if finish == "step" and not text.endswith(STEP_END):
                text += STEP_END
            lp = _token_logprobs(ch.get("logprobs"))
            if lp is not None:
                if finish != "length":
                    lp.append(0.0)  # the stripped stop token / <eos>: generated, log-probability not reported
                count = len(lp)
            else:
                lp = []
                count = round(int(usage.get("completion_tokens") or 0) * len(ch["text"]) / total_chars)
            # the upstream reads each prompt once for its n samples, so only the first sample carries the prompt
            rows[idx // n][idx % n] = Completion(text, lp, count, prompt_share if idx % n == 0 else 0, finish)
        if any(c is None for row in rows for c in row):
            raise UpstreamError(f"{self.url}: duplicate choice indices in the response")
        return rows  # type: ignore[return-value]


def _finish(choice: dict, stop_at_step: bool) -> str:
    """Map OpenAI's finish_reason (+ vLLM's stop_reason) to "step" | "eos" | "length"."""
    if choice.get("finish_reason") == "length":
        return "length"
    if not stop_at_step:
        return "eos"
    if "stop_reason" in choice:  # vLLM / qstar: the matched stop string, or None for <eos>
        return "step" if choice["stop_reason"] == STEP_END else "eos"
    last_line = choice["text"].rsplit(STEP_END, 1)[-1]  # plain OpenAI: an answer line means the chain ended
    return "eos" if last_line.startswith(ANSWER_PREFIX) else "step"


def _token_logprobs(lp) -> list[float] | None:
    """The sampled tokens' log-probabilities from a completions ``logprobs`` object, or None when absent."""
    vals = lp.get("token_logprobs") if isinstance(lp, dict) else None
    if not isinstance(vals, list):
        return None
    return [float(v) if isinstance(v, (int, float)) else 0.0 for v in vals]


def _retry_after(r: httpx.Response) -> float:
    try:
        return max(0.0, float(r.headers.get("retry-after", 0)))
    except ValueError:
        return 0.0
