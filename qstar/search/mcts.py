"""Monte Carlo tree search over reasoning steps with PUCT (the AlphaZero / Q* recipe).

Each simulation, per problem: 1) select from the root by PUCT, ``Q(c) + c_puct * P(c) * sqrt(N(parent)) / (1 +
N(c))``, down to a leaf; 2) expand the leaf by sampling ``width`` candidate next steps (one ``policy.sample`` call
for all problems' leaves, ``n=width``); priors P = softmax of the candidates' log-probabilities (distinct steps
only); 3) evaluate each new step: ``value_source="steps"`` uses the scorer's step score (``score_steps``, cached by
prefix), ``"rollout"`` samples one completion from the step to the end and uses the scorer's outcome ``score``;
dead ends (empty/over-long steps, no answer) are worth 0 and NaN counts as 0 (the lowest score); 4) back the value
up: every node's value is the mean of the evaluations in its subtree. Selecting a finished chain backs up its value
again without calling the policy. After the simulations the chosen path follows the most-visited child (ties: higher
value, then older node); if it stops before an answer, one greedy completion (temperature 0) finishes it.

Root rule ``root="gumbel"`` (Danihelka et al. 2022, "Policy improvement by planning with Gumbel"; ReSCALE 2026
found it keeps gaining with budget where PUCT falls): the first simulation expands the root; each root child a gets
a Gumbel draw g(a) (scaled by ``gumbel_scale``; 0 = none, for golden tests) and the remaining simulations are spread
over the root children by Sequential Halving: ``halving_schedule`` says how many simulations the child chosen next
must already have had, and among the children with that count the next is the one with the highest
``g(a) + log P(a) + sigma(Q(a))``, ``sigma(q) = (c_visit + max_b N(b)) * c_scale * q`` (N: simulations through each
root child). So every child is tried, then the better half gets twice as many, and so on. Below the root children,
selection is PUCT. The chosen root child is the one with that highest score among the most simulated; the path
below it follows the most-visited children, as with PUCT.

Budget mapping: ``simulations`` (default ``budget``) simulations per problem, each sampling ``width`` steps, so about
``budget * width / steps_per_chain`` chains of policy compute (+ one chain per simulation with rollouts).
"""

from __future__ import annotations

import math
import random

from qstar.model.types import Policy, Prompt
from qstar.search.common import Meter, strategy
from qstar.search.nodes import Node, SearchTree, tree_to_json
from qstar.search.options import SearchOptions
from qstar.search.tree import parse_step
from qstar.search.types import Scorer, SearchResult
from qstar.tasks import extract_answer
from qstar.tasks.base import Problem
from qstar.tasks.format import STEP_END

VALUE_SOURCES = ("steps", "rollout")
ROOT_RULES = ("puct", "gumbel")


def puct(parent: Node, child: Node, c_puct: float) -> float:
    """PUCT selection score of ``child``; unvisited children have Q = 0."""
    q = child.value if child.visits else 0.0
    return q + c_puct * child.prior * math.sqrt(parent.visits) / (1 + child.visits)


def _select(tree: SearchTree, c_puct: float, start: int = 0) -> int:
    node = tree.nodes[start]
    while node.children:
        # ties go to the older child, so runs are deterministic
        node = tree.nodes[max(node.children, key=lambda c: (puct(node, tree.nodes[c], c_puct), -c))]
    return node.id


def _backup(tree: SearchTree, nid: int, value: float) -> None:
    for i in tree.path(nid):
        tree.nodes[i].visits += 1
        tree.nodes[i].value_sum += value


def _priors(logprobs: list[float | None], temperature: float) -> list[float]:
    """Softmax over candidate log-probabilities; uniform when the backend gives none."""
    if any(lp is None for lp in logprobs):
        return [1.0 / len(logprobs)] * len(logprobs)
    top = max(logprobs)
    w = [math.exp((lp - top) / temperature) for lp in logprobs]
    return [x / sum(w) for x in w]


