"""The HTTP layer: routes in OpenAI's shapes over a :class:`~qstar.serve.engine.Reasoner`. A :class:`ServeApp`
holds one server's state (shared policy, reasoner, config, search pool, stats) and its methods are the route
handlers; ``create_app`` builds one and registers them on a FastAPI app.

POST /v1/chat/completions  o1-style: ``message.content`` = the answer; the chosen chain's thinking as both
                           ``message.reasoning`` (vLLM's name) and ``message.reasoning_content`` (DeepSeek's,
                           llama.cpp's, SGLang's); ``message.refusal`` (null unless ``Reasoner.refusal`` refused);
                           ``usage.completion_tokens_details.reasoning_tokens``. ``stream: true`` sends the thinking
                           in deltas carrying the same two fields, then the answer as ``delta.content``: a search
                           that decodes one chain (``think`` at n=1, the default table) streams each line as the
                           model writes it; one that samples many chains at once (parallel, beam, best-of-N, n > 1)
                           streams a progress line per policy call and each chosen chain when the search ends.
                           With ``--safety-spec`` a judge checks each request first (``qstar.serve.safety``): a
                           refused one has ``message.refusal`` set, ``content`` null and the judge's deliberation as
                           its reasoning; ``usage.safety_check`` counts the extra call, answered or refused.
                           ``reasoning_effort`` is one of the effort table's levels (``qstar.search.effort``);
                           ``max_completion_tokens`` (legacy ``max_tokens``) caps thinking + answer;
                           ``max_thinking_tokens`` (vLLM's ``thinking_token_budget``) caps the thinking instead,
                           clamped to the model's context with a note in ``qstar.notes`` and ``X-Qstar-Note``. The
                           whole conversation is passed on (``protocol``); one longer than the model's context is a
                           400 ``context_length_exceeded``.
POST /v1/completions       raw continuation of qstar model text ("question\\npartial chain"), so another qstar or
                           :class:`~qstar.backends.openai_compat.OpenAIPolicy` can use this server step by step.
GET  /v1/models, GET /health.

Searches run in a thread pool (the event loop never blocks); their policy calls meet in one
:class:`~qstar.serve.batching.BatchingPolicy`, so concurrent users share batched forward passes.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from qstar.backends.openai_compat import UpstreamError
from qstar.model.types import Completion, Policy, Prompt
from qstar.search.thinking import thinking_budget
from qstar.serve.batching import BatchingPolicy
from qstar.serve.config import QUEUE_PER_WORKER, ServeConfig, check_limits, efforts_of
from qstar.serve.engine import Cancelled, Reasoner, SearchTimeout, split_reasoning
from qstar.serve.protocol import APIError, parse_chat, parse_completion, parse_json
from qstar.serve.safety import judge_of
from qstar.tasks.format import ANSWER_PREFIX, STEP_END

__all__ = ["create_app", "ServeApp"]
log = logging.getLogger("qstar.serve")


def _finite(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def _search_error(e: BaseException) -> APIError:
    """The API error for a failure inside a search (bad input is caught earlier, in protocol.py)."""
    if isinstance(e, APIError):
        return e
    if isinstance(e, UpstreamError) and e.status in (400, 413, 422):
        # the upstream rejected this request's content (e.g. longer than its context): the client's input, so a 4xx
        return APIError(400, f"the upstream model rejected the request: {e}"[:500], code="upstream_rejected_request")
    if isinstance(e, UpstreamError):
        status = 503 if e.transport else 502
        return APIError(status, f"upstream model server failed: {e}", type="upstream_error",
                        code="upstream_unavailable" if e.transport else "upstream_error")
    if isinstance(e, Cancelled):
        return APIError(499, "the client closed the request", code="client_closed_request")
    if isinstance(e, SearchTimeout):
        return APIError(504, "the search did not finish within the server's time limit", type="timeout_error",
                        code="timeout")
    if isinstance(e, ValueError):  # qstar raises ValueError for input it cannot handle (e.g. longer than the context)
        return APIError(400, str(e)[:500], code="invalid_value")
    log.error("search failed", exc_info=e)
    return APIError(500, f"internal error ({type(e).__name__})", type="server_error", code="internal_error")


class ServeApp:
    """One server's state and its route handlers: the shared (batching) policy, the reasoner, the config, the
    search pool and request stats. Raises ValueError for a bad config (unknown effort, oracle scorer, ...)."""

    def __init__(self, policy: Policy, config: ServeConfig) -> None:
        check_limits(config)
        self.config, self.efforts = config, efforts_of(config)
        if config.default_effort not in self.efforts:
            raise ValueError(f"default_effort {config.default_effort!r} is not one of {', '.join(self.efforts)}")
        self.policy = policy if isinstance(policy, BatchingPolicy) else BatchingPolicy(
            policy, max_batch=config.max_batch, max_wait_ms=config.max_wait_ms)
        self.judge = judge_of(self.policy, config)  # a bad spec stops here, before any port is bound
        self.reasoner = Reasoner(self.policy, self.efforts, scorer_checkpoint=config.scorer_checkpoint,
                                 judge=self.judge)
        self.served = config.name or policy.name
        self.pool = ThreadPoolExecutor(config.workers, thread_name_prefix="qstar-search")
        self.started = int(time.time())
        self.inflight = 0  # requests running or queued in the pool

    @asynccontextmanager
    async def lifespan(self, app: FastAPI):
        yield
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.policy.close()
        if self.judge is not None and self.judge.policy is not self.policy:  # --safety-judge's own
            self.judge.policy.close()

    # -- errors ---------------------------------------------------------------------------------------------------
    async def api_error(self, request: Request, e: APIError):
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else {"Retry-After": "1"} if e.status == 429 else {}
        return JSONResponse(e.body(), status_code=e.status, headers=headers)

    async def http_error(self, request: Request, e: StarletteHTTPException):
        msg = f"{request.method} {request.url.path}: {e.detail}"
        return JSONResponse(APIError(e.status_code, msg).body(), status_code=e.status_code)

    async def validation_error(self, request: Request, e: RequestValidationError):
        return JSONResponse(APIError(400, f"invalid request: {e.errors()[:3]}").body(), status_code=400)

    async def crash(self, request: Request, e: Exception):
        log.error("unhandled error", exc_info=e)
        return JSONResponse(APIError(500, "internal error", type="server_error").body(), status_code=500)

    # -- request plumbing -----------------------------------------------------------------------------------------
    def authorize(self, request: Request) -> None:
        if not self.config.api_key:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.config.api_key.encode()):
            raise APIError(401, "Incorrect or missing API key; send 'Authorization: Bearer <key>'",
                           code="invalid_api_key")

    async def read_json(self, request: Request) -> dict:
        self.authorize(request)
        limit = self.config.max_body_bytes
        size = request.headers.get("content-length", "")
        too_big = APIError(413, f"request body exceeds {limit} bytes", code="request_too_large")
        if size.isdigit() and int(size) > limit:
            raise too_big
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_big
        return parse_json(bytes(body))

    async def in_pool(self, fn, cancelled=None):
        """Run ``fn`` in the search pool; 429 when too many requests are already waiting."""
        if self.inflight >= QUEUE_PER_WORKER * self.config.workers:
            raise APIError(429, "server busy: too many requests in flight, retry shortly", type="rate_limit_error",
                           code="server_busy")
        self.inflight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn)
        except asyncio.CancelledError:
            if cancelled is not None:
                cancelled.set()
            raise
        finally:
            self.inflight -= 1

    # -- routes ---------------------------------------------------------------------------------------------------
    async def health(self):
        return {"status": "ok", "model": self.served, "efforts": {k: vars(e) for k, e in self.efforts.items()},
                "batching": dict(self.policy.stats)}

    async def models(self, request: Request):
        self.authorize(request)
        return {"object": "list", "data": [{"id": self.served, "object": "model", "created": self.started,
                                            "owned_by": "qstar"}]}

    async def chat(self, request: Request):
        req = parse_chat(await self.read_json(request), self.config, served=self.served, efforts=self.efforts)
        context, used = self.reasoner.context, self.reasoner.prompt_tokens(req.prompt)
        if context is not None and used >= context:  # refused whole, never cut: the model would answer another text
            raise APIError(400, f"this model's context is {context} tokens; the conversation takes {used} before any "
                                "reasoning", param="messages", code="context_length_exceeded")
        too_long = self.judge.overflow(req.prompt) if self.judge is not None else None
        if too_long:  # the judge's prompt (the spec, the conversation) is never cut either
            raise APIError(400, too_long, param="messages", code="context_length_exceeded")
        cancelled = threading.Event()
        deadline = time.monotonic() + self.config.request_timeout_s
        thinking, note = (None, None) if req.thinking is None else thinking_budget(req.thinking, self.reasoner.context)
        eff = self.reasoner.plan(req.effort, thinking)[0]
        meta = {"effort": req.effort, "strategy": eff.strategy, "budget": eff.budget, "scorer": eff.scorer}
        if eff.options:
            meta["options"] = eff.options
        if note:  # a clamped thinking budget: said in the response (and its header), never silently
            meta["notes"] = [note]
        headers = {"X-Qstar-Note": note} if note else {}
        kwargs = dict(effort=req.effort, n=req.n, max_tokens=req.max_tokens, thinking=thinking, prompt=req.prompt,
                      temperature=req.temperature, top_p=req.top_p, deadline=deadline, cancelled=cancelled)
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if req.stream:
            return await self.stream(req, kwargs, meta, cid, created, headers)
        try:
            results, usage = await self.in_pool(lambda: self.reasoner.run(req.question, **kwargs), cancelled)
        except APIError:
            raise
        except Exception as e:
            raise _search_error(e) from None
        choices = [{"index": i, "message": _message(r), "logprobs": None, "finish_reason": _finish(r)}
                   for i, r in enumerate(results)]
        meta |= {"scores": [_finite(r.score) for r in results], "flops": sum(r.ledger.flops for r in results)}
        return JSONResponse({"id": cid, "object": "chat.completion", "created": created, "model": self.served,
                             "choices": choices, "usage": usage, "system_fingerprint": None, "qstar": meta},
                            headers=headers)

    async def stream(self, req, kwargs, meta, cid, created, headers):
        """The chat response as server-sent events: search progress, the chains, the answers, [DONE]."""
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()

        def post(kind, item):
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, item))
            except RuntimeError:  # the loop is gone (server shutting down)
                kwargs["cancelled"].set()

        def work():
            try:
                post("done", self.reasoner.run(req.question, on_progress=lambda ev: post("progress", ev),
                                               on_step=(lambda text: post("step", text)) if req.n == 1 else None,
                                               **kwargs))
            except BaseException as e:  # noqa: B036 - every failure must reach the client
                post("error", e)

        task = asyncio.ensure_future(self.in_pool(work, kwargs["cancelled"]))
        getter = asyncio.ensure_future(queue.get())
        await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
        if not getter.done():
            try:
                await task  # finished without posting: refused (429) before the search started
            except BaseException:
                getter.cancel()
                raise
        first = await getter  # failures before any progress still get a proper HTTP status
        if first[0] == "error":
            await task
            raise _search_error(first[1])
        base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": self.served,
                "system_fingerprint": None}

        def chunk(delta: dict, index: int = 0, finish: str | None = None) -> str:
            return _sse({**base, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                              "finish_reason": finish}]})

        async def events():
            try:
                for i in range(req.n):
                    yield chunk({"role": "assistant", "content": ""}, i)
                live, answered = "", False  # thinking lines streamed while the search ran (one chain, n = 1)
                kind, item = first
                while kind in ("progress", "step"):
                    if kind == "progress" and item["rows"] > 1:  # many chains at once: say what the search does
                        yield chunk(_thinking(f"[search] {meta['strategy']}@{meta['budget']}: call {item['calls']}, "
                                              f"{item['rows']} samples, {item['tokens']}/{item['cap']} tokens\n"))
                    elif kind == "step" and not answered:
                        # a finished thinking line goes out now; the answer line (or a cut last line) is the end
                        answered = item.startswith(ANSWER_PREFIX) or not item.endswith(STEP_END)
                        if not answered:  # lines joined by "\n" as in message.reasoning (no trailing newline)
                            line = ("\n" if live else "") + item[:-1]
                            live += line
                            yield chunk(_thinking(line))
                    kind, item = await queue.get()
                if kind == "error":
                    yield _sse(_search_error(item).body())
                    return
                results, usage = item
                for i, r in enumerate(results):
                    message = _message(r)
                    if message["refusal"] is not None:
                        for line in (message["reasoning"] or "").splitlines(keepends=True):  # the judge's thinking
                            yield chunk(_thinking(line), i)
                        yield chunk({"refusal": message["refusal"]}, i)
                        yield chunk({}, i, _finish(r))
                        continue
                    thinking = message["reasoning"]
                    if i == 0 and live:  # the rest of the streamed chain, or (another chain won) the chosen one
                        same = thinking == live or thinking.startswith(live + STEP_END)
                        thinking = thinking[len(live):] if same else "\n[search] the chosen chain:\n" + thinking
                    for line in thinking.splitlines(keepends=True):
                        yield chunk(_thinking(line), i)
                    if r.answer is not None:
                        yield chunk({"content": r.answer}, i)
                    yield chunk({}, i, _finish(r))
                if req.include_usage:
                    yield _sse({**base, "choices": [], "usage": usage})
                yield "data: [DONE]\n\n"
            finally:
                kwargs["cancelled"].set()  # a client that went away stops the search at its next policy call

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers})

    async def completions(self, request: Request):
        req = parse_completion(await self.read_json(request), self.config, served=self.served)
        prompts = [Prompt(q, p) for q, p in req.prompts]
        shared = self.policy

        def work():
            if req.max_tokens == 0:
                return [[Completion("", finish="length") for _ in range(req.n)] for _ in prompts]
            with shared.session():
                return shared.sample(prompts, n=req.n, temperature=req.temperature, top_p=req.top_p,
                                     max_tokens=req.max_tokens, stop_at_step=req.stop_at_step)

        try:
            rows = await self.in_pool(work)
        except APIError:
            raise
        except Exception as e:
            raise _search_error(e) from None
        choices = [_text_choice(c, i * req.n + j, req, shared) for i, row in enumerate(rows) for j, c in enumerate(row)]
        prompt_tokens = sum(c.prompt_tokens for row in rows for c in row)
        completion_tokens = sum(c.n_tokens for row in rows for c in row)
        return {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
                "model": self.served, "choices": choices, "usage": {"prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}}


def create_app(policy: Policy, config: ServeConfig | None = None) -> FastAPI:
    """An ASGI app serving ``policy``: a ``ServeApp`` with its handlers registered as the routes. Raises ValueError
    for a bad config (unknown effort, oracle scorer, ...)."""
    server = ServeApp(policy, config or ServeConfig())
    app = FastAPI(title="qstar", version="0.1", lifespan=server.lifespan, docs_url=None, redoc_url=None)
    app.state.server = server
    app.state.policy, app.state.reasoner, app.state.config = server.policy, server.reasoner, server.config
    app.add_exception_handler(APIError, server.api_error)
    app.add_exception_handler(StarletteHTTPException, server.http_error)
    app.add_exception_handler(RequestValidationError, server.validation_error)
    app.add_exception_handler(Exception, server.crash)
    app.add_api_route("/health", server.health, methods=["GET"])
    app.add_api_route("/v1/models", server.models, methods=["GET"])
    app.add_api_route("/v1/chat/completions", server.chat, methods=["POST"])
    app.add_api_route("/v1/completions", server.completions, methods=["POST"])
    return app


def _sse(obj) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def _thinking(text: str) -> dict:
    """A delta of thinking, under both names clients read (vLLM's ``reasoning``, DeepSeek's ``reasoning_content``)."""
    return {"reasoning": text, "reasoning_content": text}


def _message(r) -> dict:
    """The assistant message of one search result: the answer as content, the chosen chain's thinking under both
    names, and the refusal (``Reasoner.refusal``'s text; then no content, and the safety judge's thinking if any)."""
    refusal = r.info.get("refusal")
    if refusal is not None:
        why = r.info.get("reasoning")
        return {"role": "assistant", "content": None, "refusal": refusal, "reasoning": why, "reasoning_content": why}
    thinking = split_reasoning(r.chain)
    return {"role": "assistant", "content": r.answer or "", "refusal": None, "reasoning": thinking,
            "reasoning_content": thinking}


def _finish(r) -> str:
    return "stop" if r.answer is not None or r.info.get("refusal") is not None else "length"


def _text_choice(c: Completion, index: int, req, policy) -> dict:
    """One /v1/completions choice. As in OpenAI/vLLM the stop string is not in the text, and the stop token
    (the step's "\\n" or <eos>) is not in the logprobs; ``stop_reason`` is the matched stop string, None for <eos>."""
    text, finish, stop_reason = c.text, "length", None
    keep = len(c.logprobs)
    if c.finish in ("step", "eos"):
        finish = "stop"
        if c.finish == "step":
            text, stop_reason = (text[:-1] if text.endswith("\n") else text), "\n"
        if keep and keep == c.n_tokens:
            keep -= 1
    cuts = [(text.find(s), s) for s in req.stops if s in text]
    if cuts:
        cut, stop_reason = min(cuts)
        text, finish = text[:cut], "stop"
    out = {"index": index, "text": text, "logprobs": None, "finish_reason": finish, "stop_reason": stop_reason}
    if req.logprobs is not None:
        tok = getattr(policy, "tokenizer", None)
        if c.token_ids and hasattr(tok, "decode"):
            pieces = [tok.decode([t]) for t in c.token_ids[:keep]]
        else:
            pieces = list(c.text[:keep]) if len(c.text) >= keep else [""] * keep
        offsets, pos, n = [], 0, 0
        for p in pieces:  # tokens that fit in the (possibly cut) text
            if pos + len(p) > len(text) and p:
                break
            offsets.append(pos)
            pos, n = pos + len(p), n + 1
        lps = [float(x) for x in c.logprobs[:n]]
        out["logprobs"] = {"tokens": pieces[:n], "token_logprobs": lps, "text_offset": offsets,
                           "top_logprobs": [{p: lp} for p, lp in zip(pieces[:n], lps)] if req.logprobs else None}
    return out
