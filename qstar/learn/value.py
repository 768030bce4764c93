"""A learned value V(question, partial chain) = P(the policy finishes it correctly): the "Q" of Q*.

``qstar train value --init POLICY --task countdown --out DIR``:

1) roll out ``samples`` chains per train problem from the policy;
2) Monte-Carlo returns (VinePPO): from every step prefix of every rollout, ``mc_samples`` completions of the same
   policy; the prefix's target is their success rate under the exact verifier (the answer line's target is the
   chain's own outcome). These are the Math-Shepherd soft labels of ``qstar.learn.reward_model``, read as returns;
3) fit a :class:`~qstar.scorers.learned.RewardModel` of kind "value" with ``fit_reward`` (BCE at every step end;
   unbalanced by default, so the output stays a calibrated probability rather than a ranking);
4) evaluate on held-out samples (AUC, best-of-N by the value) and write DIR/checkpoint.

A value is also trained on search statistics (``tree_items``): a search tree's nodes re-backed-up with verified
outcomes at its finished leaves, each weighted by its visits, optionally mixed with the search's own backed-up value.
``qstar.learn.alphazero`` alternates search with the value and training on what it found.

The value is PRM-like (one probability per step end), so it reuses the reward-model trainer and serves as scorer
``value`` (``qstar.scorers``; kind ``learned``): its chain score is the value of the last step, and beam / DVTS rank
paths by it with ``aggregation="last"``, MCTS evaluates new nodes with it (``value_source="steps"``).

A value estimates ITS policy's success: the architecture of the policy it learned from is recorded in its
checkpoint, and loading it for a policy of another architecture is an error (``load_value``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from qstar.learn.budget import Budget
from qstar.learn.evaluate import chain_budget
from qstar.learn.reward_model import fit_reward, held_out_metrics, label_chains, reward_items
from qstar.learn.runs import start_run
from qstar.model.checkpoint import CheckpointError, load_model, task_for
from qstar.model.model import ModelConfig, Transformer
from qstar.model.perf import configure_threads
from qstar.model.types import Policy
from qstar.runio import atomic_write_json
from qstar.scorers.learned import LearnedScorer, RewardModel, load_reward_model, save_reward_model
from qstar.search.nodes import SearchTree, tree_from_json
from qstar.tasks import get_task, is_correct
from qstar.tasks.base import Problem

__all__ = ["ValueConfig", "train_value", "mc_items", "tree_targets", "tree_items", "verified_in_trees",
           "new_value", "load_value", "save_value", "value_scorer", "fit_value"]

Item = tuple[str, list[str], list[float]]  # (question, steps, one target per step; NaN = no target)


@dataclass
class ValueConfig:
    """Train a value model on Monte-Carlo returns of a policy's own rollouts."""

    init: str = ""
    """Policy checkpoint (run dir or HF dir) whose rollouts and returns the value learns."""
    task: str = ""
    """Task name (train split for rollouts, test split for evaluation). Empty: the --init checkpoint's task."""
    out: str = "runs/value"
    """Run directory: checkpoint/ (the value model), summary.json."""
    value_init: str = ""
    """Continue training this value model (run dir or checkpoint; it must come from a policy of --init's
    architecture). Empty: a new value model from --trunk."""
    trunk: str = "shared"
    """New value model's trunk: "shared" starts from the policy's weights; a preset name (tiny, small, base) is a
    fresh separate model."""
    problems: int = 128
    """Train problems to roll out."""
    samples: int = 4
    """Rollouts per train problem."""
    mc_samples: int = 4
    """Completions per step prefix for its Monte-Carlo return (more: less noisy targets, more policy tokens)."""
    temperature: float = 0.8
    """Sampling temperature of rollouts and completions (the one the search will sample at)."""
    max_steps: int = 200
    """Value-model updates (the budget). 0: train for --seconds instead."""
    seconds: float = 0.0
    """Safety cap on training time in seconds; a run it stops is marked cut short. 0: no cap."""
    batch_size: int = 32
    """Chains per update."""
    lr: float = 3e-4
    """Peak learning rate."""
    balance: bool = False
    """Weight positive and negative targets equally (ranks better on skewed data, but the output stops being a
    calibrated probability)."""
    eval_problems: int = 50
    """Held-out problems for AUC and best-of-N by the value."""
    eval_samples: int = 8
    """Chains sampled per held-out problem."""
    seed: int = 0
    """Seed for problems, sampling and training order."""
    force: bool = False
    """Overwrite a finished run in OUT."""


# --------------------------------------------------------------------------------------------------- targets


