"""``qstar eval``: a policy on a real benchmark (GSM8K, MATH-500, AIME 2024/2025, AMC 2023, Countdown, or any JSONL),
with any search strategy and budget, graded by the benchmark's own verifier (``Task.judge``: math-verify, numeric
equality, or the Countdown checker).

Policies (``make_policy``): a qstar checkpoint (``--checkpoint``, qstar's own sampler), any local Hugging Face causal
LM directory (``--checkpoint DIR --backend hf``; a directory that is not a qstar checkpoint loads this way by
default), or an OpenAI-compatible server (``--upstream URL --upstream-model NAME``; ``$OPENAI_API_KEY`` if set).

Prompts (``--prompt``):
- ``task``: the benchmark's question as is. qstar's own checkpoints (a directory with ``qstar.json``) are trained on
  their task's own phrasing, so ``auto`` uses this for them, whichever backend loads them.
- ``instruct``: the question, a blank line, and ``instruction(benchmark)``: ``BOXED_INSTRUCTION`` ("Please reason
  step by step, and put your final answer within \\boxed{}.", the Qwen/QwQ/DeepSeek-R1 convention), or for
  Countdown TinyZero's ``<answer> </answer>`` instruction, which is what the Countdown grader reads. ``auto`` uses it
  for every other model. A Hugging Face model with a chat template gets this text as its one user turn of its own
  template (``HFPolicy``); one without gets it as plain text.
Answers are read by the benchmark's task (``qstar.tasks.answers``: \\boxed{}, ####, "the answer is", the last number).

Output, ``--out DIR``: ``DIR/results.jsonl``, one line per problem (index, key, question, gold, answer, correct,
tokens, chain, failed, and per-sample answers when a strategy drew several); ``DIR/summary.json`` (``summarize``);
``DIR/eval.json``, the settings the results belong to. Lines are appended, one ``write`` and ``fsync`` per shard of
``--batch`` problems, so a killed run resumes where it stopped: problems already in results.jsonl are skipped, a torn
last line is dropped, and results of other settings are never mixed in (the run refuses). An upstream that keeps
failing (5xx, timeouts, garbage) is retried with backoff (``OpenAIPolicy``, then here for replies it does not retry);
then that problem gets no answer and counts in ``failed``, as does a question longer than a local model's context.

Shards run through ``qstar.executor`` (``--executor``, ``--workers``, ``--ray-address``), each worker building the
policy once; only this process writes, and a shard's seed derives from its first problem, so the results do not
depend on which worker ran it or how many there were.

``--self-check`` grades each problem's own reference (``qstar.tasks.benchmarks.reference_text``) as if a model had
written it and prints ``{"benchmark", "problems", "agreement"}``: anything below 1.0 is a grader or loader bug.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from qstar.executor import ExecutorOptions
from qstar.runio import atomic_write_json
from qstar.search.cli import jsonable
from qstar.search.estimators import bootstrap_ci, maj_at_k, pass_at_k
from qstar.tasks import task_of
from qstar.tasks.base import Problem
from qstar.tasks.benchmarks import BENCHMARKS, load_benchmark, load_jsonl, parse_fields, reference_text

__all__ = ["EvalConfig", "run_eval", "load_problems", "make_policy", "summarize", "BOXED_INSTRUCTION"]

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
COUNTDOWN_INSTRUCTION = ("Show your work in <think> </think> tags. And return the final answer in <answer> </answer> "
                         "tags, for example <answer> (1 + 2) / 3 </answer>.")
#: strategies whose results carry independent samples (``info["answers"]``), from which pass@k and maj@k are read
SAMPLED = ("majority", "best_of_n", "weighted_best_of_n", "think")
#: settings a results file belongs to; a resumed run must match them all
IDENTITY = ("benchmark", "data", "fields", "checkpoint", "backend", "upstream", "upstream_model", "upstream_chat",
            "prompt", "strategy", "budget", "scorer", "scorer_checkpoint", "options", "temperature", "max_tokens",
            "seed")


@dataclass
class EvalConfig(ExecutorOptions):
    """Evaluate a policy (qstar checkpoint, Hugging Face model dir or OpenAI-compatible server) on a benchmark."""

    benchmark: str = "gsm8k"
    """gsm8k, math500, aime24, aime25, amc23 or countdown: its shipped sample, or with --data a full file of its
    format; with --data and --fields, the name the results are filed under."""
    data: str = ""
    """A JSONL file to read instead of the shipped sample (nothing is downloaded)."""
    fields: str = ""
    """Read --data as any JSONL with this field mapping, e.g. question=problem,answer=solution (also solution=F);
    graded as math answers (numeric, else math-verify)."""
    checkpoint: str = ""
    """Policy: a qstar run dir / checkpoint dir, or any local Hugging Face causal LM directory."""
    backend: str = "auto"
    """How --checkpoint is loaded: auto (qstar if it is a qstar checkpoint, else hf), qstar, or hf (transformers)."""
    upstream: str = ""
    """Policy: an OpenAI-compatible server URL instead of --checkpoint (vLLM, SGLang, Ollama, llama.cpp, qstar)."""
    upstream_model: str = ""
    """Model id on --upstream."""
    upstream_chat: bool = False
    """Send whole chains through the server's /v1/chat/completions (its own chat template; thinking read from
    reasoning or reasoning_content) instead of /v1/completions. Step-level strategies need completions."""
    prompt: str = "auto"
    """auto, task (the question as is) or instruct (question + a final-answer instruction); auto: task for qstar
    checkpoints, instruct otherwise."""
    strategy: str = "greedy"
    """Search strategy: greedy, majority, best_of_n, weighted_best_of_n, beam, dvts, mcts, sequential, think, ..."""
    budget: int = 1
    """The strategy's budget (full chains' worth of compute; think: thinking tokens)."""
    scorer: str = "none"
    """Scorer guiding selection: none, checker, orm, prm, checker+prm, ... (oracle reads the gold: refused here)."""
    scorer_checkpoint: str = ""
    """Checkpoint of a learned scorer (orm/prm)."""
    options: str = ""
    """Extra strategy options as JSON, e.g. '{"width": 4}'."""
    temperature: float = 0.8
    """Sampling temperature of the strategies that sample (greedy decodes at 0)."""
    max_tokens: int = 1024
    """Token cap per chain (a qstar checkpoint also stops at its context length)."""
    problems: int = 0
    """Evaluate the first N problems only (0: all)."""
    batch: int = 16
    """Problems per strategy call; results are written after each batch."""
    out: str = "runs/eval"
    """Output directory: results.jsonl, summary.json, eval.json."""
    seed: int = 0
    """Sampling seed (each batch's seed derives from it and the batch's first problem)."""
    timeout: float = 120.0
    """Seconds per upstream request."""
    retries: int = 3
    """Retries of a failing upstream request, with exponential backoff, before the problem counts as failed; also
    the times a shard whose worker raised or died is run again before it is reported failed."""
    self_check: bool = False
    """Grade each problem's reference solution (or gold answer) as model text, print the agreement, and exit."""


