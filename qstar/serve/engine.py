"""The reasoning engine behind the API: a chat question -> a qstar Problem -> a search at the requested effort.

Effort levels map to (strategy, budget, scorer) by the effort table (``qstar.search.effort``; the config may replace
levels); a request's ``max_thinking_tokens`` runs ``think`` at that budget instead. Each request samples through a
:class:`RequestPolicy`, a per-request view of the shared (batching) policy that enforces the request's token cap
(``max_completion_tokens`` counts every sampled token, reasoning included), applies its temperature, and stops the
search when the client went away or the deadline passed.

Streaming: with ``on_step``, a single-chain full-length call (``think`` at n=1, parallel=1; sequential strategies)
is decoded one step per policy call (``stop_at_step``, the partial chain growing), so each finished line reaches the
client while the search runs; the tokens sampled are the same, and each step call re-reads its prompt, which the
ledger counts. Calls that sample many chains at once report progress only.

Refusals have one home, :meth:`Reasoner.refusal`: a request it refuses is not searched, and its choices carry the
refusal text (``message.refusal``). It refuses what the safety judge (``qstar.serve.safety``, with
``--safety-spec``) refuses: the judge deliberates over the request in one extra call before any search, and its
tokens are counted in the usage (``safety_check``), refused or not.

Questions from the API have no gold answer. A question is routed to a task by ``qstar.tasks.routes.route`` (a user's
wording -> that task's Problem) so reference-free checkers can judge it; otherwise it becomes a
``Problem`` of task ``"chat"``, which programmatic scorers treat as "unknown" (0.5, no answer scores 0). The gold
answer is always blanked and oracle scorers are refused at startup, so no served answer can read a gold label.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from qstar.model.types import Completion, Policy, Prompt
from qstar.search.effort import Effort, capped
from qstar.search.options import SearchOptions
from qstar.search.types import Ledger, Scorer, SearchResult
from qstar.tasks.base import Problem
from qstar.tasks.format import ANSWER_PREFIX, STEP_END, clean_line

if TYPE_CHECKING:
    from qstar.serve.safety import Check, SafetyJudge

__all__ = ["Effort", "Reasoner", "RequestPolicy", "Cancelled", "SearchTimeout", "make_problem"]

CHAT_TASK = "chat"


class Cancelled(Exception):
    """The client disconnected; the search stops at its next policy call."""


class SearchTimeout(Exception):
    """The request's deadline passed before the search finished."""


def _parsers() -> list[Callable[[str], Problem | None]]:
    """Question recognisers: the tasks' own routes (a user's wording -> the task's Problem), so checkers can judge."""
    from qstar.tasks.routes import route

    return [route]


def make_problem(question: str, parsers: Sequence[Callable[[str], Problem | None]] = (), *,
                 prompt: str | None = None) -> Problem:
    """The Problem a chat question is answered as: the first task that recognises ``question`` (the last user
    message), else task "chat"; the policy reads ``prompt`` (the whole conversation's line; default: the question).

    The gold answer is always "" (unknown). Never raises on arbitrary text.
    """
    question = clean_line(question)
    text = clean_line(prompt) if prompt else question
    for parse in parsers:
        try:
            p = parse(question)
        except Exception:  # a recogniser that chokes on user text simply did not recognise it
            p = None
        if isinstance(p, Problem):
            return dataclasses.replace(p, question=text, answer="")
    return Problem(CHAT_TASK, text, "", key=f"{CHAT_TASK}:{text}")


