"""Learned verifiers: outcome (ORM) and process (PRM) reward models as a scalar head on a qstar Transformer.

A reward model reads ``<bos> question \\n step_1 \\n ... step_k \\n Answer: X <eos>`` and applies a linear head
(d_model -> 1 logit) to the trunk's final normed hidden state at every step's END token: the "\\n" that closes a
step line, and the <eos> appended after the answer line. A read position therefore sees the whole step it judges
(the head never reads a position before the answer it is asked about).

- ORM ("orm"): trained with the chain's outcome (verified or not) at every step end (a value model in the sense
  of Cobbe et al. 2021; the extra positions regularise it and give partial chains a score). ``score`` reads <eos>.
- PRM ("prm"): trained with Monte-Carlo step labels (Math-Shepherd, see ``qstar.learn.reward_model``): the chance
  that the policy still reaches a right answer from each step prefix. ``score`` aggregates the step scores
  (``aggregation``: min, prod, last or mean; min is the Let's-Verify default).

Checkpoints are ordinary qstar/HF model directories of the trunk (``save_checkpoint``); the head's weights and the
kind live in ``qstar.json`` meta under "reward", so the directory is written atomically in one piece.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from qstar.model.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint, save_checkpoint
from qstar.model.model import Transformer
from qstar.model.tokenizer import CharTokenizer
from qstar.scorers.aggregation import AGGREGATIONS, get_aggregation
from qstar.tasks.base import Problem
from qstar.tasks.format import ANSWER_PREFIX, STEP_END, chain_steps, render_prompt

__all__ = ["KINDS", "RewardModel", "LearnedScorer", "encode_steps",
           "save_reward_model", "load_reward_model", "load_scorer"]

KINDS = ("orm", "prm", "value")  # value: qstar.learn.value (P(this prefix ends correct)); scored like an ORM


class RewardModel(nn.Module):
    """Transformer trunk + linear head. ``forward(ids [B,T]) -> logits [B,T]`` (one reward logit per position;
    only step-end positions are trained and read)."""

    def __init__(self, trunk: Transformer, *, kind: str) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown reward model kind {kind!r}; choose from {', '.join(KINDS)}")
        self.trunk, self.kind = trunk, kind
        self.head = nn.Linear(trunk.cfg.d_model, 1)
        nn.init.zeros_(self.head.weight)  # start at p = 0.5 everywhere; the bias is set from the label mean
        nn.init.zeros_(self.head.bias)

    def forward(self, ids: Tensor) -> Tensor:
        # Right-padded batches need no mask: causal attention never lets a real token see the padding after it.
        return self.head(self.trunk.hidden(ids)).squeeze(-1)

    def num_params(self) -> int:
        return self.trunk.num_params() + sum(p.numel() for p in self.head.parameters())


# --------------------------------------------------------------------------------------------------- encoding


def encode_steps(tok: CharTokenizer, question: str, steps: Sequence[str], *,
                 max_len: int | None = None) -> tuple[list[int], list[int]]:
    """Token ids of ``<bos> prompt steps`` and the read position of each step (its "\\n", or the <eos> that
    follows an answer line). With ``max_len`` the ids are cut to that many tokens and reads past the cut move
    to the last kept token (a very long chain is judged on what fits)."""
    ids = tok.encode(render_prompt(question), bos=True)
    reads = []
    for s in steps:
        line = " ".join(str(s).split())  # a step is one line; stray newlines would shift the read positions
        if line.startswith(ANSWER_PREFIX):
            ids += tok.encode(line, bos=False, eos=True)
        else:
            ids += tok.encode(line + STEP_END, bos=False)
        reads.append(len(ids) - 1)
    if max_len is not None and len(ids) > max_len:
        ids = ids[:max_len]
        reads = [min(r, max_len - 1) for r in reads]
    return ids, reads


def pad_batch(rows: Sequence[list[int]], pad_id: int) -> Tensor:
    """Right-padded int64 [B, T]."""
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


# --------------------------------------------------------------------------------------------------- the scorer


class LearnedScorer:
    """A :class:`RewardModel` behind the ``qstar.search.types.Scorer`` protocol.

    score: ORM -> probability at <eos>; PRM -> ``aggregation`` of the step probabilities. A chain without an
    answer line gets its last step's score (ORM) or the aggregate over its steps (PRM); an empty chain 0.
    score_steps: sigmoid of the head at each step's end. Batched ``batch_size`` sequences per forward pass.
    """

    oracle = False
    scorer_kind = "learned"

    def __init__(self, model: RewardModel, tokenizer: CharTokenizer, *, aggregation: str = "min",
                 batch_size: int = 64, name: str | None = None) -> None:
        get_aggregation(aggregation)  # ValueError naming the aggregations
        self.model, self.tok = model.eval(), tokenizer
        self.name = name or model.kind
        self.aggregation, self.batch_size = aggregation, batch_size
        self.params = model.num_params()

    def count_tokens(self, text: str) -> int:
        """Tokens the scorer reads for ``text`` (question + chain): one per character plus <bos> and <eos>."""
        return len(text) + 2

    @torch.inference_mode()
    def step_probs(self, questions: Sequence[str], steps: Sequence[Sequence[str]]) -> list[list[float]]:
        """Probabilities [len(questions)][len(steps[i])] read at each step end."""
        if len(questions) != len(steps):
            raise ValueError(f"scorer got {len(questions)} problems for {len(steps)} step lists")
        max_len = self.model.trunk.cfg.max_seq_len
        enc = [encode_steps(self.tok, q, s, max_len=max_len) for q, s in zip(questions, steps)]
        out: list[list[float]] = [[] for _ in enc]
        # longest first so each batch pads to similar lengths
        order = sorted(range(len(enc)), key=lambda i: -len(enc[i][0]))
        for b in range(0, len(order), self.batch_size):
            idx = [i for i in order[b : b + self.batch_size] if enc[i][1]]
            if not idx:
                continue
            probs = torch.sigmoid(self.model(pad_batch([enc[i][0] for i in idx], self.tok.pad_id)).float())
            for row, i in enumerate(idx):
                out[i] = probs[row, enc[i][1]].tolist()
        return out

    def score_steps(self, problems: Sequence[Problem], steps: Sequence[Sequence[str]]) -> list[list[float]]:
        return self.step_probs([p.question for p in problems], [list(s) for s in steps])

    def score(self, problems: Sequence[Problem], chains: Sequence[str]) -> list[float]:
        if len(problems) != len(chains):
            raise ValueError(f"scorer got {len(problems)} problems for {len(chains)} chains")
        probs = self.step_probs([p.question for p in problems], [chain_steps(c) for c in chains])
        agg = AGGREGATIONS["last" if self.model.kind in ("orm", "value") else self.aggregation]
        return [float(agg(p)) if p else 0.0 for p in probs]


# --------------------------------------------------------------------------------------------------- save / load


def save_reward_model(directory: str | Path, model: RewardModel, tokenizer: CharTokenizer, *, meta: dict) -> Path:
    """Write the trunk as a checkpoint directory with the head in ``meta["reward"]`` (one atomic write)."""
    head = {"kind": model.kind, "weight": model.head.weight.detach().float().reshape(-1).tolist(),
            "bias": float(model.head.bias.detach().float().item())}
    return save_checkpoint(directory, model.trunk, tokenizer, meta={**meta, "reward": head})


def load_reward_model(directory: str | Path) -> tuple[RewardModel, CharTokenizer, dict]:
    """(model in eval mode, tokenizer, meta) from a run dir or checkpoint dir; CheckpointError for a directory that
    is not a reward model (e.g. a policy checkpoint)."""
    d = resolve_checkpoint(directory)
    trunk, tok, meta = load_checkpoint(d)
    head = meta.get("reward")
    if not isinstance(head, dict):
        raise CheckpointError(f"{d}: not a reward model checkpoint (stage {meta.get('stage', '?')!r}, no reward "
                              "head); train one with `qstar train prm` or `qstar train orm`")
    model = RewardModel(trunk, kind=head.get("kind", ""))
    weight = torch.tensor(head.get("weight", []), dtype=torch.float32)
    if weight.numel() != trunk.cfg.d_model:
        raise CheckpointError(f"{d}: reward head has {weight.numel()} weights, trunk width is {trunk.cfg.d_model}")
    with torch.no_grad():
        model.head.weight.copy_(weight.reshape(1, -1))
        model.head.bias.fill_(float(head.get("bias", 0.0)))
    return model.eval(), tok, meta


def load_scorer(kind: str, *, checkpoint: str | Path = "", aggregation: str | None = None,
                batch_size: int = 64) -> LearnedScorer:
    """The scorer registry's factory for "orm" / "prm": ``load_scorer("prm", checkpoint=DIR)``.

    aggregation: PRM step aggregation (default: the one recorded at training time, else "min").
    """
    if kind not in KINDS:
        raise ValueError(f"unknown learned scorer {kind!r}; choose from {', '.join(KINDS)}")
    if not checkpoint:
        raise ValueError(f"the {kind} scorer needs checkpoint=DIR (a run dir from `qstar train {kind}`)")
    model, tok, meta = load_reward_model(checkpoint)
    if model.kind != kind:
        raise ValueError(f"{checkpoint} holds a {model.kind} reward model, not a {kind}; use the {model.kind} scorer")
    agg = aggregation or (meta.get("config") or {}).get("aggregation") or "min"
    return LearnedScorer(model, tok, aggregation=agg, batch_size=batch_size)
