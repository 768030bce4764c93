"""Search trees as data: the nodes beam search, DVTS and MCTS grow, and their JSON form.

A node holds ONE step (a line of the chain, or the ``Answer: X`` line). Its chain is the steps on the path from the
root. JSON form (what ``SearchResult.tree`` holds)::

    {"nodes": [{"id": 0, "parent": null, "step": "", "score": null, "visits": 0, "value": null, "prior": 1.0,
                "terminal": false}, ...],
     "chosen": [0, 3, 7]}

score: the scorer's score of the step (null when unscored or NaN). value: mean backed-up value (MCTS) or the
aggregated path score (beam/DVTS); null when unknown. visits: MCTS visit count (beam/DVTS: 1 per expansion).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from qstar.search.common import join_steps
from qstar.tasks.format import ANSWER_PREFIX


@dataclass
class Node:
    id: int
    parent: int | None
    step: str
    score: float = math.nan
    visits: int = 0
    value_sum: float = 0.0
    prior: float = 1.0
    terminal: bool = False
    children: list[int] = field(default_factory=list)

    @property
    def value(self) -> float:
        """Mean backed-up value; NaN before the first visit."""
        return self.value_sum / self.visits if self.visits else math.nan

    @property
    def is_answer(self) -> bool:
        return self.step.startswith(ANSWER_PREFIX)


class SearchTree:
    """Nodes indexed by id (ids are creation order); node 0 is the root (empty step)."""

    def __init__(self) -> None:
        self.nodes: list[Node] = [Node(0, None, "")]
        self.chosen: list[int] = []

    @property
    def root(self) -> Node:
        return self.nodes[0]

    def add(self, parent: int, step: str, *, prior: float = 1.0, terminal: bool = False) -> Node:
        node = Node(len(self.nodes), parent, step, prior=prior, terminal=terminal)
        self.nodes.append(node)
        self.nodes[parent].children.append(node.id)
        return node

    def path(self, node_id: int) -> list[int]:
        """Node ids from the root to ``node_id`` inclusive."""
        ids = []
        cur: int | None = node_id
        while cur is not None:
            ids.append(cur)
            cur = self.nodes[cur].parent
        return ids[::-1]

    def steps(self, node_id: int) -> list[str]:
        """Step texts on the path to ``node_id`` (root excluded)."""
        return [self.nodes[i].step for i in self.path(node_id)[1:]]

    def chain(self, node_id: int) -> str:
        return join_steps(self.steps(node_id))

    def depth(self, node_id: int) -> int:
        return len(self.path(node_id)) - 1


def _num(x: float) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), 6)


def tree_to_json(tree: SearchTree) -> dict:
    """JSON-serialisable dict of a tree (NaN becomes null; floats rounded to 6 decimals for stable goldens)."""
    nodes = [
        {"id": n.id, "parent": n.parent, "step": n.step, "score": _num(n.score), "visits": n.visits,
         "value": _num(n.value), "prior": _num(n.prior), "terminal": n.terminal}
        for n in tree.nodes
    ]
    return {"nodes": nodes, "chosen": list(tree.chosen)}


def tree_from_json(d: dict) -> SearchTree:
    """Rebuild a tree from ``tree_to_json`` output; ``tree_to_json(tree_from_json(d)) == d``."""
    if not isinstance(d, dict) or "nodes" not in d:
        raise ValueError("a search tree dict needs a 'nodes' list (see qstar.search.nodes)")
    tree = SearchTree()
    tree.nodes = []
    for i, nd in enumerate(d["nodes"]):
        if nd["id"] != i:
            raise ValueError(f"tree node ids must be 0..n-1 in order; got id {nd['id']} at position {i}")
        visits = int(nd.get("visits", 0))
        value = nd.get("value")
        node = Node(i, nd["parent"], nd["step"],
                    score=math.nan if nd.get("score") is None else float(nd["score"]),
                    visits=visits, value_sum=(math.nan if visits else 0.0) if value is None else float(value) * visits,
                    prior=math.nan if nd.get("prior") is None else float(nd["prior"]),
                    terminal=bool(nd.get("terminal", False)))
        tree.nodes.append(node)
        if node.parent is not None:
            tree.nodes[node.parent].children.append(i)
    tree.chosen = list(d.get("chosen", []))
    return tree
