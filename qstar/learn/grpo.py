"""GRPO: reinforcement learning with verifiable rewards, from an SFT checkpoint.

``qstar train grpo --init RUN_OR_CKPT --task mult --out DIR`` samples a group of chains per problem with the
model's own batched KV-cache sampler, scores them with the task verifier, turns rewards into group-relative
advantages and takes a PPO-clip step; it writes

    DIR/checkpoint/    Hugging Face model directory (stage "grpo", config and metrics in its meta)
    DIR/summary.json   greedy_accuracy_before/after, train_seconds, updates, reward_curve
    DIR/metrics.jsonl  rl/*, train/*, reward/* per update and eval/* points
    DIR/resume/        latest weights + optimizer + step while training; a killed run continues from it

Metrics, one JSON line per update: ``rl/reward_mean``/``rl/reward_std`` (over all G*P chains), ``reward/<name>``
(each weighted reward's mean), ``rl/frac_zero_std`` (share of groups whose rewards are all equal: no signal),
``rl/all_zero_std`` (1 when every group is so and the update was skipped), ``rl/groups_kept``, ``rl/response_len``
(tokens per chain, <eos> included), ``rl/truncated_frac`` (chains cut by the token budget), ``rl/entropy`` and
``rl/logp_gap`` (mean per-token policy entropy, and |training logp - sampler logp|, over the chains the update
learns from), ``rl/clip_frac``, ``rl/clip_high_frac``, ``rl/ratio_mean``, ``rl/kl`` (k3 estimate vs the reference),
``train/loss``, ``train/grad_norm``, ``time/sample`` and ``time/update`` (seconds spent sampling, and on rewards
plus the update), ``seconds`` (cumulative training time); ``eval/greedy_accuracy`` lines come
every ``eval_every`` seconds.

How it simplifies the papers (DeepSeekMath GRPO, Dr. GRPO, DAPO):
- one on-policy update per batch by default, so old_logp = logp.detach() and the ratio is 1 (``epochs`` > 1 reuses
  the batch and the clip becomes active); no value model, no reward model: the verifier is the reward;
- DAPO's dynamic sampling drops zero-variance groups but does not resample to refill the batch;
- the KL term (``beta``) is off by default, as in Dr. GRPO and DAPO, which saves a reference forward pass;
- log-probabilities are the raw (untempered) model distribution, the same the sampler reports and greedy decoding
  follows; at the default temperature 1 this is exactly the sampling distribution.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from qstar.learn.losses import ADVANTAGES, LOSSES, LossConfig
from qstar.learn.rewards import combine, parse_weights
from qstar.learn.sft import chain_budget, greedy_accuracy
from qstar.model.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint, save_checkpoint
from qstar.model.perf import configure_threads
from qstar.model.policy import ModelPolicy
from qstar.model.sampler import generate
from qstar.runio import append_jsonl, atomic_write_json, reset_run_dir
from qstar.tasks import get_task
from qstar.tasks.format import render_prompt

__all__ = ["GRPOConfig", "train_grpo"]


@dataclass
class GRPOConfig:
    """RL with verifiable rewards (GRPO / Dr. GRPO / DAPO) from an SFT checkpoint."""

    init: str = field(default="", metadata={"required": True})
    """Checkpoint to start from (an SFT run dir or HF dir); also the KL reference when beta > 0."""
    task: str = "mult"
    """Task whose train split supplies problems and whose verifier gives the reward."""
    out: str = "runs/grpo"
    """Run directory: checkpoint/, summary.json, metrics.jsonl, resume/."""
    seconds: float = 300.0
    """Training time budget in seconds (evaluation and saving excluded)."""
    max_updates: int = 0
    """Stop after this many updates (0: only the time budget applies)."""
    problems_per_batch: int = 32
    """Distinct problems per update; each gets group_size samples."""
    group_size: int = 8
    """Samples per problem. Advantages compare samples of one problem, so a group needs >= 2."""
    temperature: float = 1.0
    """Sampling temperature. Lower means fewer groups with mixed outcomes (less signal); 1 is on-policy."""
    lr: float = 2e-4
    """AdamW learning rate (constant)."""
    loss: str = field(default="grpo", metadata={"choices": sorted(LOSSES)})
    """Loss: grpo (seq-mean, std-normalised), dr_grpo (length-unbiased, no std), dapo (token-mean; full DAPO adds
    --clip-eps-high 0.28 --dynamic-sampling)."""
    clip_eps: float = 0.2
    """PPO clip: the ratio may move to 1 - clip_eps (and 1 + clip_eps) before its gradient is cut."""
    clip_eps_high: float | None = None
    """Upper clip (DAPO's clip-higher uses 0.28); default: clip_eps."""
    beta: float = 0.0
    """KL-to-reference coefficient (k3 estimator); 0 keeps no reference model."""
    epochs: int = 1
    """Updates per sampled batch; > 1 reuses samples off-policy (the clip then matters)."""
    dynamic_sampling: bool = False
    """DAPO dynamic sampling: drop groups whose rewards are all equal (no signal, dilutes the mean)."""
    rewards: str = "correctness=1"
    """Reward weights, e.g. 'correctness=1,format=0.1,length=0.5' (names: correctness, format, length)."""
    max_completion_tokens: int = 0
    """Longest sampled chain in tokens; 0: 1.5x the longest reference chain of the eval problems."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    micro_batch: int = 64
    """Sequences per forward/backward chunk (gradients accumulate; the update is the same, memory is bounded)."""
    bf16: bool = False
    """bf16 autocast for the training forward pass (sampling stays fp32)."""
    eval_problems: int = 500
    """Held-out test-split problems for greedy accuracy (0: no evaluation)."""
    eval_every: float = 60.0
    """Seconds of training between greedy evaluations (0: only before and after)."""
    save_every: float = 60.0
    """Seconds of training between resume snapshots (0: after every update)."""
    seed: int = 0
    """Seed for problems and sampling (each update's draw depends only on seed and step, so resumes replay)."""
    resume: bool = True
    """Continue from DIR/resume if a killed run left one."""
    force: bool = False
    """Overwrite a finished run in DIR."""


def train_grpo(cfg: GRPOConfig) -> dict:
    """Run a GRPO stage; returns the summary dict (also written to OUT/summary.json)."""
    configure_threads()
    _validate(cfg)
    out = Path(cfg.out)
    summary_path, resume_dir, metrics_path = out / "summary.json", out / "resume", out / "metrics.jsonl"
    if summary_path.exists() and not cfg.force:
        raise ValueError(f"{out} already holds a finished run; use --force to overwrite it or choose another --out")
    if cfg.force:
        reset_run_dir(out)
    task = get_task(cfg.task)
    weights = parse_weights(cfg.rewards)
    model, tok, init_meta = _load(cfg.init, "--init")
    state = {"step": 0, "seconds": 0.0, "acc_before": None, "reward_curve": [], "skipped": 0, "zero_signal": 0}
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    if cfg.resume and (resume_dir / "config.json").exists():
        model, state, opt = _restore(resume_dir, model, opt, state, cfg)
    out.mkdir(parents=True, exist_ok=True)
    ref = _load(cfg.init, "--init")[0].requires_grad_(False) if cfg.beta > 0 else None
    eval_problems = task.generate(cfg.eval_problems, seed=cfg.seed, split="test") if cfg.eval_problems else []
    probe = eval_problems or task.generate(64, seed=cfg.seed, split="test")
    max_new = cfg.max_completion_tokens or chain_budget(task, probe)
    loss_fn, adv_fn = LOSSES[cfg.loss], ADVANTAGES[cfg.loss]
    loss_cfg = LossConfig(clip_eps=cfg.clip_eps, clip_eps_high=cfg.clip_eps_high, beta=cfg.beta, max_len=max_new)
    P, G = cfg.problems_per_batch, cfg.group_size

    def evaluate(step: int, seconds: float) -> float | None:
        if not eval_problems:
            return None
        acc = greedy_accuracy(ModelPolicy(model, tok), eval_problems, max_tokens=max_new)
        append_jsonl(metrics_path, {"stage": "grpo", "step": step, "seconds": seconds,
                                    "eval/greedy_accuracy": acc, "eval/problems": len(eval_problems)})
        print(f"step {step}: greedy accuracy {acc:.3f} on {len(eval_problems)} held-out problems", file=sys.stderr)
        return acc

    if state["acc_before"] is None:
        state["acc_before"] = evaluate(0, 0.0)
    marks = {"eval": state["seconds"], "save": state["seconds"]}
    bar = _Bar(cfg, state)
    while (cfg.max_updates <= 0 or state["step"] < cfg.max_updates) and (
        cfg.seconds <= 0 or state["seconds"] < cfg.seconds
    ):
        t0, step = time.perf_counter(), state["step"]
        # 1) sample G chains for each of P fresh train problems with the model's KV-cache sampler
        problems = task.generate(P, seed=cfg.seed * 1_000_003 + step, split="train")
        prompts = [tok.encode(render_prompt(p.question), bos=True) for p in problems]
        model.eval()
        samples = generate(model, prompts, n=G, max_new_tokens=max_new, temperature=cfg.temperature,
                           stop_ids=(tok.eos_id,), seed=cfg.seed * 1_000_003 + step)
        flat = [s for row in samples for s in row]
        texts = [tok.decode(s.tokens) for s in flat]
        t_sampled = time.perf_counter()
        # 2) rewards: weighted verifiable rewards per chain
        rewards, parts = combine([p for p in problems for _ in range(G)], texts, weights, max_len=max_new)
        r = torch.tensor(rewards)
        # 3) advantages: compare each chain with the other samples of its problem
        adv = adv_fn(r, G)
        has_signal = r.view(P, G).std(dim=1) > 0 if G > 1 else torch.zeros(P, dtype=torch.bool)
        m = {"stage": "grpo", "step": step + 1, "rl/reward_mean": r.mean().item(), "rl/reward_std": r.std().item(),
             "rl/frac_zero_std": 1.0 - has_signal.float().mean().item(),
             "rl/response_len": sum(len(s.tokens) for s in flat) / len(flat),
             "rl/truncated_frac": sum(s.finish == "length" for s in flat) / len(flat),
             **{f"reward/{k}": sum(v) / len(v) for k, v in parts.items()}}
        # 4) dynamic sampling (DAPO): keep only groups with mixed outcomes
        keep = has_signal if cfg.dynamic_sampling else torch.ones(P, dtype=torch.bool)
        rows = [g * G + j for g in range(P) if keep[g] for j in range(G)]
        m["rl/groups_kept"] = len(rows) // G
        if not has_signal.any():
            # All advantages are 0: the surrogate has zero gradient. Say so instead of "training" on nothing.
            state["zero_signal"] += 1
            m["rl/all_zero_std"] = 1.0
            print(f"warning: update {step + 1}: all {P} groups have zero reward variance (mean reward "
                  f"{m['rl/reward_mean']:.3f}); no learning signal, update skipped. Is the --init checkpoint trained "
                  f"for task {cfg.task!r}, and does the verifier accept any answer?", file=sys.stderr)
        else:
            # 5) policy-gradient update(s). Rows with advantage 0 (and no KL term) add exactly zero to the loss and
            # its gradient, so only the others are run, with the kept batch's normalisers: the same update, cheaper.
            work = [i for i in rows if cfg.beta > 0 or adv[i] != 0]
            norms = {"n_rows": len(rows), "n_tokens": sum(len(flat[i].tokens) for i in rows)}
            m.update(_update(model, opt, ref, [prompts[i // G] for i in work], [flat[i] for i in work], adv[work],
                             loss_fn, loss_cfg, cfg, norms))
            if m.pop("nonfinite"):
                state["skipped"] += 1
                print(f"warning: update {step + 1}: non-finite loss or gradient; update skipped", file=sys.stderr)
        # 6) log metrics, evaluate and snapshot on their own clocks (excluded from the training time)
        state["step"] = step + 1
        m["time/sample"], m["time/update"] = t_sampled - t0, time.perf_counter() - t_sampled
        state["seconds"] += time.perf_counter() - t0
        m["seconds"] = state["seconds"]
        state["reward_curve"].append([state["step"], round(state["seconds"], 3), round(m["rl/reward_mean"], 4)])
        append_jsonl(metrics_path, m)
        bar.update(state, m)
        if cfg.eval_every > 0 and state["seconds"] - marks["eval"] >= cfg.eval_every:
            marks["eval"] = state["seconds"]
            evaluate(state["step"], state["seconds"])
        if state["seconds"] - marks["save"] >= cfg.save_every:
            marks["save"] = state["seconds"]
            _snapshot(resume_dir, model, tok, opt, state, cfg)
    bar.close()
    # 7) final evaluation, checkpoint, summary
    acc_after = evaluate(state["step"], state["seconds"])
    summary = {
        "stage": "grpo", "task": cfg.task, "init": cfg.init, "loss": cfg.loss,
        "greedy_accuracy_before": state["acc_before"], "greedy_accuracy_after": acc_after,
        "eval_problems": len(eval_problems), "train_seconds": state["seconds"], "updates": state["step"],
        "seconds_per_update": state["seconds"] / max(1, state["step"]), "skipped_updates": state["skipped"],
        "zero_signal_updates": state["zero_signal"], "max_completion_tokens": max_new,
        "reward_curve": state["reward_curve"], "checkpoint": str(out / "checkpoint"), "config": asdict(cfg),
        "init_stage": init_meta.get("stage"),
    }
    _check_finite(model)
    metrics = {k: v for k, v in summary.items() if k not in ("config", "reward_curve")}
    save_checkpoint(out / "checkpoint", model, tok, meta={"stage": "grpo", "config": asdict(cfg), "metrics": metrics})
    atomic_write_json(summary_path, summary)
    shutil.rmtree(resume_dir, ignore_errors=True)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("config", "reward_curve")}))
    return summary


# --------------------------------------------------------------------------------------------------- the update


def _update(model, opt, ref, prompts, samples, adv, loss_fn, loss_cfg: LossConfig, cfg: GRPOConfig, norms: dict):
    """``cfg.epochs`` gradient steps on (prompt, sample, advantage) rows; returns metrics.

    Rows are sorted by length and cut into micro-batches of ``cfg.micro_batch`` (less padding, bounded memory); each
    micro-batch's loss uses the whole batch's normalisers ``norms`` so their gradients add up to the batch gradient.
    The first epoch's log-probabilities (taken before any step, so from the sampling policy) are ``old_logp``.
    """
    order = sorted(range(len(samples)), key=lambda i: len(prompts[i]) + len(samples[i].tokens))
    chunks = []
    for c in range(0, len(order), cfg.micro_batch):
        idx = order[c : c + cfg.micro_batch]
        ids, mask, sampler = _pack([prompts[i] for i in idx], [samples[i] for i in idx])
        ref_logp = _token_logp(ref, ids, mask, bf16=cfg.bf16)[0] if ref is not None else None
        chunks.append({"ids": ids, "mask": mask, "adv": adv[idx], "ref": ref_logp, "old": None, "sampler": sampler})
    n_tok = sum(float(ch["mask"].sum()) for ch in chunks)
    model.train()
    stats: dict = {"rl/entropy": 0.0, "rl/logp_gap": 0.0}
    for _ in range(cfg.epochs):
        opt.zero_grad(set_to_none=True)
        total, sums = 0.0, {"clip_frac": 0.0, "clip_high_frac": 0.0, "kl": 0.0, "ratio_mean": 0.0}
        for ch in chunks:
            logp, entropy = _token_logp(model, ch["ids"], ch["mask"], bf16=cfg.bf16)
            mask, w = ch["mask"], float(ch["mask"].sum()) / n_tok  # this chunk's share of the tokens
            if ch["old"] is None:
                ch["old"] = logp.detach()
                stats["rl/entropy"] += float((entropy * mask).sum()) / n_tok
                # The sampler (KV cache) and this forward should agree; a gap means numerics drift (e.g. bf16).
                stats["rl/logp_gap"] += float(((ch["old"] - ch["sampler"]).abs() * mask).sum()) / n_tok
            loss, s = loss_fn(logp, ch["old"], ch["adv"], mask, cfg=loss_cfg, ref_logp=ch["ref"], **norms)
            if not torch.isfinite(loss):
                opt.zero_grad(set_to_none=True)
                return {**stats, "nonfinite": True}
            loss.backward()
            total += loss.item()
            for k in sums:
                sums[k] += s[k] * w
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if not torch.isfinite(norm):
            opt.zero_grad(set_to_none=True)
            return {**stats, "nonfinite": True}
        opt.step()
        stats.update({"train/loss": total, "train/grad_norm": norm.item(), "rl/clip_frac": sums["clip_frac"],
                      "rl/clip_high_frac": sums["clip_high_frac"], "rl/kl": sums["kl"],
                      "rl/ratio_mean": sums["ratio_mean"]})
    return {**stats, "nonfinite": False}


def _pack(prompts: list[list[int]], samples) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded prompt + completion ids [B, L], the target mask [B, L-1] (1 where target t+1 was generated) and
    the sampler's own log-probabilities in the same layout [B, L-1]."""
    width = max(len(p) + len(s.tokens) for p, s in zip(prompts, samples))
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask, sampler = torch.zeros(len(prompts), width - 1), torch.zeros(len(prompts), width - 1)
    for b, (p, s) in enumerate(zip(prompts, samples)):
        ids[b, : len(p) + len(s.tokens)] = torch.tensor(p + s.tokens, dtype=torch.long)
        start = len(p) - 1  # the target at position t is token t+1: the first completion token sits at len(p) - 1
        mask[b, start : start + len(s.tokens)] = 1.0
        sampler[b, start : start + len(s.tokens)] = torch.tensor(s.logprobs)
    return ids, mask, sampler


def _token_logp(model, ids: torch.Tensor, mask: torch.Tensor, *, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each next token [B, L-1] (with grad when enabled; 0 where ``mask`` is 0) and the
    distribution's entropy there (no grad). The output head runs only on masked-in (completion) positions."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        hidden = model.hidden(ids[:, :-1])
        where = mask.nonzero(as_tuple=True)
        logits = model.lm_head(hidden[where])  # [N, V] for the N completion tokens only
    logp_all = F.log_softmax(logits.float(), dim=-1)
    with torch.no_grad():
        entropy = torch.zeros_like(mask).index_put(where, -(logp_all.exp() * logp_all).sum(-1))
    picked = logp_all.gather(-1, ids[:, 1:][where][:, None]).squeeze(-1)
    return torch.zeros_like(mask).index_put(where, picked), entropy


# --------------------------------------------------------------------------------------------------- run plumbing


def _validate(cfg: GRPOConfig) -> None:
    if not cfg.init:
        raise ValueError("--init is required: GRPO starts from a trained checkpoint (e.g. an SFT run dir)")
    if cfg.loss not in LOSSES:
        raise ValueError(f"unknown loss {cfg.loss!r}; choose from {', '.join(LOSSES)}")
    if cfg.seconds <= 0 and cfg.max_updates <= 0:
        raise ValueError("give a positive --seconds or --max-updates budget")
    if cfg.problems_per_batch < 1:
        raise ValueError(f"--problems-per-batch must be >= 1 (got {cfg.problems_per_batch}): nothing to train on")
    if cfg.group_size < 2:
        raise ValueError(f"--group-size must be >= 2 (got {cfg.group_size}): advantages compare samples of a group")
    if cfg.temperature <= 0:
        raise ValueError("--temperature must be > 0: greedy groups are identical and carry no signal")
    if cfg.micro_batch < 1:
        raise ValueError(f"--micro-batch must be >= 1 (got {cfg.micro_batch})")
    if cfg.epochs < 1 or cfg.lr <= 0 or cfg.eval_problems < 0 or cfg.max_completion_tokens < 0:
        raise ValueError("need --epochs >= 1, --lr > 0, --eval-problems >= 0 and --max-completion-tokens >= 0")


def _load(path: str, flag: str):
    """(model, tokenizer, meta) of a run dir or HF dir; unusable checkpoints become a ValueError naming the flag."""
    try:
        return load_checkpoint(resolve_checkpoint(path))
    except CheckpointError as e:
        raise ValueError(f"{flag}: {e}") from None  # the error names the path


def _snapshot(resume_dir: Path, model, tok, opt, state: dict, cfg: GRPOConfig) -> None:
    """Weights (atomic HF dir, step in its meta), then optimizer state tagged with the same step."""
    _check_finite(model)
    save_checkpoint(resume_dir, model, tok, meta={"stage": "grpo-partial", "config": asdict(cfg), "train_state": state})
    tmp = resume_dir / "optimizer.pt.tmp"
    torch.save({"step": state["step"], "optimizer": opt.state_dict()}, tmp)
    tmp.replace(resume_dir / "optimizer.pt")


def _restore(resume_dir: Path, model, opt, state: dict, cfg: GRPOConfig):
    """Continue from a snapshot: its weights (same architecture as --init), step, clock and optimizer state."""
    resumed, _, meta = _load(str(resume_dir), "resume snapshot")
    if resumed.cfg != model.cfg:
        raise ValueError(f"{resume_dir} holds a model of another architecture than --init {cfg.init}; "
                         "use --force to start over or --no-resume")
    state = {**state, **meta.get("train_state", {})}
    opt = torch.optim.AdamW(resumed.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    saved = torch.load(resume_dir / "optimizer.pt", weights_only=True) if (resume_dir / "optimizer.pt").exists() else {}
    if saved.get("step") == state["step"]:
        opt.load_state_dict(saved["optimizer"])
    else:  # killed between the two writes: weights are newer than the optimizer state
        print(f"warning: {resume_dir}: optimizer state missing or stale; continuing with a fresh one", file=sys.stderr)
    print(f"resuming {resume_dir.parent} at update {state['step']} ({state['seconds']:.0f}s trained)", file=sys.stderr)
    return resumed, state, opt


def _check_finite(model) -> None:
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise RuntimeError(f"refusing to save a checkpoint with non-finite parameters ({', '.join(bad[:3])})")


class _Bar:
    """tqdm bar over the time (or update) budget with the headline RL metrics."""

    def __init__(self, cfg: GRPOConfig, state: dict) -> None:
        from tqdm import tqdm

        self.by_time = cfg.seconds > 0
        total = cfg.seconds if self.by_time else cfg.max_updates
        start = state["seconds"] if self.by_time else state["step"]
        self.t = tqdm(total=round(total), initial=round(start), unit="s" if self.by_time else "update",
                      dynamic_ncols=True, file=sys.stderr)

    def update(self, state: dict, m: dict) -> None:
        target = round(state["seconds"]) if self.by_time else state["step"]
        if target > self.t.n:
            self.t.update(min(target, self.t.total) - self.t.n)
        loss = m.get("train/loss", math.nan)
        self.t.set_postfix(update=state["step"], reward=f"{m['rl/reward_mean']:.3f}", loss=f"{loss:.4f}",
                           zero_std=f"{m['rl/frac_zero_std']:.2f}", refresh=False)

    def close(self) -> None:
        self.t.close()
