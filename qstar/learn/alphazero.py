"""AlphaZero for chains of thought: search with the value -> train policy and value on what search found -> repeat.

``qstar train alphazero --init SFT_DIR --task countdown --out DIR --rounds 3``

Round 0 (DIR/value-0) gives the first value: ``--value-init`` (checked against the policy's architecture), or one
trained by ``qstar train value`` on Monte-Carlo returns of the --init policy. Then each round k (DIR/az-round-k):

1) search: a tree strategy (mcts; beam, dvts) on fresh train problems, the current value as its scorer;
2) value targets: the search trees re-backed-up with verified outcomes (``qstar.learn.value.tree_items``), plus
   Monte-Carlo returns of the current policy's rollouts on the same problems (VinePPO; ``--mc-samples 0``: none);
3) value: train the previous value further on them (``fit_reward``);
4) policy: SFT (expert iteration's step, ``qstar.learn.sft.fit``) on the verified chains search and rollouts found,
   of all rounds so far, from the previous round's weights; a round that found none leaves the policy as it was;
5) evaluate on held-out problems: greedy accuracy, and the strategy guided by the new value next to best-of-N with
   the same value as scorer at the same budget (accuracy and policy tokens per problem);
6) write value/, then checkpoint/ (the policy), then summary.json: a round with a summary is done, and a killed
   loop resumes at the first round without one.

Simplifications vs AlphaZero: the policy learns the verified chains (SFT), not the visit distribution; the value is
a separate copy of the policy's trunk with its own head, not one two-headed network, so each trains with its own
loss and schedule.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from qstar.learn.evaluate import chain_budget, greedy_accuracy
from qstar.learn.runs import finish_stage, load_examples, read_summary, save_examples, stage_done, start_run
from qstar.learn.sft import fit
from qstar.learn.value import (
    ValueConfig,
    fit_value,
    load_value,
    mc_items,
    save_value,
    train_value,
    tree_items,
    value_scorer,
    verified_in_trees,
)
from qstar.model.checkpoint import load_checkpoint, load_model, resolve_checkpoint, task_for
from qstar.model.perf import configure_threads
from qstar.runio import atomic_write_json
from qstar.search.registry import get_strategy, strategy_knobs, strategy_spec
from qstar.tasks import get_task

__all__ = ["AlphaZeroConfig", "train_alphazero"]


@dataclass
class AlphaZeroConfig:
    """Rounds of value-guided search -> train the policy and the value on what it found (AlphaZero for chains)."""

    init: str = ""
    """Starting policy checkpoint (run dir or HF dir), usually an SFT run."""
    task: str = ""
    """Task name; rounds draw fresh train-split problems, evaluation uses the test split. Empty: the --init
    checkpoint's task."""
    out: str = "runs/alphazero"
    """Run directory: value-0/, az-round-k/ per round, summary.json at the end."""
    value_init: str = ""
    """Value model to start from (from `qstar train value` on a policy of --init's architecture). Empty: round 0
    trains one on Monte-Carlo returns of --init."""
    rounds: int = 2
    """Search -> train rounds."""
    problems: int = 64
    """Fresh train problems searched per round."""
    strategy: str = "mcts"
    """Tree strategy guided by the value: mcts, beam or dvts."""
    budget: int = 8
    """Search budget per problem (the strategy's budget; mcts: simulations)."""
    width: int = 4
    """Candidate steps per expansion."""
    samples: int = 4
    """Rollouts per problem whose Monte-Carlo returns also train the value."""
    mc_samples: int = 4
    """Completions per rollout prefix for its return; 0: the value learns from search statistics only."""
    temperature: float = 0.8
    """Sampling temperature of the search, rollouts and completions."""
    search_weight: float = 0.0
    """Weight of the search's own backed-up value in a tree node's target (0: verified outcomes only)."""
    value_steps: int = 100
    """Value updates per round (and for round 0)."""
    value_lr: float = 3e-4
    """Value peak learning rate."""
    policy_steps: int = 50
    """Policy SFT updates per round."""
    lr: float = 3e-4
    """Policy SFT peak learning rate (the policy only needs nudging)."""
    batch_size: int = 32
    """Sequences per update (policy and value)."""
    max_per_problem: int = 2
    """Most verified chains per problem kept for the policy."""
    eval_problems: int = 50
    """Held-out problems for greedy accuracy and search vs best-of-N after each round (0: none)."""
    seed: int = 0
    """Seed for problems, sampling and data order."""
    force: bool = False
    """Overwrite a finished run in OUT."""


