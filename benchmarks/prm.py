"""Learned verifiers vs majority vote on the SAME samples: does PRM >= ORM >= majority hold?

    python benchmarks/prm.py --policy runs/sft-mult --task mult

1) label train chains once (policy samples at --temperature, Math-Shepherd MC step labels) -> OUT/labels.jsonl;
2) sample --n chains per held-out problem -> OUT/test.jsonl (answers, exact correctness);
3) train each --variants reward model for --steps updates and score every test chain -> OUT/scores-<variant>.json
   (a step budget keeps variants comparable on any host; --max-seconds is only a safety cap, and a fit it stops
   early says "cut_short": true);
4) best-of-n curves for n = 1, 2, 4, ..., N: per problem, the mean over --subsets random n-subsets (the same
   subsets for every method) of: majority vote, pass@1 (a random sample), oracle pass@n, and per variant the
   highest-scoring chain ("best") and the score-weighted vote ("weighted"); 95% bootstrap CIs over problems;
   paired bootstrap CIs of (method - majority) at N. JSON lines on stdout and in OUT/results.jsonl.

Variants (kind-trunk[-ablation]): trunk "shared" starts from the policy, "tiny"/"small" are fresh separate models.
"naive" reproduces the failing prototype verifier: chains sampled near-greedy (T=0.3), outcome label at the
final position only, classes not balanced; "lowT", "last", "unbal" ablate those one at a time.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import qstar  # noqa: F401  (thread env before torch)

# isort: split
import torch
from bench_common import SAFETY_SECONDS, warn

from qstar.config import parse_config
from qstar.learn.evaluate import chain_budget
from qstar.learn.reward_eval import auc, selection_accuracy
from qstar.learn.reward_model import fit_reward, label_chains, planted_error_records, reward_items
from qstar.model.checkpoint import load_checkpoint, resolve_checkpoint
from qstar.model.model import ModelConfig, Transformer
from qstar.model.perf import configure_threads
from qstar.model.types import Prompt
from qstar.runio import append_jsonl, atomic_write_json, read_jsonl
from qstar.scorers.aggregation import AGGREGATIONS
from qstar.scorers.learned import LearnedScorer, RewardModel, save_reward_model
from qstar.search.estimators import bootstrap_ci
from qstar.tasks import get_task, is_correct
from qstar.tasks.base import Problem
from qstar.tasks.format import chain_steps, split_chain


@dataclass
class Args:
    """Benchmark learned verifiers against majority vote."""

    policy: str = ""
    """Policy checkpoint (run dir or HF dir)."""
    task: str = "mult"
    """Task name."""
    out: str = "runs/bench-prm"
    """Directory for cached labels, samples, scores and results.jsonl."""
    train_problems: int = 300
    """Train problems whose sampled chains are labelled."""
    train_samples: int = 4
    """Chains per train problem."""
    mc_samples: int = 8
    """Monte-Carlo completions per step prefix (PRM labels)."""
    temperature: float = 0.8
    """Sampling temperature for train chains, MC completions and test samples."""
    test_problems: int = 200
    """Held-out problems."""
    n: int = 16
    """Samples per held-out problem (largest best-of-n)."""
    subsets: int = 64
    """Random n-subsets per problem for n < N."""
    steps: int = 200
    """Training updates per reward model (a step budget keeps variants comparable on a busy machine)."""
    max_seconds: float = SAFETY_SECONDS
    """Safety cap in seconds per reward model's training (a fit it stops is cut_short)."""
    variants: tuple[str, ...] = ("prm-shared", "orm-shared", "prm-small", "orm-small", "orm-shared-naive")
    """Reward models to train: kind-trunk[-ablation], ablations naive, lowT, last (train the final position only),
    unbal, hard (hard MC labels), planted (add --planted-problems reference chains and copies with one planted error,
    exactly labelled), frozen (train the head only). PRMs are also reported as name@prod / @last / @mean (default:
    min)."""
    planted_problems: int = 2000
    """Train problems (a different seed from the labelled ones) for the planted-error chains of `planted` variants."""
    seed: int = 0
    """Seed."""


def log(rec: dict, out: Path) -> None:
    rec = {"bench": "prm", **rec}
    print(json.dumps(rec), flush=True)
    append_jsonl(out / "results.jsonl", rec)


