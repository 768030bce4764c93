"""Parallel-sampling strategies: greedy, majority vote, best-of-N, weighted best-of-N, and sampling until a verifier
accepts (``until_verified``).

Budget mapping: ``budget`` = N full chains per problem, drawn in ONE ``policy.sample`` call over all problems with
``n=N`` (the model backend shares each prompt's KV cache across the N samples). Greedy always draws one chain.
``until_verified`` draws AT MOST N chains per problem, in rounds (see its docstring); each round is one batched
``policy.sample`` call over the problems still open, so a problem stops paying as soon as a chain is accepted.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from qstar.model.types import Policy, Prompt
from qstar.scorers.kinds import components, judging_kind
from qstar.search.common import Meter, rank, strategy
from qstar.search.options import SearchOptions
from qstar.search.types import Scorer, SearchResult
from qstar.tasks import extract_answer
from qstar.tasks.base import Problem


def vote(answers: Sequence[str | None], weights: Sequence[float] | None = None) -> str | None:
    """Answer with the largest total weight (default 1 each); None answers never win; NaN weights count 0.

    Ties break by vote count, then by first appearance, so the result is deterministic.

    >>> vote(["7", "5", "5", None])
    '5'
    >>> vote(["7", "5", "5"], [0.9, 0.2, 0.3])
    '7'
    """
    weights = [1.0] * len(answers) if weights is None else weights
    total: dict[str, list] = {}
    for i, (a, w) in enumerate(zip(answers, weights)):
        if a is None:
            continue
        t = total.setdefault(a, [0.0, 0, -i])
        t[0] += 0.0 if w is None or math.isnan(w) else float(w)
        t[1] += 1
    return max(total, key=lambda a: tuple(total[a])) if total else None


def draw(meter: Meter, problems: Sequence[Problem], n: int, options: SearchOptions,
         owners: Sequence[int] | None = None):
    """N full chains per problem in one batched call: (chains [P][N], answers [P][N]). owners: the meter's index
    of each problem (default 0..P-1, ``problems`` being the meter's own)."""
    owners = range(len(problems)) if owners is None else owners
    comps = meter.sample(owners, [Prompt(p.question) for p in problems], n=n,
                         temperature=options.temperature, top_p=options.top_p, max_tokens=options.max_tokens)
    chains = [[c.text for c in row] for row in comps]
    answers = [[extract_answer(p, t) for t in row] for p, row in zip(problems, chains)]
    return chains, answers


def _pick(problem_chains: list[str], answers: list[str | None], answer: str | None, scores: list[float]) -> int:
    """Index of the best-scoring chain that gives ``answer`` (first chain when there is no answer)."""
    idx = [i for i, a in enumerate(answers) if a == answer] or [0]
    return max(idx, key=lambda i: (rank(scores[i]), -i))


def best(scores: Sequence[float]) -> int:
    """Index of the highest score (NaN ranks last; ties -> the first drawn): best-of-N's pick.

    >>> best([0.2, float("nan"), 0.9, 0.9])
    2
    """
    return max(range(len(scores)), key=lambda k: (rank(scores[k]), -k))


@strategy(deterministic=True)
def greedy(policy: Policy, scorer: Scorer, problems: list[Problem], budget: int,
           options: SearchOptions) -> list[SearchResult]:
    """One chain at temperature 0 per problem, whatever the budget (temperature/top_p are ignored)."""
    meter = Meter(policy, scorer, problems)
    chains, answers = draw(meter, problems, 1, dataclasses.replace(options, temperature=0.0, top_p=1.0))
    return [SearchResult(a[0], c[0], math.nan, meter.ledger(i)) for i, (c, a) in enumerate(zip(chains, answers))]


@strategy
def majority(policy: Policy, scorer: Scorer, problems: list[Problem], budget: int,
             options: SearchOptions) -> list[SearchResult]:
    """Self-consistency: N samples, the most frequent extracted answer wins. The scorer is not used."""
    meter = Meter(policy, scorer, problems)
    chains, answers = draw(meter, problems, budget, options)
    out = []
    for i, (cs, ans) in enumerate(zip(chains, answers)):
        win = vote(ans)
        j = _pick(cs, ans, win, [math.nan] * len(cs))
        out.append(SearchResult(win, cs[j], math.nan, meter.ledger(i), info={"answers": ans}))
    return out


@strategy
def best_of_n(policy: Policy, scorer: Scorer, problems: list[Problem], budget: int,
              options: SearchOptions) -> list[SearchResult]:
    """N samples, the chain with the highest outcome score wins (NaN scores rank last; ties -> first sample)."""
    return _scored(policy, scorer, problems, budget, options, weighted=False)


@strategy
def weighted_best_of_n(policy: Policy, scorer: Scorer, problems: list[Problem], budget: int,
                       options: SearchOptions) -> list[SearchResult]:
    """N samples, each votes for its answer with weight = its score; the answer with the largest sum wins
    (NaN weighs 0; all-zero weights fall back to plain majority). Chain = best-scoring chain with that answer."""
    return _scored(policy, scorer, problems, budget, options, weighted=True)


def _scored(policy, scorer, problems, budget, options: SearchOptions, *, weighted: bool) -> list[SearchResult]:
    meter = Meter(policy, scorer, problems)
    chains, answers = draw(meter, problems, budget, options)
    flat = meter.score([i for i, cs in enumerate(chains) for _ in cs], [c for cs in chains for c in cs])
    out = []
    for i, (cs, ans) in enumerate(zip(chains, answers)):
        scores, flat = flat[: len(cs)], flat[len(cs):]
        if weighted:
            win = vote(ans, scores)
            j = _pick(cs, ans, win, scores)
        else:
            j = best(scores)
            win = ans[j]
        out.append(SearchResult(win, cs[j], scores[j], meter.ledger(i), info={"answers": ans, "scores": scores}))
    return out


#: until_verified's default acceptance score: above 0.5, what the programmatic scorers give a chain they cannot judge
#: (and ``none`` gives every chain), below 0.9, the least a chain verified by cheap/checker scores (1 - STEP_SLIP)
ACCEPT = 0.75


def judges(scorer: Scorer, problems: Sequence[Problem]) -> bool:
    """False when ``scorer`` declares that it judges nothing on every one of these problems' tasks (``none``
    anywhere; ``cheap`` on tasks without a cheap check, e.g. decimals): it scores all chains alike, so it can accept
    none. A scorer that declares no kind (a scripted test double) is taken at its word."""
    if not hasattr(scorer, "scorer_kind"):
        return True
    return any(judging_kind(scorer, t) for t in {c for p in problems for c in components(p.task)})


@strategy
def until_verified(policy: Policy, scorer: Scorer, problems: list[Problem], budget: int, options: SearchOptions, *,
                   threshold: float = ACCEPT, batch: int = 0) -> list[SearchResult]:
    """Sample until the scorer accepts: the deployable form of rejection sampling. For each problem, chains are
    drawn in rounds and scored as they come; the first chain (in draw order) whose score is >= ``threshold`` is the
    answer and the problem stops drawing. Without one within ``budget`` chains, the best-scored chain wins, exactly
    as best_of_n would pick among the chains drawn.

    threshold: score at which a chain is accepted. The default ``ACCEPT`` (0.75) suits the programmatic scorers
        (wrong 0, cannot judge 0.5, verified 0.9 to 1); for a 0/1 verifier any value in (0, 1] acts alike, and
        0.5, a natural choice there, would accept every chain cheap cannot judge. With a learned scorer it is a
        probability of being right.
    batch: chains per problem per round; 0 (default) doubles: rounds of 1, 1, 2, 4, ... chains, so at most
        1 + log2(N) rounds (and prompt prefills) and at most twice the chains a one-at-a-time loop would draw.
        ``batch=budget`` is one round: best_of_n's draws plus its scores.

    Every round is ONE ``policy.sample`` call over the problems still open (they have all drawn as many chains,
    so one ``n`` fits all) and one ``scorer.score`` call over its new chains. The ledger counts every chain drawn
    and scored, those drawn after the accepted one in its round included, and each round's prompt tokens.
    Its chains are a prefix of best_of_n's (same seed and options) when a policy's k-th draw for a problem does not
    depend on how the draws are batched: qstar's ModelPolicy, whose chains the Meter seeds per problem and chain
    index (``stream_seed``). Then, with a 0/1 verifier, it returns best_of_n's answer on every problem, for fewer
    generated tokens. A policy without per-chain streams (a server, transformers) draws other chains in its rounds,
    from the same distribution: accuracy at budget N then matches best_of_n's in expectation, not problem by
    problem. Since each round prefills the prompt again, a problem never accepted costs more prompt tokens than
    under best_of_n. Refuses (ValueError) a scorer that ``judges`` nothing.

    Info per result: answers and scores (one entry per chain drawn, in order), accepted (a chain reached the
    threshold), chosen (index of the returned chain), rounds.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or math.isnan(threshold):
        raise ValueError(f"threshold must be a number (the score at which a chain is accepted), got {threshold!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
        raise ValueError(f"batch must be an integer >= 0 (chains per problem per round; 0: rounds of 1, 1, 2, 4, "
                         f"...), got {batch!r}")
    if not judges(scorer, problems):
        tasks = ", ".join(sorted({p.task for p in problems}))
        raise ValueError(f"until_verified: scorer {scorer.name!r} judges nothing on {tasks} (it scores every chain "
                         f"alike), so it can accept no chain; use a verifier (cheap on countdown, ages, cipher or "
                         f"mult) or a learned scorer, or best_of_n / majority")
    meter = Meter(policy, scorer, problems)
    P = len(problems)
    chains, answers, scores = [[] for _ in range(P)], [[] for _ in range(P)], [[] for _ in range(P)]
    accepted: list[int | None] = [None] * P
    rounds = [0] * P
    while todo := [i for i in range(P) if accepted[i] is None and len(chains[i]) < budget]:
        drawn = len(chains[todo[0]])
        n = min(batch or max(1, drawn), budget - drawn)
        new, new_answers = draw(meter, [problems[i] for i in todo], n, options, owners=todo)
        flat = meter.score([i for i in todo for _ in range(n)], [c for cs in new for c in cs])
        for r, i in enumerate(todo):
            rounds[i] += 1
            chains[i] += new[r]
            answers[i] += new_answers[r]
            for s in flat[r * n:(r + 1) * n]:
                if accepted[i] is None and rank(s) >= threshold:
                    accepted[i] = len(scores[i])
                scores[i].append(s)
    out = []
    for i in range(P):
        j = best(scores[i]) if accepted[i] is None else accepted[i]
        info = {"answers": answers[i], "scores": scores[i], "accepted": accepted[i] is not None, "chosen": j,
                "rounds": rounds[i]}
        out.append(SearchResult(answers[i][j], chains[i][j], scores[i][j], meter.ledger(i), info=info))
    return out
