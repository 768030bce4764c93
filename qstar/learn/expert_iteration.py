"""Expert iteration (STaR / ReST): search is the policy-improvement operator, SFT distils it back.

``qstar train expert-iteration --init SFT_DIR --task countdown --out DIR --rounds 3``; each round k:

1) search: sample ``samples`` chains per fresh train problem (strategy "sample"), or run a ``qstar.search`` strategy
   (best_of_n, beam, ... with ``--scorer``) and take its chosen chain;
2) filter: keep chains the verifier accepts ("gold": the train problem's answer, as in STaR; "checker": the
   task's reference-free check), distinct per problem, at most ``max_per_problem`` each (easy problems would
   otherwise dominate);
3) SFT (``qstar.learn.sft.fit``) on the kept chains of all rounds so far, continuing from the previous round's
   weights, optionally mixed with reference chains and check-and-retry chains (``retry_fraction``);
4) evaluate greedy accuracy on held-out problems; write DIR/ei-round-k/{checkpoint/, kept.jsonl, summary.json}.

The search runs in shards of problems through ``qstar.executor`` (``--executor``, ``--workers``; each worker loads the
round's weights once, each shard is seeded on its own, so the kept chains do not depend on the workers). A killed run
resumes at the first round without a summary. A round that keeps nothing says so, writes a summary
with ``kept: 0`` and no checkpoint; the next round starts again from the last good weights.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from qstar.executor import ExecutorOptions
from qstar.learn.evaluate import chain_budget, greedy_accuracy
from qstar.learn.retry import mixed, retry_examples
from qstar.learn.runs import (
    finish_stage,
    load_examples,
    read_summary,
    save_examples,
    stage_done,
    start_run,
)
from qstar.learn.sft import fit
from qstar.model.checkpoint import load_checkpoint, load_model, resolve_checkpoint, task_for
from qstar.model.perf import configure_threads
from qstar.model.types import Policy, Prompt
from qstar.runio import atomic_write_json
from qstar.tasks import get_task, judge
from qstar.tasks.base import Problem

__all__ = ["ExpertIterationConfig", "train_expert_iteration", "collect_verified", "VERIFIERS"]


@dataclass
class ExpertIterationConfig(ExecutorOptions):
    """Rounds of search -> keep verified chains -> SFT on them (STaR)."""

    init: str = ""
    """Starting policy checkpoint (run dir or HF dir), usually an SFT run."""
    task: str = ""
    """Task name; rounds draw fresh train-split problems, evaluation uses the test split. Empty: the task the --init
    checkpoint was trained on, else countdown."""
    out: str = "runs/ei"
    """Run directory: ei-round-k/ per round, summary.json at the end."""
    rounds: int = 3
    """Expert-iteration rounds."""
    problems: int = 512
    """Fresh train problems searched per round."""
    samples: int = 8
    """Search budget per problem (N samples, or the strategy's budget)."""
    temperature: float = 0.8
    """Sampling temperature of the search."""
    strategy: str = "sample"
    """"sample" keeps every verified distinct sample; a qstar.search strategy name keeps its chosen chain."""
    scorer: str = "checker"
    """Scorer for a search strategy (checker, orm, prm, ...; see qstar.scorers)."""
    verifier: str = "gold"
    """Which chains to keep: "gold" (verify against the train answer) or "checker" (reference-free task check)."""
    max_per_problem: int = 2
    """Most kept chains per problem."""
    epochs: float = 2.0
    """SFT passes over the round's training chains (a few: more overfits the easy problems it solved)."""
    steps: int = 0
    """SFT updates per round instead (0: use epochs, or seconds when epochs is 0)."""
    seconds: float = 0.0
    """SFT time per round in seconds, when neither steps nor epochs is set."""
    batch_size: int = 64
    """SFT sequences per update."""
    lr: float = 3e-4
    """SFT peak learning rate (lower than from-scratch SFT: the policy only needs nudging)."""
    accumulate: bool = True
    """Train on the kept chains of all rounds so far (else only this round's)."""
    reference_fraction: float = 0.0
    """Fraction of SFT examples that are reference chains of fresh train problems (0: only self-generated)."""
    retry_fraction: float = 0.0
    """Fraction of SFT examples that are check-and-retry chains (qstar.learn.retry)."""
    eval_problems: int = 200
    """Held-out problems for greedy accuracy after each round."""
    eval_samples: int = 4
    """Samples per held-out problem at --temperature for the sampled pass@1 (0: greedy only)."""
    seed: int = 0
    """Seed for problems, sampling and data order."""
    force: bool = False
    """Overwrite a finished run in OUT."""


def _gold(task, problem: Problem, text: str) -> bool:
    return task.judge(problem, text).correct


def _checker(task, problem: Problem, text: str) -> bool:
    return bool(task.check(problem, task.read_answer(text)))


#: verifier name -> f(task, problem, chain text) -> keep?
VERIFIERS = {"gold": _gold, "checker": _checker}


def search_chains(policy: Policy, problems: Sequence[Problem], *, samples: int, temperature: float, max_tokens: int,
                  strategy: str = "sample", scorer: str = "checker", chunk: int = 64) -> list[list[str]]:
    """The searched chain texts of each problem: ``samples`` samples, or a strategy's one chosen chain."""
    rows: list[list[str]] = []
    for i in range(0, len(problems), chunk):
        part = problems[i : i + chunk]
        if strategy == "sample":
            out = policy.sample([Prompt(p.question) for p in part], n=samples, temperature=temperature,
                                max_tokens=max_tokens)
            rows += [[c.text for c in row] for row in out]
        else:
            from qstar.scorers import get_scorer
            from qstar.search import get_strategy

            results = get_strategy(strategy)(policy, get_scorer(scorer), part, samples, temperature=temperature,
                                             max_tokens=max_tokens)
            rows += [[r.chain] for r in results]
    return rows


def collect_verified(policy: Policy, problems: Sequence[Problem], *, samples: int, temperature: float,
                     max_tokens: int, strategy: str = "sample", scorer: str = "checker", verifier: str = "gold",
                     max_per_problem: int = 2, chunk: int = 64, executor: ExecutorOptions | None = None,
                     checkpoint: str | Path = "", seed: int = 0) -> tuple[list[tuple[str, str]], dict]:
    """Search each problem and keep verified chains: ([(question, chain)], stats).

    stats: {"search/chains": chains judged, "search/solved": fraction of problems with a kept chain,
    "search/kept": kept chains, "search/sample_accuracy": fraction of judged chains accepted}. With ``executor``,
    shards of problems are searched by its workers (``qstar.learn.shards``: ``policy`` is the ``checkpoint``'s, each
    shard seeded from ``seed``); without, in one pass on ``policy``'s current stream.
    """
    if verifier not in VERIFIERS:
        raise ValueError(f"unknown verifier {verifier!r}; choose from {', '.join(VERIFIERS)}")
    accept = VERIFIERS[verifier]
    for p in problems[:1]:
        if verifier == "checker" and get_task(p.task).check(p, p.answer) is None:
            raise ValueError(f"task {p.task} has no reference-free checker; use --verifier gold")
    search = dict(samples=samples, temperature=temperature, max_tokens=max_tokens, strategy=strategy, scorer=scorer)
    if executor is None:
        rows = search_chains(policy, problems, chunk=chunk, **search)
    else:
        from qstar.learn.shards import map_shards

        rows = map_shards(search_chains, problems, options=executor, checkpoint=checkpoint, seed=seed, policy=policy,
                          **search)
    kept: list[tuple[str, str]] = []
    judged = accepted = solved = 0
    for p, chains in zip(problems, rows):
        task, seen = get_task(p.task), set()
        for c in chains:
            judged += 1
            try:
                ok = accept(task, p, c)
            except Exception:  # garbage model text is rejected, never a crash
                ok = False
            accepted += ok
            norm = c.strip()
            if ok and norm not in seen and len(seen) < max_per_problem:
                seen.add(norm)
                kept.append((p.question, norm))
        solved += bool(seen)
    stats = {"search/chains": judged, "search/solved": solved / max(1, len(problems)), "search/kept": len(kept),
             "search/sample_accuracy": accepted / max(1, judged)}
    return kept, stats


def _examples(cfg: ExpertIterationConfig, task, kept: list[tuple[str, str]]):
    """Kept chains, optionally mixed with reference chains and retry chains."""
    source = kept
    if cfg.reference_fraction > 0:
        buf: list[Problem] = []

        def reference(rng: random.Random) -> tuple[str, str]:
            if not buf:
                buf.extend(task.generate(256, seed=rng.randrange(1 << 30), split="train"))
            p = buf.pop()
            return p.question, task.reference(p)

        source = mixed(source, reference, cfg.reference_fraction)
    if cfg.retry_fraction > 0:
        source = mixed(source, retry_examples(task, seed=cfg.seed), cfg.retry_fraction)
    return source


def _evaluate(policy: Policy, problems: Sequence[Problem], cfg: ExpertIterationConfig, max_tokens: int) -> dict:
    """Greedy accuracy and sampled pass@1 (mean over ``eval_samples`` samples at the search temperature)."""
    out = {"eval/greedy_accuracy": greedy_accuracy(policy, problems, max_tokens=max_tokens),
           "eval/problems": len(problems)}
    if cfg.eval_samples > 0 and problems:
        rows = policy.sample([Prompt(p.question) for p in problems], n=cfg.eval_samples, temperature=cfg.temperature,
                             max_tokens=max_tokens)
        hits = [judge(p, c.text).correct for p, row in zip(problems, rows) for c in row]
        out["eval/sample_accuracy"] = sum(hits) / len(hits)
    return out


def _check(cfg: ExpertIterationConfig) -> None:
    if not cfg.init:
        raise ValueError("expert iteration needs --init POLICY_DIR (an SFT checkpoint to improve)")
    if cfg.rounds < 1 or cfg.problems < 1 or cfg.samples < 1 or cfg.max_per_problem < 1:
        raise ValueError("--rounds, --problems, --samples and --max-per-problem must be >= 1")
    if cfg.verifier not in VERIFIERS:
        raise ValueError(f"unknown --verifier {cfg.verifier!r}; choose from {', '.join(VERIFIERS)}")
    if cfg.seconds <= 0 and cfg.steps <= 0 and cfg.epochs <= 0:
        raise ValueError("give a positive --epochs, --steps or --seconds SFT budget per round")
    if cfg.strategy != "sample":
        from qstar.search import get_strategy

        get_strategy(cfg.strategy)  # ValueError naming the strategies


def train_expert_iteration(cfg: ExpertIterationConfig) -> dict:
    """Run (or resume) the rounds; returns the final summary (also OUT/summary.json)."""
    from qstar.model.policy import ModelPolicy

    _check(cfg)
    configure_threads()
    cfg = replace(cfg, task=task_for(cfg.task, [cfg.init], default="countdown", doing="training"))
    task = get_task(cfg.task)
    model, tok, _ = load_model(cfg.init, flag="--init")  # ValueError for a missing/corrupt/foreign checkpoint
    out = start_run(cfg.out, force=cfg.force)
    eval_problems = task.generate(cfg.eval_problems, seed=cfg.seed, split="test")
    max_tokens = chain_budget(task, eval_problems or task.generate(8, seed=cfg.seed, split="train"))
    weights, history = resolve_checkpoint(cfg.init), []
    if (out / "init.json").exists():
        init = json.loads((out / "init.json").read_text())
    else:
        init = _evaluate(ModelPolicy(model, tok), eval_problems, cfg, max_tokens)
        atomic_write_json(out / "init.json", {**init, "checkpoint": str(weights)})
    init_acc = init["eval/greedy_accuracy"]
    print(f"ei: start greedy accuracy {init_acc:.3f}", file=sys.stderr)
    kept_all: list[tuple[str, str]] = []
    for k in range(1, cfg.rounds + 1):
        rdir = out / f"ei-round-{k}"
        if stage_done(rdir):  # resume: this round finished before a kill
            s = read_summary(rdir)
            history.append(s)
            if s.get("checkpoint"):
                weights = Path(s["checkpoint"])
                kept_all += load_examples(rdir / "kept.jsonl")
            print(f"ei: round {k} already done (greedy accuracy {s.get('eval/greedy_accuracy')})", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        model, tok, _ = load_checkpoint(weights)
        torch.manual_seed(cfg.seed * 1000 + k)
        # 1-2) search on fresh problems (shards through the executor, each worker loading these weights), keep
        # verified chains
        problems = task.generate(cfg.problems, seed=cfg.seed * 1000 + k, split="train")
        kept, stats = collect_verified(ModelPolicy(model, tok), problems, samples=cfg.samples,
                                       temperature=cfg.temperature, max_tokens=max_tokens, strategy=cfg.strategy,
                                       scorer=cfg.scorer, verifier=cfg.verifier, max_per_problem=cfg.max_per_problem,
                                       executor=cfg, checkpoint=weights, seed=cfg.seed * 1000 + k)
        search_seconds = time.perf_counter() - t0
        rdir.mkdir(parents=True, exist_ok=True)
        if not kept:
            print(f"warning: ei round {k}: the verifier accepted none of {stats['search/chains']} chains; no "
                  "checkpoint written for this round (weak policy, or a verifier that rejects everything)",
                  file=sys.stderr)
            history.append(finish_stage(rdir, None, tok, stage=f"ei-round-{k}", config=asdict(cfg),
                                        metrics={"round": k, "kept": 0, **stats, "search_seconds": search_seconds}))
            continue
        save_examples(rdir / "kept.jsonl", kept)
        kept_all += kept
        # 3) SFT on the kept chains (all rounds so far, or this round's)
        data = kept_all if cfg.accumulate else kept
        steps = cfg.steps or (math.ceil(cfg.epochs * len(data) / cfg.batch_size) if cfg.epochs > 0 else None)
        fstats = fit(model, tok, _examples(cfg, task, data), seconds=None if steps else cfg.seconds, steps=steps,
                     lr=cfg.lr, batch_size=cfg.batch_size, warmup_steps=min(10, steps or 10), seed=cfg.seed * 1000 + k)
        # 4) evaluate, checkpoint, summary
        metrics = {"round": k, "kept": len(kept), "train_examples": len(data), **stats,
                   "search_seconds": search_seconds, "train/seconds": fstats["seconds"], "train/steps": fstats["steps"],
                   "train/loss": fstats["loss"], **_evaluate(ModelPolicy(model, tok), eval_problems, cfg, max_tokens)}
        s = finish_stage(rdir, model, tok, stage=f"ei-round-{k}", config=asdict(cfg), metrics=metrics)
        history.append(s)
        weights = rdir / "checkpoint"
        print(json.dumps({k2: v for k2, v in s.items() if k2 != "checkpoint"}), file=sys.stderr)
    accs = [h.get("eval/greedy_accuracy") for h in history]
    final = next((a for a in reversed(accs) if a is not None), init_acc)
    samp = [h.get("eval/sample_accuracy") for h in history]
    summary = {"stage": "expert-iteration", "task": cfg.task, "init_greedy_accuracy": init_acc,
               "final_greedy_accuracy": final, "init_sample_accuracy": init.get("eval/sample_accuracy"),
               "final_sample_accuracy": next((a for a in reversed(samp) if a is not None),
                                             init.get("eval/sample_accuracy")),
               "round_greedy_accuracy": accs, "rounds": history,
               "checkpoint": str(weights), "kept_total": sum(h.get("kept", 0) for h in history), "config": asdict(cfg)}
    if not summary["kept_total"]:
        print("warning: expert iteration kept no chains in any round; the policy is unchanged", file=sys.stderr)
    atomic_write_json(out / "summary.json", summary)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("config", "rounds")}))
    return summary