def load_problems(cfg: EvalConfig) -> tuple[str, list[Problem]]:
    """(benchmark name, problems) of ``cfg``: --data with --fields, --data of a named format, or a shipped sample."""
    limit = cfg.problems or None
    if cfg.fields:
        if not cfg.data:
            raise ValueError("--fields maps the fields of a --data FILE; give the file")
        name = cfg.benchmark if cfg.benchmark not in BENCHMARKS else Path(cfg.data).stem
        return name, load_jsonl(cfg.data, fields=parse_fields(cfg.fields), name=name, limit=limit)
    if cfg.benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {cfg.benchmark!r}; choose from {', '.join(BENCHMARKS)}, or give --data "
                         f"FILE --fields question=F,answer=G")
    return cfg.benchmark, load_benchmark(cfg.benchmark, cfg.data or None, limit=limit)


def self_check(benchmark: str, problems: list[Problem]) -> dict:
    """Grade each problem's reference text as model text: {"benchmark", "problems", "agreement", "disagree"}."""
    bad = [p.key for p in problems if not task_of(p.task).judge(p, reference_text(p)).correct]
    return {"benchmark": benchmark, "problems": len(problems),
            "agreement": (len(problems) - len(bad)) / len(problems) if problems else None, "disagree": bad[:20]}


def instruction(benchmark_task: str) -> str:
    """The final-answer instruction appended to the question for instruction-following models."""
    return COUNTDOWN_INSTRUCTION if benchmark_task == "countdown" else BOXED_INSTRUCTION


