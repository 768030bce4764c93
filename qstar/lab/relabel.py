"""``qstar relabel``: re-label a dataset with verified chains ("recaptioning"): reasoner -> verified data -> the
next model's SFT data (``qstar train sft --data OUT``).

For every problem with a gold answer (any benchmark or JSONL file ``qstar eval`` reads), the policy (a qstar
checkpoint, a Hugging Face model dir or an OpenAI-compatible server, built as ``qstar eval`` builds it, with the same
prompts) searches with any strategy and budget, ``--attempts`` times with a fresh seed each time. A chain is kept
only if the benchmark's own verifier accepts its answer (``Task.judge``: the gold answer is read here, for
filtering, as in STaR / rejection sampling; never to steer the search). Which verified chain is kept, by
``--keep``:
- ``shortest`` (default): the shortest verified chain in characters over all attempts (every attempt runs);
- ``first``: the first verified chain found (the problem's later attempts are skipped: the cheapest).

Output: ``OUT`` (JSONL): one line per solved problem: question (the dataset's own, without any instruction),
chain, answer, gold, key, index, benchmark, and ``provenance`` (policy, backend, strategy, budget, scorer, seed,
keep, attempts run, verified chains found, tokens spent on the problem). ``OUT`` with ``.unsolved.jsonl`` for
``.jsonl``: the problems no attempt solved (key, index, question, gold, attempts, tokens). ``OUT`` with
``.meta.json``: the settings. Lines are appended per batch (atomically, as ``qstar eval`` does), so a killed run
resumes: solved and unsolved problems are skipped. Output made with other settings is never mixed in: the run
refuses. Shards of ``--batch`` problems run through ``qstar.executor`` as ``qstar eval``'s do (``--executor``,
``--workers``); only this process writes.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from qstar.executor import ExecutorOptions
from qstar.lab.eval import _prompted, append_rows, load_problems, make_policy, make_scorer, read_results, shard_factory
from qstar.runio import atomic_write_json
from qstar.search.cli import jsonable
from qstar.tasks import task_of

__all__ = ["RelabelConfig", "run_relabel", "KEEP_RULES"]

KEEP_RULES = ("shortest", "first")
IDENTITY = ("benchmark", "data", "fields", "checkpoint", "backend", "upstream", "upstream_model", "upstream_chat",
            "prompt", "strategy", "budget", "scorer", "options", "temperature", "max_tokens", "attempts", "keep",
            "seed")


@dataclass
class RelabelConfig(ExecutorOptions):
    """Write verified chains for a dataset's problems (search with any policy, keep those whose answer verifies)."""

    out: str = "runs/relabel/chains.jsonl"
    """Output JSONL of verified (question, chain) pairs; beside it .unsolved.jsonl and .meta.json."""
    benchmark: str = "gsm8k"
    """gsm8k, math500, aime24, aime25, amc23 or countdown (with --data: a full file of its format)."""
    data: str = ""
    """A JSONL file to read instead of the shipped sample."""
    fields: str = ""
    """Read --data as any JSONL with this mapping, e.g. question=problem,answer=solution."""
    checkpoint: str = ""
    """Policy: a qstar run dir / checkpoint dir, or any local Hugging Face causal LM directory."""
    backend: str = "auto"
    """How --checkpoint is loaded: auto, qstar or hf."""
    upstream: str = ""
    """Policy: an OpenAI-compatible server URL instead of --checkpoint."""
    upstream_model: str = ""
    """Model id on --upstream."""
    upstream_chat: bool = False
    """Send whole chains through the server's /v1/chat/completions (its own chat template; thinking read from
    reasoning or reasoning_content) instead of /v1/completions. Step-level strategies need completions."""
    prompt: str = "auto"
    """auto, task or instruct, as in qstar eval."""
    strategy: str = "best_of_n"
    """Search strategy of each attempt (any of qstar search's)."""
    budget: int = 4
    """The strategy's budget per attempt."""
    scorer: str = "none"
    """Scorer guiding selection inside an attempt (oracle refused: the gold only filters)."""
    options: str = ""
    """Extra strategy options as JSON."""
    temperature: float = 0.8
    """Sampling temperature of the strategies that sample."""
    max_tokens: int = 1024
    """Token cap per chain."""
    attempts: int = 2
    """Searches per problem, each with its own seed."""
    keep: str = "shortest"
    """Which verified chain to keep: shortest (over all attempts) or first (stop at the first one)."""
    problems: int = 0
    """Relabel the first N problems only (0: all)."""
    batch: int = 16
    """Problems per strategy call; output is written after each batch."""
    seed: int = 0
    """Sampling seed."""
    timeout: float = 120.0
    """Seconds per upstream request."""
    retries: int = 3
    """Retries of a failing upstream request (a problem whose every attempt fails is listed as unsolved); also the
    times a shard whose worker raised or died is run again before it is reported failed."""


