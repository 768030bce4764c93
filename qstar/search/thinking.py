"""Thinking with a token budget (strategy ``think``): one chain per problem whose thinking is capped at ``budget``.

A chain is its thinking (every line before the answer line) followed by ``Answer: X``; writing the answer line
closes the thinking. Phase 1 samples each chain with ``max_tokens=budget``, so the thinking can never run past the
budget, in the backend's own tokens. A chain that wrote its answer line within the budget keeps it (an answer line
the cap cut short is finished by the model in phase 2). A chain that did not is cut at the budget: the text is ended
with a newline, ``Answer: `` is appended (Qwen3's "answer now") and in phase 2 the MODEL writes its answer from there
(``stop_at_step``, at most ``ANSWER_TOKENS``). The answer is read by the task's extractor from the answer line alone,
never from the thinking. Budget 0 means no thinking: every chain starts with ``Answer: ``.

Budget mapping: ``budget`` = the thinking budget in tokens per chain (0 allowed); a chain generates at most
``budget + ANSWER_TOKENS`` tokens. ``parallel`` = K budgeted chains per problem, the majority answer wins
(``sampling.vote``). Each phase is one batched policy call over all problems. ``options.max_tokens`` is not used:
the budget is the cap. Greedy by default (temperature 0); with ``parallel`` > 1 the default is
``PARALLEL_TEMPERATURE`` (K greedy chains would be one chain K times).

Info per result (lists have one entry per chain): thinking_budget, thinking_tokens, answer_tokens (tokens generated
for the answer line, its end included), forced (the thinking was cut at the budget), answers, chosen (index of the
returned chain), parallel, length_prompt (the budget was also stated in the prompt).

A policy whose ``length_prompt`` is true (a checkpoint RL-trained with L1's thinking-length targets, GRPO's
``length_targets``) also reads the budget from its prompt, ``"<question> Think for N tokens."``: the cap still
holds, and the model can plan to use the budget rather than be cut by it.
"""

from __future__ import annotations

import dataclasses
import math

from qstar.model.types import Policy, Prompt
from qstar.search.common import Meter, strategy
from qstar.search.options import SearchOptions
from qstar.search.sampling import vote
from qstar.search.types import Scorer, SearchResult
from qstar.tasks import extract_answer
from qstar.tasks.base import Problem
from qstar.tasks.format import ANSWER_PREFIX, STEP_END
from qstar.tasks.thinking import answer_line, with_target

__all__ = ["think", "thinking_budget", "context_length", "ANSWER_TOKENS", "PARALLEL_TEMPERATURE"]

#: most tokens the model may write after a forced ``Answer: `` (every qstar task's answer is far shorter)
ANSWER_TOKENS = 32
#: sampling temperature of ``parallel`` > 1 chains when the options leave it unset
PARALLEL_TEMPERATURE = 1.0


