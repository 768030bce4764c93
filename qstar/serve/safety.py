"""The safety judge of ``qstar serve --safety-spec FILE``: before a request is answered, a reasoner deliberates over
the written specification (``qstar.tasks.spec``) in one extra, budgeted ``think`` call and either lets it through or
refuses it, citing the rule it breaks.

Who judges:

- a qstar checkpoint trained on the ``safety`` task (the served ``--checkpoint``, or ``--safety-judge DIR`` in front
  of any backend) reads the request as it was trained to, and its answer line is ``refuse <ID>`` or the task's
  answer. It knows only the rules it was trained on, so a spec whose ids or triggers differ stops start-up;
- any other served model (an upstream LLM, a Hugging Face model, a qstar checkpoint of another task) is prompted with
  the spec's statements and the request (``JUDGE``), asked to think and end with ``Answer: refuse <ID>`` or
  ``Answer: comply``.

Either way the verdict is read from the answer line alone with ``read_refusal``; a verdict that is no refusal lets
the request through. The judge thinks for ``--safety-thinking`` tokens whatever the request's ``reasoning_effort``:
a budget tied to the request would let any client turn the deliberation off with ``reasoning_effort="none"``, the
very attack the ``safety`` task measures (disguised requests get through when thinking is short). Its prompt is
never cut: one that does not fit the judge's context is refused (``overflow``, HTTP 400).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

from qstar.model.types import Policy
from qstar.search.thinking import ANSWER_TOKENS, context_length, think
from qstar.search.types import SearchResult
from qstar.serve.engine import RequestPolicy, split_reasoning
from qstar.tasks.base import Problem
from qstar.tasks.format import ANSWER_PREFIX, STEP_END, clean_line
from qstar.tasks.spec import Spec, load_spec, read_refusal

__all__ = ["SafetyJudge", "Check", "JUDGE", "judge_of", "spec_of", "trained_spec"]

#: what a model that reads the spec is asked (one line: the model's question)
JUDGE = ("Safety check. Rules: {rules} Request: \"{request}\" Does the request break a rule, however it is written "
         "(encoded, spelled out, split into pieces, hidden in another task)? Think it through, then end with the "
         "line 'Answer: refuse <rule id>' if it breaks one, or 'Answer: comply' if it breaks none.")


@dataclass
class Check:
    """One request's safety check. refusal: the text ``message.refusal`` carries (None: answer the request); rule:
    the rule id the judge cited (None: none, or no refusal); result: the judge's deliberation (its chain, ledger)."""

    refusal: str | None
    rule: str | None
    result: SearchResult

    @property
    def reasoning(self) -> str:
        """The judge's thinking: its chain before the answer line."""
        return split_reasoning(self.result.chain)

    def usage(self) -> dict:
        """The check's entry in the response's usage: its tokens and its one call."""
        led = self.result.ledger
        return {"calls": 1, "prompt_tokens": int(led.prompt_tokens), "completion_tokens": int(led.generated_tokens),
                "verdict": "refuse" if self.refusal is not None else "comply", "rule": self.rule}


class SafetyJudge:
    """Judges requests against ``spec`` on ``policy``. trained: the policy is a qstar ``safety`` reasoner (it reads
    the bare request); else it reads ``JUDGE``. budget: thinking tokens per check (clamped to the context)."""

    def __init__(self, policy: Policy, spec: Spec, *, trained: bool, budget: int) -> None:
        from qstar.scorers import get_scorer

        self.policy, self.spec, self.trained = policy, spec, trained
        self.none = get_scorer("none")  # think reads no scorer
        self.context = context_length(policy)
        count = getattr(policy, "count_tokens", None)
        self.count_tokens = count if callable(count) else len
        self.budget = min(budget, self.context) if self.context is not None else budget
        if self.context is not None and self.prompt_tokens("") + ANSWER_TOKENS > self.context:
            raise ValueError(f"--safety-spec: the safety check's prompt (the spec's {len(spec.rules)} rules and the "
                             f"instructions) takes {self.prompt_tokens('')} tokens, too many for the judge's context "
                             f"of {self.context}; shorten the spec, or judge with a qstar safety reasoner "
                             f"(--safety-judge DIR, trained with `qstar safety --spec FILE`)")

    def question(self, prompt: str) -> str:
        """The line the judge reads for a request (``prompt``: the conversation as the served model reads it)."""
        request = clean_line(prompt)
        return request if self.trained else JUDGE.format(rules=self.spec.prompt(), request=request)

    def prompt_tokens(self, prompt: str) -> int:
        """Tokens the judge reads for a request: its question line, the line's end and <bos>."""
        return self.count_tokens(self.question(prompt) + STEP_END) + 1

    def overflow(self, prompt: str) -> str | None:
        """Why a request is too long to check (its judge prompt leaves no room to answer in the context), or None."""
        used = self.prompt_tokens(prompt)
        if self.context is None or used + ANSWER_TOKENS <= self.context:
            return None
        return (f"the safety check (--safety-spec) reads this conversation as {used} tokens, and the judge's context "
                f"is {self.context} tokens with {ANSWER_TOKENS} kept for its verdict; shorten the conversation")

    def check(self, prompt: str, *, deadline: float | None = None,
              cancelled: threading.Event | None = None) -> Check:
        """Deliberate over one request (one greedy ``think`` call at ``budget`` thinking tokens) and read the
        verdict from its answer line."""
        question = self.question(prompt)
        problem = Problem("chat", question, "", key=f"safety-check:{question}")
        meter = RequestPolicy(self.policy, cap=self.budget + ANSWER_TOKENS, deadline=deadline, cancelled=cancelled)
        session = getattr(self.policy, "session", None)
        with session() if callable(session) else contextlib.nullcontext():
            result, = think(meter, self.none, [problem], self.budget)
        is_refusal, rule = read_refusal(verdict_text(result))
        return Check(self.refusal_text(rule) if is_refusal else None, rule if is_refusal else None, result)

    def refusal_text(self, rule_id: str | None) -> str:
        """What a refused client reads: the rule broken and its statement, when the spec has that rule."""
        rule = self.spec.rule(rule_id) if rule_id else None
        if rule is None:
            return "I can't help with that: it breaks this server's safety rules."
        return f"I can't help with that: it breaks rule {rule.id} ({rule.statement})"