def mc_items(policy: Policy, problems: Sequence[Problem], *, samples: int, mc_samples: int, temperature: float,
             max_tokens: int) -> tuple[list[Item], list[tuple[str, str]]]:
    """Monte-Carlo returns of the policy's own rollouts: (items, verified rollouts as (question, chain)).

    Each rollout's step j gets the success rate of ``mc_samples`` completions from ``steps[:j+1]``; its answer line
    gets its outcome (``qstar.learn.reward_model.mc_step_labels``)."""
    records = label_chains(policy, problems, samples=samples, temperature=temperature, max_tokens=max_tokens,
                           mc_samples=mc_samples)
    verified = list(dict.fromkeys((r["problem"]["question"], r["chain"].strip()) for r in records if r["outcome"]))
    return reward_items(records, kind="prm", label="soft"), verified


def tree_targets(tree: SearchTree, problem: Problem, *, search_weight: float = 0.0,
                 correct: Callable[[Problem, str], bool] = is_correct) -> dict[int, float]:
    """node id -> value target from a search tree (root excluded).

    Verified backup: a finished leaf is worth 1 if its answer is right, 0 if wrong or a dead end; a node's target
    is the mean over the finished leaves in its subtree, each weighted by its visits (at least 1), so the nodes
    the search preferred count as often as it chose them. Nodes with no finished leaf below have no target.
    ``search_weight`` w mixes in the search's own backed-up value: (1 - w) * verified + w * node.value.
    """
    if not 0.0 <= search_weight <= 1.0:
        raise ValueError(f"search_weight must be in [0, 1], got {search_weight}")
    num, den = [0.0] * len(tree.nodes), [0.0] * len(tree.nodes)
    for node in reversed(tree.nodes):  # ids are creation order: children come after their parent
        if node.terminal and node.id:
            w = float(max(node.visits, 1))
            r = float(node.is_answer and correct(problem, tree.chain(node.id)))
            num[node.id] += w * r
            den[node.id] += w
        if node.parent is not None:
            num[node.parent] += num[node.id]
            den[node.parent] += den[node.id]
    out = {}
    for node in tree.nodes[1:]:
        if den[node.id]:
            t = num[node.id] / den[node.id]
            v = node.value
            out[node.id] = t if math.isnan(v) else (1 - search_weight) * t + search_weight * min(max(v, 0.0), 1.0)
    return out


def tree_items(trees: Sequence[dict], problems: Sequence[Problem], *, search_weight: float = 0.0) -> list[Item]:
    """Training items from search trees (``SearchResult.tree`` JSON): one per leaf, its path's targets, each node
    targeted once (NaN where an earlier leaf's path already carried it, or where it has no target)."""
    out: list[Item] = []
    for d, p in zip(trees, problems):
        if not d:
            continue
        tree = tree_from_json(d)
        targets, seen = tree_targets(tree, p, search_weight=search_weight), set()
        for leaf in (n.id for n in tree.nodes[1:] if not n.children):
            path = tree.path(leaf)[1:]
            ts = [targets.get(n, math.nan) if n not in seen else math.nan for n in path]
            seen.update(path)
            if any(not math.isnan(t) for t in ts):
                out.append((p.question, tree.steps(leaf), ts))
    return out


def verified_in_trees(trees: Sequence[dict], problems: Sequence[Problem], *, max_per_problem: int,
                      correct: Callable[[Problem, str], bool] = is_correct) -> list[tuple[str, str]]:
    """(question, chain) for distinct verified answer paths in each tree, at most ``max_per_problem`` each, the
    most visited first (the search's own preference)."""
    out = []
    for d, p in zip(trees, problems):
        if not d:
            continue
        tree = tree_from_json(d)
        ends = sorted((n for n in tree.nodes if n.is_answer), key=lambda n: (-n.visits, n.id))
        chains = dict.fromkeys(tree.chain(n.id).strip() for n in ends)
        out += [(p.question, c) for c in chains if correct(p, c)][:max_per_problem]
    return out


# --------------------------------------------------------------------------------------------------- the model


def new_value(policy_model: Transformer, trunk: str) -> RewardModel:
    """A value model: the policy's own weights ("shared"; the caller's model is trained in place) or a preset."""
    return RewardModel(policy_model if trunk == "shared" else Transformer(ModelConfig.preset(trunk)), kind="value")


def save_value(directory: str | Path, model: RewardModel, tok, *, policy_cfg: ModelConfig, meta: dict) -> Path:
    """Write the value model atomically, recording the architecture of the policy it learned from."""
    return save_reward_model(directory, model, tok,
                             meta={**meta, "value": {"policy_arch": policy_cfg.to_dict()}})


def load_value(path: str | Path, *, policy_cfg: ModelConfig | None = None) -> tuple[RewardModel, object, dict]:
    """(value model, tokenizer, meta); ValueError for a directory that is not a qstar value model (another
    architecture or tokenizer, a PRM, a policy), or, with ``policy_cfg``, one learned from a policy of another
    architecture (its estimates are about another policy's continuations)."""
    try:
        model, tok, meta = load_reward_model(path)
    except CheckpointError as e:
        raise ValueError(f"value model {path}: {e}") from None
    if model.kind != "value":
        raise ValueError(f"{path} holds a {model.kind} reward model, not a value model; train one with "
                         "`qstar train value`")
    recorded = (meta.get("value") or {}).get("policy_arch")
    if policy_cfg is not None and recorded != policy_cfg.to_dict():
        mine = policy_cfg.to_dict()
        diff = [f"{k} {recorded.get(k)!r} vs {mine[k]!r}" for k in mine if recorded.get(k) != mine[k]] \
            if isinstance(recorded, dict) else ["no policy architecture recorded"]
        raise ValueError(f"value model {path} was learned from a policy of another architecture ({'; '.join(diff)}); "
                         "a value estimates its own policy's success: train one for this policy with "
                         "`qstar train value --init POLICY`")
    return model, tok, meta