def _paths(out: str) -> tuple[Path, Path, Path]:
    p = Path(out)
    stem = p.name.removesuffix(".jsonl")
    return p, p.with_name(stem + ".unsolved.jsonl"), p.with_name(stem + ".meta.json")


def _attempt(cfg: RelabelConfig, policy, scorer, items, attempt: int, knobs: dict) -> list:
    """One search over ``items`` [(index, original, prompted)]: [(SearchResult, verified)], None where it failed."""
    from qstar.search.options import SearchOptions
    from qstar.search.registry import strategy_spec
    from qstar.search.run import run_strategy

    failures: tuple[type[BaseException], ...] = (ValueError,)  # a local model: a question past its context
    if cfg.upstream:
        from qstar.backends.openai_compat import UpstreamError

        failures = (UpstreamError, ValueError)
    options = SearchOptions(temperature=None if strategy_spec(cfg.strategy).deterministic else cfg.temperature,
                            max_tokens=cfg.max_tokens, seed=(cfg.seed << 24) + (attempt << 16) + items[0][0])
    try:
        _, rows = run_strategy(policy, scorer, [q for _, _, q in items], strategy=cfg.strategy, budget=cfg.budget,
                               options=options, **knobs)
    except failures as e:
        print(f"qstar relabel: attempt {attempt} failed for {len(items)} problem(s): {e}", file=sys.stderr)
        return [None] * len(items)
    # the kept text must itself reach the gold answer (a vote's winner may differ from a chain's own answer)
    return [(r.result, task_of(p.task).judge(p, r.result.chain).correct) for (_, p, _), r in zip(items, rows)]


def _relabel_shard(cfg: RelabelConfig, policy, scorer, chunk, knobs: dict) -> list[dict]:
    """Every attempt over one shard [(index, original, prompted)]: per problem {"attempts", "tokens", "verified",
    "chain", "answer"} (chain and answer of the kept verified chain, None when none verified)."""
    found: dict[int, list] = {i: [] for i, _, _ in chunk}
    tokens = dict.fromkeys(found, 0)
    runs = dict.fromkeys(found, 0)
    for attempt in range(cfg.attempts):
        items = [it for it in chunk if not (cfg.keep == "first" and found[it[0]])]
        if not items:
            break
        for (i, _, _), got in zip(items, _attempt(cfg, policy, scorer, items, attempt, knobs)):
            runs[i] += 1
            if got is None:
                continue
            result, ok = got
            tokens[i] += result.ledger.generated_tokens + result.ledger.prompt_tokens
            if ok:
                found[i].append(result)
    out = []
    for i, _, _ in chunk:
        best = (found[i][0] if cfg.keep == "first" else min(found[i], key=lambda r: len(r.chain))) if found[i] else None
        out.append({"attempts": runs[i], "tokens": tokens[i], "verified": len(found[i]),
                    "chain": best and best.chain, "answer": best and best.answer})
    return out