def cached_labels(path: Path, policy, task, problems, *, samples: int, temperature: float, mc: int, max_tokens: int):
    if path.exists():
        return read_jsonl(path)
    t0 = time.perf_counter()
    recs = label_chains(policy, problems, samples=samples, temperature=temperature, max_tokens=max_tokens,
                        mc_samples=mc)
    for r in recs:
        append_jsonl(path.with_suffix(".tmp"), r)
    path.with_suffix(".tmp").replace(path)
    print(f"labelled {len(recs)} chains in {time.perf_counter() - t0:.0f}s -> {path}", file=sys.stderr)
    return recs


def variant_items(name: str, labels: list[dict], lowt: list[dict], planted: list[dict]) -> tuple[list, dict]:
    """Training items and fit options for a variant name (kind-trunk[-ablation...])."""
    kind, _, *ablations = name.split("-")
    unknown = set(ablations) - {"naive", "lowT", "last", "unbal", "hard", "planted", "frozen"}
    if kind not in ("orm", "prm") or unknown:
        raise SystemExit(f"bad variant {name!r}: kind orm|prm, trunk shared|tiny|small|base, ablations naive, lowT, "
                         "last, unbal, hard, planted, frozen")
    recs = lowt if ("naive" in ablations or "lowT" in ablations) else labels
    if "planted" in ablations:
        recs = recs + planted
    items = reward_items(recs, kind=kind, label="hard" if "hard" in ablations else "soft")
    if "naive" in ablations or "last" in ablations:  # outcome at the final read position only
        items = [(q, s, [float("nan")] * (len(t) - 1) + t[-1:]) for q, s, t in items]
    return items, {"balance": not ("naive" in ablations or "unbal" in ablations)}


