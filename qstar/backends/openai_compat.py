"""``OpenAIPolicy``: any OpenAI-compatible server (vLLM, SGLang, Ollama, another ``qstar serve``) as a Policy.

Continuations use the raw-text ``POST /v1/completions`` endpoint (chat endpoints cannot continue a partial chain):
prompt = ``prompt_template.format(question=...)`` + partial chain, ``stop=["\\n"]`` for one step, ``logprobs=0`` for
the sampled tokens' log-probabilities where the server provides them. All prompts x n of one ``sample`` call go in
one request (``prompt`` as a list), unless ``batch_prompts=False`` for servers that take a single prompt.

OpenAI-style servers strip the stop string and do not report the <eos> token, so a step continuation gets its
"\\n" back, and the stop token is counted in ``n_tokens`` with log-probability 0.0 (unknown) appended.

Failures: 5xx / 408 / 429, timeouts and connection errors are retried with exponential backoff (``Retry-After``
honoured up to ``backoff_max_s``); other 4xx fail at once. Either way the caller gets an :class:`UpstreamError`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import httpx

from qstar.model.types import Completion, Prompt, check_sample_args
from qstar.tasks.format import ANSWER_PREFIX, STEP_END, clean_line

__all__ = ["OpenAIPolicy", "UpstreamError"]

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


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
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"upstream URL must start with http:// or https:// (got {base_url!r})")
        if max_retries < 0 or timeout <= 0:
            raise ValueError("need max_retries >= 0 and timeout > 0")
        root = base_url.rstrip("/")
        self.url = (root if root.endswith("/v1") else root + "/v1") + "/completions"
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
        texts = [self.render(Prompt(*p)) for p in prompts]
        n_req = 1 if temperature == 0 else n  # greedy copies are identical; some servers reject greedy with n > 1
        body = {"model": self.name, "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "n": n_req,
                **({"stop": [STEP_END]} if stop_at_step else {}), **({"logprobs": 0} if self.logprobs else {})}
        groups = [texts] if self.batch_prompts else [[t] for t in texts]
        rows: list[list[Completion]] = []
        for group in groups:
            rows += self._parse(self._post({**body, "prompt": group}), len(group), n_req, stop_at_step)
        if n_req != n:
            rows = [[row[0]] + [Completion(row[0].text, list(row[0].logprobs), row[0].n_tokens, 0, row[0].finish)
                                for _ in range(n - 1)] for row in rows]
        return rows

    def _post(self, body: dict) -> dict:
        """POST with retries; returns the decoded JSON object."""
        last, status, transport = "", None, False
        for attempt in range(self.max_retries + 1):
            delay = min(self.backoff_max_s, self.backoff_s * 2**attempt)
            try:
                r = self._client.post(self.url, json=body)
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
                        raise UpstreamError(f"{self.url}: response is not a JSON object", status=status,
                                            attempts=attempt + 1)
                    return data
                last = f"HTTP {r.status_code}: {r.text[:300]}"
                if r.status_code not in RETRY_STATUS:
                    raise UpstreamError(f"{self.url} rejected the request ({last})", status=status,
                                        attempts=attempt + 1)
                delay = min(self.backoff_max_s, max(delay, _retry_after(r)))
            if attempt < self.max_retries:
                time.sleep(delay)
        raise UpstreamError(f"{self.url} failed after {self.max_retries + 1} attempts ({last})", status=status,
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