def halving_schedule(m: int, n: int) -> list[int]:
    """Sequential Halving over ``m`` root children in ``n`` simulations, as visit counts: entry k is how many
    simulations the child picked at simulation k must already have had (mctx's ``get_sequence_of_considered_visits``
    rule). Each of ``ceil(log2 m)`` phases gives every child still considered ``max(1, n // (phases * considered))``
    more simulations, then halves the considered set (never below 2).

    >>> halving_schedule(4, 8)  # phase 1: 8 // (2 * 4) = 1 each of 4; phase 2: 8 // (2 * 2) = 2 each of the best 2
    [0, 0, 0, 0, 1, 1, 2, 2]
    """
    if m <= 1:
        return list(range(n))
    phases, seq, considered, visits = math.ceil(math.log2(m)), [], m, [0] * m
    while len(seq) < n:
        for _ in range(max(1, n // (phases * considered))):
            seq += visits[:considered]
            visits[:considered] = [v + 1 for v in visits[:considered]]
        considered = max(2, considered // 2)
    return seq[:n]


class _Gumbel:
    """Root state of Gumbel MCTS for one tree: each root child's Gumbel draw and simulation count, the schedule."""

    def __init__(self, tree: SearchTree, sims: int, rng: random.Random, *, scale: float, c_visit: float,
                 c_scale: float) -> None:
        self.tree, self.c_visit, self.c_scale = tree, c_visit, c_scale
        kids = tree.root.children
        # g = -log(-log U), U in (0, 1): a standard Gumbel draw per root child
        self.g = {c: scale * -math.log(-math.log(rng.uniform(1e-12, 1 - 1e-12))) for c in kids}
        self.sims = dict.fromkeys(kids, 0)
        self.schedule, self.k = halving_schedule(len(kids), sims), 0

    def score(self, c: int) -> float:
        """g(a) + log P(a) + sigma(Q(a)), sigma(q) = (c_visit + max_b N(b)) * c_scale * q."""
        node = self.tree.nodes[c]
        q = _finite(node.value) if node.visits else 0.0
        sigma = (self.c_visit + max(self.sims.values())) * self.c_scale * max(q, 0.0)
        return self.g[c] + math.log(max(node.prior, 1e-12)) + sigma

    def next(self) -> int:
        """The root child the next simulation descends into (ties: the older child)."""
        want = self.schedule[self.k] if self.k < len(self.schedule) else min(self.sims.values())
        self.k += 1
        pool = [c for c, v in self.sims.items() if v == want] or list(self.sims)
        c = max(pool, key=lambda c: (self.score(c), -c))
        self.sims[c] += 1
        return c

    def choice(self) -> int:
        """The root child to answer from: the highest score among the most simulated."""
        top = max(self.sims.values())
        return max((c for c, v in self.sims.items() if v == top), key=lambda c: (self.score(c), -c))


@strategy(tree=True)
def mcts(policy: Policy, scorer: Scorer, problems: list[Problem], budget: int, options: SearchOptions, *,
         simulations: int | None = None, width: int = 4, c_puct: float = 1.5, value_source: str = "steps",
         prior_temperature: float = 1.0, root: str = "puct", gumbel_scale: float = 1.0, c_visit: float = 50.0,
         c_scale: float = 1.0) -> list[SearchResult]:
    """PUCT tree search, or Gumbel + Sequential Halving at the root with ``root="gumbel"``; see the module
    docstring. ``options.max_tokens`` caps rollouts and the final completion; ``options.seed`` seeds the Gumbel
    draws."""
    temperature, top_p, max_tokens = options.temperature, options.top_p, options.max_tokens
    max_step_tokens, max_steps = options.max_step_tokens, options.max_steps
    sims = budget if simulations is None else simulations
    if value_source not in VALUE_SOURCES:
        raise ValueError(f"unknown value_source {value_source!r}; choose from {', '.join(VALUE_SOURCES)}")
    for k, v in (("simulations", sims), ("width", width), ("max_steps", max_steps),
                 ("max_step_tokens", max_step_tokens)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{k} must be an integer >= 1, got {v!r}")
    if not c_puct >= 0 or not prior_temperature > 0:
        raise ValueError("c_puct must be >= 0 and prior_temperature > 0")
    if root not in ROOT_RULES:
        raise ValueError(f"unknown root rule {root!r}; choose from {', '.join(ROOT_RULES)}")
    if not (gumbel_scale >= 0 and c_visit >= 0 and c_scale >= 0):
        raise ValueError("gumbel_scale, c_visit and c_scale must be >= 0")
    meter, trees = Meter(policy, scorer, problems), [SearchTree() for _ in problems]
    evals: list[dict[int, float]] = [{} for _ in problems]  # node id -> its own evaluation (re-backed-up if final)
    rng = random.Random(options.seed)
    gumbel: list[_Gumbel | None] = [None] * len(problems)

    for sim in range(sims):
        leaves = []
        for i, tree in enumerate(trees):
            if root == "gumbel" and gumbel[i] is None and tree.root.children:  # the root was expanded last time
                gumbel[i] = _Gumbel(tree, sims - sim, rng, scale=gumbel_scale, c_visit=c_visit, c_scale=c_scale)
            nid = _select(tree, c_puct, gumbel[i].next() if gumbel[i] else 0)
            node = tree.nodes[nid]
            if not node.terminal and tree.depth(nid) >= max_steps:
                node.terminal = True
            if node.terminal:
                _backup(tree, nid, evals[i].get(nid, 0.0))
            else:
                leaves.append((i, nid))
        if not leaves:
            continue
        prompts = [Prompt(problems[i].question, trees[i].chain(n)) for i, n in leaves]
        comps = meter.sample([i for i, _ in leaves], prompts, n=width, temperature=temperature, top_p=top_p,
                             max_tokens=max_step_tokens, stop_at_step=True)
        new: list[tuple[int, int, int]] = []  # (problem, leaf, child)
        for (i, leaf), row in zip(leaves, comps):
            cands: dict[str, tuple[bool, float | None]] = {}
            for c in row:
                step, terminal = parse_step(c)
                cands.setdefault(step, (terminal, c.logprob if c.logprobs else None))
            priors = _priors([lp for _, lp in cands.values()], prior_temperature)
            for (step, (terminal, _)), p in zip(cands.items(), priors):
                new.append((i, leaf, trees[i].add(leaf, step, prior=p, terminal=terminal).id))
        values = _evaluate(meter, trees, new, value_source, temperature=temperature, top_p=top_p,
                           max_tokens=max_tokens)
        for (i, leaf, nid), (score, v) in zip(new, values):
            trees[i].nodes[nid].score = score
            evals[i][nid] = v
            trees[i].nodes[nid].visits, trees[i].nodes[nid].value_sum = 1, v
            _backup(trees[i], leaf, v)
    starts = [g.choice() if g else 0 for g in gumbel]
    return _finish(meter, trees, sims, starts, max_tokens=max_tokens, root=root)


def _evaluate(meter: Meter, trees: list[SearchTree], new: list[tuple[int, int, int]], value_source: str,
              **kw) -> list[tuple[float, float]]:
    """(shown score, value used for backup) per new node, with batched scorer/rollout calls."""
    dead = [trees[i].nodes[n].terminal and not trees[i].nodes[n].is_answer for i, _, n in new]
    live = [(i, n) for (i, _, n), d in zip(new, dead) if not d]
    if value_source == "steps":
        scores = meter.score_steps([i for i, _ in live], [trees[i].steps(n) for i, n in live])
    else:
        # finished chains are scored as they are; unfinished ones by one sampled completion each
        todo = [(i, n) for i, n in live if not trees[i].nodes[n].terminal]
        rolls = meter.sample([i for i, _ in todo], [Prompt(meter.problems[i].question, trees[i].chain(n))
                                                    for i, n in todo], n=1, **kw)
        roll = {(i, n): r[0].text for (i, n), r in zip(todo, rolls)}
        scores = meter.score([i for i, _ in live], [trees[i].chain(n) + roll.get((i, n), "") for i, n in live])
    it = iter(scores)
    out = []
    for d in dead:
        s = math.nan if d else next(it)
        out.append((s, 0.0 if math.isnan(s) else s))
    return out


def _finish(meter: Meter, trees: list[SearchTree], sims: int, starts: list[int], *, max_tokens: int,
            root: str) -> list[SearchResult]:
    """Follow the most-visited path from each start node; finish unfinished ones with one batched greedy
    completion."""
    ends = []
    for tree, start in zip(trees, starts):
        node = tree.nodes[start]
        while node.children:
            node = tree.nodes[max(node.children, key=lambda c: (tree.nodes[c].visits,
                                                                _finite(tree.nodes[c].value), -c))]
        ends.append(node.id)
    todo = [i for i, (t, e) in enumerate(zip(trees, ends)) if not t.nodes[e].terminal]
    comps = meter.sample(todo, [Prompt(meter.problems[i].question, trees[i].chain(ends[i])) for i in todo],
                         n=1, temperature=0.0, max_tokens=max_tokens)
    for i, row in zip(todo, comps):
        for line in row[0].text.split(STEP_END):
            if line.strip():
                ends[i] = trees[i].add(ends[i], line.rstrip(), prior=1.0).id
            if trees[i].nodes[ends[i]].is_answer:
                break
        trees[i].nodes[ends[i]].terminal = True
    out = []
    for i, (tree, end) in enumerate(zip(trees, ends)):
        tree.chosen = tree.path(end)
        chain = tree.chain(end)
        answer = extract_answer(meter.problems[i], chain) if tree.nodes[end].is_answer else None
        out.append(SearchResult(answer, chain, tree.nodes[end].value, meter.ledger(i), tree=tree_to_json(tree),
                                info={"strategy": "mcts", "nodes": len(tree.nodes) - 1, "simulations": sims,
                                      "root": root, **meter.notes(i)}))
    return out


def _finite(x: float) -> float:
    return -math.inf if math.isnan(x) else x
