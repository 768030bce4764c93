"""Training reward models: ORM on outcomes, PRM on Monte-Carlo step labels (Math-Shepherd).

``qstar train prm --init POLICY --task mult --out DIR``:

1) sample ``samples`` chains per train problem from the policy at the TEST-TIME temperature (the verifier must
   judge the chains best-of-N will show it, including the odd ones high temperature produces);
2) label them: outcome = the exact verifier; PRM step labels = for each distinct step prefix, ``mc_samples``
   completions from the policy -> soft label = success rate, hard label = any success (the answer line's label is
   the outcome itself);
3) fit a :class:`~qstar.scorers.learned.RewardModel` (trunk "shared" = the policy's weights, or a fresh preset)
   with BCE at every step end, classes optionally balanced;
4) evaluate on chains sampled for held-out problems: AUC of chain scores vs correctness, best-of-N and
   weighted-vote accuracy next to majority vote; write DIR/checkpoint (stage "prm"/"orm") and DIR/summary.json.

DIR/labels.jsonl keeps the labelled chains, so a killed run skips the (expensive) labelling when resumed and other
runs can reuse them with ``--labels``. Simplifications vs Math-Shepherd: one completer = the policy itself; prefixes
shared between chains of a problem are labelled once.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from qstar.executor import ExecutorOptions
from qstar.learn import distributed
from qstar.learn.budget import Budget
from qstar.learn.evaluate import chain_budget
from qstar.learn.reward_eval import evaluate_scorer
from qstar.learn.runs import start_run
from qstar.model.checkpoint import load_model, task_for
from qstar.model.model import ModelConfig, Transformer
from qstar.model.perf import configure_threads
from qstar.model.types import Policy, Prompt
from qstar.runio import append_jsonl, atomic_write_json, read_jsonl
from qstar.scorers.aggregation import AGGREGATIONS
from qstar.scorers.learned import LearnedScorer, RewardModel, encode_steps, pad_batch, save_reward_model
from qstar.tasks import get_task, is_correct
from qstar.tasks.base import Problem
from qstar.tasks.format import ANSWER_PREFIX, STEP_END, chain_steps

__all__ = ["RewardConfig", "train_prm", "train_orm", "sample_chains", "mc_step_labels", "label_chains",
           "reward_items", "fit_reward"]


@dataclass
class RewardConfig(ExecutorOptions):
    """Train a learned verifier (ORM or PRM) on chains sampled from a policy."""

    init: str = ""
    """Policy checkpoint (run dir or HF dir) that samples the chains and the Monte-Carlo completions."""
    task: str = ""
    """Task name; train chains come from its train split, evaluation from its test split. Empty: the task the --init
    policy was trained on, else mult."""
    out: str = "runs/prm"
    """Run directory: checkpoint/, summary.json, labels.jsonl."""
    trunk: str = "shared"
    """"shared": start from the policy's weights; a preset name (tiny, small, base): a separate fresh model."""
    problems: int = 256
    """Train problems to sample chains for."""
    samples: int = 4
    """Chains sampled per train problem."""
    temperature: float = 0.8
    """Sampling temperature of training chains and MC completions (use the one best-of-N will use)."""
    mc_samples: int = 8
    """PRM: completions per step prefix (Monte-Carlo step labels); ignored by the ORM."""
    label: str = "soft"
    """PRM target: "soft" (MC success rate) or "hard" (1 if any completion succeeds)."""
    aggregation: str = "min"
    """PRM step-score aggregation for a chain score: min, prod, last or mean."""
    balance: bool = True
    """Weight positive and negative targets equally in the loss (labels are skewed towards the policy's accuracy)."""
    max_steps: int = 300
    """Reward-model updates (the budget: every machine trains the same verifier). 0: train for --seconds instead."""
    seconds: float = 0.0
    """Safety cap on training time in seconds; a run it stops is marked cut short. With --max-steps 0 it is the
    budget itself. 0: no cap."""
    batch_size: int = 32
    """Chains per update."""
    lr: float = 3e-4
    """Peak learning rate (AdamW, warm-up then cosine)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    eval_problems: int = 100
    """Held-out problems for AUC and best-of-N in the summary."""
    eval_samples: int = 8
    """Chains sampled per held-out problem (N of the best-of-N in the summary)."""
    labels: str = ""
    """Reuse labelled chains from this labels.jsonl instead of sampling (must carry PRM labels for a PRM)."""
    seed: int = 0
    """Seed for problems, sampling and training order."""
    force: bool = False
    """Overwrite a finished run in OUT."""


# --------------------------------------------------------------------------------------------------- labelling


def sample_chains(policy: Policy, problems: Sequence[Problem], *, n: int, temperature: float, max_tokens: int,
                  chunk: int = 64) -> list[list[str]]:
    """``n`` chain texts per problem, [len(problems)][n], sampled in batches of ``chunk`` prompts."""
    out: list[list[str]] = []
    for i in range(0, len(problems), chunk):
        rows = policy.sample([Prompt(p.question) for p in problems[i : i + chunk]], n=n, temperature=temperature,
                             max_tokens=max_tokens)
        out += [[c.text for c in row] for row in rows]
    return out


def mc_step_labels(policy: Policy, problems: Sequence[Problem], chains: Sequence[str], *, k: int,
                   temperature: float, max_tokens: int, correct: Callable[[Problem, str], bool] = is_correct,
                   chunk: int = 64) -> list[dict]:
    """Math-Shepherd labels for each (problem, chain): {"steps", "outcome", "soft", "hard"}.

    steps: ``chain_steps(chain)`` (answer line last, if any). For every step line j, ``k`` completions are
    sampled from the prefix ``steps[:j+1]`` (each line + "\\n"); soft[j] = fraction whose full chain is correct,
    hard[j] = 1.0 if any is. The answer line's labels are the chain's outcome. Identical prefixes of the same
    problem are sampled once. correct(problem, full_text) decides success (default: the exact verifier).
    """
    if len(problems) != len(chains):
        raise ValueError(f"mc_step_labels got {len(problems)} problems for {len(chains)} chains")
    if k < 1:
        raise ValueError(f"mc_step_labels needs k >= 1 completions per prefix, got {k}")
    parsed = [chain_steps(c) for c in chains]
    keys: dict[tuple[str, str], tuple[Problem, str]] = {}
    for p, steps in zip(problems, parsed):
        for j, s in enumerate(steps):
            if not s.startswith(ANSWER_PREFIX):
                partial = "".join(x + STEP_END for x in steps[: j + 1])
                keys.setdefault((p.key, partial), (p, partial))
    todo = list(keys.values())
    rate: dict[tuple[str, str], float] = {}
    for i in range(0, len(todo), chunk):
        part = todo[i : i + chunk]
        rows = policy.sample([Prompt(p.question, partial) for p, partial in part], n=k, temperature=temperature,
                             max_tokens=max_tokens)
        for (p, partial), row in zip(part, rows):
            rate[(p.key, partial)] = sum(correct(p, partial + c.text) for c in row) / len(row)
    out = []
    for p, chain, steps in zip(problems, chains, parsed):
        outcome = float(correct(p, chain))
        soft = [outcome if s.startswith(ANSWER_PREFIX) else rate[(p.key, "".join(x + STEP_END for x in steps[: j + 1]))]
                for j, s in enumerate(steps)]
        out.append({"steps": steps, "outcome": outcome, "soft": soft, "hard": [float(x > 0) for x in soft]})
    return out


def label_chains(policy: Policy, problems: Sequence[Problem], *, samples: int, temperature: float,
                 max_tokens: int, mc_samples: int, executor: ExecutorOptions | None = None, checkpoint: str = "",
                 seed: int = 0) -> list[dict]:
    """Sample ``samples`` chains per problem and label them (MC step labels when ``mc_samples`` > 0).

    Returns records {"problem", "chain", "steps", "outcome"[, "soft", "hard"]} (JSON-serialisable). With
    ``executor``, shards of problems are labelled by its workers (``qstar.learn.shards``: ``policy`` is the
    ``checkpoint``'s, each shard seeded from ``seed``); without, in one pass on ``policy``'s current stream."""
    if executor is not None:
        from qstar.learn.shards import map_shards

        return map_shards(label_chains, problems, options=executor, checkpoint=checkpoint, seed=seed, policy=policy,
                          samples=samples, temperature=temperature, max_tokens=max_tokens, mc_samples=mc_samples)
    chains = sample_chains(policy, problems, n=samples, temperature=temperature, max_tokens=max_tokens)
    flat_p = [p for p, row in zip(problems, chains) for _ in row]
    flat_c = [c for row in chains for c in row]
    if mc_samples > 0:
        labels = mc_step_labels(policy, flat_p, flat_c, k=mc_samples, temperature=temperature, max_tokens=max_tokens)
    else:
        labels = [{"steps": chain_steps(c), "outcome": float(is_correct(p, c))} for p, c in zip(flat_p, flat_c)]
    return [{"problem": p.to_json(), "chain": c, **lab} for p, c, lab in zip(flat_p, flat_c, labels)]


def planted_error_records(task, problems: Sequence[Problem], *, seed: int = 0) -> list[dict]:
    """Exactly labelled chains without sampling: each problem's reference chain (every step right) and a copy with
    one planted error (``task.corrupt``): steps before it are right, the wrong step and everything after are not.

    Records look like ``label_chains``' (soft = hard = the exact labels). Monte-Carlo labels of a weak policy's own
    chains are noisy where the policy is unsure; these are not, and they are free.
    """
    from qstar.tasks.format import render_chain

    rng, out = random.Random(seed), []
    for p in problems:
        ref = task.steps(p)
        try:
            bad = task.corrupt(p, rng)
        except NotImplementedError:
            raise ValueError(f"task {task.name!r} cannot plant errors (no corrupt()); train without them") from None
        first = next((j for j, (a, b) in enumerate(zip(ref, bad)) if a != b), min(len(ref), len(bad)))
        wrong_answer = task.implied_answer(p, bad) or ""
        for steps, answer, good in ((ref, p.answer, len(ref)), (bad, wrong_answer, first)):
            chain = render_chain(steps, answer)
            labels = [1.0] * good + [0.0] * (len(steps) - good)
            outcome = float(task.accepts(p, answer))
            labels.append(outcome)  # the answer line
            out.append({"problem": p.to_json(), "chain": chain, "steps": chain_steps(chain), "outcome": outcome,
                        "soft": labels, "hard": labels})
    return out


def reward_items(records: Sequence[dict], *, kind: str,
                 label: str = "soft") -> list[tuple[str, list[str], list[float]]]:
    """(question, steps, one target per step) for training: ORM -> the outcome at every step; PRM -> MC labels."""
    if kind == "prm" and records and label not in records[0]:
        raise ValueError(f"labelled chains carry no {label!r} PRM labels (labelled with mc_samples=0?)")
    out = []
    for r in records:
        if not r["steps"]:
            continue  # an empty chain has nothing to read
        targets = [r["outcome"]] * len(r["steps"]) if kind == "orm" else list(r[label])
        out.append((r["problem"]["question"], list(r["steps"]), [float(t) for t in targets]))
    return out


# --------------------------------------------------------------------------------------------------- training


def fit_reward(model: RewardModel, tok, items: Sequence[tuple[str, list[str], list[float]]], *,
               seconds: float | None = None, steps: int | None = None, lr: float = 3e-4, batch_size: int = 32,
               weight_decay: float = 0.01, balance: bool = True, warmup_steps: int = 20, bf16: bool = False,
               head_lr_mult: float = 10.0, seed: int = 0) -> dict:
    """BCE of the head at every step end against soft targets in [0, 1]; returns {steps, seconds, loss, first_loss,
    cut_short}.

    A NaN target leaves its step untrained (e.g. an outcome verifier trained at the final position only).

    balance: positives (target mass) and negatives (1 - target) each get half the loss weight, so a 20%-accurate
    policy's labels do not teach "always wrong". The head bias starts at the logit of the mean target (0 when
    balanced). bf16: autocast the forward pass (attention stays fp32; SFT on this CPU ran 1.6x faster with it
    at `small`'s width and no faster at `tiny`'s, LOG.md 2026-12-02); the loss is computed in fp32.

    Under torchrun (qstar.learn.distributed) every rank draws the same global batch and runs its share of the chains;
    each rank's loss is over the global batch's weight, the gradients are summed, so the update is one process's.
    """
    if not items:
        raise ValueError("no labelled chains to train the reward model on (all chains empty?)")
    budget = Budget(steps, seconds)
    targets = [t for _, _, ts in items for t in ts if not math.isnan(t)]
    if not targets:
        raise ValueError("every reward target is NaN: nothing to train on")
    mean = min(max(sum(targets) / len(targets), 1e-3), 1 - 1e-3)
    if mean < 0.01 or mean > 0.99:
        distributed.say(f"warning: reward labels are {mean:.1%} positive: the verifier has almost nothing to tell "
                        "apart")
    w_pos, w_neg = (0.5 / mean, 0.5 / (1 - mean)) if balance else (1.0, 1.0)
    with torch.no_grad():
        model.head.bias.fill_(0.0 if balance else math.log(mean / (1 - mean)))
    max_len = model.trunk.cfg.max_seq_len
    enc = [(*encode_steps(tok, q, s, max_len=max_len), ts) for q, s, ts in items]
    # The head starts at zero, and the trunk's gradient is proportional to the head's weights: a head at the trunk's
    # small LR leaves the trunk untrained for a hundred steps. So the head learns faster.
    head = list(model.head.parameters())
    trunk = [p for p in model.parameters() if all(p is not h for h in head)]
    opt = torch.optim.AdamW([{"params": trunk, "mult": 1.0}, {"params": head, "mult": head_lr_mult}], lr=lr,
                            betas=(0.9, 0.95), weight_decay=weight_decay)
    rng = random.Random(seed)
    order: list[int] = []
    step, trained, loss_ema, first, bad = 0, 0.0, float("nan"), float("nan"), 0
    distributed.sync_parameters(model)
    model.train()
    while budget.running(step, trained):
        t0 = time.perf_counter()
        if len(order) < batch_size:  # epochs in shuffled order
            order += rng.sample(range(len(enc)), len(enc))
        batch, order = [enc[i] for i in order[:batch_size]], order[batch_size:]
        frac = budget.progress(step, trained)
        for g in opt.param_groups:
            warm = min(1.0, (step + 1) / warmup_steps)
            g["lr"] = g["mult"] * lr * warm * (0.1 + 0.45 * (1 + math.cos(math.pi * frac)))  # cosine to 10%
        rows = torch.tensor([b for b, (_, reads, _) in enumerate(batch) for _ in reads])
        cols = torch.tensor([r for _, reads, _ in batch for r in reads])
        y = torch.tensor([t for _, _, ts in batch for t in ts], dtype=torch.float32)
        w = torch.where(y.isnan(), 0.0, y * w_pos + (1 - y) * w_neg)
        y = y.nan_to_num(0.0)
        if w.sum() == 0:  # a batch of untrained positions only
            continue
        # this rank's chains (all of them in one process), weighed by the global batch's total weight
        mine = distributed.span(len(batch))
        here = (rows >= mine.start) & (rows < mine.stop)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(pad_batch([ids for ids, _, _ in batch[mine.start : mine.stop]], tok.pad_id))
        logits = logits.float()
        bce = F.binary_cross_entropy_with_logits(logits[rows[here] - mine.start, cols[here]], y[here], reduction="none")
        loss = (bce * w[here]).sum() / w.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        distributed.sum_gradients(model.parameters(), poison=not torch.isfinite(loss))
        # a non-finite loss or gradient anywhere makes the summed norm non-finite on every rank: all skip the update
        # (as sft.fit does), and give up if it keeps happening
        finite = bool(torch.isfinite(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)))
        if finite:
            opt.step()
        step += 1
        (loss_value,), (dt,) = distributed.agree([loss.item()], [time.perf_counter() - t0])
        if not finite:
            bad += 1
            distributed.say(f"warning: non-finite reward loss at step {step - 1}; update skipped")
            if bad >= 5:
                raise ValueError(f"reward model loss was non-finite for {bad} updates in a row; lower --lr")
            continue
        bad = 0
        trained += dt  # rank 0's clock: every rank stops at the same update
        first = loss_value if math.isnan(first) else first
        loss_ema = loss_value if math.isnan(loss_ema) else 0.95 * loss_ema + 0.05 * loss_value
    model.eval()
    return {"steps": step, "seconds": trained, "loss": loss_ema, "first_loss": first,
            "cut_short": budget.cut_short(step)}


# --------------------------------------------------------------------------------------------------- entrypoints


def train_prm(cfg: RewardConfig) -> dict:
    """Process reward model on Monte-Carlo step labels; see the module docstring."""
    return _train(cfg, "prm")


def train_orm(cfg: RewardConfig) -> dict:
    """Outcome reward model on verified sampled chains; see the module docstring."""
    return _train(cfg, "orm")


def _check(cfg: RewardConfig, kind: str) -> None:
    if not cfg.init:
        raise ValueError(f"`qstar train {kind}` needs --init POLICY_DIR: the policy whose chains it learns to judge")
    if cfg.label not in ("soft", "hard"):
        raise ValueError(f"--label must be soft or hard, got {cfg.label!r}")
    if cfg.aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown --aggregation {cfg.aggregation!r}; choose from {', '.join(AGGREGATIONS)}")
    if cfg.trunk != "shared":
        ModelConfig.preset(cfg.trunk)  # ValueError naming the presets
    if min(cfg.problems, cfg.samples, cfg.eval_samples) < 1 or cfg.eval_problems < 0:
        raise ValueError("--problems, --samples and --eval-samples must be >= 1")
    if cfg.seconds <= 0 and cfg.max_steps <= 0:
        raise ValueError("give a positive --max-steps (or --seconds) budget")


def _train(cfg: RewardConfig, kind: str) -> dict:
    from qstar.model.policy import ModelPolicy

    _check(cfg, kind)
    configure_threads()
    cfg = replace(cfg, task=task_for(cfg.task, [cfg.init], default="mult", doing="training a verifier for"))
    task = get_task(cfg.task)
    policy_model, tok, _ = load_model(cfg.init, flag="--init")
    w = distributed.init()  # under torchrun: rank 0 labels, evaluates and writes; every rank trains its share

    def begin() -> Path:
        if cfg.labels and not Path(cfg.labels).is_file():
            raise ValueError(f"--labels {cfg.labels}: no such file (a labels.jsonl written by an earlier run)")
        return start_run(cfg.out, force=cfg.force)

    distributed.on_main(begin)
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)
    policy = ModelPolicy(policy_model, tok)
    train_problems = task.generate(cfg.problems, seed=cfg.seed, split="train")
    max_tokens = chain_budget(task, train_problems)

    # 1-2) labelled chains: reuse --labels, or this run's labels.jsonl from a killed run, or sample + label now (on
    # rank 0, which shares them: the other ranks wait inside gloo's 30-minute timeout; spread long labelling over
    # --workers)
    def label() -> tuple[list[dict], float]:
        t0 = time.perf_counter()
        cache = Path(cfg.labels) if cfg.labels else out / "labels.jsonl"
        if cache.exists():
            records = read_jsonl(cache)
            print(f"{kind}: reusing {len(records)} labelled chains from {cache}", file=sys.stderr)
        else:
            records = label_chains(policy, train_problems, samples=cfg.samples, temperature=cfg.temperature,
                                   max_tokens=max_tokens, mc_samples=cfg.mc_samples if kind == "prm" else 0,
                                   executor=cfg, checkpoint=cfg.init, seed=cfg.seed)
            for r in records:
                append_jsonl(out / "labels.jsonl.tmp", r)
            (out / "labels.jsonl.tmp").replace(out / "labels.jsonl")
        return records, time.perf_counter() - t0

    records, label_seconds = distributed.share(distributed.on_main(label))
    items = reward_items(records, kind=kind, label=cfg.label)
    pos_rate = sum(r["outcome"] for r in records) / max(1, len(records))
    if records and pos_rate in (0.0, 1.0):
        distributed.say(f"warning: every sampled chain is {'right' if pos_rate else 'wrong'}; the {kind} cannot "
                        "learn to tell them apart (train the policy more, or use a harder/easier task)")

    # 3) the reward model: the policy's own trunk or a fresh separate one
    trunk = policy_model if cfg.trunk == "shared" else Transformer(ModelConfig.preset(cfg.trunk))
    model = RewardModel(trunk, kind=kind)
    budget = Budget.of(cfg.max_steps, cfg.seconds)
    stats = fit_reward(model, tok, items, seconds=budget.seconds, steps=budget.steps, lr=cfg.lr,
                       batch_size=cfg.batch_size,
                       weight_decay=cfg.weight_decay, balance=cfg.balance, seed=cfg.seed)
    if not w.main:  # rank 0 evaluates and writes; the others return its summary
        return distributed.done(None)

    # 4) evaluate on held-out problems' samples (the policy is reloaded: a shared trunk was fine-tuned in place)
    scorer = LearnedScorer(model, tok, aggregation=cfg.aggregation)
    metrics = held_out_metrics(scorer, cfg.init, task, tok, problems=cfg.eval_problems, samples=cfg.eval_samples,
                               temperature=cfg.temperature, seed=cfg.seed)
    summary = {"stage": kind, "task": cfg.task, "kind": kind, "trunk": cfg.trunk, "params": model.num_params(),
               "train/chains": len(records), "train/positive_rate": pos_rate, "train/label_seconds": label_seconds,
               "train/seconds": stats["seconds"], "train/steps": stats["steps"],
               "train/cut_short": stats["cut_short"], "train/loss": stats["loss"],
               "train/first_loss": stats["first_loss"], **metrics, "eval/n": cfg.eval_samples, "world_size": w.size,
               "checkpoint": str(out / "checkpoint"), "config": asdict(cfg)}
    save_reward_model(out / "checkpoint", model, tok, meta={"stage": kind, "config": asdict(cfg), "metrics": summary})
    atomic_write_json(out / "summary.json", summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}))
    return distributed.done(summary)


def held_out_metrics(scorer, init: str, task, tok, *, problems: int, samples: int, temperature: float,
                     seed: int) -> dict:
    """``evaluate_scorer`` on ``samples`` chains per held-out problem from the ``init`` policy, reloaded (a shared
    trunk was fine-tuned in place); {} for 0 problems."""
    from qstar.model.policy import ModelPolicy

    if not problems:
        return {}
    policy = ModelPolicy(load_model(init, flag="--init")[0], tok)
    eval_problems = task.generate(problems, seed=seed, split="test")
    chains = sample_chains(policy, eval_problems, n=samples, temperature=temperature,
                           max_tokens=chain_budget(task, eval_problems))
    return evaluate_scorer(scorer, eval_problems, chains)
