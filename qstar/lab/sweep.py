"""`qstar sweep`: the test-time grid (model x strategy x budget x seed) into a resumable metrics jsonl.

Each cell runs one strategy at one budget over the same held-out problems and appends one ``test`` record (plus
``tree`` records for tree strategies) in ONE write. A killed sweep continues where it stopped: finished cells are
found by key and skipped; a torn last line and trees of an unfinished cell are dropped first.

Cells run through ``qstar.executor``: in this process (the default), in a process pool (``--workers K``) or on Ray
actors (``--executor ray [--ray-address ADDR]``); each worker loads each checkpoint once. Only this process writes
the jsonl, so a worker that dies leaves nothing behind; its cell is retried (``--retries``), then reported failed and
left for the next run, while the other cells go on.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qstar.executor import ExecutorOptions
from qstar.lab.metrics import append_records, read_metrics, write_records
from qstar.scorers import learned_kind

DEFAULT_STRATEGIES = ("majority", "best_of_n", "beam", "mcts", "sequential", "compute_optimal")


@dataclass
class SweepConfig(ExecutorOptions):
    """Sweep test-time strategies x budgets x seeds (x model sizes) into a resumable jsonl."""

    out: str = "runs/sweep/metrics.jsonl"
    """Metrics jsonl to append to; finished cells already in it are skipped (resume)."""
    checkpoints: list[str] = field(default_factory=lambda: ["runs/demo"])
    """Reasoner checkpoints (run dir or HF dir), one per model size."""
    strategies: list[str] = field(default_factory=lambda: list(DEFAULT_STRATEGIES))
    """Strategy names from qstar.search.STRATEGIES; `name@scorer` runs that strategy with another scorer and
    `name/N` stops it at budget N (tree searches cost more per budget than sampling)."""
    budgets: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    """Budgets N (full-chain samples worth of compute per problem; see each strategy's budget mapping)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    """Sampling seeds; the problem set is the same for every seed so results pool per problem."""
    task: str = ""
    """Task whose held-out (test) split is evaluated; empty: the task the first checkpoint was trained on, else
    mixture."""
    problems: int = 100
    """Held-out problems per cell (at 100 a cell's 95% interval is about +-10 points; fewer cannot separate
    strategies)."""
    problem_seed: int = 0
    """Seed of the held-out problem set."""
    scorer: str = "prm"
    """Scorer name from qstar.scorers (a learned prm/orm needs --scorer-checkpoint)."""
    scorer_checkpoint: str = ""
    """Checkpoint of a learned scorer ('' for programmatic ones; a demo run dir's own PRM is found by itself)."""
    max_tokens: int = 0
    """Cap on tokens per chain; 0 derives it from the task's reference chains."""
    trees: int = 2
    """Search trees recorded per tree strategy (largest budget, first seed) for the report's tree viewer."""
    force: bool = False
    """Start the jsonl over instead of refusing when it holds cells of a different configuration."""


Cell = dict  # {model, checkpoint, strategy, budget, seed}


def spec_label(spec: str) -> str:
    """A strategy spec without its budget cap (`best_of_n@checker/32` -> `best_of_n@checker`): the curve's name."""
    return spec.split("/", 1)[0]


def split_strategy(spec: str, default_scorer: str) -> tuple[str, str]:
    """`best_of_n@checker/32` -> ("best_of_n", "checker"); a bare name uses the sweep's scorer."""
    name, _, scorer = spec_label(spec).partition("@")
    return name, scorer or default_scorer


def budget_cap(spec: str) -> int | None:
    """The N of a `name/N` strategy spec (None: every budget); ValueError for a cap that is not a positive int."""
    if "/" not in spec:
        return None
    cap = spec.split("/", 1)[1]
    if not cap.isdigit() or int(cap) < 1:
        raise ValueError(f"strategy {spec!r}: the budget cap after '/' must be a positive integer")
    return int(cap)


Runner = Callable[[Cell, SweepConfig], tuple[dict, list[dict]]]


def config_hash(cfg: SweepConfig) -> str:
    """Hash of everything but the grid axes and the output path: cells of different hashes must not be pooled. The
    task is the effective one, so leaving --task to the checkpoint pools with naming it."""
    from qstar.model.checkpoint import task_for

    d = {k: v for k, v in asdict(cfg).items() if k not in ("out", "checkpoints", "strategies", "budgets", "seeds",
                                                              "trees", "force", "executor", "ray_address",
                                                              "workers", "retries")}
    d["task"] = task_for(cfg.task, cfg.checkpoints, default="mixture", note=False)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def model_label(checkpoint: str) -> str:
    """Short model name for legends: the run dir's name (an HF dir named 'checkpoint' uses its parent)."""
    p = Path(checkpoint)
    return (p.parent.name if p.name == "checkpoint" else p.name) or str(p)


def cell_key(cell: Cell, chash: str) -> str:
    return f"{cell['model']}|{cell['strategy']}|N={cell['budget']}|seed={cell['seed']}|{chash}"


def grid(cfg: SweepConfig) -> list[Cell]:
    """All cells, seeds outermost so a partial sweep already has one full seed (and cheap budgets first)."""
    if not (cfg.checkpoints and cfg.strategies and cfg.budgets and cfg.seeds):
        raise ValueError("sweep grid is empty: give at least one checkpoint, strategy, budget and seed")
    floor = 0 if all(split_strategy(s, cfg.scorer)[0] == "think" for s in cfg.strategies) else 1  # think: 0 tokens
    if any(b < floor for b in cfg.budgets):
        raise ValueError(f"budgets must be >= {floor}, got {cfg.budgets}")
    labels = [model_label(c) for c in cfg.checkpoints]
    if len(set(labels)) != len(labels):
        labels = [str(c) for c in cfg.checkpoints]
    caps = {s: budget_cap(s) for s in cfg.strategies}
    return [{"model": m, "checkpoint": c, "strategy": s, "budget": b, "seed": seed}
            for seed in cfg.seeds for b in sorted(cfg.budgets) for m, c in zip(labels, cfg.checkpoints)
            for s in cfg.strategies if caps[s] is None or b <= caps[s]]


def load_done(path: Path, chash: str, *, force: bool) -> set[str]:
    """Keys of finished cells in ``path`` after dropping a torn tail and orphan trees; refuses foreign configs."""
    if force and path.exists():
        path.unlink()
    records = read_metrics(path, repair=True, allow_empty=True)
    done = {r["key"] for r in records if r["kind"] == "test"}
    foreign = {r.get("config_hash") for r in records if r["kind"] == "test"} - {chash}
    if foreign:
        raise ValueError(f"{path} holds sweep cells of a different configuration (task/problems/scorer/max_tokens "
                         f"changed); use another --out, or --force to start it over")
    kept = [r for r in records if r["kind"] != "tree" or r.get("cell") in done or "cell" not in r]
    if len(kept) != len(records):
        write_records(path, kept)
    return done


def run_sweep(cfg: SweepConfig, *, runner: Runner | None = None, on_cell: Callable[[int, int], None] | None = None
              ) -> dict:
    """Run every unfinished cell; returns {cells, ran, skipped, out, seconds}.

    runner(cell, cfg) -> (test record without key fields, tree records): defaults to ``ModelCellRunner`` (real
    checkpoints, qstar.search strategies); tests inject scripted ones (picklable ones for a pool or Ray, where each
    worker gets a copy). on_cell(done, total) reports progress. Cells that still fail after ``cfg.retries`` retries
    raise RuntimeError once every other cell is written.
    """
    from qstar.model.checkpoint import task_for

    cfg = dataclasses.replace(cfg, task=task_for(cfg.task, cfg.checkpoints, default="mixture"))
    if learned_kind(cfg.scorer) and not cfg.scorer_checkpoint:  # a demo run dir carries its trained reward model
        found = [Path(c) / "stages" / "prm" / "checkpoint" for c in cfg.checkpoints]
        found = [p for p in found if (p / "config.json").is_file()]
        if found:
            cfg = dataclasses.replace(cfg, scorer_checkpoint=str(found[0]))
    path, chash = Path(cfg.out), config_hash(cfg)
    cells = grid(cfg)
    if runner is None:
        check_config(cfg)
    done = load_done(path, chash, force=cfg.force)
    todo = [c for c in cells if cell_key(c, chash) not in done]
    t0, finished, failed = time.perf_counter(), len(cells) - len(todo), []
    # workers may run in another directory (Ray's): send them absolute paths
    sent = [dict(c, checkpoint=str(Path(c["checkpoint"]).resolve())) for c in todo]
    scorer_path = cfg.scorer_checkpoint and str(Path(cfg.scorer_checkpoint).resolve())
    wcfg = dataclasses.replace(cfg, scorer_checkpoint=scorer_path)
    with cfg.open_executor() as ex:
        for outcome in ex.map(functools.partial(CellWorker, runner, wcfg), sent):
            cell = todo[outcome.index]
            key = cell_key(cell, chash)
            if not outcome.ok:
                failed.append(f"{key} ({outcome.error})")
                continue
            test, trees = outcome.value
            test.update(kind="test", key=key, config_hash=chash, model=cell["model"],
                        strategy=spec_label(cell["strategy"]), budget=cell["budget"], seed=cell["seed"])
            trees = [dict(t, kind="tree", cell=key) for t in trees]
            append_records(path, [*trees, test])  # the test line, written last, marks the cell finished
            finished += 1
            if on_cell:
                on_cell(finished, len(cells))
    result = {"cells": len(cells), "ran": len(todo) - len(failed), "skipped": len(cells) - len(todo),
              "failed": len(failed), "out": str(path), "seconds": time.perf_counter() - t0}
    print(json.dumps(result))
    if failed:
        raise RuntimeError(f"{len(failed)} sweep cells failed after {cfg.retries + 1} attempts each; the rest are in "
                           f"{path}, and rerunning the same command runs only these: {'; '.join(failed[:3])}")
    return result


class CellWorker:
    """One executor worker: ``cell -> (test record, tree records)``, built once per worker so the runner's caches
    (policies, scorers, problems) serve every cell the worker gets."""

    def __init__(self, runner: Runner | None, cfg: SweepConfig) -> None:
        self.runner, self.cfg = runner or ModelCellRunner(), cfg

    def __call__(self, cell: Cell) -> tuple[dict, list[dict]]:
        return self.runner(cell, self.cfg)


def check_config(cfg: SweepConfig) -> None:
    """Fail before the first cell, naming what exists, instead of after an hour of finished cells."""
    from qstar.scorers import SCORERS
    from qstar.search import STRATEGIES
    from qstar.tasks import get_task

    specs = [split_strategy(s, cfg.scorer) for s in cfg.strategies]
    unknown = [s for s, (name, _) in zip(cfg.strategies, specs) if name not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
    for scorer in dict.fromkeys([cfg.scorer] + [sc for _, sc in specs]):
        if scorer not in SCORERS:
            raise ValueError(f"unknown scorer {scorer!r}; choose from {', '.join(SCORERS)}")
        if learned_kind(scorer) and not cfg.scorer_checkpoint:
            raise ValueError(f"scorer {scorer!r} is learned: pass --scorer-checkpoint (e.g. a `qstar train "
                             f"{learned_kind(scorer)}` run dir), or use a programmatic scorer (checker, none)")
    get_task(cfg.task)
    from qstar.model.checkpoint import find_checkpoint

    for c in cfg.checkpoints:
        find_checkpoint(c, flag="--checkpoints")


class ModelCellRunner:
    """Runs a cell on real checkpoints: caches policies, scorers and the problem set across cells."""

    def __init__(self) -> None:
        self._policies: dict[str, object] = {}
        self._scorers: dict[str, object] = {}
        self._problems = None

    def problems(self, cfg: SweepConfig):
        if self._problems is None:
            from qstar.tasks import get_task

            self._problems = get_task(cfg.task).generate(cfg.problems, seed=cfg.problem_seed, split="test")
        return self._problems

    def policy(self, checkpoint: str):
        if checkpoint not in self._policies:
            from qstar.model.policy import load_policy

            # one policy serves every cell: run_strategy restarts its own generator at each cell's seed
            self._policies[checkpoint] = load_policy(checkpoint, flag="--checkpoints", name=model_label(checkpoint))
        return self._policies[checkpoint]

    def scorer(self, cfg: SweepConfig, name: str):
        if name not in self._scorers:
            from qstar.scorers import get_scorer

            kw = {"checkpoint": cfg.scorer_checkpoint} if learned_kind(name) else {}
            self._scorers[name] = get_scorer(name, **kw)
        return self._scorers[name]

    def __call__(self, cell: Cell, cfg: SweepConfig) -> tuple[dict, list[dict]]:
        from qstar.learn.evaluate import chain_budget
        from qstar.search import strategy_spec
        from qstar.search.run import run_strategy
        from qstar.tasks import get_task

        strategy, scorer_name = split_strategy(cell["strategy"], cfg.scorer)
        problems, policy, scorer = self.problems(cfg), self.policy(cell["checkpoint"]), self.scorer(cfg, scorer_name)
        limits = search_limits(get_task(cfg.task), problems, max_tokens=cfg.max_tokens or chain_budget(
            get_task(cfg.task), problems))
        # the seed drives every sampler draw of this cell, so a re-run cell reproduces its numbers
        summary, rows = run_strategy(policy, scorer, problems, strategy=strategy, budget=cell["budget"],
                                     options=dataclasses.replace(limits, seed=cell["seed"]))
        results = [r for _, r, _ in rows]
        test = {"scorer": summary["scorer"], "oracle": summary["oracle"], "scorer_kind": summary["scorer_kind"],
                "params": int(getattr(policy, "params", 0)),
                "problems": [f"{p.task}:{p.key}" for p in problems], "outcomes": [int(c) for _, _, c in rows],
                "tokens": [r.ledger.generated_tokens for r in results], "flops": [r.ledger.flops for r in results],
                "seconds": summary["seconds"]}
        trees = []
        cap = budget_cap(cell["strategy"])
        top = max(b for b in cfg.budgets if cap is None or b <= cap)  # this strategy's largest budget
        if strategy_spec(strategy).tree and cell["seed"] == cfg.seeds[0] and cell["budget"] == top:
            for p, r, ok in pick_examples(rows, cfg.trees):
                if r.tree:
                    trees.append({"strategy": spec_label(cell["strategy"]), "model": cell["model"],
                                  "budget": cell["budget"],
                                  "question": p.question, "answer": r.answer, "gold": p.answer, "correct": bool(ok),
                                  "tree": r.tree})
        return test, trees


def search_limits(task, problems, *, max_tokens: int):
    """Length caps for every strategy (a ``SearchOptions``), derived from the task's reference chains like
    ``chain_budget``: a chain never needs 1.5x more steps, or a step 1.5x more tokens, than the longest reference.
    Without them, step-level searches on a weak model run to the search's generic caps on every branch."""
    from qstar.search.options import SearchOptions

    refs = [task.steps(p) for p in problems] or [[]]
    longest_line = max((len(line) for steps in refs for line in steps), default=16)
    return SearchOptions(max_tokens=max_tokens, max_steps=int(1.5 * (max(map(len, refs)) + 1)) + 2,
                         max_step_tokens=min(max_tokens, int(1.5 * longest_line) + 8))


def pick_examples(rows: list[tuple], k: int) -> list[tuple]:
    """Up to k (problem, result, outcome) rows alternating solved and failed ones, so the viewer shows both."""
    solved, failed = [r for r in rows if r[2]], [r for r in rows if not r[2]]
    mixed = [r for pair in zip(solved, failed) for r in pair] + solved[len(failed):] + failed[len(solved):]
    return mixed[:k]