class RequestPolicy:
    """One request's view of the shared policy.

    cap: total generated tokens allowed across the whole search (all choices); every call's ``max_tokens`` is
    clamped to ``remaining // rows``, so ``used <= cap`` always holds. Once nothing is left, calls return empty
    "length" completions without touching the model, and the search winds down with what it has.
    on_progress: called after each policy call with {"calls", "rows", "tokens", "cap"} (from the worker thread).
    on_step: when set, a one-row full-length call is decoded step by step and each step's text is passed to it as it
    arrives (see the module docstring).
    """

    def __init__(self, policy: Policy, *, cap: int, deadline: float | None = None,
                 cancelled: threading.Event | None = None, on_progress: Callable[[dict], None] | None = None,
                 on_step: Callable[[str], None] | None = None) -> None:
        self.policy, self.cap, self.deadline = policy, cap, deadline
        self.cancelled = cancelled or threading.Event()
        self.on_progress, self.on_step = on_progress, on_step
        self.name, self.params = policy.name, int(getattr(policy, "params", 0) or 0)
        count = getattr(policy, "count_tokens", None)
        if callable(count):  # strategies count text in the backend's tokens where it can (think's thinking)
            self.count_tokens = count
        self.used = self.calls = 0

    def _check(self) -> None:
        if self.cancelled.is_set():
            raise Cancelled()
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise SearchTimeout()

    def sample(self, prompts: Sequence[Prompt], *, n: int = 1, temperature: float = 1.0, top_p: float = 1.0,
               max_tokens: int = 256, stop_at_step: bool = False) -> list[list[Completion]]:
        self._check()
        rows = len(prompts) * n
        per_row = min(max_tokens, (self.cap - self.used) // rows) if rows else 0
        if per_row < 1:
            return [[Completion("", finish="length") for _ in range(n)] for _ in prompts]
        if self.on_step is not None and rows == 1 and not stop_at_step:
            out = [[self._stepwise(Prompt(*prompts[0]), temperature=temperature, top_p=top_p, max_tokens=per_row)]]
        else:
            out = self.policy.sample(prompts, n=n, temperature=temperature, top_p=top_p, max_tokens=per_row,
                                     stop_at_step=stop_at_step)
        self.used += sum(int(c.n_tokens) for row in out for c in row)
        self.calls += 1
        if self.on_progress is not None:
            self.on_progress({"calls": self.calls, "rows": rows, "tokens": self.used, "cap": self.cap})
        return out


    def _stepwise(self, prompt: Prompt, *, temperature: float, top_p: float, max_tokens: int) -> Completion:
        """One full-length continuation decoded a step per policy call, each step passed to ``on_step``; the merged
        Completion is what one call would return (same tokens; prompt tokens summed over the calls)."""
        out = Completion("", finish="length")
        while out.n_tokens < max_tokens:
            if out.n_tokens:
                self._check()
            (c,), = self.policy.sample([Prompt(prompt.question, prompt.partial + out.text)], n=1,
                                       temperature=temperature, top_p=top_p, max_tokens=max_tokens - out.n_tokens,
                                       stop_at_step=True)
            out.text, out.logprobs, out.token_ids = (out.text + c.text, out.logprobs + c.logprobs,
                                                     out.token_ids + c.token_ids)
            out.n_tokens, out.prompt_tokens = out.n_tokens + int(c.n_tokens), out.prompt_tokens + c.prompt_tokens
            out.finish = c.finish
            self.on_step(c.text)
            if c.finish != "step" or c.n_tokens < 1:
                break
        if out.finish == "step":  # out of tokens at a step's end: what one capped call reports
            out.finish = "length"
        return out


def split_reasoning(chain: str) -> str:
    """The thinking part of a chain: everything before its first answer line."""
    lines = chain.split(STEP_END)
    for i, line in enumerate(lines):
        if line.startswith(ANSWER_PREFIX):
            return STEP_END.join(lines[:i])
    return chain


class Reasoner:
    """Runs searches for API requests on a shared policy.

    efforts: level -> Effort. Scorers are built once here; an unknown strategy/scorer raises ValueError naming what
    exists, and an oracle or solver scorer one naming its kind (``qstar.scorers.kinds``), at server start, not on a
    request. context: the policy's context length in tokens (None: unknown), the most a request's thinking budget
    can be. judge: the safety judge every request passes first (None: no safety check).
    """

    def __init__(self, policy: Policy, efforts: dict[str, Effort], *, scorer_checkpoint: str = "",
                 judge: SafetyJudge | None = None) -> None:
        from qstar.scorers import get_scorer, learned_kind
        from qstar.search import strategy_spec
        from qstar.search.registry import check_knobs
        from qstar.search.thinking import context_length

        if not efforts:
            raise ValueError("at least one reasoning effort level is needed")
        self.policy, self.efforts, self.judge = policy, dict(efforts), judge
        self.options: dict[str, tuple[SearchOptions, dict]] = {}  # level -> (shared options, the strategy's knobs)
        for lvl, e in self.efforts.items():
            strategy_spec(e.strategy)
            self.options[lvl] = SearchOptions().split(e.options)
            check_knobs(e.strategy, self.options[lvl][1])
        built: dict[str, Scorer] = {}  # one scorer (one reward model) per name, shared by the levels that use it
        for lvl, e in self.efforts.items():
            kind = learned_kind(e.scorer)
            if kind and not scorer_checkpoint:
                raise ValueError(f"effort {lvl!r}: scorer {e.scorer!r} is learned; pass --scorer-checkpoint (a run "
                                 f"dir from `qstar train {kind}`)")
            if e.scorer not in built:
                built[e.scorer] = get_scorer(e.scorer, **({"checkpoint": scorer_checkpoint} if kind else {}))
        self.scorers = {lvl: built[e.scorer] for lvl, e in self.efforts.items()}
        from qstar.scorers.kinds import require_deployable
        from qstar.tasks import task_names

        for lvl, s in self.scorers.items():  # a question may route to any task: the scorer must verify on each
            require_deployable(s, [*task_names(), "chat"], where=f"effort {lvl!r}")
        self.none = get_scorer("none")  # for requests that cap the thinking (think reads no scorer)
        self.context = context_length(policy)
        # a chat upstream samples whole chains; stepping it would send its chains to /v1/completions instead
        self.steps_live = not getattr(getattr(policy, "policy", policy), "chat", False)
        self.parsers = _parsers()
        count = getattr(policy, "count_tokens", None)
        self.count_tokens: Callable[[str], int] = count if callable(count) else len  # char-level by default

    def plan(self, effort: str, thinking: int | None = None) -> tuple[Effort, Scorer, SearchOptions, dict]:
        """What a request at level ``effort`` runs: (Effort, scorer, shared options, the strategy's knobs). With
        ``thinking`` (a checked ``max_thinking_tokens``) it is ``think`` at that budget (``effort.capped``)."""
        eff = self.efforts[effort]
        if thinking is None:
            return (eff, self.scorers[effort], *self.options[effort])
        eff = capped(eff, thinking)
        options, knobs = self.options[effort] if self.efforts[effort].strategy == "think" else (SearchOptions(), {})
        return eff, self.none, options, knobs

    def run(self, question: str, *, effort: str, n: int = 1, max_tokens: int, thinking: int | None = None,
            temperature: float | None = None, top_p: float | None = None, deadline: float | None = None,
            cancelled: threading.Event | None = None, on_progress: Callable[[dict], None] | None = None,
            on_step: Callable[[str], None] | None = None, prompt: str | None = None,
            ) -> tuple[list[SearchResult], dict]:
        """Search ``n`` independent answers; returns (results, usage) with usage in OpenAI's shape.

        question: the last user message (what tasks recognise); prompt: the conversation's line the policy reads
        (default: the question). max_tokens: per-choice cap on generated tokens (reasoning + answer); the search gets
        ``n * max_tokens``.
        thinking: the request's checked thinking budget (``plan``); None: the level's own.
        temperature, top_p: the request's (None: the effort's own, else the strategy's default).
        """
        from qstar.search.run import run_strategy

        eff, scorer, options, knobs = self.plan(effort, thinking)
        asked = {k: v for k, v in (("temperature", temperature), ("top_p", top_p)) if v is not None}
        options = dataclasses.replace(options, **asked)
        problem = make_problem(question, self.parsers, prompt=prompt)
        check = None
        if self.judge is not None:  # one check per request, whatever n; the client's caps do not shrink it
            check = self.judge.check(prompt or question, deadline=deadline, cancelled=cancelled)
        refused = self.refusal(problem, check)
        if refused is not None:
            info = {"refusal": refused} | ({"reasoning": check.reasoning} if check is not None else {})
            results = [SearchResult(None, "", math.nan, Ledger(), info=dict(info)) for _ in range(n)]
            return results, self.usage(results, check)
        meter = RequestPolicy(self.policy, cap=n * max_tokens, deadline=deadline, cancelled=cancelled,
                              on_progress=on_progress, on_step=on_step if self.steps_live else None)
        session = getattr(self.policy, "session", None)
        with session() if callable(session) else contextlib.nullcontext():
            _, rows = run_strategy(meter, scorer, [problem] * n, strategy=eff.strategy, budget=eff.budget,
                                   options=options, graded=False, **knobs)
        results = [r for _, r, _ in rows]
        return results, self.usage(results, check)

    def refusal(self, problem: Problem, check: Check | None = None) -> str | None:
        """The refusal text for a request, or None to answer it: the one place a safety policy decides. Today that is
        the safety judge's verdict (``check``; None without --safety-spec)."""
        return check.refusal if check is not None else None

    def prompt_tokens(self, prompt: str) -> int:
        """Tokens the policy reads for a conversation line: the line, its newline and <bos>."""
        return self.count_tokens(clean_line(prompt) + STEP_END) + 1

    def usage(self, results: Sequence[SearchResult], check: Check | None = None) -> dict:
        """OpenAI usage from the ledgers: completion = every generated token; of those, the chosen answer line (and
        its end token) is the visible content and the rest are reasoning tokens. ``think`` says how many tokens its
        chosen chain generated for its answer line (a forced ``Answer: `` is not generated), so for one budgeted
        chain the reasoning tokens are exactly its thinking. A safety ``check``'s tokens are added (all of its
        generated tokens are reasoning: its verdict is never shown as content) and listed in ``safety_check``."""
        completion = sum(int(r.ledger.generated_tokens) for r in results)
        prompt = sum(int(r.ledger.prompt_tokens) for r in results)
        content = sum(min(int(r.ledger.generated_tokens), self._content_tokens(r)) for r in results)
        extra = check.usage() if check is not None else None
        if extra is not None:
            prompt, completion = prompt + extra["prompt_tokens"], completion + extra["completion_tokens"]
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "completion_tokens_details": {"reasoning_tokens": completion - content},
        }
        return usage | ({"safety_check": extra} if extra is not None else {})

    def _content_tokens(self, r: SearchResult) -> int:
        if "answer_tokens" in r.info and "chosen" in r.info:  # think: its answer line, even one that gave no answer
            return int(r.info["answer_tokens"][r.info["chosen"]])
        if r.answer is None:
            return 0
        return self.count_tokens(ANSWER_PREFIX + r.answer) + 1  # + 1: the end-of-answer token