def run_relabel(cfg: RelabelConfig) -> int:
    """Relabel the problems of ``cfg``; print {"problems", "solved", "unsolved", ...} as one JSON line."""
    if cfg.keep not in KEEP_RULES:
        raise ValueError(f"--keep must be one of {', '.join(KEEP_RULES)} (got {cfg.keep!r})")
    if cfg.attempts < 1 or cfg.batch < 1:
        raise ValueError("--attempts and --batch must be >= 1")
    benchmark, problems = load_problems(cfg)
    scorer = make_scorer(cfg)
    if scorer.oracle:
        raise ValueError("the oracle scorer reads the gold answer: relabel uses the gold only to filter chains")
    knobs = json.loads(cfg.options) if cfg.options else {}
    if not isinstance(knobs, dict):
        raise ValueError("--options must be a JSON object")
    out, unsolved_path, meta_path = _paths(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: getattr(cfg, k) for k in IDENTITY}
    done = read_results(out) + read_results(unsolved_path)
    if (done or out.exists()) and meta_path.is_file():
        before = json.loads(meta_path.read_text())
        differ = [k for k in IDENTITY if before.get(k) != settings[k]]
        if differ:
            raise ValueError(f"{out} was written with other settings (different {', '.join(differ)}); never mixing: "
                             f"give another --out")
    elif done or out.exists():
        raise ValueError(f"{out} exists without its {meta_path.name}: refusing to mix; give another --out")
    atomic_write_json(meta_path, jsonable(settings))

    policy, backend, qstar_trained = make_policy(cfg)
    instruct = cfg.prompt == "instruct" or (cfg.prompt == "auto" and not qstar_trained)
    seen = {(r.get("index"), r.get("key")) for r in done}
    prompted = _prompted(problems, instruct)
    todo = [(i, p, q) for i, (p, q) in enumerate(zip(problems, prompted)) if (i, p.key) not in seen]
    provenance = {"policy": policy.name, "backend": backend, "prompt": "instruct" if instruct else "task",
                  "strategy": cfg.strategy, "budget": cfg.budget, "scorer": scorer.name, "seed": cfg.seed,
                  "keep": cfg.keep}
    from tqdm import tqdm

    failed, shards = [], [todo[c:c + cfg.batch] for c in range(0, len(todo), cfg.batch)]
    with tqdm(total=len(problems), initial=len(problems) - len(todo), desc=f"relabel {benchmark}", unit="problem",
              file=sys.stderr, mininterval=1.0) as bar, cfg.open_executor() as ex:
        for done in ex.map(shard_factory(_relabel_shard, cfg, knobs, policy, scorer), shards):
            chunk = shards[done.index]
            if not done.ok:
                failed.append(f"problems from {chunk[0][0]} ({done.error})")
                continue
            solved, unsolved = [], []
            for (i, p, _), got in zip(chunk, done.value):
                head = {"index": i, "key": p.key, "question": p.question, "gold": p.answer}
                if got["chain"] is None:
                    unsolved.append({**head, "attempts": got["attempts"], "tokens": got["tokens"]})
                    continue
                solved.append({**head, "chain": got["chain"], "answer": got["answer"], "benchmark": benchmark,
                               "task": p.task, "provenance": {**provenance, "attempts": got["attempts"],
                                                               "verified": got["verified"], "tokens": got["tokens"]}})
            append_rows(out, solved)  # solved first: a kill between the two writes only redoes the unsolved
            append_rows(unsolved_path, unsolved)
            bar.update(len(chunk))
    if hasattr(policy, "close"):
        policy.close()
    if failed:
        raise RuntimeError(f"{len(failed)} shards failed after {cfg.retries + 1} attempts each; the other problems are "
                           f"in {out}, and rerunning the same command runs only these: {'; '.join(failed[:3])}")
    n_solved, n_unsolved = len(read_results(out)), len(read_results(unsolved_path))
    print(json.dumps({"benchmark": benchmark, "problems": len(problems), "solved": n_solved, "unsolved": n_unsolved,
                      "out": str(out), "unsolved_file": str(unsolved_path), **provenance}))
    return 0
