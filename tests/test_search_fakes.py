"""Scripted policies and scorers shared by the qstar.search unit tests (no tests here)."""

from __future__ import annotations

from qstar.model.types import Completion
from qstar.tasks.base import Problem
from qstar.tasks.format import ANSWER_PREFIX


class ScriptedPolicy:
    """Deterministic policy: ``script(question, partial, j) -> (step text, logprob)`` gives the next step of draw j
    (draws are numbered across calls, like an RNG stream).

    Full chains (stop_at_step=False) are steps chained until an answer line. Tokens = characters (+1 <eos> after an
    answer); prompt tokens = len(question) + 2 + len(partial), once per prompt (the n samples share its KV cache).
    Temperature 0 always uses j = 0. Totals are kept to check that ledgers add up.
    """

    name = "scripted"
    params = 1000

    def __init__(self, script):
        self.script = script
        self.generated = self.prompt = self.calls = self.draws = 0

    def sample(self, prompts, *, n=1, temperature=1.0, top_p=1.0, max_tokens=256, stop_at_step=False):
        self.calls += 1
        out = []
        for q, partial in prompts:
            row = []
            for _ in range(n):
                j = 0 if temperature == 0 else self.draws  # like an RNG: every sampled chain is the next draw
                self.draws += temperature != 0
                text, lp, finish = "", 0.0, "length"
                while len(text) < max_tokens:
                    step, slp = self.script(q, partial + text, j)
                    text, lp = text + step, lp + slp
                    if step.startswith(ANSWER_PREFIX) or not step:
                        finish = "eos"
                        break
                    if stop_at_step:
                        finish = "step"
                        break
                if len(text) > max_tokens:
                    text, finish = text[:max_tokens], "length"
                toks = len(text) + (finish == "eos")
                ptoks = 0 if row else len(q) + 2 + len(partial)
                row.append(Completion(text, [lp] + [0.0] * (toks - 1) if toks else [], toks, ptoks, finish))
                self.generated += toks
                self.prompt += ptoks
            out.append(row)
        return out


def table_script(table):
    """Script from {partial: [(step, logprob), ...]}: sample j takes option j mod len; unknown partial -> ''."""
    def script(q, partial, j):
        opts = table.get((q, partial), table.get(partial, [("", 0.0)]))
        return opts[j % len(opts)]
    return script


class StepScorer:
    """Scores a step by its text (default 0.5) and a chain by its answer line's score; counts scored tokens."""

    name = "scripted"
    oracle = False

    def __init__(self, scores, params=0):
        self.scores, self.params = scores, params
        self.tokens = self.calls = 0
        self.seen_prefixes = []

    def count_tokens(self, text):
        return len(text) + 1

    def score(self, problems, chains):
        self.calls += 1
        self.tokens += sum(self.count_tokens(p.question + "\n" + c) for p, c in zip(problems, chains))
        return [self.scores.get(c, self.scores.get(c.split("\n")[-1], 0.5)) for c in chains]

    def score_steps(self, problems, steps):
        self.calls += 1
        for p, s in zip(problems, steps):
            self.seen_prefixes.append((p.key, tuple(s)))
            self.tokens += self.count_tokens(p.question + "\n" + "".join(x if x.startswith(ANSWER_PREFIX) else x + "\n"
                                                                         for x in s))
        return [[self.scores.get(x, 0.5) for x in s] for s in steps]


def prob(q="q1", key=None):
    return Problem("toy", q, "1", key or q)
