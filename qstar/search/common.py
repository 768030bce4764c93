"""Plumbing every strategy shares: input checks, ranking with NaN, and the compute meter. (Answers are read with
``qstar.tasks.extract_answer``, which never raises and never reads the gold answer.)

The ``Meter`` is the only way strategies call the policy and the scorer. It batches, counts tokens per problem,
apportions batched wall time per problem by token share, and caches step scores by (problem, step prefix) so a
step is never scored twice. With a policy that has a ``stream_seed`` (qstar's own), the k-th chain a problem draws
comes from a stream seeded by (that seed, the problem's key, k): it is the same however a strategy batches its
draws, so best_of_n and until_verified read the same chains, and a problem's chains do not depend on the other
problems of the run. ``Meter.ledgers()`` turns the counts into one ``Ledger`` per problem whose FLOPs are
``2 * policy.params * (generated + prompt) + 2 * scorer.params * scored``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import math
import time
from collections.abc import Callable, Sequence

from qstar.model.types import Completion, Policy, Prompt
from qstar.search.options import DEFAULT_TEMPERATURE, SearchOptions
from qstar.search.registry import StrategySpec
from qstar.search.types import Ledger, Scorer, SearchResult
from qstar.tasks.base import Problem
from qstar.tasks.format import ANSWER_PREFIX, STEP_END

NEG_INF = float("-inf")


def rank(x: float) -> float:
    """Sort key for a score: NaN (a broken scorer) ranks below every real score."""
    return NEG_INF if x is None or math.isnan(x) else float(x)


def join_steps(steps: Sequence[str]) -> str:
    """Chain text for a list of steps; an answer line ends the chain, other steps end with a newline."""
    return "".join(s if s.startswith(ANSWER_PREFIX) else s + STEP_END for s in steps)


def check_inputs(policy: Policy, scorer: Scorer, problems: Sequence[Problem], budget: int) -> None:
    """Raise ValueError for inputs no strategy can run on."""
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise ValueError(f"budget must be an integer number of chains (>= 1), got {budget!r}")
    if budget < 1:
        raise ValueError(f"budget must be >= 1 (number of full-chain samples worth of compute), got {budget}")
    if not hasattr(policy, "sample"):
        raise ValueError(f"policy {policy!r} has no sample() method (see qstar.model.types.Policy)")
    for attr in ("score", "score_steps", "oracle", "params", "name"):
        if not hasattr(scorer, attr):
            raise ValueError(f"scorer {scorer!r} lacks {attr!r} (see qstar.search.types.Scorer)")
    for p in problems:
        if not isinstance(p, Problem):
            raise ValueError(f"problems must be qstar Problem objects, got {type(p).__name__}")


def strategy(fn: Callable | None = None, *, tree: bool = False, deterministic: bool = False) -> Callable:
    """Decorate a strategy ``fn(policy, scorer, problems, budget, options, *, **knobs)`` (``@strategy`` or
    ``@strategy(tree=True)``). The result is called as ``f(policy, scorer, problems, budget, *, options=None,
    **keywords)``: keywords naming ``SearchOptions`` fields override ``options``, an unset temperature becomes the
    strategy's default (0 when ``deterministic``), the other keywords go to ``fn`` as its knobs. It validates inputs,
    returns [] for no problems, tags each result's info with the strategy, scorer and oracle flag (so an
    oracle-selected number can never pass as deployable), and carries ``spec``, its registry entry."""
    if fn is None:
        return functools.partial(strategy, tree=tree, deterministic=deterministic)
    default_temperature = 0.0 if deterministic else DEFAULT_TEMPERATURE

    @functools.wraps(fn)
    def run(policy: Policy, scorer: Scorer, problems: Sequence[Problem], budget: int, *,
            options: SearchOptions | None = None, **keywords) -> list[SearchResult]:
        check_inputs(policy, scorer, problems, budget)
        if not problems:
            return []
        options, knobs = (options or SearchOptions()).split(keywords)
        if options.temperature is None:
            options = dataclasses.replace(options, temperature=default_temperature)
        t0 = time.perf_counter()
        results = fn(policy, scorer, list(problems), budget, options, **knobs)
        # wall time outside policy/scorer calls (the strategy's own bookkeeping) is shared evenly
        rest = max(0.0, time.perf_counter() - t0 - sum(r.ledger.seconds for r in results)) / len(results)
        for r in results:
            r.ledger.seconds += rest
            r.info.setdefault("strategy", fn.__name__)
            r.info.update(scorer=scorer.name, oracle=bool(scorer.oracle), budget=budget)
        return results

    params = inspect.signature(fn).parameters.values()
    run.spec = StrategySpec(fn.__name__, run, knobs=tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY),
                            tree=tree, deterministic=deterministic,
                            forwards=any(p.kind is p.VAR_KEYWORD for p in params))
    return run


def chain_seed(base: int, key: str, k: int) -> int:
    """Seed of the k-th chain a problem (by its canonical key) draws under a policy's ``stream_seed``: 63 bits of a
    hash, the same on every machine and Python (unlike ``hash``)."""
    digest = hashlib.blake2b(f"{base}:{key}:{k}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class Meter:
    """Counts compute per problem while strategies call the policy and scorer in batches.

    problems: the batch (index = owner id used by every call). Step scores are cached by
    (task, key, step prefix); scored tokens are counted only for learned scorers (params > 0), as characters
    of question + chain + 1 (qstar's tokenizer is one token per character), or ``scorer.count_tokens(text)``.
    """

    def __init__(self, policy: Policy, scorer: Scorer, problems: Sequence[Problem]) -> None:
        self.policy, self.scorer, self.problems = policy, scorer, list(problems)
        n = len(self.problems)
        self.generated, self.prompt, self.scored = [0] * n, [0] * n, [0] * n
        self.seconds = [0.0] * n
        self._step_cache: dict[tuple, float] = {}
        self.refused: dict[int, str] = {}  # problem index -> why the policy refused some continuation
        self.drawn = [0] * n  # chains drawn per problem: the next chain's stream index

    # -- policy ---------------------------------------------------------------------------------------------------
    def sample(self, owners: Sequence[int], prompts: Sequence[Prompt], *, n: int = 1, **kw) -> list[list[Completion]]:
        """One batched ``policy.sample`` call; ``owners[i]`` is the problem index prompt i belongs to."""
        if not prompts:
            return []
        base = getattr(self.policy, "stream_seed", None)
        if base is not None and "seeds" not in kw:
            first = []
            for o in owners:
                first.append(self.drawn[o])
                self.drawn[o] += n  # greedy draws count too, so the k-th chain's index never depends on them
            if kw.get("temperature", 1.0) != 0:  # greedy reads no uniforms: no seeds to hash
                kw = {**kw, "seeds": [[chain_seed(base, self.problems[o].key, f + j) for j in range(n)]
                                      for o, f in zip(owners, first)]}
        t0 = time.perf_counter()
        out = self._call(list(owners), list(prompts), n, kw)
        dt = time.perf_counter() - t0
        if len(out) != len(prompts) or any(len(row) != n for row in out):
            name = getattr(self.policy, "name", "?")
            raise ValueError(f"policy {name} must return {n} completions for each of {len(prompts)} prompts; got "
                             f"{[len(row) for row in out][:8]}")
        share = [0] * len(self.problems)
        for o, comps in zip(owners, out):
            for c in comps:
                self.generated[o] += int(c.n_tokens)
                self.prompt[o] += int(c.prompt_tokens)
                share[o] += int(c.n_tokens) + int(c.prompt_tokens)
        self._apportion(dt, share)
        return [[_clean(c) for c in comps] for comps in out]

    def _call(self, owners: list[int], prompts: list[Prompt], n: int, kw: dict) -> list[list[Completion]]:
        """``policy.sample``; when the policy refuses a batch (ValueError, e.g. a grown chain no longer fits its
        context), bisect it so only the refused continuations end (as empty "length" completions, noted per
        problem). A refused root prompt (empty partial) is a real error and is raised."""
        try:
            return self.policy.sample(prompts, n=n, **kw)
        except ValueError as e:
            if len(prompts) > 1:
                mid = len(prompts) // 2
                half = [{**kw, "seeds": kw["seeds"][c]} if "seeds" in kw else kw
                        for c in (slice(mid), slice(mid, None))]
                return self._call(owners[:mid], prompts[:mid], n, half[0]) + \
                    self._call(owners[mid:], prompts[mid:], n, half[1])
            if not prompts[0].partial:
                raise
            self.refused[owners[0]] = f"{self.refused.get(owners[0], '')}{e}; "[-300:]
            return [[Completion("", [], 0, 0, "length") for _ in range(n)]]

    def notes(self, i: int) -> dict:
        """Result info about problem i's refused continuations (empty when there were none)."""
        return {"refused": self.refused[i]} if i in self.refused else {}

    # -- scorer ---------------------------------------------------------------------------------------------------
    def score(self, owners: Sequence[int], chains: Sequence[str]) -> list[float]:
        """Outcome scores, one batched scorer call (NaN stays NaN; rank() handles it)."""
        if not chains:
            return []
        probs = [self.problems[o] for o in owners]
        t0 = time.perf_counter()
        out = [float(x) for x in self.scorer.score(probs, list(chains))]
        self._count_scored(owners, [p.question + STEP_END + c for p, c in zip(probs, chains)], time.perf_counter() - t0)
        if len(out) != len(chains):
            raise ValueError(f"scorer {self.scorer.name} returned {len(out)} scores for {len(chains)} chains")
        return out

    def score_steps(self, owners: Sequence[int], prefixes: Sequence[Sequence[str]]) -> list[float]:
        """Score of the LAST step of each step prefix; cached, so only unseen prefixes reach the scorer (batched)."""
        keys = [(self.problems[o].task, self.problems[o].key, tuple(s)) for o, s in zip(owners, prefixes)]
        todo: dict[tuple, int] = {}
        for k, o in zip(keys, owners):
            if k not in self._step_cache and k not in todo:
                todo[k] = o
        if todo:
            items = list(todo.items())
            probs = [self.problems[o] for _, o in items]
            steps = [list(k[2]) for k, _ in items]
            t0 = time.perf_counter()
            out = self.scorer.score_steps(probs, steps)
            dt = time.perf_counter() - t0
            if len(out) != len(steps) or any(len(o) != len(s) for o, s in zip(out, steps)):
                raise ValueError(f"scorer {self.scorer.name}: score_steps must return one float per step")
            texts = [p.question + STEP_END + join_steps(s) for p, s in zip(probs, steps)]
            self._count_scored([o for _, o in items], texts, dt)
            for (k, _), row in zip(items, out):
                # a prefix's scores also give its own prefixes' scores for free
                for j in range(len(row)):
                    self._step_cache.setdefault(k[:2] + (k[2][: j + 1],), float(row[j]))
        return [self._step_cache[k] for k in keys]

    def step_scores(self, owner: int, steps: Sequence[str]) -> list[float]:
        """All cached per-step scores of a chain (every prefix must have been scored already)."""
        p = self.problems[owner]
        return [self._step_cache[(p.task, p.key, tuple(steps[: j + 1]))] for j in range(len(steps))]

    def _count_scored(self, owners: Sequence[int], texts: Sequence[str], dt: float) -> None:
        count = getattr(self.scorer, "count_tokens", None) or (lambda t: len(t) + 1)
        share = [0] * len(self.problems)
        for o, t in zip(owners, texts):
            share[o] += count(t)
            if self.scorer.params:
                self.scored[o] += count(t)
        self._apportion(dt, share)

    def _apportion(self, dt: float, share: list[int]) -> None:
        total = sum(share)
        for i, s in enumerate(share):
            self.seconds[i] += dt * (s / total if total else 1 / len(share))

    # -- results --------------------------------------------------------------------------------------------------
    def ledger(self, i: int) -> Ledger:
        pp, sp = int(getattr(self.policy, "params", 0) or 0), int(self.scorer.params or 0)
        return Ledger(
            generated_tokens=self.generated[i],
            prompt_tokens=self.prompt[i],
            scored_tokens=self.scored[i],
            flops=2.0 * pp * (self.generated[i] + self.prompt[i]) + 2.0 * sp * self.scored[i],
            seconds=self.seconds[i],
        )


def _clean(c: Completion) -> Completion:
    """Guard against garbage from a backend: text must be a str."""
    if not isinstance(c.text, str):
        c.text = "" if c.text is None else str(c.text)
    return c
