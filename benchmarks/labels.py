"""How good are Monte-Carlo step labels? Counted against the tasks' exact step checkers.

    .venv/bin/python benchmarks/labels.py --policy runs/demo --task mult [--problems 64 --rollouts 1 2 4 8]

1) sample --samples chains per train problem from the policy;
2) exact step labels: a step is right while every step up to it passes the task's step check
   (``Task.check_step``, read through the oracle scorer's ``score_steps``, so a chain's labels fall to 0 at its first
   wrong step and stay there: a process label);
3) Math-Shepherd labels (``qstar.learn.reward_model.mc_step_labels``) with k rollouts per step prefix for each k of
   --rollouts (fresh rollouts per k): soft = the share of rollouts reaching a right answer, hard = any does;
4) per k and label type: precision and recall of "right step" against the exact labels, specificity (the share of
   wrong steps labelled wrong), expected calibration error (ECE, --bins equal-width bins of the label value) and the
   AUC of the label as a score of the exact label (``label_quality``); answer lines are left out (their MC label is
   the exact outcome);
5) a PRM (the policy's trunk + a head, ``fit_reward`` for --prm-steps updates) trained on the largest k's soft labels,
   and one trained on the exact labels, each scored by its step-level AUC against the exact labels of held-out
   chains (--test-problems x --samples).

Prints a table and one JSON line per row. Without --policy a tiny model is SFT-trained for --train-steps updates
first (a step budget; --max-seconds is only a safety cap, and a policy it cut short says "cut_short": true).
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import qstar  # noqa: F401  (thread env before torch)

# isort: split
from bench_common import SAFETY_SECONDS, sft_warmup

from qstar.config import parse_config


@dataclass
class Args:
    """Monte-Carlo step labels and a PRM against the tasks' exact step labels."""

    policy: str = ""
    """Policy checkpoint (run dir or HF dir); empty: SFT a tiny one for --train-steps updates."""
    task: str = "mult"
    """Task with an exact step checker (mult, letters, decimals, cipher, parity, countdown, ages)."""
    problems: int = 64
    """Train problems whose sampled chains are labelled (and train the PRMs)."""
    test_problems: int = 32
    """Held-out problems whose sampled chains measure the PRMs' step-level AUC."""
    samples: int = 4
    """Chains sampled per problem."""
    rollouts: tuple[int, ...] = (1, 2, 4, 8)
    """Monte-Carlo rollouts per step prefix, one labelling per value."""
    temperature: float = 0.8
    """Sampling temperature of chains and rollouts."""
    bins: int = 5
    """Equal-width bins of the label value for the calibration error."""
    prm_steps: int = 100
    """Training updates per PRM (0 skips the PRMs)."""
    seed: int = 0
    """Seed for problems, sampling and training."""
    train_steps: int = 300
    """SFT updates for the fallback tiny policy (only without --policy)."""
    max_seconds: float = SAFETY_SECONDS
    """Safety cap in seconds on each training run (a run it stops says cut_short)."""


def label_quality(exact: Sequence[float], labels: Sequence[float], *, threshold: float, bins: int = 5) -> dict:
    """Step labels against exact ones (1 = right step). A label > ``threshold`` predicts "right" (hard MC labels:
    threshold 0, any rollout succeeded; soft: 0.5). Returns {steps, right_share, precision, recall, specificity,
    ece, auc}: ece = sum over equal-width bins of the label value of (share of steps in the bin) x |mean label - share
    right|; auc = ``qstar.learn.reward_eval.auc`` of the label against the exact label. NaN where undefined.

    >>> q = label_quality([1, 1, 0, 0], [1.0, 0.5, 0.5, 0.25], threshold=0.0, bins=2)
    >>> q["precision"], q["recall"], q["specificity"], q["ece"]  # bin [0, .5): .25 vs 0, a quarter of the steps
    (0.5, 1.0, 0.0, 0.0625)
    """
    from qstar.learn.reward_eval import auc

    if len(exact) != len(labels):
        raise ValueError(f"label_quality got {len(exact)} exact labels for {len(labels)} labels")
    y = [bool(e) for e in exact]
    pred = [x > threshold for x in labels]
    tp = sum(p and t for p, t in zip(pred, y))
    fp = sum(p and not t for p, t in zip(pred, y))
    fn = sum(t and not p for p, t in zip(pred, y))
    tn = len(y) - tp - fp - fn
    ece = 0.0
    for b in range(bins):
        idx = [i for i, x in enumerate(labels) if min(int(x * bins), bins - 1) == b]
        if idx:
            ece += len(idx) / len(y) * abs(sum(labels[i] for i in idx) / len(idx) - sum(y[i] for i in idx) / len(idx))

    def ratio(a: int, b: int) -> float:
        return a / b if b else math.nan
    return {"steps": len(y), "right_share": ratio(sum(y), len(y)), "precision": ratio(tp, tp + fp),
            "recall": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp), "ece": ece if y else math.nan,
            "auc": auc(list(labels), y)}


def exact_labels(problems, steps) -> list[list[float]]:
    """Exact process labels per step (1 while every step so far checks out) from the oracle scorer."""
    from qstar.scorers import get_scorer

    return get_scorer("oracle").score_steps(problems, steps)


