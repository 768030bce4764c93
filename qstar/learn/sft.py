"""Supervised fine-tuning on reference chains of thought: the first stage of every qstar reasoner.

``qstar train sft --task mult --out DIR`` trains a fresh (or ``--init``) model on an endless stream of generated
problems and their reference chains, evaluates greedy accuracy on held-out problems, and writes

    DIR/checkpoint/    Hugging Face model directory (stage "sft")
    DIR/summary.json   greedy_accuracy, train_seconds, tokens_per_second, mfu (against the measured matmul peak of
                       the dtype the matmuls ran in), params, ...
    DIR/metrics.jsonl  train/* and eval/* points (eval points carry cumulative training FLOPs)
    DIR/resume/        latest state while training (weights + optimizer + step); a killed run continues from it

``fit`` is the reusable loop (expert iteration, distillation and retry data call it on their own examples).
Under ``torchrun --nproc-per-node K -m qstar.cli train sft ...`` it trains data-parallel with the same updates as one
process at the same --batch-size and --seed; rank 0 alone writes (qstar.learn.distributed, docs/scaling.md).
"""

from __future__ import annotations

import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

import qstar  # noqa: F401  (thread env before torch)
from qstar.learn import distributed
from qstar.learn.budget import Budget
from qstar.learn.evaluate import chain_budget, greedy_accuracy
from qstar.learn.optim import MuonAdamW, make_optimizer
from qstar.learn.runs import start_run
from qstar.model.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint, task_for
from qstar.model.model import ModelConfig, Transformer
from qstar.model.perf import (
    attention_flops,
    causal_pairs,
    configure_threads,
    matmul_peak_flops,
    native_bf16,
    train_flops,
)
from qstar.model.policy import ModelPolicy
from qstar.model.tokenizer import CharTokenizer
from qstar.runio import append_jsonl, atomic_write_json
from qstar.tasks import get_task
from qstar.tasks.format import render_prompt

Example = tuple[str, str]  # (question, chain text)
ExampleSource = Sequence[Example] | Callable[[random.Random], Example]
IGNORE = -100


@dataclass
class SFTConfig:
    """Supervised fine-tuning on a task's reference chains."""

    task: str = ""
    """Task name (see `qstar tasks`); problems are generated on the fly from its train split. Empty: the task the
    --init checkpoint was trained on, else mult."""
    out: str = "runs/sft"
    """Run directory: checkpoint/, summary.json, metrics.jsonl, resume/."""
    init: str = ""
    """Start from this checkpoint (run dir or HF dir) instead of a fresh model."""
    corpus: str = ""
    """Thinking corpus mixture, e.g. 'short=0.7,long=0.3' (kinds: qstar.learn.retry.CORPUS_KINDS: short answers,
    long reference chains, cheap checks, caught mistakes and retries). Empty: the task's reference chains only."""
    data: str = ""
    """Train on the (question, chain) pairs of this JSONL file (fields question, chain: `qstar relabel`'s output)
    instead of the task's reference chains; --task still names the held-out evaluation."""
    preset: str = "small"
    """Model size preset for a fresh model (tiny, small, base)."""
    max_steps: int = 1000
    """Updates to train (the budget: every machine trains the same model). The LR schedule spans them. 0: train for
    --seconds instead."""
    seconds: float = 0.0
    """Safety cap on training time in seconds (evaluation excluded); a run it stops is marked cut short. With
    --max-steps 0 it is the budget itself. 0: no cap."""
    batch_size: int = 32
    """Sequences per update. Small batches won on 3x3 multiplication: more updates for the same compute (LOG.md)."""
    optimizer: str = "muon"
    """``muon`` (Muon on hidden matrices, AdamW on the rest) or ``adamw``; see qstar.learn.optim. Muon learned to copy
    from the prompt in far fewer updates than AdamW and learned the demo mixture faster at equal updates (LOG.md)."""
    lr: float = 3e-3
    """Peak learning rate (AdamW; Muon's is matched to AdamW's update size, so the same value serves both)."""
    warmup_steps: int = 30
    """Linear warm-up updates."""
    min_lr_ratio: float = 0.05
    """Cosine decay ends at lr * min_lr_ratio."""
    weight_decay: float = 0.0
    """Decoupled weight decay."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    bf16: bool = False
    """bf16 autocast for the matmuls (attention and the loss stay fp32). Faster at `small`'s width on CPUs that
    multiply bf16 in hardware (AVX512-BF16/AMX; elsewhere it falls back to fp32 with a note), but it trains a
    different model than fp32 does, so it is opt-in: by default every CPU trains the same fp32 model (LOG.md)."""
    eval_every: int = 250
    """Updates between greedy evaluations (0: only at the end)."""
    eval_at_steps: list[int] = field(default_factory=list)
    """Extra greedy evaluations after these numbers of updates (e.g. log-spaced points for a chart with a log-FLOPs
    axis, where evenly spaced ones would all sit at its right end)."""
    eval_problems: int = 500
    """Held-out test-split problems for greedy evaluation."""
    save_every: float = 60.0
    """Seconds of training between resume snapshots."""
    seed: int = 0
    """Seed for data order and initialisation."""
    resume: bool = True
    """Continue from DIR/resume if a killed run left one."""
    force: bool = False
    """Overwrite a finished run in DIR."""


# --------------------------------------------------------------------------------------------------- batches


def encode_example(tok: CharTokenizer, question: str, chain: str) -> tuple[list[int], int]:
    """Token ids of ``<bos> prompt chain <eos>`` and the number of prompt tokens (not trained on)."""
    prompt = tok.encode(render_prompt(question), bos=True)
    return prompt + tok.encode(chain, bos=False, eos=True), len(prompt)


def collate(encoded: Sequence[tuple[list[int], int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded inputs [B, T] and labels [B, T] (next token; IGNORE on prompt and padding)."""
    width = max(len(ids) for ids, _ in encoded) - 1
    inputs = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    for i, (ids, n_prompt) in enumerate(encoded):
        t = torch.tensor(ids, dtype=torch.long)
        inputs[i, : len(ids) - 1] = t[:-1]
        labels[i, n_prompt - 1 : len(ids) - 1] = t[n_prompt:]
    return inputs, labels