def _check(cfg: AlphaZeroConfig) -> None:
    if not cfg.init:
        raise ValueError("`qstar train alphazero` needs --init POLICY_DIR (an SFT checkpoint to improve)")
    if min(cfg.rounds, cfg.problems, cfg.budget, cfg.width, cfg.samples, cfg.max_per_problem) < 1:
        raise ValueError("--rounds, --problems, --budget, --width, --samples and --max-per-problem must be >= 1")
    if cfg.mc_samples < 0 or cfg.eval_problems < 0 or cfg.value_steps < 1 or cfg.policy_steps < 1:
        raise ValueError("--mc-samples and --eval-problems must be >= 0, --value-steps and --policy-steps >= 1")
    if not strategy_spec(cfg.strategy).tree:  # ValueError naming the strategies for an unknown one
        raise ValueError(f"--strategy {cfg.strategy} grows no search tree; the value learns from trees: use mcts, "
                         "beam or dvts")
    if not 0.0 <= cfg.search_weight <= 1.0:
        raise ValueError(f"--search-weight must be in [0, 1], got {cfg.search_weight}")


def _knobs(cfg: AlphaZeroConfig) -> dict:
    """The strategy's own options: its width, and ranking paths by the value of their last step."""
    takes = strategy_knobs(cfg.strategy)
    return {k: v for k, v in (("width", cfg.width), ("aggregation", "last")) if k in takes}


def _search_eval(policy, scorer, problems, cfg: AlphaZeroConfig, max_tokens: int) -> dict:
    """The value-guided strategy next to best-of-N with the same value, same budget, same problems."""
    from qstar.search.run import run_strategy

    out = {}
    for name, knobs in ((cfg.strategy, _knobs(cfg)), ("best_of_n", {})):
        s, _ = run_strategy(policy, scorer, problems, strategy=name, budget=cfg.budget, temperature=cfg.temperature,
                            max_tokens=max_tokens, seed=cfg.seed, **knobs)
        tag = "search" if name == cfg.strategy else "best_of_n"
        out.update({f"eval/{tag}_accuracy": s["accuracy"], f"eval/{tag}_tokens": s["tokens_per_problem"]})
    return out


def _value_zero(cfg: AlphaZeroConfig, out: Path, policy_cfg) -> Path:
    """Round 0: the starting value's checkpoint (checked, or trained on Monte-Carlo returns of --init)."""
    if cfg.value_init:
        load_value(cfg.value_init, policy_cfg=policy_cfg)  # ValueError for a foreign or mismatched value
        return resolve_checkpoint(cfg.value_init)
    vdir = out / "value-0"
    if not stage_done(vdir):
        train_value(ValueConfig(init=cfg.init, task=cfg.task, out=str(vdir), problems=cfg.problems,
                                samples=cfg.samples, mc_samples=max(1, cfg.mc_samples), temperature=cfg.temperature,
                                max_steps=cfg.value_steps, batch_size=cfg.batch_size, lr=cfg.value_lr,
                                eval_problems=0, seed=cfg.seed, force=True))
    return vdir / "checkpoint"