def make_policy(cfg: EvalConfig):
    """(policy, backend name, qstar-trained?) for --checkpoint / --upstream."""
    if bool(cfg.checkpoint) == bool(cfg.upstream):
        raise ValueError("give exactly one policy: --checkpoint DIR or --upstream URL (with --upstream-model)")
    if cfg.upstream:
        if not cfg.upstream_model:
            raise ValueError("--upstream needs --upstream-model (the model id the server serves)")
        from qstar.backends.openai_compat import OpenAIPolicy

        policy = OpenAIPolicy(cfg.upstream, cfg.upstream_model, api_key=os.environ.get("OPENAI_API_KEY"),
                              timeout=cfg.timeout, max_retries=cfg.retries, chat=cfg.upstream_chat)
        return policy, "upstream", False
    from qstar.model.checkpoint import find_checkpoint

    if cfg.backend not in ("auto", "qstar", "hf"):
        raise ValueError(f"--backend must be auto, qstar or hf (got {cfg.backend!r})")
    path = Path(cfg.checkpoint)
    if not path.is_dir():
        raise ValueError(f"--checkpoint: no directory at {path}")
    directory = find_checkpoint(path) if cfg.backend != "hf" or not (path / "config.json").is_file() else path
    qstar_trained = (directory / "qstar.json").is_file()
    backend = cfg.backend if cfg.backend != "auto" else ("qstar" if qstar_trained else "hf")
    if backend == "qstar":
        from qstar.model.policy import load_policy

        return load_policy(path, seed=cfg.seed), "qstar", qstar_trained
    from qstar.backends.hf import HFPolicy

    return HFPolicy.from_pretrained(directory), "hf", qstar_trained


def make_scorer(cfg):
    """The scorer of ``cfg`` (a learned one from ``cfg.scorer_checkpoint``, where the config has that field)."""
    from qstar.scorers import get_scorer, learned_kind

    learned = learned_kind(cfg.scorer) and hasattr(cfg, "scorer_checkpoint")
    return get_scorer(cfg.scorer, **({"checkpoint": cfg.scorer_checkpoint} if learned else {}))


class ShardWorker:
    """One executor worker: ``shard -> fn(cfg, policy, scorer, shard, knobs)``. It builds the policy and scorer once,
    unless the caller runs its one worker in-process and hands over its own."""

    def __init__(self, fn, cfg, knobs: dict, policy=None, scorer=None) -> None:
        self.fn, self.cfg, self.knobs = fn, cfg, knobs
        self.policy = policy if policy is not None else make_policy(cfg)[0]
        self.scorer = scorer if scorer is not None else make_scorer(cfg)

    def __call__(self, shard):
        return self.fn(self.cfg, self.policy, self.scorer, shard, self.knobs)


def shard_factory(fn, cfg, knobs: dict, policy, scorer):
    """The ``ShardWorker`` factory for ``cfg``'s executor: local paths made absolute (workers may run in another
    directory, Ray's), and this process's policy and scorer reused when its one worker runs here."""
    paths = {k: str(Path(getattr(cfg, k)).resolve()) for k in ("checkpoint", "scorer_checkpoint")
             if getattr(cfg, k, "")}
    built = (policy, scorer) if cfg.in_process else ()
    return functools.partial(ShardWorker, fn, dataclasses.replace(cfg, **paths), knobs, *built)


def _prompted(problems: list[Problem], use_instruction: bool) -> list[Problem]:
    """The problems as the policy sees them (the question + the instruction, or as they are)."""
    if not use_instruction:
        return problems
    return [Problem(p.task, f"{p.question}\n\n{instruction(p.task)}", p.answer, p.key, p.data) for p in problems]


def _check_template(policy, problem: Problem) -> None:
    """A chat template that cannot render fails here, once, with a clear error (not mid-run)."""
    render = getattr(policy, "render", None)
    if render is None:
        return
    from qstar.model.types import Prompt

    try:
        render(Prompt(problem.question))
    except Exception as e:  # jinja errors, missing roles, template-side raise_exception(...)
        raise ValueError(f"the chat template of {policy.name} failed to render a prompt "
                         f"({type(e).__name__}: {e})") from None


# ---- results file: appended atomically, read back tolerating a torn last line -----------------------------------
def read_results(path: Path) -> list[dict]:
    """Rows of results.jsonl; a torn last line (a kill mid-write) is dropped and the file rewritten without it."""
    if not path.is_file():
        return []
    raw = path.read_bytes()
    rows, good = [], 0
    for line in raw.splitlines(keepends=True):
        try:
            row = json.loads(line)
        except ValueError:
            break
        if not line.endswith(b"\n") or not isinstance(row, dict):
            break
        rows.append(row)
        good += len(line)
    if good != len(raw):
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(raw[:good])
        os.replace(tmp, path)
    return rows


def append_rows(path: Path, rows: list[dict]) -> None:
    """Append whole lines in one write, then fsync: a kill leaves whole rows or a torn tail ``read_results`` drops."""
    data = "".join(json.dumps(jsonable(r)) + "\n" for r in rows).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- running ------------------------------------------------------------------------------------------------------