def main(args: Args) -> None:
    from qstar.model.policy import ModelPolicy

    configure_threads()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task = get_task(args.task)
    ckpt = resolve_checkpoint(args.policy)
    model, tok, _ = load_checkpoint(ckpt)
    policy = ModelPolicy(model, tok)
    train = task.generate(args.train_problems, seed=args.seed, split="train")
    test = task.generate(args.test_problems, seed=args.seed, split="test")
    max_tokens = chain_budget(task, train)
    torch.manual_seed(args.seed)

    # 1) labelled train chains (test-time temperature) + near-greedy chains for the naive verifier
    labels = cached_labels(out / "labels.jsonl", policy, task, train, samples=args.train_samples,
                           temperature=args.temperature, mc=args.mc_samples, max_tokens=max_tokens)
    need_low = any(("naive" in v or "lowT" in v) for v in args.variants)
    lowt = cached_labels(out / "labels-lowT.jsonl", policy, task, train, samples=args.train_samples,
                         temperature=0.3, mc=0, max_tokens=max_tokens) if need_low else []
    need_planted = any("planted" in v.split("-")[2:] for v in args.variants)
    planted = planted_error_records(task, task.generate(args.planted_problems, seed=args.seed + 1, split="train"),
                                    seed=args.seed) if need_planted else []
    pos = sum(r["outcome"] for r in labels) / len(labels)
    log({"what": "labels", "chains": len(labels), "positive_rate": pos, "planted_chains": len(planted),
         "lowT_positive_rate": sum(r["outcome"] for r in lowt) / max(1, len(lowt))}, out)

    # 2) test samples
    if (out / "test.jsonl").exists():
        test_rows = read_jsonl(out / "test.jsonl")
    else:
        comps = policy.sample([Prompt(p.question) for p in test], n=args.n, temperature=args.temperature,
                              max_tokens=max_tokens)
        test_rows = [{"problem": p.to_json(), "chains": [c.text for c in cs],
                      "answers": [task.extract_answer(c.text) for c in cs],
                      "correct": [is_correct(p, c.text) for c in cs],
                      "mean_logprob": [c.logprob / max(1, c.n_tokens) for c in cs]} for p, cs in zip(test, comps)]
        for r in test_rows:
            append_jsonl(out / "test.jsonl.tmp", r)
        (out / "test.jsonl.tmp").replace(out / "test.jsonl")
    problems = [Problem.from_json(r["problem"]) for r in test_rows]

    # 3) train each variant, keep its per-step scores of every test chain (any aggregation is then free)
    scores: dict[str, list[list[float]]] = {}
    flat_y = [y for r in test_rows for y in r["correct"]]
    for name in args.variants:
        kind, path = name.split("-")[0], out / f"scores-{name}.json"
        if not path.exists():
            items, opts = variant_items(name, labels, lowt, planted)
            trunk_name = name.split("-")[1]
            torch.manual_seed(args.seed)
            trunk = load_checkpoint(ckpt)[0] if trunk_name == "shared" else Transformer(ModelConfig.preset(trunk_name))
            rm = RewardModel(trunk, kind=kind)
            if "frozen" in name.split("-")[2:]:  # a probe: only the head learns, the policy's features stay intact
                rm.trunk.requires_grad_(False)
            stats = fit_reward(rm, tok, items, steps=args.steps, seconds=args.max_seconds, balance=opts["balance"],
                               seed=args.seed)
            if stats["cut_short"]:
                warn(f"{name}: reward-model training stopped at its safety cap after {stats['steps']} of "
                     f"{args.steps} updates")
            save_reward_model(out / "models" / name, rm, tok, meta={"stage": kind, "variant": name, "metrics": stats})
            questions = [r["problem"]["question"] for r in test_rows for _ in r["chains"]]
            chains = [chain_steps(c) for r in test_rows for c in r["chains"]]
            steps = LearnedScorer(rm, tok).step_probs(questions, chains)
            atomic_write_json(path, {"steps": [steps[i * args.n : (i + 1) * args.n] for i in range(len(test_rows))],
                                     "fit": stats, "params": rm.num_params(), **opts})
        rec = json.loads(path.read_text())
        default = "last" if kind == "orm" else "min"  # the ORM reads <eos> = its last step
        for agg in [default] + ([a for a in AGGREGATIONS if a != default] if kind == "prm" else []):
            key = name if agg == default else f"{name}@{agg}"
            scores[key] = [[AGGREGATIONS[agg](s) if s else 0.0 for s in row] for row in rec["steps"]]
            log({"what": "fit", "variant": key, "auc": auc([x for row in scores[key] for x in row], flat_y),
                 "params": rec["params"], **rec["fit"], "balance": rec["balance"]}, out)

    # the policy's own confidence (exp of its mean token log-prob): a free baseline every learned verifier must beat
    scores["policy-logprob"] = [[math.exp(x) for x in r["mean_logprob"]] for r in test_rows]
    log({"what": "fit", "variant": "policy-logprob", "auc": auc([x for r in scores["policy-logprob"] for x in r],
                                                                 flat_y)}, out)

    # 4) what each verifier picks, and curves on shared random subsets
    for name in scores:
        diagnose(name, task, problems, test_rows, scores[name], out)
    curves(args, out, test_rows, scores)


def diagnose(name: str, task, problems, rows: list[dict], scores: list[list[float]], out: Path) -> None:
    """Why a verifier ranks badly: what its top pick out of N looks like next to an average sample (length, no
    answer line, an answer that disagrees with the chain's own last step) and how calibrated its scores are."""
    implied = getattr(task, "implied_answer", None)

    def inconsistent(p, chain: str) -> bool:
        steps, answer = split_chain(chain)
        return implied is not None and answer is not None and implied(p, steps) != answer

    picks = [max(range(len(sc)), key=lambda j: sc[j]) for sc in scores]
    flat = [(s, y, c, p) for p, r, sc in zip(problems, rows, scores) for s, y, c in zip(sc, r["correct"], r["chains"])]
    right = [s for s, y, _, _ in flat if y]
    wrong = [s for s, y, _, _ in flat if not y]
    chosen = [(r["chains"][j], r["correct"][j], p) for p, r, j in zip(problems, rows, picks)]
    wrong_chosen = [(c, p) for c, y, p in chosen if not y]
    frac = lambda xs: sum(xs) / max(1, len(xs))  # noqa: E731
    log({"what": "diagnose", "variant": name, "chosen_correct": frac([y for _, y, _ in chosen]),
         "chosen_len": frac([len(c) for c, _, _ in chosen]), "sample_len": frac([len(c) for _, _, c, _ in flat]),
         "chosen_no_answer": frac([split_chain(c)[1] is None for c, _, _ in chosen]),
         "sample_no_answer": frac([split_chain(c)[1] is None for _, _, c, _ in flat]),
         "chosen_wrong_inconsistent": frac([inconsistent(p, c) for c, p in wrong_chosen]),
         "sample_wrong_inconsistent": frac([inconsistent(p, c) for _, y, c, p in flat if not y]),
         "mean_score_right": frac(right), "mean_score_wrong": frac(wrong),
         "brier": frac([(s - y) ** 2 for s, y, _, _ in flat])}, out)