def train_alphazero(cfg: AlphaZeroConfig) -> dict:
    """Run (or resume) the rounds; returns the final summary (also OUT/summary.json)."""
    from qstar.model.policy import ModelPolicy

    _check(cfg)
    configure_threads()
    cfg = replace(cfg, task=task_for(cfg.task, [cfg.init], default="countdown", doing="training"))
    task = get_task(cfg.task)
    model, tok, _ = load_model(cfg.init, flag="--init")  # ValueError for a missing/corrupt/foreign checkpoint
    out = start_run(cfg.out, force=cfg.force)
    value_dir = _value_zero(cfg, out, model.cfg)
    weights = resolve_checkpoint(cfg.init)
    eval_problems = task.generate(cfg.eval_problems, seed=cfg.seed, split="test")
    max_tokens = chain_budget(task, eval_problems or task.generate(8, seed=cfg.seed, split="train"))
    history: list[dict] = []
    kept_all: list[tuple[str, str]] = []
    for k in range(1, cfg.rounds + 1):
        rdir = out / f"az-round-{k}"
        if stage_done(rdir):  # resume: this round finished before a kill
            s = read_summary(rdir)
            history.append(s)
            value_dir = rdir / "value"
            if s.get("checkpoint"):
                weights = Path(s["checkpoint"])
            kept_all += load_examples(rdir / "kept.jsonl")
            print(f"az: round {k} already done", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        model, tok, _ = load_checkpoint(weights)
        value, vtok, _ = load_value(value_dir, policy_cfg=model.cfg)
        torch.manual_seed(cfg.seed * 1000 + k)
        policy = ModelPolicy(model, tok)
        problems = task.generate(cfg.problems, seed=cfg.seed * 1000 + k, split="train")
        # 1) search with the current value
        results = get_strategy(cfg.strategy)(policy, value_scorer(value, vtok), problems, cfg.budget,
                                             temperature=cfg.temperature, max_tokens=max_tokens, **_knobs(cfg))
        trees = [r.tree for r in results]
        # 2) value targets: verified backups of the trees, and Monte-Carlo returns of rollouts
        items = tree_items(trees, problems, search_weight=cfg.search_weight)
        kept = verified_in_trees(trees, problems, max_per_problem=cfg.max_per_problem)
        rollouts = 0
        if cfg.mc_samples:
            mc, verified = mc_items(policy, problems, samples=cfg.samples, mc_samples=cfg.mc_samples,
                                    temperature=cfg.temperature, max_tokens=max_tokens)
            items += mc
            rollouts = len(verified)
            per: dict[str, int] = {}
            for q, _ in kept:
                per[q] = per.get(q, 0) + 1
            for q, c in verified:  # rollouts top up problems the search solved fewer than max_per_problem times
                if (q, c) not in kept and per.get(q, 0) < cfg.max_per_problem:
                    kept.append((q, c))
                    per[q] = per.get(q, 0) + 1
        search_seconds = time.perf_counter() - t0
        # 3) the value learns from what search and rollouts found
        vstats = {"steps": 0, "loss": math.nan, "first_loss": math.nan}
        if items:
            vstats = fit_value(value, vtok, items, steps=cfg.value_steps, lr=cfg.value_lr,
                               batch_size=cfg.batch_size, seed=cfg.seed * 1000 + k)
        else:
            print(f"warning: az round {k}: no value targets (no finished chain in any tree); the value is unchanged",
                  file=sys.stderr)
        # 4) the policy distils the verified chains (all rounds so far)
        kept_all += kept
        pstats = {"steps": 0, "loss": math.nan}
        if kept_all:
            pstats = fit(model, tok, kept_all, steps=cfg.policy_steps, lr=cfg.lr, batch_size=cfg.batch_size,
                         warmup_steps=min(10, cfg.policy_steps), seed=cfg.seed * 1000 + k)
        else:
            print(f"warning: az round {k}: search verified no chain; the policy is unchanged this round",
                  file=sys.stderr)
        # 5) evaluate; 6) write value, policy, summary (last)
        metrics = {"round": k, "kept": len(kept), "train_examples": len(kept_all), "search/solved":
                   len({q for q, _ in kept}) / len(problems), "value/items": len(items), "value/steps": vstats["steps"],
                   "value/loss": vstats["loss"], "value/first_loss": vstats["first_loss"],
                   "policy/steps": pstats["steps"], "policy/loss": pstats["loss"], "rollouts/verified": rollouts,
                   "search_seconds": search_seconds}
        if eval_problems:
            ep = ModelPolicy(model, tok)
            metrics["eval/greedy_accuracy"] = greedy_accuracy(ep, eval_problems, max_tokens=max_tokens)
            metrics.update(_search_eval(ep, value_scorer(value, vtok), eval_problems, cfg, max_tokens))
        rdir.mkdir(parents=True, exist_ok=True)
        save_examples(rdir / "kept.jsonl", kept)
        save_value(rdir / "value", value, vtok, policy_cfg=model.cfg,
                   meta={"stage": f"az-round-{k}", "config": asdict(cfg), "metrics": metrics})
        s = finish_stage(rdir, model, tok, stage=f"az-round-{k}", config=asdict(cfg), metrics=metrics)
        history.append(s)
        weights, value_dir = rdir / "checkpoint", rdir / "value"
        print(json.dumps({k2: v for k2, v in s.items() if k2 != "checkpoint"}), file=sys.stderr)
    summary = {"stage": "alphazero", "task": cfg.task, "rounds": history, "checkpoint": str(weights),
               "value": str(value_dir), "kept_total": sum(h.get("kept", 0) for h in history),
               **{key: history[-1].get(key) for key in ("eval/greedy_accuracy", "eval/search_accuracy",
                                                        "eval/best_of_n_accuracy") if history},
               "config": asdict(cfg)}
    atomic_write_json(out / "summary.json", summary)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("config", "rounds")}))
    return summary