def lr_at(progress: float, step: int, *, lr: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay over ``progress`` in [0, 1]."""
    if step < warmup:
        return lr * (step + 1) / warmup
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return lr * (min_ratio + (1 - min_ratio) * cos)


# --------------------------------------------------------------------------------------------------- the loop


def fit(
    model: Transformer,
    tokenizer: CharTokenizer,
    examples: ExampleSource,
    *,
    seconds: float | None = None,
    steps: int | None = None,
    lr: float = 3e-3,
    batch_size: int = 64,
    warmup_steps: int = 20,
    min_lr_ratio: float = 0.05,
    weight_decay: float = 0.0,
    grad_clip: float = 1.0,
    bf16: bool = False,
    seed: int = 0,
    optimizer: torch.optim.Optimizer | MuonAdamW | str = "adamw",
    start_step: int = 0,
    start_seconds: float = 0.0,
    callback: Callable[[dict], bool] | None = None,
    progress: bool = False,
) -> dict:
    """Train ``model`` on (question, chain) examples until ``seconds`` of training or ``steps`` updates.

    examples: a list (sampled with replacement) or a callable ``rng -> (question, chain)``.
    optimizer: a name from :data:`qstar.learn.optim.OPTIMIZERS` or a built optimizer (e.g. one restored for resume).
    Budget: ``steps`` updates with ``seconds`` as a safety cap, or ``seconds`` alone (qstar.learn.budget.Budget).
    callback(state) runs after every update with keys step, seconds, loss, lr, tokens, pairs, optimizer; returning
    True stops training. Returns {steps, seconds, tokens, pairs, loss, tokens_per_second, cut_short (a step budget
    not reached)}; tokens count padding (it is
    computed), pairs are the causal query-key pairs attended (for attention FLOPs). Seconds exclude callback time.
    Under torchrun (a process group from :func:`qstar.learn.distributed.init`) each rank trains on its rows of the
    same global batch and the update equals one process's; tokens, pairs and loss are the global batch's, seconds are
    rank 0's, and ``callback`` runs on every rank (it must return the same on every rank).
    """
    budget = Budget(steps, seconds)
    if not callable(examples) and len(examples) == 0:
        raise ValueError("fit got an empty example list: nothing to train on")
    rng = random.Random(seed * 1_000_003 + start_step)
    draw = examples if callable(examples) else (lambda r: r.choice(examples))
    opt = optimizer
    if isinstance(optimizer, str):
        opt = make_optimizer(optimizer, model, lr=lr, weight_decay=weight_decay)
    model.train()
    w, net = distributed.world(), distributed.wrap(model)
    step, trained, tokens, pairs, loss_ema = start_step, start_seconds, 0, 0, float("nan")
    bar = _bar(seconds, steps, start_seconds, start_step) if progress and w.main else None
    queue: list[list[tuple[list[int], int]]] = []
    while budget.running(step, trained):
        t0 = time.perf_counter()
        # 1) a batch of similar-length examples -> padded ids with prompt tokens masked out of the loss
        if not queue:
            queue = _length_buckets([encode_example(tokenizer, *draw(rng)) for _ in range(batch_size * BUCKETS)],
                                    batch_size, rng)
        inputs, labels = collate(queue.pop(), tokenizer.pad_id)
        # 2) warm-up then cosine decay over the step budget (a time cap never bends the schedule)
        rate = lr_at(budget.progress(step, trained), step, lr=lr, warmup=warmup_steps, min_ratio=min_lr_ratio)
        for group in opt.param_groups:
            group["lr"] = rate
        # 3) forward this rank's rows under bf16 autocast; loss in fp32: their summed token loss over the global
        # batch's trained tokens (x ranks, as DDP averages), so the update is the global batch's mean-token-loss one
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = net(distributed.shard(inputs, w))
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), distributed.shard(labels, w).reshape(-1),
                               ignore_index=IGNORE, reduction="sum") * w.size / labels.ne(IGNORE).sum()
        # 4) backward (DDP averages gradients over ranks), clip, step; a non-finite gradient norm (the same on every
        # rank) skips the update everywhere
        opt.zero_grad(set_to_none=True)
        loss.backward()
        finite = bool(torch.isfinite(torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)))
        if finite:
            opt.step()
        step += 1
        (loss_value,), (dt,) = distributed.agree([loss.item() / w.size], [time.perf_counter() - t0])
        if not finite:
            if w.main:
                print(f"warning: non-finite loss or gradient at step {step - 1}; update skipped", file=sys.stderr)
            continue
        tokens += int(inputs.numel())
        pairs += causal_pairs(*inputs.shape)
        trained += dt
        loss_ema = loss_value if math.isnan(loss_ema) else 0.95 * loss_ema + 0.05 * loss_value
        if bar is not None:
            bar.update(step, trained, loss_ema)
        state = {"step": step, "seconds": trained, "loss": loss_ema, "lr": opt.param_groups[0]["lr"],
                 "tokens": tokens, "pairs": pairs, "optimizer": opt}
        if callback is not None and callback(state):
            break
        model.train()
    if bar is not None:
        bar.close()
    run_secs = trained - start_seconds
    return {"steps": step, "seconds": trained, "tokens": tokens, "pairs": pairs, "loss": loss_ema,
            "tokens_per_second": tokens / run_secs if run_secs > 0 else 0.0, "optimizer": opt,
            "cut_short": budget.cut_short(step)}


#: batches drawn at once and cut by length: on the task mixture (chains of 60-300 tokens) padding every batch to its
#: longest example wasted more than half the compute
BUCKETS = 8


def _length_buckets(encoded: list, batch_size: int, rng: random.Random) -> list[list]:
    """``encoded`` sorted by length and cut into batches of ``batch_size``, in random order."""
    encoded = sorted(encoded, key=lambda e: len(e[0]))
    batches = [encoded[i : i + batch_size] for i in range(0, len(encoded), batch_size)]
    rng.shuffle(batches)
    return batches


class _bar:
    """tqdm bar over the time (or step) budget."""

    def __init__(self, seconds, steps, start_seconds, start_step):
        from tqdm import tqdm

        self.by_time = steps is None
        total = seconds if self.by_time else steps
        self.t = tqdm(total=round(total), initial=round(start_seconds if self.by_time else start_step),
                      unit="s" if self.by_time else "step", dynamic_ncols=True, file=sys.stderr)

    def update(self, step, seconds, loss):
        target = round(seconds) if self.by_time else step
        if target > self.t.n:
            self.t.update(target - self.t.n)
        self.t.set_postfix(step=step, loss=f"{loss:.3f}", refresh=False)

    def close(self):
        self.t.close()


# --------------------------------------------------------------------------------------------------- entrypoint


def train_sft(cfg: SFTConfig) -> dict:
    """Run an SFT stage; returns the summary dict (also written to OUT/summary.json)."""
    configure_threads()
    cfg = replace(cfg, task=task_for(cfg.task, [cfg.init], default="mult", doing="training"))
    out = Path(cfg.out)
    task = get_task(cfg.task)
    if cfg.seconds <= 0 and cfg.max_steps <= 0:
        raise ValueError("give a positive --max-steps (or --seconds) budget")
    budget = Budget.of(cfg.max_steps, cfg.seconds)
    summary_path, resume_dir = out / "summary.json", out / "resume"
    w = distributed.init()  # under torchrun: this process's rank among K; rank 0 alone writes files
    distributed.on_main(lambda: start_run(out, force=cfg.force))
    torch.manual_seed(cfg.seed)

    # 1) model: resume snapshot > --init checkpoint > fresh preset
    state: dict = {"step": 0, "seconds": 0.0, "flops": 0.0, "tokens": 0}
    opt_state = None
    if cfg.resume and (resume_dir / "config.json").exists():
        model, tok, meta = load_checkpoint(resume_dir)
        distributed.check_resume(meta.get("world_size", 1), w)
        state.update(meta.get("train_state", {}))
        if (resume_dir / "optimizer.pt").exists():
            opt_state = torch.load(resume_dir / "optimizer.pt", weights_only=True)
        if w.main:
            print(f"resuming {out} at step {state['step']} ({state['seconds']:.0f}s trained)", file=sys.stderr)
    elif cfg.init:
        model, tok, _ = load_model(cfg.init, flag="--init")
    else:
        model, tok = Transformer(ModelConfig.preset(cfg.preset)), CharTokenizer()
    distributed.check_same_start(state["step"], out)
    params = model.num_params()
    # The peak of the dtype the matmuls run in (bf16's is ~4x fp32's on AVX512-BF16 CPUs), sampled again at every
    # evaluation (outside the timed training) because a shared machine's speed drifts during a run; MFU uses the median.
    bf16 = cfg.bf16 and native_bf16()
    if cfg.bf16 and not bf16:
        print("note: this CPU has no native bf16 matmul; training in fp32", file=sys.stderr)
    peak_dtype = torch.bfloat16 if bf16 else torch.float32
    peaks = [matmul_peak_flops(dtype=peak_dtype)]
    fp32_peak = matmul_peak_flops() if bf16 else None  # bf16 runs: MFU in the fp32 convention too (LOG.md's)

    def run_flops(tokens: int, pairs: int) -> float:  # this process's training FLOPs, attention included
        return train_flops(params, tokens, attention=attention_flops(model.cfg.n_layers, model.cfg.d_model, pairs))

    # 2) held-out problems: the test split never shares a key with the train split the stream draws from
    eval_problems = task.generate(cfg.eval_problems, seed=cfg.seed, split="test")
    max_tokens = chain_budget(task, eval_problems, cfg.corpus)
    pool_seed = [cfg.seed * 7919 + state["step"]]

    def reference(rng: random.Random) -> Example:
        # Problems come in chunks from the task generator (deduped, train split only).
        if not draw.buf:  # type: ignore[attr-defined]
            pool_seed[0] += 1
            draw.buf = task.generate(512, seed=pool_seed[0], split="train")  # type: ignore[attr-defined]
        p = draw.buf.pop()  # type: ignore[attr-defined]
        return p.question, task.reference(p)

    draw = reference
    draw.buf = []  # type: ignore[attr-defined]
    if cfg.corpus:
        from qstar.learn.retry import corpus

        draw = corpus(task, cfg.corpus, seed=cfg.seed * 7919 + state["step"])
    if cfg.data:  # verified chains from a file (reasoner -> verified data -> next model), drawn uniformly
        from qstar.tasks.benchmarks import load_pairs

        if cfg.corpus:
            raise ValueError("--data and --corpus both choose the training chains: give one")
        draw = load_pairs(cfg.data)
    metrics_path = out / "metrics.jsonl"
    marks = {"eval": state["step"], "save": state["seconds"], "tokens0": state["tokens"], "flops0": state["flops"]}
    pending_steps = sorted(n for n in cfg.eval_at_steps if n > state["step"])

    def evaluate(step: int, seconds: float, flops: float) -> float:
        peaks.append(matmul_peak_flops(seconds=0.3, dtype=peak_dtype))
        acc = greedy_accuracy(ModelPolicy(model, tok), eval_problems, max_tokens=max_tokens)
        append_jsonl(metrics_path, {"stage": "sft", "step": step, "seconds": seconds, "flops": flops,
                                    "eval/greedy_accuracy": acc, "eval/problems": len(eval_problems)})
        print(f"step {step}: greedy accuracy {acc:.3f} on {len(eval_problems)} held-out problems", file=sys.stderr)
        return acc

    def snapshot(step: int, seconds: float, tokens: int, flops: float, opt) -> None:
        meta = {"stage": "sft-partial", "config": asdict(cfg), "world_size": w.size,
                "train_state": {"step": step, "seconds": seconds, "tokens": tokens, "flops": flops}}
        save_checkpoint(resume_dir, model, tok, meta=meta)
        _atomic_torch_save(opt.state_dict(), resume_dir / "optimizer.pt")

    def callback(s: dict) -> bool:
        if not w.main:
            return False
        tokens = marks["tokens0"] + s["tokens"]
        flops = marks["flops0"] + run_flops(s["tokens"], s["pairs"])
        if s["step"] % 25 == 0:
            append_jsonl(metrics_path, {"stage": "sft", "step": s["step"], "seconds": s["seconds"], "flops": flops,
                                        "train/loss": s["loss"], "train/lr": s["lr"]})
        due = _reached(pending_steps, s["step"])  # a resumed run skips the points it passed
        if due or (cfg.eval_every > 0 and s["step"] - marks["eval"] >= cfg.eval_every):
            marks["eval"] = s["step"]
            evaluate(s["step"], s["seconds"], flops)
        if s["seconds"] - marks["save"] >= cfg.save_every:
            marks["save"] = s["seconds"]
            snapshot(s["step"], s["seconds"], tokens, flops, s["optimizer"])
        return False

    opt = make_optimizer(cfg.optimizer, model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    # 3) train
    stats = fit(model, tok, draw, seconds=budget.seconds, steps=budget.steps, lr=cfg.lr, batch_size=cfg.batch_size,
                warmup_steps=cfg.warmup_steps, min_lr_ratio=cfg.min_lr_ratio, weight_decay=cfg.weight_decay,
                grad_clip=cfg.grad_clip, bf16=bf16, seed=cfg.seed, optimizer=opt, start_step=state["step"],
                start_seconds=state["seconds"], callback=callback, progress=True)
    total_tokens = state["tokens"] + stats["tokens"]
    total_flops = state["flops"] + run_flops(stats["tokens"], stats["pairs"])
    run_secs = stats["seconds"] - state["seconds"]
    if not w.main:  # rank 0 evaluates and writes; the others return its summary
        summary = distributed.share(None)
        distributed.finish()
        return summary
    # 4) final evaluation, checkpoint, summary
    acc = evaluate(stats["steps"], stats["seconds"], total_flops)
    peak = statistics.median(peaks) * w.size  # K processes: K times one process's peak
    achieved = run_flops(stats["tokens"], stats["pairs"]) / run_secs if run_secs > 0 else 0.0  # FLOP/s
    tps = stats["tokens_per_second"]
    summary = {
        "stage": "sft", "task": cfg.task, "greedy_accuracy": acc, "eval_problems": len(eval_problems),
        "train_seconds": stats["seconds"], "steps": stats["steps"], "cut_short": stats["cut_short"],
        "tokens": total_tokens,
        "tokens_per_second": tps, "train_flops": total_flops, "matmul_peak_flops": peak,
        "peak_dtype": str(peak_dtype).removeprefix("torch."), "mfu": achieved / peak if peak else 0.0,
        "mfu_vs_fp32_peak": achieved / (fp32_peak * w.size if fp32_peak else peak) if peak else 0.0,
        "params": params, "loss": stats["loss"], "world_size": w.size,
        "checkpoint": str(out / "checkpoint"), "config": asdict(cfg),
    }
    save_checkpoint(out / "checkpoint", model, tok, meta={"stage": "sft", "config": asdict(cfg), "metrics": summary})
    atomic_write_json(summary_path, summary)
    if resume_dir.exists():
        import shutil

        shutil.rmtree(resume_dir, ignore_errors=True)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}))
    distributed.share(summary)
    distributed.finish()
    return summary


def _reached(points: list, value: float) -> bool:
    """Drop the points of sorted ``points`` that ``value`` has reached; True if there were any."""
    hit = False
    while points and value >= points[0]:
        points.pop(0)
        hit = True
    return hit


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


__all__ = ["SFTConfig", "train_sft", "fit", "encode_example", "collate", "CheckpointError"]