def _row(i: int, original: Problem, result, correct: bool, strategy: str) -> dict:
    """One results.jsonl line; sampled strategies also record each sample's answer and grade."""
    task = task_of(original.task)
    row = {"index": i, "key": original.key, "question": original.question, "gold": original.answer,
           "answer": result.answer, "correct": bool(correct), "failed": False,
           "tokens": result.ledger.generated_tokens + result.ledger.prompt_tokens,
           "generated_tokens": result.ledger.generated_tokens, "chain": result.chain, "score": result.score}
    answers = result.info.get("answers") if strategy in SAMPLED else None
    if isinstance(answers, list) and len(answers) > 1:
        row["samples"] = [{"answer": a, "correct": task.accepts(original, a)} for a in answers]
    return row


def _failed_row(i: int, original: Problem, error: Exception) -> dict:
    return {"index": i, "key": original.key, "question": original.question, "gold": original.answer, "answer": None,
            "correct": False, "failed": True, "error": f"{type(error).__name__}: {error}"[:500], "tokens": 0,
            "generated_tokens": 0, "chain": "", "score": None}


def _retryable(e: Exception) -> bool:
    """An upstream reply the backend did not retry itself (garbage, empty choices) that may succeed again."""
    if not hasattr(e, "attempts"):  # not an UpstreamError: a local policy's refusal (a prompt past its context)
        return False
    from qstar.backends.openai_compat import RETRY_STATUS

    status = e.status
    return e.attempts <= 1 and (status is None or status in RETRY_STATUS or status < 400)


def _solve(cfg: EvalConfig, policy, scorer, chunk: list[tuple[int, Problem, Problem]], knobs: dict) -> list[dict]:
    """Rows for one chunk of (index, original, prompted) problems; upstream failures end in failed rows."""
    from qstar.search.options import SearchOptions
    from qstar.search.registry import strategy_spec
    from qstar.search.run import run_strategy

    # a local policy raises ValueError for a prompt longer than its context; options were checked before the run
    failures: tuple[type[BaseException], ...] = (ValueError,)
    if cfg.upstream:
        from qstar.backends.openai_compat import UpstreamError

        failures = (UpstreamError, ValueError)
    spec = strategy_spec(cfg.strategy)
    options = SearchOptions(temperature=None if spec.deterministic else cfg.temperature, max_tokens=cfg.max_tokens,
                            seed=(cfg.seed << 20) + chunk[0][0])

    def run(part):
        _, rows = run_strategy(policy, scorer, [q for _, _, q in part], strategy=cfg.strategy, budget=cfg.budget,
                               options=options, **knobs)
        return [_row(i, p, r.result, bool(r.correct), cfg.strategy) for (i, p, _), r in zip(part, rows)]

    try:
        return run(chunk)
    except failures as e:
        if len(chunk) > 1:  # one bad problem must not sink its neighbours
            return [row for item in chunk for row in _solve(cfg, policy, scorer, [item], knobs)]
        err, tries = e, cfg.retries if _retryable(e) else 0
    for attempt in range(tries):
        time.sleep(min(8.0, 0.5 * 2**attempt))
        try:
            return run(chunk)
        except failures as e:
            err = e
    return [_failed_row(chunk[0][0], chunk[0][1], err)]


def summarize(rows: list[dict], **head) -> dict:
    """accuracy with a 95% bootstrap interval, tokens per problem, problems, failed, no_answer; pass@k and maj@k
    (k = 1, 2, 4, ... up to the samples drawn) when a sampled strategy drew several chains per problem. A failed
    problem counts as wrong everywhere."""
    n = len(rows)
    if n == 0:
        raise ValueError("no results to summarize")
    acc = [float(r["correct"]) for r in rows]
    lo, hi = bootstrap_ci(acc)
    out = {**head, "accuracy": sum(acc) / n, "ci_low": lo, "ci_high": hi,
           "tokens_per_problem": sum(r["tokens"] for r in rows) / n,
           "generated_per_problem": sum(r.get("generated_tokens", 0) for r in rows) / n,
           "problems": n, "failed": sum(bool(r.get("failed")) for r in rows),
           "no_answer": sum(r["answer"] is None for r in rows) / n}
    drawn = max((len(r.get("samples") or []) for r in rows), default=0)
    k = 1
    while drawn > 1 and k <= drawn:
        passes, majs = [], []
        for r in rows:
            s = r.get("samples") or []
            ok = len(s) >= k
            passes.append(pass_at_k(len(s), sum(x["correct"] for x in s), k) if ok else 0.0)
            majs.append(maj_at_k([x["answer"] for x in s], [x["correct"] for x in s], k) if ok else 0.0)
        out[f"pass@{k}"], out[f"maj@{k}"] = sum(passes) / n, sum(majs) / n
        k *= 2
    if drawn > 1:
        out["samples"] = drawn
    return out