def non_answer(steps: Sequence[Sequence[str]], values: Sequence[Sequence[float]]) -> list[float]:
    """The values of every step that is not an answer line, flattened."""
    from qstar.tasks.format import ANSWER_PREFIX

    return [v for s, vs in zip(steps, values) for x, v in zip(s, vs) if not x.startswith(ANSWER_PREFIX)]


def main(argv: list[str] | None = None) -> int:
    args = parse_config(Args, argv, prog="benchmarks/labels.py")
    import torch

    from qstar.learn.evaluate import chain_budget
    from qstar.learn.reward_eval import auc
    from qstar.learn.reward_model import fit_reward, mc_step_labels, reward_items, sample_chains
    from qstar.model.checkpoint import load_checkpoint, resolve_checkpoint
    from qstar.model.policy import load_policy
    from qstar.scorers.learned import LearnedScorer, RewardModel
    from qstar.tasks import get_task
    from qstar.tasks.format import chain_steps

    task = get_task(args.task)
    policy_dir, trained = args.policy, {}
    if not policy_dir:
        policy_dir = tempfile.mkdtemp(prefix="qstar-bench-labels-")
        rep = sft_warmup(args.task, policy_dir, steps=args.train_steps, max_seconds=args.max_seconds, preset="tiny",
                         seed=args.seed, eval_problems=50)
        trained = {"cut_short": rep["sft_cut_short"], "train_steps": rep["sft_steps"]}
    policy = load_policy(policy_dir, seed=args.seed)
    train = task.generate(args.problems, seed=args.seed, split="train")
    max_tokens = chain_budget(task, train)
    torch.manual_seed(args.seed)

    def sampled(problems):
        chains = sample_chains(policy, problems, n=args.samples, temperature=args.temperature, max_tokens=max_tokens)
        flat_p = [p for p, row in zip(problems, chains) for _ in row]
        flat_c = [c for row in chains for c in row]
        return flat_p, flat_c, [chain_steps(c) for c in flat_c]

    flat_p, flat_c, steps = sampled(train)
    exact = exact_labels(flat_p, steps)
    y = non_answer(steps, exact)
    rows, by_k = [], {}
    for k in args.rollouts:
        by_k[k] = mc_step_labels(policy, flat_p, flat_c, k=k, temperature=args.temperature, max_tokens=max_tokens)
        for kind, threshold in (("hard", 0.0), ("soft", 0.5)):
            q = label_quality(y, non_answer(steps, [lab[kind] for lab in by_k[k]]), threshold=threshold,
                              bins=args.bins)
            rows.append({"what": "mc_labels", "rollouts": k, "label": kind, **q})
    if args.prm_steps > 0 and args.rollouts:
        test_p, _, test_steps = sampled(task.generate(args.test_problems, seed=args.seed, split="test"))
        test_y = non_answer(test_steps, exact_labels(test_p, test_steps))
        k = max(args.rollouts)
        records = [{"problem": p.to_json(), "steps": s, "soft": lab["soft"]}
                   for p, s, lab in zip(flat_p, steps, by_k[k])]
        exact_records = [{"problem": p.to_json(), "steps": s, "soft": e} for p, s, e in zip(flat_p, steps, exact)]
        for name, recs in ((f"mc-soft-k{k}", records), ("exact", exact_records)):
            torch.manual_seed(args.seed)
            trunk, tok, _ = load_checkpoint(resolve_checkpoint(policy_dir))
            rm = RewardModel(trunk, kind="prm")
            fit = fit_reward(rm, tok, reward_items(recs, kind="prm", label="soft"), steps=args.prm_steps,
                             seconds=args.max_seconds, seed=args.seed)
            probs = LearnedScorer(rm, tok).step_probs([p.question for p in test_p], test_steps)
            rows.append({"what": "prm", "trained_on": name, "updates": fit["steps"], "cut_short": fit["cut_short"],
                         "steps": len(test_y), "right_share": sum(test_y) / max(1, len(test_y)),
                         "auc": auc(non_answer(test_steps, probs), [bool(v) for v in test_y])})
    print_table(rows, task=args.task, chains=len(flat_c))
    for r in rows:
        print(json.dumps(r | {"task": args.task} | trained), flush=True)
    return 0


def print_table(rows: list[dict], *, task: str, chains: int) -> None:
    """The label-quality table, for people (stderr, so stdout stays JSON lines)."""
    def f(x) -> str:
        return "  n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:5.3f}"
    out = [f"MC step labels vs exact step labels, {task}, {chains} chains", "rollouts label  steps right  precision "
           "recall specificity   ECE   AUC"]
    for r in rows:
        if r["what"] == "mc_labels":
            out.append(f"{r['rollouts']:8d} {r['label']:5s} {r['steps']:6d} {f(r['right_share'])}  {f(r['precision'])}"
                       f"     {f(r['recall'])}  {f(r['specificity'])}      {f(r['ece'])} {f(r['auc'])}")
    for r in rows:
        if r["what"] == "prm":
            out.append(f"PRM trained on {r['trained_on']} ({r['updates']} updates): step AUC vs exact labels "
                       f"{f(r['auc'])} on {r['steps']} held-out steps")
    print("\n".join(out), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