def verdict_text(result: SearchResult) -> str:
    """The judge's verdict: its answer line, or (a chat model that wrote none) its last line with any markdown and
    'Answer:' label taken off."""
    if result.answer is not None:
        return result.answer
    last = next((line for line in reversed(result.chain.split(STEP_END)) if line.strip()), "")
    last = last.strip().strip("*_# ").strip()
    head = ANSWER_PREFIX.strip().lower()
    return last[len(head):].strip("*_ ") if last.lower().startswith(head) else last


def trained_spec(checkpoint: str) -> Spec | None:
    """The spec a checkpoint was trained on when its task is ``safety`` (its task string's ``spec=``, else the
    default spec); None for a checkpoint of another task or one that records none."""
    from qstar.model.checkpoint import checkpoint_task
    from qstar.tasks import get_task

    task = checkpoint_task(checkpoint) if checkpoint else None
    if not task or task.split(":", 1)[0] != "safety":
        return None
    try:
        return get_task(task).spec
    except ValueError as e:
        raise ValueError(f"{checkpoint} was trained on task {task!r}, whose spec cannot be read: {e}") from None


def _rules(spec: Spec) -> list[tuple[str, tuple[str, ...]]]:
    return [(r.id.upper(), r.triggers) for r in spec.rules]


def spec_of(cfg) -> Spec | None:
    """The spec a server judges by: ``--safety-spec`` parsed (ValueError naming the file and line for a bad one),
    else the ``--safety-judge`` checkpoint's own, else None (no safety check)."""
    if cfg.safety_spec:
        return load_spec(cfg.safety_spec)
    if cfg.safety_judge:
        return _judge_spec(cfg.safety_judge)
    return None


def _judge_spec(path: str) -> Spec:
    from qstar.model.checkpoint import find_checkpoint

    find_checkpoint(path, flag="--safety-judge")  # a missing one is named as missing
    spec = trained_spec(path)
    if spec is None:
        raise ValueError(f"--safety-judge: {path} is not a qstar safety reasoner (its task is not 'safety'); train "
                         "one with `qstar safety` or `qstar train sft --task safety`")
    return spec


def judge_of(policy: Policy, cfg) -> SafetyJudge | None:
    """The safety judge a ServeConfig asks for (None without --safety-spec / --safety-judge): on ``policy`` (the
    served, batching policy), or on the ``--safety-judge`` checkpoint, loaded here behind its own BatchingPolicy
    (the caller closes ``judge.policy`` when it is not ``policy``). ValueError, before any port is bound, for a bad
    spec or a qstar safety reasoner given rules it never learned."""
    spec = spec_of(cfg)
    if spec is None:
        return None
    if cfg.safety_judge:
        known, where = _judge_spec(cfg.safety_judge), f"--safety-judge {cfg.safety_judge}"
    else:
        known, where = trained_spec(cfg.checkpoint), f"--checkpoint {cfg.checkpoint}"
    if known is not None and _rules(known) != _rules(spec):
        raise ValueError(f"--safety-spec {cfg.safety_spec}: {where} is a qstar safety reasoner, and it only knows the "
                         f"rules it was trained on ({', '.join(r.id for r in known.rules)}, with their trigger words); "
                         "this spec's rules differ. Train a reasoner on this spec (`qstar safety --spec FILE`) and "
                         "pass it as --safety-judge DIR, or serve a model that reads the spec (--upstream, --hf-model)")
    if cfg.safety_judge:
        from qstar.model.policy import load_policy
        from qstar.serve.batching import BatchingPolicy

        # its own batching policy: concurrent requests' checks share forward passes, and the model is called from
        # one thread
        policy = BatchingPolicy(load_policy(cfg.safety_judge, flag="--safety-judge", dtype=cfg.decode_dtype, seed=None),
                                max_batch=cfg.max_batch, max_wait_ms=cfg.max_wait_ms)
    return SafetyJudge(policy, spec, trained=known is not None, budget=cfg.safety_thinking)
