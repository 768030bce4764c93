"""GRPO: reinforcement learning with verifiable rewards, from an SFT checkpoint.

``qstar train grpo --init RUN_OR_CKPT --task mult --out DIR`` samples a group of chains per problem with the
model's own batched KV-cache sampler (or, with ``--generator vllm``, an in-process vLLM engine that receives the
weights after every update), scores them with the task verifier, turns rewards into group-relative advantages and
takes a PPO-clip step; it writes

    DIR/checkpoint/    Hugging Face model directory (stage "grpo", config and metrics in its meta)
    DIR/summary.json   greedy_accuracy, pass_at_1, pass_at_k and response_length _before/_after, train_seconds,
                       updates, reward_curve
    DIR/metrics.jsonl  rl/*, train/*, reward/* per update and eval/* points
    DIR/resume/        latest weights + optimizer + step while training; a killed run continues from it

Metrics per update: ``rl/reward_mean``, ``rl/reward_std``, ``reward/<name>`` (each reward's mean),
``rl/frac_zero_std`` (groups with all-equal rewards: no signal), ``rl/all_zero_std`` (1: every group, update skipped),
``rl/groups_kept``, ``rl/response_len`` (tokens, <eos> included) and ``rl/len_correct``, ``rl/len_incorrect`` (Dr.
GRPO: see which chains grow), ``rl/checks_per_chain``, ``rl/retries_per_chain``, ``rl/check_precision`` and
``rl/check_recall`` (cheap checks against the exact verifier; qstar.learn.evaluate.chain_metrics),
``rl/truncated_frac``, ``rl/entropy`` and
``rl/logp_gap`` (|training - sampler| logp) over the learned-from chains, ``rl/clip_frac``, ``rl/clip_high_frac``,
``rl/ratio_mean``, ``rl/kl``, ``train/loss``, ``train/grad_norm``, ``time/sample``, ``time/update``, ``seconds``, and
``flops``: cumulative training FLOPs of this run (sampling forwards 2N per token, updates 6N per learned-from token,
reference forwards when beta > 0, causal attention included; qstar.model.perf), also on the eval/* points. Eval
points hold greedy accuracy, sampled pass@1 and pass@k, and the same chain metrics on held-out problems.

How it simplifies the papers (DeepSeekMath GRPO, Dr. GRPO, DAPO):
- one on-policy update per batch by default, so old_logp = logp.detach() and the ratio is 1 (``epochs`` > 1 reuses
  the batch and the clip becomes active); no value model, no reward model: the verifier is the reward;
- DAPO's dynamic sampling drops zero-variance groups without resampling; the KL term (``beta``) is off by default;
- L1 (length-controlled RL): ``length_targets`` states a thinking-length target in each prompt and the
  ``length_target`` reward is L1-Exact's |length - target| term, scaled by the chain budget instead of a fixed alpha;
- log-probabilities are the raw (untempered) model distribution, the same the sampler reports and greedy decoding
  follows; at the default temperature 1 this is exactly the sampling distribution.

Under ``torchrun --nproc-per-node K`` each rank samples its share of the problems' groups, every rank gathers all
chains (rewards, advantages, normalisers, metrics: the whole batch's) and learns from its own groups' rows, gradients
summed. Each problem's chains come from a random stream of its own, so K ranks sample the chains one process samples
and make its update, within float tolerance.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm import tqdm

from qstar.learn import distributed
from qstar.learn.budget import Budget
from qstar.learn.evaluate import chain_budget, chain_metrics, greedy_accuracy, held_out
from qstar.learn.losses import ADVANTAGES, LOSSES, LossConfig
from qstar.learn.rewards import combine, parse_weights
from qstar.learn.runs import start_run
from qstar.model.checkpoint import find_checkpoint, load_checkpoint, load_model, save_checkpoint, task_for
from qstar.model.logprobs import completion_logprobs
from qstar.model.perf import attention_flops, causal_pairs, configure_threads, forward_flops
from qstar.model.policy import ModelPolicy
from qstar.model.sampler import generate
from qstar.runio import append_jsonl, atomic_write_json
from qstar.search.thinking import ANSWER_TOKENS
from qstar.tasks import get_task
from qstar.tasks.format import render_prompt
from qstar.tasks.thinking import parse_targets, with_target

__all__ = ["GRPOConfig", "train_grpo"]


@dataclass
class GRPOConfig:
    """RL with verifiable rewards (GRPO / Dr. GRPO / DAPO) from an SFT checkpoint."""

    init: str = field(default="", metadata={"required": True})
    """Checkpoint to start from (an SFT run dir or HF dir); also the KL reference when beta > 0."""
    task: str = ""
    """Task whose train split supplies problems and whose verifier gives the reward; empty: the task the --init
    checkpoint was trained on, else mult."""
    out: str = "runs/grpo"
    """Run directory: checkpoint/, summary.json, metrics.jsonl, resume/."""
    max_updates: int = 200
    """Updates to train (the budget: every machine trains the same policy). 0: train for --seconds instead."""
    seconds: float = 0.0
    """Safety cap on training time in seconds (evaluation and saving excluded); a run it stops is marked cut short.
    With --max-updates 0 it is the budget itself. 0: no cap."""
    problems_per_batch: int = 32
    """Distinct problems per update; each gets group_size samples."""
    group_size: int = 8
    """Samples per problem. Advantages compare samples of one problem, so a group needs >= 2."""
    temperature: float = 1.0
    """Sampling temperature. Lower means fewer groups with mixed outcomes (less signal); 1 is on-policy."""
    lr: float = 2e-4
    """AdamW learning rate, constant after the warm-up."""
    warmup_updates: int = 10
    """Linear lr warm-up: Adam's first steps move every weight by about lr whatever the gradient's size."""
    loss: str = field(default="dr_grpo", metadata={"choices": sorted(LOSSES)})
    """Loss: dr_grpo (no per-sequence length normalisation, no std: GRPO's length bias lengthens wrong chains, so
    thinking models default to it), grpo (seq-mean, std-normalised), dapo (token-mean; full DAPO adds
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
    """Reward weights, e.g. 'correctness=1,format=0.1,length=0.5' (names: correctness, format, length,
    length_target)."""
    length_targets: str = ""
    """L1: thinking-length targets in tokens, e.g. '0,16,32,48'. Each train problem's prompt states one, drawn at
    random ("<question> Think for N tokens."), the held-out ones the largest; add the length_target reward to pay
    chains that think that long. The checkpoint records it, so `think` (every effort level) puts its budget in the
    prompt. Empty: no targets."""
    max_completion_tokens: int = 0
    """Longest sampled chain in tokens; 0: 1.5x the longest reference chain of the eval problems."""
    generator: str = field(default="qstar", metadata={"choices": ["qstar", "vllm"]})
    """Who samples the chains: qstar (the model's KV-cache sampler) or vllm (an in-process vLLM engine over the
    --init checkpoint on a GPU, pip install 'qstar[gpu]'; the trainer's weights go into it after every update)."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    micro_batch: int = 64
    """Sequences per forward/backward chunk (gradients accumulate; the update is the same, memory is bounded)."""
    eval_problems: int = 500
    """Held-out test-split problems for greedy accuracy (0: no evaluation)."""
    eval_every: int = 50
    """Updates between held-out evaluations (0: only before and after)."""
    pass_k: int = 8
    """Chains sampled (T=1) per held-out problem at each evaluation, for pass@1 and pass@k next to greedy accuracy
    (RL can raise pass@1 while narrowing pass@k). 0: greedy only."""
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
    cfg = replace(cfg, task=task_for(cfg.task, [cfg.init], default="mult", doing="training"))
    out = Path(cfg.out)
    summary_path, resume_dir, metrics_path = out / "summary.json", out / "resume", out / "metrics.jsonl"
    w = distributed.init()  # under torchrun: each rank samples and learns from its share of the groups
    mine = distributed.span(cfg.problems_per_batch, w, flag="--problems-per-batch")
    distributed.on_main(lambda: start_run(out, force=cfg.force))
    task = get_task(cfg.task)
    weights = parse_weights(cfg.rewards)
    targets = parse_targets(cfg.length_targets)
    model, tok, init_meta = load_model(cfg.init, flag="--init")
    state = {"step": 0, "seconds": 0.0, "flops": 0.0, "acc_before": None, "reward_curve": [], "skipped": 0,
             "zero_signal": 0, "before": {}}
    resuming = cfg.resume and (resume_dir / "config.json").exists()
    model, state, opt_state = _restore(resume_dir, model.cfg, state, cfg) if resuming else (model, state, None)
    distributed.check_same_start(state["step"], out)
    distributed.sync_parameters(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    ref = load_model(cfg.init, flag="--init")[0].requires_grad_(False) if cfg.beta > 0 else None
    eval_problems = task.generate(cfg.eval_problems, seed=cfg.seed, split="test") if cfg.eval_problems else []
    probe = eval_problems or task.generate(64, seed=cfg.seed, split="test")
    corpus = (init_meta.get("config") or {}).get("corpus", "")  # chains with retries are longer than the reference
    max_new = cfg.max_completion_tokens or chain_budget(task, probe, corpus)
    if targets:  # held out at the largest target; every target must fit the chain budget with its answer line
        eval_problems = [replace(p, question=with_target(p.question, max(targets))) for p in eval_problems]
        max_new = cfg.max_completion_tokens or max(max_new, max(targets) + ANSWER_TOKENS)
    loss_fn, adv_fn = LOSSES[cfg.loss], ADVANTAGES[cfg.loss]
    loss_cfg = LossConfig(clip_eps=cfg.clip_eps, clip_eps_high=cfg.clip_eps_high, beta=cfg.beta, max_len=max_new)
    P, G = cfg.problems_per_batch, cfg.group_size
    engine = _engine(cfg, model)

    def evaluate(step: int, seconds: float) -> dict:
        if not eval_problems or not w.main:
            return {}
        if state.get("last_eval", {}).get("step") == step:  # eval_every landed on the last update: reuse it
            return state["last_eval"]["res"]
        policy = ModelPolicy(model, tok, seed=cfg.seed)
        res = held_out(policy, eval_problems, max_tokens=max_new, k=cfg.pass_k) if cfg.pass_k else {
            "greedy_accuracy": greedy_accuracy(policy, eval_problems, max_tokens=max_new)}
        append_jsonl(metrics_path, {"stage": "grpo", "step": step, "seconds": seconds, "flops": state["flops"],
                                    **{f"eval/{k}": v for k, v in res.items()}, "eval/problems": len(eval_problems)})
        print(f"step {step}: greedy accuracy {res['greedy_accuracy']:.3f} on {len(eval_problems)} held-out problems",
              file=sys.stderr)
        state["last_eval"] = {"step": step, "res": res}
        return res

    if state["acc_before"] is None:
        state["before"] = evaluate(0, 0.0)
        state["acc_before"] = state["before"].get("greedy_accuracy")
    marks = {"eval": state["step"], "save": state["seconds"]}
    budget = Budget.of(cfg.max_updates, cfg.seconds)
    by = "step" if budget.steps else "seconds"  # the progress bar follows the budget, not the cap
    bar = tqdm(total=round(budget.steps or budget.seconds), initial=round(state[by]),
               unit="update" if budget.steps else "s", dynamic_ncols=True, file=sys.stderr, disable=not w.main)
    while budget.running(state["step"], state["seconds"]):
        t0, step = time.perf_counter(), state["step"]
        # 1) sample G chains for each of P fresh train problems with the model's KV-cache sampler (each rank its
        # share of the problems; every rank then holds all chains)
        problems = task.generate(P, seed=cfg.seed * 1_000_003 + step, split="train")
        if targets:
            draw = random.Random(cfg.seed * 1_000_003 + step)
            problems = [replace(p, question=with_target(p.question, draw.choice(targets))) for p in problems]
        prompts = [tok.encode(render_prompt(p.question), bos=True) for p in problems]
        model.eval()
        room = model.cfg.max_seq_len - max(map(len, prompts))  # a long corpus's budget may not fit every prompt
        stream = (cfg.seed * 1_000_003 + step) << 20  # a stream per problem: K ranks sample one process's chains
        args = dict(n=G, temperature=cfg.temperature, stop_ids=(tok.eos_id,),
                    seeds=[stream + i for i in range(mine.start, mine.stop)])
        samples = distributed.gather(
            engine.sample_ids(prompts[mine.start : mine.stop], max_tokens=min(max_new, room), **args) if engine else
            generate(model, prompts[mine.start : mine.stop], max_new_tokens=min(max_new, room), **args))
        flat = [s for row in samples for s in row]
        texts = [tok.decode(s.tokens) for s in flat]
        t_sampled = time.perf_counter()
        # 2) rewards: weighted verifiable rewards per chain
        rewards, parts = combine([p for p in problems for _ in range(G)], texts, weights, max_len=max_new,
                                 finished=[s.finish == "stop" for s in flat])
        r = torch.tensor(rewards)
        # 3) advantages: compare each chain with the other samples of its problem
        adv = adv_fn(r, G)
        has_signal = r.view(P, G).std(dim=1) > 0
        m = {"stage": "grpo", "step": step + 1, "rl/reward_mean": r.mean().item(), "rl/reward_std": r.std().item(),
             "rl/frac_zero_std": 1.0 - has_signal.float().mean().item(),
             **{f"rl/{k}": v for k, v in chain_metrics([p for p in problems for _ in range(G)], texts,
                                                        [len(s.tokens) for s in flat]).items()},
             "rl/truncated_frac": sum(s.finish == "length" for s in flat) / len(flat),
             **{f"reward/{k}": sum(v) / len(v) for k, v in parts.items()}}
        # 4) dynamic sampling (DAPO): keep only groups with mixed outcomes
        keep = has_signal if cfg.dynamic_sampling else torch.ones(P, dtype=torch.bool)
        rows = [g * G + j for g in range(P) if keep[g] for j in range(G)]
        m["rl/groups_kept"] = len(rows) // G
        work: list[int] = []  # the rows the update runs (and whose FLOPs it spends)
        if not has_signal.any():
            # All advantages are 0: the surrogate has zero gradient. Say so instead of "training" on nothing.
            state["zero_signal"] += 1
            m["rl/all_zero_std"] = 1.0
            distributed.say(f"warning: update {step + 1}: all {P} groups have zero reward variance (mean reward "
                            f"{m['rl/reward_mean']:.3f}); no learning signal, update skipped. Is the --init checkpoint "
                            f"trained for task {cfg.task!r}, and does the verifier accept any answer?")
        else:
            # 5) policy-gradient update(s). Rows with advantage 0 (and no KL term) add exactly zero to the loss and
            # its gradient, so only the others are run, with the kept batch's normalisers: the same update, cheaper.
            # Under torchrun a rank runs its own groups' rows, with the whole batch's normalisers.
            work = [i for i in rows if cfg.beta > 0 or adv[i] != 0]
            norms = {"n_rows": len(rows), "n_tokens": sum(len(flat[i].tokens) for i in rows)}
            opt.param_groups[0]["lr"] = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_updates))  # one group
            own = [i for i in work if i // G in mine]
            m.update(_update(model, opt, ref, prompts, [i // G for i in own], [flat[i] for i in own], adv[own],
                             loss_fn, loss_cfg, cfg, norms, tokens=sum(len(flat[i].tokens) for i in work)))
            if m.pop("nonfinite"):
                state["skipped"] += 1
                distributed.say(f"warning: update {step + 1}: non-finite loss or gradient; update skipped")
            elif engine:
                engine.load_weights(model.named_parameters())
        # 6) log metrics, evaluate and snapshot on their own clocks (excluded from the training time)
        state["flops"] += _update_flops(model, prompts, flat, G, work, cfg)
        m["flops"] = state["flops"]
        state["step"] = step + 1
        t1 = time.perf_counter()
        state["seconds"] += distributed.agree([], [t1 - t0])[1][0]  # rank 0's clock: all ranks stop together
        m.update({"time/sample": t_sampled - t0, "time/update": t1 - t_sampled, "seconds": state["seconds"]})
        state["reward_curve"].append([state["step"], round(state["seconds"], 3), round(m["rl/reward_mean"], 4)])
        if w.main:
            append_jsonl(metrics_path, m)
        bar.update(max(0, min(round(state[by]), bar.total) - bar.n))
        bar.set_postfix(update=state["step"], reward=f"{m['rl/reward_mean']:.3f}", loss=f"{m.get('train/loss', 0):.4f}",
                        zero_std=f"{m['rl/frac_zero_std']:.2f}", refresh=False)
        if cfg.eval_every > 0 and state["step"] - marks["eval"] >= cfg.eval_every:
            marks["eval"] = state["step"]
            evaluate(state["step"], state["seconds"])
        if state["seconds"] - marks["save"] >= cfg.save_every:
            marks["save"] = state["seconds"]
            distributed.on_main(lambda: _snapshot(resume_dir, model, tok, opt, state, cfg))
    bar.close()
    if not w.main:  # rank 0 evaluates and writes; the others return its summary
        return distributed.done(None)
    # 7) final evaluation, checkpoint, summary
    after, before = evaluate(state["step"], state["seconds"]), state["before"]
    k = f"pass@{cfg.pass_k}"
    summary = {
        "stage": "grpo", "task": cfg.task, "init": cfg.init, "loss": cfg.loss,
        "greedy_accuracy_before": state["acc_before"], "greedy_accuracy_after": after.get("greedy_accuracy"),
        "pass_at_1_before": before.get("pass@1"), "pass_at_1_after": after.get("pass@1"), "pass_k": cfg.pass_k,
        "pass_at_k_before": before.get(k), "pass_at_k_after": after.get(k),
        "response_length_before": before.get("response_len"), "response_length_after": after.get("response_len"),
        "eval_problems": len(eval_problems), "train_seconds": state["seconds"], "updates": state["step"],
        "train_flops": state["flops"],
        "cut_short": budget.cut_short(state["step"]),
        "seconds_per_update": state["seconds"] / max(1, state["step"]), "skipped_updates": state["skipped"],
        "zero_signal_updates": state["zero_signal"], "max_completion_tokens": max_new,
        "reward_curve": state["reward_curve"], "checkpoint": str(out / "checkpoint"), "config": asdict(cfg),
        "init_stage": init_meta.get("stage"), "world_size": w.size,
    }
    _check_finite(model)
    metrics = {k: v for k, v in summary.items() if k not in ("config", "reward_curve")}
    save_checkpoint(out / "checkpoint", model, tok, meta={"stage": "grpo", "config": asdict(cfg), "metrics": metrics,
                                                          "length_prompt": bool(targets)})
    atomic_write_json(summary_path, summary)
    shutil.rmtree(resume_dir, ignore_errors=True)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("config", "reward_curve")}))
    return distributed.done(summary)


# --------------------------------------------------------------------------------------------------- the update


def _engine(cfg: GRPOConfig, model):
    """The vLLM engine that samples for the trainer (None: qstar's sampler), holding the trainer's current weights
    (a resumed run's are not the --init checkpoint's)."""
    if cfg.generator != "vllm":
        return None
    from qstar.backends.vllm import VLLMPolicy  # the gpu extra, imported only when asked for

    engine = VLLMPolicy.from_pretrained(find_checkpoint(cfg.init, flag="--init"), seed=cfg.seed)
    engine.load_weights(model.named_parameters())
    return engine


def _update_flops(model, prompts, flat, G: int, learned: list[int], cfg: GRPOConfig) -> float:
    """FLOPs of one update: every prompt prefilled once and every sampled token decoded (forwards), then ``epochs``
    forward+backward passes (plus a reference forward when beta > 0) over the ``learned`` rows, prompt included."""
    params = sum(p.numel() for p in model.parameters())
    attn = lambda pairs: attention_flops(model.cfg.n_layers, model.cfg.d_model, pairs)  # noqa: E731
    lens = [len(prompts[i // G]) + len(s.tokens) for i, s in enumerate(flat)]
    sample_tokens = sum(len(p) for p in prompts) + sum(len(s.tokens) for s in flat)
    flops = forward_flops(params, sample_tokens, attention=attn(sum(causal_pairs(1, n) for n in lens)))
    rows = [lens[i] for i in learned]
    once = forward_flops(params, sum(rows), attention=attn(sum(causal_pairs(1, n) for n in rows)))
    return flops + once * (3 * cfg.epochs + (1 if cfg.beta > 0 else 0))


def _update(model, opt, ref, prompts, owner, samples, adv, loss_fn, loss_cfg: LossConfig, cfg: GRPOConfig, norms,
            tokens: float | None = None):
    """``cfg.epochs`` gradient steps on completion rows (``owner[j]`` indexes ``prompts``); returns metrics.

    Whole groups go into micro-batches of about ``cfg.micro_batch`` rows (similar lengths together), each weighed
    with the whole batch's normalisers ``norms``, so their gradients add up to the batch gradient. The first epoch's
    log-probabilities (before any step, so the sampling policy's) are ``old_logp``. Under torchrun the rows are this
    rank's, gradients and metrics are summed over ranks, and ``tokens`` (the tokens of all ranks' rows; default:
    these rows') weighs the token-mean metrics."""
    groups: dict[int, list[int]] = {}
    for j, u in enumerate(owner):
        groups.setdefault(u, []).append(j)
    chunks, idx = [], []
    for js in sorted(groups.values(), key=lambda js: max(len(samples[j].tokens) for j in js)):
        idx += js
        if len(idx) >= cfg.micro_batch:
            chunks, idx = chunks + [idx], []
    chunks = [_chunk(ref, prompts, owner, samples, adv, c) for c in chunks + ([idx] if idx else [])]
    n_tok = tokens or sum(float(ch["mask"].sum()) for ch in chunks)
    model.train()
    stats: dict = {"rl/entropy": 0.0, "rl/logp_gap": 0.0}
    for _ in range(cfg.epochs):
        opt.zero_grad(set_to_none=True)
        total, sums, bad = 0.0, {"clip_frac": 0.0, "clip_high_frac": 0.0, "kl": 0.0, "ratio_mean": 0.0}, False
        for ch in chunks:
            logp, entropy = completion_logprobs(model, *ch["inputs"], ch["mask"])
            mask, w = ch["mask"], float(ch["mask"].sum()) / n_tok  # this chunk's share of the tokens
            if ch["old"] is None:
                ch["old"] = logp.detach()
                stats["rl/entropy"] += float((entropy * mask).sum()) / n_tok
                # The sampler (KV cache, fused weights) and this forward should agree; a gap means numerics drift.
                stats["rl/logp_gap"] += float(((ch["old"] - ch["sampler"]).abs() * mask).sum()) / n_tok
            loss, s = loss_fn(logp, ch["old"], ch["adv"], mask, cfg=loss_cfg, ref_logp=ch["ref"], **norms)
            if not torch.isfinite(loss):
                bad = True  # the summed gradient becomes NaN: every rank skips the update below
                break
            loss.backward()
            total += loss.item()
            sums = {k: v + s[k] * w for k, v in sums.items()}
        distributed.sum_gradients(model.parameters(), poison=bad)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if not torch.isfinite(norm):
            opt.zero_grad(set_to_none=True)
            return {**stats, "nonfinite": True}
        opt.step()
        stats.update({"train/loss": total, "train/grad_norm": norm.item(), **{f"rl/{k}": v for k, v in sums.items()}})
    keys = ["train/loss", "rl/entropy", "rl/logp_gap", *(f"rl/{k}" for k in sums)]
    stats.update(zip(keys, distributed.agree([stats[k] for k in keys])[0]))  # this rank's shares -> the batch's
    return {**stats, "nonfinite": False}


def _chunk(ref, prompts, owner, samples, adv, idx: list[int]) -> dict:
    """Tensors of one micro-batch: its distinct prompts, completion ids/mask [n, T] and the sampler's logprobs."""
    uniq = sorted({owner[j] for j in idx})
    local = {u: k for k, u in enumerate(uniq)}
    T = max(len(samples[j].tokens) for j in idx)
    cids, mask, sampler = torch.zeros(len(idx), T, dtype=torch.long), torch.zeros(len(idx), T), torch.zeros(len(idx), T)
    for b, j in enumerate(idx):
        n, s = len(samples[j].tokens), samples[j]
        cids[b, :n], mask[b, :n], sampler[b, :n] = torch.tensor(s.tokens), 1.0, torch.tensor(s.logprobs)
    inputs = ([prompts[u] for u in uniq], torch.tensor([local[owner[j]] for j in idx]), cids)
    ref_logp = completion_logprobs(ref, *inputs, mask)[0].detach() if ref is not None else None
    return {"inputs": inputs, "mask": mask, "sampler": sampler, "adv": adv[idx], "ref": ref_logp, "old": None}


# --------------------------------------------------------------------------------------------------- run plumbing


def _validate(cfg: GRPOConfig) -> None:
    checks = [
        (not cfg.init, "--init is required: GRPO starts from a trained checkpoint (e.g. an SFT run dir)"),
        (cfg.loss not in LOSSES, f"unknown loss {cfg.loss!r}; choose from {', '.join(LOSSES)}"),
        (cfg.seconds <= 0 and cfg.max_updates <= 0, "give a positive --seconds or --max-updates budget"),
        (cfg.problems_per_batch < 1, f"--problems-per-batch must be >= 1, got {cfg.problems_per_batch}: no data"),
        (cfg.group_size < 2, f"--group-size must be >= 2 (got {cfg.group_size}): advantages compare a group's samples"),
        (cfg.temperature <= 0, "--temperature must be > 0: greedy groups are identical and carry no signal"),
        (min(cfg.epochs, cfg.micro_batch) < 1 or cfg.lr <= 0, "need --epochs >= 1, --micro-batch >= 1 and --lr > 0"),
        (min(cfg.eval_problems, cfg.max_completion_tokens) < 0, "--eval-problems/--max-completion-tokens must be >= 0"),
        ("length_target" in parse_weights(cfg.rewards) and not parse_targets(cfg.length_targets),
         "the length_target reward needs --length-targets (e.g. '0,16,48'): without targets it is always 0"),
    ]
    if any(bad for bad, _ in checks):
        raise ValueError(next(message for bad, message in checks if bad))


def _snapshot(resume_dir: Path, model, tok, opt, state: dict, cfg: GRPOConfig) -> None:
    """Weights (atomic HF dir, step in its meta), then optimizer state tagged with the same step."""
    _check_finite(model)
    save_checkpoint(resume_dir, model, tok, meta={"stage": "grpo-partial", "config": asdict(cfg), "train_state": state,
                                                  "world_size": distributed.world().size})
    tmp = resume_dir / "optimizer.pt.tmp"
    torch.save({"step": state["step"], "optimizer": opt.state_dict()}, tmp)
    tmp.replace(resume_dir / "optimizer.pt")


def _restore(resume_dir: Path, init_arch, state: dict, cfg: GRPOConfig):
    """(model, state, optimizer state or None) of a snapshot, whose architecture must match --init's."""
    model, _, meta = load_checkpoint(resume_dir)  # a CheckpointError (a ValueError) names the snapshot's path
    if model.cfg != init_arch:
        raise ValueError(f"{resume_dir} holds a model of another architecture than --init {cfg.init}; "
                         "use --force to start over or --no-resume")
    distributed.check_resume(meta.get("world_size", 1))  # a rank's share of the problems depends on the world size
    state = {**state, **meta.get("train_state", {})}
    saved = torch.load(resume_dir / "optimizer.pt", weights_only=True) if (resume_dir / "optimizer.pt").exists() else {}
    if saved.get("step") != state["step"]:  # killed between the two writes: weights are newer than the optimizer
        distributed.say(f"warning: {resume_dir}: optimizer state missing or stale; continuing with a fresh one")
    distributed.say(f"resuming {resume_dir.parent} at update {state['step']} ({state['seconds']:.0f}s trained)")
    return model, state, saved["optimizer"] if saved.get("step") == state["step"] else None


def _check_finite(model) -> None:
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise RuntimeError(f"refusing to save a checkpoint with non-finite parameters ({', '.join(bad[:3])})")