def run_eval(cfg: EvalConfig) -> int:
    """Run ``cfg``: --self-check prints the grader's agreement; otherwise evaluate, resume, and write the outputs."""
    benchmark, problems = load_problems(cfg)
    if not problems:
        raise ValueError(f"{benchmark}: no problems to evaluate")
    if cfg.self_check:
        report = self_check(benchmark, problems)
        print(json.dumps(report))
        return 0 if report["agreement"] == 1.0 else 1
    if cfg.budget < (0 if cfg.strategy == "think" else 1) or cfg.batch < 1:
        raise ValueError(f"--budget and --batch must be >= 1 (got {cfg.budget}, {cfg.batch})")
    from qstar.search.options import FIELDS
    from qstar.search.registry import check_knobs, strategy_spec

    strategy_spec(cfg.strategy)
    try:
        knobs = json.loads(cfg.options) if cfg.options else {}
    except json.JSONDecodeError as e:
        raise ValueError(f"--options must be a JSON object: {e}") from None
    if not isinstance(knobs, dict):
        raise ValueError("--options must be a JSON object")
    check_knobs(cfg.strategy, [k for k in knobs if k not in FIELDS])
    scorer = make_scorer(cfg)
    if scorer.oracle:
        raise ValueError("the oracle scorer reads the gold answer: an evaluation cannot select with it")
    if cfg.prompt not in ("auto", "task", "instruct"):
        raise ValueError(f"--prompt must be auto, task or instruct (got {cfg.prompt!r})")

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    results, settings = out / "results.jsonl", {k: getattr(cfg, k) for k in IDENTITY}
    done_rows = read_results(results)
    if done_rows and (out / "eval.json").is_file():
        before = json.loads((out / "eval.json").read_text())
        differ = [k for k in IDENTITY if before.get(k) != settings[k]]
        if differ:
            raise ValueError(f"{out} holds results of another evaluation (different {', '.join(differ)}); "
                             f"use another --out, or remove {results} to start over")
    elif done_rows:
        raise ValueError(f"{results} exists without its eval.json: cannot tell which settings made it; use another "
                         f"--out or remove it")
    atomic_write_json(out / "eval.json", jsonable(settings))

    policy, backend, qstar_trained = make_policy(cfg)
    use_instruction = cfg.prompt == "instruct" or (cfg.prompt == "auto" and not qstar_trained)
    prompted = _prompted(problems, use_instruction)
    _check_template(policy, prompted[0])
    done = {(r.get("index"), r.get("key")) for r in done_rows}
    todo = [(i, p, q) for i, (p, q) in enumerate(zip(problems, prompted)) if (i, p.key) not in done]

    from tqdm import tqdm

    t0, failed = time.perf_counter(), []
    shards = [todo[c:c + cfg.batch] for c in range(0, len(todo), cfg.batch)]
    with tqdm(total=len(problems), initial=len(problems) - len(todo), desc=f"eval {benchmark}", unit="problem",
              file=sys.stderr, mininterval=1.0) as bar, cfg.open_executor() as ex:
        for done in ex.map(shard_factory(_solve, cfg, knobs, policy, scorer), shards):
            if not done.ok:
                failed.append(f"problems from {shards[done.index][0][0]} ({done.error})")
                continue
            append_rows(results, done.value)
            bar.update(len(done.value))
    if hasattr(policy, "close"):
        policy.close()
    if failed:
        raise RuntimeError(f"{len(failed)} shards failed after {cfg.retries + 1} attempts each; the other problems are "
                           f"in {results}, and rerunning the same command runs only these: {'; '.join(failed[:3])}")

    wanted = {(i, p.key) for i, p in enumerate(problems)}
    final = {(r["index"], r["key"]): r for r in read_results(results) if (r.get("index"), r.get("key")) in wanted}
    head = {"benchmark": benchmark, "data": cfg.data or None, "policy": policy.name, "backend": backend,
            "prompt": "instruct" if use_instruction else "task", "strategy": cfg.strategy, "budget": cfg.budget,
            "scorer": scorer.name, "seed": cfg.seed, "seconds_this_run": time.perf_counter() - t0}
    summary = summarize([final[k] for k in sorted(final)], **head)
    atomic_write_json(out / "summary.json", jsonable(summary))
    print(json.dumps(jsonable(summary)))
    return 0