def value_scorer(model: RewardModel, tok) -> LearnedScorer:
    """The value as a search scorer: a chain's score is its last step's value."""
    return LearnedScorer(model, tok, aggregation="last", name="value")


def fit_value(model: RewardModel, tok, items: Sequence[Item], *, steps: int | None, seconds: float | None = None,
              lr: float = 3e-4, batch_size: int = 32, balance: bool = False, seed: int = 0) -> dict:
    """``fit_reward`` on value targets (BCE at every step end; NaN targets untrained)."""
    return fit_reward(model, tok, items, steps=steps, seconds=seconds, lr=lr, batch_size=batch_size,
                      balance=balance, warmup_steps=min(20, steps or 20), seed=seed)


# --------------------------------------------------------------------------------------------------- entrypoint


def _check(cfg: ValueConfig) -> None:
    if not cfg.init:
        raise ValueError("`qstar train value` needs --init POLICY_DIR: the policy whose success it learns to predict")
    if cfg.trunk != "shared":
        ModelConfig.preset(cfg.trunk)  # ValueError naming the presets
    if min(cfg.problems, cfg.samples, cfg.mc_samples, cfg.eval_samples) < 1 or cfg.eval_problems < 0:
        raise ValueError("--problems, --samples, --mc-samples and --eval-samples must be >= 1")
    if cfg.seconds <= 0 and cfg.max_steps <= 0:
        raise ValueError("give a positive --max-steps (or --seconds) budget")


def train_value(cfg: ValueConfig) -> dict:
    """Roll out, label with Monte-Carlo returns, fit, evaluate; see the module docstring."""
    from qstar.model.policy import ModelPolicy

    _check(cfg)
    configure_threads()
    cfg = replace(cfg, task=task_for(cfg.task, [cfg.init], default="mult", doing="training a value for"))
    task = get_task(cfg.task)
    policy_model, tok, _ = load_model(cfg.init, flag="--init")
    value = load_value(cfg.value_init, policy_cfg=policy_model.cfg)[0] if cfg.value_init else None
    out = start_run(cfg.out, force=cfg.force)
    torch.manual_seed(cfg.seed)
    problems = task.generate(cfg.problems, seed=cfg.seed, split="train")
    max_tokens = chain_budget(task, problems)

    # 1-2) rollouts and their Monte-Carlo returns
    t0 = time.perf_counter()
    items, verified = mc_items(ModelPolicy(policy_model, tok), problems, samples=cfg.samples,
                               mc_samples=cfg.mc_samples, temperature=cfg.temperature, max_tokens=max_tokens)
    label_seconds = time.perf_counter() - t0
    # 3) fit (a shared trunk is a copy: the policy is reloaded below for evaluation)
    model = value or new_value(policy_model, cfg.trunk)
    budget = Budget.of(cfg.max_steps, cfg.seconds)
    stats = fit_value(model, tok, items, steps=budget.steps, seconds=budget.seconds, lr=cfg.lr,
                      batch_size=cfg.batch_size, balance=cfg.balance, seed=cfg.seed)
    # 4) evaluate on held-out samples of the (unchanged) policy
    metrics = held_out_metrics(value_scorer(model, tok), cfg.init, task, tok, problems=cfg.eval_problems,
                               samples=cfg.eval_samples, temperature=cfg.temperature, seed=cfg.seed)
    targets = [t for _, _, ts in items for t in ts if not math.isnan(t)]
    summary = {"stage": "value", "task": cfg.task, "kind": "value", "trunk": cfg.trunk, "params": model.num_params(),
               "train/items": len(items), "train/targets": len(targets),
               "train/mean_target": sum(targets) / max(1, len(targets)), "train/verified_rollouts": len(verified),
               "train/label_seconds": label_seconds, "train/seconds": stats["seconds"], "train/steps": stats["steps"],
               "train/cut_short": stats["cut_short"], "train/loss": stats["loss"],
               "train/first_loss": stats["first_loss"], **metrics, "eval/n": cfg.eval_samples,
               "checkpoint": str(out / "checkpoint"), "config": asdict(cfg)}
    save_value(out / "checkpoint", model, tok, policy_cfg=policy_model.cfg,
               meta={"stage": "value", "config": asdict(cfg), "metrics": summary})
    atomic_write_json(out / "summary.json", summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}))
    return summary