def thinking_budget(value, context: int | None = None) -> tuple[int, str | None]:
    """A user's ``max_thinking_tokens`` checked: (budget, note). ValueError for a non-integer or a value < 1 (no
    thinking is ``reasoning_effort="none"``); a value above the model's ``context`` (tokens; None: unknown) is
    clamped to it and the note says so.

    >>> thinking_budget(100, 512), thinking_budget(9999, 512)[0]
    ((100, None), 512)
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"max_thinking_tokens must be an integer number of tokens, got {value!r}")
    if value < 1:
        raise ValueError(f"max_thinking_tokens must be >= 1, got {value}; to answer without thinking use "
                         f"reasoning_effort=\"none\"")
    if context is not None and value > context:
        return context, f"max_thinking_tokens={value} exceeds the model's context of {context} tokens; clamped to " \
                        f"{context}"
    return value, None


def context_length(policy) -> int | None:
    """The policy's context length in tokens (qstar model: ``max_seq_len``; Hugging Face: ``max_len``); None when
    the backend does not say (an upstream server)."""
    cfg = getattr(getattr(policy, "model", None), "cfg", None)
    n = getattr(cfg, "max_seq_len", None) or getattr(policy, "max_len", None)
    return int(n) if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


@strategy(deterministic=True)
def _think(policy: Policy, scorer: Scorer, problems: list[Problem], budget: int, options: SearchOptions, *,
           parallel: int = 1, tokens: int = 0) -> list[SearchResult]:
    """The strategy behind ``think``; ``tokens`` is the thinking budget (the decorator's ``budget`` is >= 1)."""
    meter = Meter(policy, scorer, problems)
    P, K = len(problems), parallel
    count = getattr(policy, "count_tokens", None) or len
    sampling = dict(temperature=options.temperature, top_p=options.top_p)
    text = [[ANSWER_PREFIX] * K for _ in range(P)]  # budget 0: every chain starts with the answer line
    thought, answered = [[0] * K for _ in range(P)], [[0] * K for _ in range(P)]
    forced = [[True] * K for _ in range(P)]
    # a model trained with L1's length targets reads its budget from the prompt (qstar.tasks.thinking.with_target)
    targeted = bool(getattr(policy, "length_prompt", False))
    questions = [with_target(p.question, tokens) if targeted else p.question for p in problems]
    todo = [(i, k) for i in range(P) for k in range(K)]  # chains whose answer the model still has to write
    if tokens > 0:
        todo = []
        comps = meter.sample(range(P), [Prompt(q) for q in questions], n=K, max_tokens=tokens, **sampling)
        for i, row in enumerate(comps):
            for k, c in enumerate(row):
                at = answer_line(c.text)
                if at >= 0:  # closed its thinking within the budget
                    thought[i][k] = min(int(c.n_tokens), count(c.text[:at]))
                    answered[i][k] = int(c.n_tokens) - thought[i][k]
                    text[i][k], forced[i][k] = c.text, False
                    if c.finish == "length" and STEP_END not in c.text[at:]:
                        todo.append((i, k))  # the cap cut its answer line: the model finishes it
                    continue
                thought[i][k] = int(c.n_tokens)
                text[i][k] = cut(c.text) + ANSWER_PREFIX
                todo.append((i, k))
    if todo:
        outs = meter.sample([i for i, _ in todo], [Prompt(questions[i], text[i][k]) for i, k in todo], n=1,
                            max_tokens=ANSWER_TOKENS, stop_at_step=True, **sampling)
        for (i, k), (c,) in zip(todo, outs):
            text[i][k] += c.text[:-1] if c.text.endswith(STEP_END) else c.text
            answered[i][k] += int(c.n_tokens)
    out = []
    for i, p in enumerate(problems):
        # the answer line alone is parsed: nothing in the thinking can pass for an answer
        answers = [extract_answer(p, t[max(answer_line(t), 0):]) or None for t in text[i]]
        win = vote(answers)
        j = answers.index(win) if win is not None else 0
        info = {"strategy": "think", "thinking_budget": tokens, "thinking_tokens": thought[i],
                "answer_tokens": answered[i], "forced": forced[i], "answers": answers, "chosen": j, "parallel": K,
                "length_prompt": targeted}
        out.append(SearchResult(win, text[i][j], math.nan, meter.ledger(i), info=info | meter.notes(i)))
    return out


def cut(thinking: str) -> str:
    """Thinking cut at the budget, ready for ``Answer: ``: ended with a newline, and a last line that was the start
    of the answer line ("Ans") dropped, since the full prefix follows.

    >>> cut("a\\nb"), cut("a\\nAns"), cut("")
    ('a\\nb\\n', 'a\\n', '')
    """
    last = thinking.rsplit(STEP_END, 1)[-1]
    if last and ANSWER_PREFIX.startswith(last):
        return thinking[: -len(last)]
    return thinking + (STEP_END if thinking and not thinking.endswith(STEP_END) else "")


def think(policy: Policy, scorer: Scorer, problems, budget: int, *, options: SearchOptions | None = None,
          parallel: int = 1, **keywords) -> list[SearchResult]:
    """Budgeted thinking, see the module docstring: ``budget`` = thinking tokens per chain (0: answer at once),
    ``parallel`` = chains per problem (majority answer). The scorer is not used."""
    # the shared input checks count budgets in chains (>= 1); here 0 tokens is a valid budget (no thinking)
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise ValueError(f"budget must be a thinking budget in tokens (an integer >= 0), got {budget!r}")
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise ValueError(f"parallel must be an integer >= 1 (chains per problem), got {parallel!r}")
    options, rest = (options or SearchOptions()).split(keywords)
    if parallel > 1 and options.temperature is None:
        options = dataclasses.replace(options, temperature=PARALLEL_TEMPERATURE)
    results = _think(policy, scorer, problems, max(budget, 1), options=options, parallel=parallel, tokens=budget,
                     **rest)
    for r in results:
        r.info["budget"] = budget
    return results


think.spec = dataclasses.replace(_think.spec, name="think", fn=think, knobs=("parallel",))