def curves(args: Args, out: Path, rows: list[dict], scores: dict) -> None:
    N = args.n
    ns = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= N]
    methods = ["majority", "pass@1", "oracle_pass@n"] + [f"{v}:{m}" for v in scores for m in ("best", "weighted")]
    per: dict[tuple[str, int], list[float]] = {(m, n): [] for m in methods for n in ns}
    rng = random.Random(args.seed)
    for i, r in enumerate(rows):
        ans, cor = r["answers"], r["correct"]
        for n in ns:
            subs = [list(range(N))] if n == N else [rng.sample(range(N), n) for _ in range(args.subsets)]
            acc = dict.fromkeys(methods, 0.0)
            for sub in subs:
                a, c = [ans[j] for j in sub], [cor[j] for j in sub]
                acc["majority"] += selection_accuracy("majority", [1.0] * n, a, c)
                acc["pass@1"] += sum(c) / n
                acc["oracle_pass@n"] += float(any(c))
                for v, sc in scores.items():
                    s = [sc[i][j] for j in sub]
                    acc[f"{v}:best"] += selection_accuracy("best", s, a, c)
                    acc[f"{v}:weighted"] += selection_accuracy("weighted", s, a, c)
            for m in methods:
                per[(m, n)].append(acc[m] / len(subs))
    for (m, n), vals in per.items():
        lo, hi = bootstrap_ci(vals, seed=args.seed)
        log({"what": "curve", "method": m, "n": n, "accuracy": sum(vals) / len(vals), "ci95": [lo, hi],
             "problems": len(vals)}, out)
    # paired differences at N against majority (resampling problems keeps the pairing)
    maj = per[("majority", N)]
    for m in methods:
        if ":" not in m:
            continue
        diff = [x - y for x, y in zip(per[(m, N)], maj)]
        lo, hi = bootstrap_ci(diff, seed=args.seed)
        log({"what": "vs_majority", "method": m, "n": N, "diff": sum(diff) / len(diff), "ci95": [lo, hi]}, out)
    ordering(args, out, per, scores)


def ordering(args: Args, out: Path, per: dict, scores: dict) -> None:
    """Says whether PRM >= ORM >= majority holds at N for each PRM/ORM pair of one trunk (prm-X vs orm-X), per
    selection rule, with the paired CI of PRM - ORM: the issue's ordering, stated rather than left to the reader."""
    N, maj = args.n, per[("majority", args.n)]
    for v in scores:
        if not v.startswith("prm-") or "@" in v or "orm-" + v[4:] not in scores:
            continue
        o = "orm-" + v[4:]
        for rule in ("best", "weighted"):
            p_acc, o_acc = per[(f"{v}:{rule}", N)], per[(f"{o}:{rule}", N)]
            lo, hi = bootstrap_ci([x - y for x, y in zip(p_acc, o_acc)], seed=args.seed)
            mp, mo, mm = (sum(x) / len(x) for x in (p_acc, o_acc, maj))
            log({"what": "ordering", "rule": rule, "n": N, "prm": v, "orm": o, "prm_accuracy": mp,
                 "orm_accuracy": mo, "majority_accuracy": mm, "prm_minus_orm": mp - mo, "prm_minus_orm_ci95": [lo, hi],
                 "holds": mp >= mo >= mm}, out)


if __name__ == "__main__":
    a = parse_config(Args, sys.argv[1:], prog="benchmarks/prm.py")
    if not a.policy:
        raise SystemExit("benchmarks/prm.py: give --policy DIR (a policy checkpoint or run dir)")
    if a.steps < 1:
        raise SystemExit("benchmarks/prm.py: --steps must be >= 1 (reward models train for a number of updates)")
    main(a)
