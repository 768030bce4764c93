"""Step-level tree search guided by per-step scores: beam search and DVTS (diverse verifier tree search).

Both grow one ``SearchTree`` per problem a step (one line) at a time. At every level ALL problems' frontier nodes
are expanded in one ``policy.sample`` call (``n`` = samples per node, ``stop_at_step=True``) and all new steps are
scored in one ``scorer.score_steps`` call (cached by step prefix, so no step is scored twice). A path's score is
its per-step scores aggregated by ``aggregation`` (qstar.scorers.aggregation): min (weakest step, the PRM default),
prod, or last.

Budget mapping (``budget`` = N chains; ``width`` = M samples per expanded node):
- beam: the root is expanded into N first steps; then it keeps ``max(1, N // M)`` beams, each expanded into
  ``min(M, N)`` candidates -> about N steps per level, i.e. about N chains of compute. The beam holds finished
  chains too; the search stops when no beam is unfinished.
- dvts: ``max(1, N // M)`` independent subtrees; each expands its one active node into ``min(M, N)`` candidates and
  greedily keeps the best (the verifier picks the step) -> N steps per level, and the subtrees stay diverse.
Every loop stops after ``max_steps`` levels; a step longer than ``max_step_tokens`` or an empty step is a dead end.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from qstar.model.types import Completion, Policy, Prompt
from qstar.scorers.aggregation import PATH_AGGREGATIONS, get_aggregation
from qstar.search.common import Meter, rank, strategy
from qstar.search.nodes import SearchTree, tree_to_json
from qstar.search.options import SearchOptions
from qstar.search.sampling import vote
from qstar.search.types import Scorer, SearchResult
from qstar.tasks import extract_answer
from qstar.tasks.base import Problem
from qstar.tasks.format import ANSWER_PREFIX, STEP_END


def parse_step(c: Completion) -> tuple[str, bool]:
    """(step text, terminal) for a one-step completion. Terminal: an answer line, or a dead end (empty step,
    a step that ran past the token cap). Text after the first line is dropped (one step per node)."""
    line = c.text.split(STEP_END, 1)[0]
    if line.startswith(ANSWER_PREFIX):
        return line.rstrip(), True
    truncated = c.finish == "length" and STEP_END not in c.text
    return line, (not line.strip()) or truncated


SELECT = ("best", "weighted")


def grow(meter: Meter, trees: list[SearchTree], groups: list[list[int]], *, keep: int, expand: int, first: int,
         aggregate: Callable, temperature: float, top_p: float, max_step_tokens: int, max_steps: int) -> None:
    """Grow trees level by level. ``groups[g]`` = [problem index, *beam node ids]; each group keeps its best
    ``keep`` nodes (finished ones included) among its beam and their new children, until none is unfinished.
    Each frontier node gets ``expand`` samples, the root ``first``; one policy call per level for everything."""
    for level in range(max_steps):
        front = [(g, i, nid) for g, (i, *beam) in enumerate(groups) for nid in beam if not trees[i].nodes[nid].terminal]
        if not front:
            return
        comps = meter.sample([i for _, i, _ in front], [Prompt(meter.problems[i].question, trees[i].chain(nid))
                                                        for _, i, nid in front],
                             n=first if level == 0 else expand, temperature=temperature, top_p=top_p,
                             max_tokens=max_step_tokens, stop_at_step=True)
        new: list[tuple[int, int, int]] = []  # (group, problem, node)
        for (g, i, nid), row in zip(front, comps):
            seen = set()
            for c in row:
                step, terminal = parse_step(c)
                if step in seen:  # identical siblings would only waste beam slots
                    continue
                seen.add(step)
                node = trees[i].add(nid, step, prior=math.exp(c.logprob) if c.logprobs else 1.0, terminal=terminal)
                node.terminal = node.terminal or trees[i].depth(node.id) >= max_steps
                new.append((g, i, node.id))
        new = [(g, i, n) for g, i, n in new if not _dead(trees[i], n)]  # dead ends leave the beam unscored
        live = [(i, n) for _, i, n in new]
        scores = meter.score_steps([i for i, _ in live], [trees[i].steps(n) for i, n in live])
        for (i, n), s in zip(live, scores):
            node = trees[i].nodes[n]
            node.score, node.visits = s, 1
            node.value_sum = aggregate(meter.step_scores(i, trees[i].steps(n)))
        for g, (i, *beam) in enumerate(groups):
            pool = [n for n in beam if trees[i].nodes[n].terminal] + [n for gg, _, n in new if gg == g]
            pool.sort(key=lambda n: (_neg(_path_rank(trees[i], n)), n))
            groups[g] = [i, *pool[:keep]]


def _dead(tree: SearchTree, nid: int) -> bool:
    """A chain that cannot continue and has no answer."""
    return tree.nodes[nid].terminal and not tree.nodes[nid].is_answer


def _path_rank(tree: SearchTree, nid: int) -> tuple[float, float]:
    """(aggregated path score, last step's score); dead ends and NaN rank last. The last step breaks ties, which
    matters when min/prod aggregation has zeroed many paths: among them, one whose answer checks out wins."""
    node = tree.nodes[nid]
    if _dead(tree, nid) or not node.visits:
        return -math.inf, -math.inf
    return rank(node.value), rank(node.score)


def _neg(key: tuple[float, float]) -> tuple[float, float]:
    return -key[0], -key[1]


def finish(meter: Meter, trees: list[SearchTree], select: str, name: str) -> list[SearchResult]:
    """Choose each problem's answer among every finished chain the search scored: the best path score, or a vote
    weighted by path scores. Without any finished chain the answer is None and the chain the best partial one."""
    out = []
    for i, tree in enumerate(trees):
        answers = [n.id for n in tree.nodes if n.is_answer and n.visits]
        pool = answers or [n.id for n in tree.nodes[1:]] or [0]
        best = min(pool, key=lambda n: (_neg(_path_rank(tree, n)), n))
        if select == "weighted" and answers:
            texts = [extract_answer(meter.problems[i], tree.chain(n)) for n in answers]
            win = vote(texts, [tree.nodes[n].value for n in answers])
            mine = [n for n, a in zip(answers, texts) if a == win]
            best = min(mine, key=lambda n: (_neg(_path_rank(tree, n)), n))
        tree.chosen = tree.path(best)
        chain = tree.chain(best)
        out.append(SearchResult(extract_answer(meter.problems[i], chain) if tree.nodes[best].is_answer else None,
                                chain, tree.nodes[best].value, meter.ledger(i), tree=tree_to_json(tree),
                                info={"strategy": name, "nodes": len(tree.nodes) - 1, **meter.notes(i)}))
    return out


def _search(policy, scorer, problems, budget: int, options: SearchOptions, *, name: str, width: int,
            aggregation: str, select: str) -> list[SearchResult]:
    max_steps, max_step_tokens = options.max_steps, options.max_step_tokens
    for k, v in (("width", width), ("max_steps", max_steps), ("max_step_tokens", max_step_tokens)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{k} must be an integer >= 1, got {v!r}")
    aggregate = get_aggregation(aggregation, PATH_AGGREGATIONS)
    if select not in SELECT:
        raise ValueError(f"unknown select {select!r}; choose from {', '.join(SELECT)}")
    expand, lanes = min(width, budget), max(1, budget // width)
    # beam: one group of `lanes` beams, root expanded N times; dvts: `lanes` groups of one beam, root M times each
    subtrees, keep, first = (1, lanes, budget) if name == "beam" else (lanes, 1, expand)
    meter, trees = Meter(policy, scorer, problems), [SearchTree() for _ in problems]
    groups = [[i, 0] for i in range(len(problems)) for _ in range(subtrees)]
    grow(meter, trees, groups, keep=keep, expand=expand, first=first, aggregate=aggregate,
         max_step_tokens=max_step_tokens, max_steps=max_steps, temperature=options.temperature, top_p=options.top_p)
    return finish(meter, trees, select, name)


@strategy(tree=True)
def beam(policy: Policy, scorer: Scorer, problems: list[Problem], budget: int, options: SearchOptions, *,
         width: int = 4, aggregation: str = "min", select: str = "best") -> list[SearchResult]:
    """Step-level beam search: keep the top ``budget // width`` paths by aggregated step score, expand each into
    ``width`` candidate steps. ``options.max_tokens`` is unused (steps are capped by ``max_step_tokens``)."""
    return _search(policy, scorer, problems, budget, options, name="beam", width=width, aggregation=aggregation,
                   select=select)


@strategy(tree=True)
def dvts(policy: Policy, scorer: Scorer, problems: list[Problem], budget: int, options: SearchOptions, *,
         width: int = 4, aggregation: str = "min", select: str = "best") -> list[SearchResult]:
    """Diverse verifier tree search: ``budget // width`` independent subtrees from the root, each a greedy
    step-level search (expand ``width`` candidates, keep the best); answers chosen by ``select`` over subtrees.
    ``options.max_tokens`` is unused."""
    return _search(policy, scorer, problems, budget, options, name="dvts", width=width, aggregation=aggregation,
                   select=select)
