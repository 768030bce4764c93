"""Sequential thinking: one chain that keeps going (budget forcing, s1) or checks and retries.

mode "wait": the model writes a chain; when it emits the answer line while it still has budget, the answer line is
    suppressed, ``WAIT_STEP`` is appended as a step, and the chain continues. Final answer = the last answer given.
mode "check": for models trained on check-and-retry data: instead of "Wait" the chain continues with a line starting
    ``CHECK_PREFIX`` that the model completes (a verification of its answer, then corrected steps if it failed).
    When an answer survives a check unchanged the chain stops early: the model confirmed it.

Budget mapping: ``budget`` = N chains: at most N - 1 forced continuations and at most N * ``max_tokens`` generated
tokens per problem (budget 1 = one plain chain). A continuation that stops without an answer (token cap) resumes
where it stopped; one that generates nothing ends the chain. All problems still thinking continue in one batched
call per round, and rounds are capped at 2 * N + 2, so the loop always ends.
"""

from __future__ import annotations

import math

from qstar.model.types import Policy, Prompt
from qstar.search.common import Meter, strategy
from qstar.search.options import SearchOptions
from qstar.search.types import Scorer, SearchResult
from qstar.tasks import extract_answer
from qstar.tasks.base import Problem
from qstar.tasks.format import ANSWER_PREFIX, CHECK_PREFIX, STEP_END, WAIT_STEP, split_chain

#: mode -> text appended after a suppressed answer line (the model continues from it)
FORCED = {"wait": WAIT_STEP + STEP_END, "check": CHECK_PREFIX}


def strip_answer(text: str) -> str:
    """Text before the first answer line, ending with a newline when non-empty.

    >>> strip_answer("a\\nb\\nAnswer: 5")
    'a\\nb\\n'
    """
    head, sep, _ = ("\n" + text).partition(STEP_END + ANSWER_PREFIX)
    return head[1:] + (STEP_END if sep and head[1:] and not head.endswith(STEP_END) else "")


@strategy(deterministic=True)
def sequential(policy: Policy, scorer: Scorer, problems: list[Problem], budget: int, options: SearchOptions, *,
               mode: str = "wait") -> list[SearchResult]:
    """Budget forcing or check-and-retry (``mode``); see the module docstring. Greedy by default (temperature 0).
    The scorer is not used."""
    if mode not in FORCED:
        raise ValueError(f"unknown sequential mode {mode!r}; choose from {', '.join(FORCED)}")
    temperature, top_p, max_tokens = options.temperature, options.top_p, options.max_tokens
    meter = Meter(policy, scorer, problems)
    P = len(problems)
    text, last = [""] * P, [None] * P  # chain so far (answer lines suppressed), last answer given
    forced, used, done = [0] * P, [0] * P, [False] * P
    cap = budget * max_tokens
    history: list[list[str | None]] = [[] for _ in range(P)]
    for _ in range(2 * budget + 2):
        active = [i for i in range(P) if not done[i]]
        if not active:
            break
        # one call for all: problems near their cap may overshoot it by < max_tokens, then stop
        room = min(max_tokens, max(cap - used[i] for i in active))
        comps = meter.sample(active, [Prompt(problems[i].question, text[i]) for i in active], n=1,
                             temperature=temperature, top_p=top_p, max_tokens=room)
        for i, row in zip(active, comps):
            c = row[0]
            used[i] += c.n_tokens
            if not c.text.strip():
                done[i] = True  # nothing (or only whitespace) generated: no progress possible
                continue
            answer = extract_answer(problems[i], text[i] + c.text)
            if answer is None:  # ran out of tokens mid-chain: resume from here while budget lasts
                text[i] += c.text
                done[i] = used[i] >= cap
                continue
            confirmed = mode == "check" and forced[i] > 0 and answer == last[i]
            last[i] = answer
            history[i].append(answer)
            if forced[i] >= budget - 1 or used[i] >= cap or confirmed:
                text[i] += c.text
                done[i] = True
            else:
                text[i] = strip_answer(text[i] + c.text) + FORCED[mode]
                forced[i] += 1
    out = []
    for i in range(P):
        chain = text[i]
        if last[i] is not None and split_chain(chain)[1] is None:  # stopped while thinking: restate the last answer
            chain = chain + ("" if chain.endswith(STEP_END) or not chain else STEP_END) + ANSWER_PREFIX + last[i]
        out.append(SearchResult(last[i], chain, math.nan, meter.ledger(i),
                                info={"forced": forced[i], "answers": history[i], "mode": mode, **meter.notes(i)}))
    return out
