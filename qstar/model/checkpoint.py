"""Checkpoints are Hugging Face model directories, written atomically.

A directory holds ``config.json`` (LlamaConfig), ``model.safetensors``, ``generation_config.json``, the tokenizer
files and ``qstar.json`` ({"format", "sha256" of the weights, "meta": free-form run info such as stage and metrics}).
``transformers.AutoModelForCausalLM.from_pretrained(dir)`` and ``AutoTokenizer.from_pretrained(dir)`` load it as is;
the tokenizer files carry a chat template (``qstar.model.tokenizer.CHAT_TEMPLATE``), so ``apply_chat_template`` and
OpenAI-compatible servers that load the directory render the prompt format the model was trained on.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import torch

from qstar.model.model import ModelConfig, Transformer
from qstar.model.tokenizer import CharTokenizer

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "resolve_checkpoint", "load_model",
           "find_checkpoint", "checkpoint_task", "task_for", "hf_config", "REQUIRED_FILES"]

FORMAT = 1
WEIGHTS = "model.safetensors"
REQUIRED_FILES = ("config.json", WEIGHTS, "tokenizer.json")


class CheckpointError(ValueError):
    """A checkpoint directory is missing, incomplete, corrupt or of another architecture (a ValueError, so the
    CLI reports it as a clear one-line error)."""


def hf_config(cfg: ModelConfig, tok: CharTokenizer) -> dict:
    """``config.json`` contents: LlamaConfig fields for transformers 4.45+ and 5.x."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.ffn_hidden,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": cfg.tie_embeddings,
        "bos_token_id": tok.bos_id,
        "eos_token_id": tok.eos_id,
        "pad_token_id": tok.pad_id,
        "torch_dtype": "float32",
        "initializer_range": 0.02,
        "use_cache": True,
    }


def save_checkpoint(directory: str | Path, model: Transformer, tokenizer: CharTokenizer, *, meta: dict) -> Path:
    """Write ``model`` + ``tokenizer`` + ``meta`` to ``directory`` atomically; returns the directory.

    Everything is written and fsynced in a temporary sibling directory which then replaces ``directory`` in one
    rename (an atomic exchange where the OS supports it), so readers see the old checkpoint or the new one, never a
    half-written one. ``meta`` must be JSON-serialisable.
    """
    target = Path(directory).absolute()
    meta_json = json.dumps(meta, indent=2)  # fail before touching the disk
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        _write(tmp, model, tokenizer, meta_json)
        _replace_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _write(tmp: Path, model: Transformer, tokenizer: CharTokenizer, meta_json: str) -> None:
    from safetensors.torch import save_file

    cfg = model.cfg
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    if cfg.tie_embeddings:
        state.pop("lm_head.weight")  # shared with the embedding; HF re-ties it from tie_word_embeddings
    save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})
    (tmp / "config.json").write_text(json.dumps(hf_config(cfg, tokenizer), indent=2))
    gen = {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id}
    (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2))
    tokenizer.save(tmp)
    info = {"format": FORMAT, "sha256": {WEIGHTS: _sha256(tmp / WEIGHTS)}}
    (tmp / "qstar.json").write_text(json.dumps(info)[:-1] + ', "meta": ' + meta_json + "}")
    for f in tmp.iterdir():
        _fsync(f)
    _fsync(tmp)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_dir(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target``, replacing an existing directory."""
    if not target.exists():
        os.rename(tmp, target)
    elif not _exchange(tmp, target):
        # No atomic exchange (not Linux/glibc): two renames; the old checkpoint survives as .old until removed.
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)
        os.rename(tmp, target)
        tmp = old
    shutil.rmtree(tmp, ignore_errors=True)  # after an exchange ``tmp`` holds the old checkpoint
    _fsync(target.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint directory for ``path``: ``path`` itself if it holds config.json, else a run directory's
    ``path/checkpoint``, else the checkpoint its ``summary.json`` names (expert iteration's last round, a demo run dir
    before its link exists). Raises :class:`CheckpointError` naming the places otherwise."""
    p = Path(path)
    for candidate in (p, p / "checkpoint"):
        if (candidate / "config.json").is_file():
            return candidate
    named = _summary_checkpoint(p)
    if named is not None:
        return named
    looked = f"{p / 'config.json'}, {p / 'checkpoint' / 'config.json'} and {p / 'summary.json'}"
    raise CheckpointError(f"{p}: no checkpoint here (looked for {looked})")


def _summary_checkpoint(run: Path) -> Path | None:
    try:
        named = json.loads((run / "summary.json").read_text()).get("checkpoint")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):  # no summary, or not a run's summary
        return None
    return Path(named) if isinstance(named, str) and (Path(named) / "config.json").is_file() else None


def load_model(path: str | Path, *, flag: str = "--checkpoint", device: str | torch.device = "cpu"):
    """``(model, tokenizer, meta)`` of a run dir or checkpoint dir: what every trainer and command loads a path with.

    A missing, corrupt or foreign checkpoint is a ValueError naming ``flag`` and the path (the CLI prints it as one
    line): ``--init: no checkpoint at runs/x that qstar can load (--init takes ...): <why>``.
    """
    try:
        return load_checkpoint(resolve_checkpoint(path), device=device)
    except CheckpointError as e:
        raise _unusable(flag, path, e) from None


def find_checkpoint(path: str | Path, *, flag: str = "--checkpoint") -> Path:
    """``resolve_checkpoint`` with ``load_model``'s errors: checks a command's paths before any slow work."""
    try:
        return resolve_checkpoint(path)
    except CheckpointError as e:
        raise _unusable(flag, path, e) from None


def _unusable(flag: str, path: str | Path, e: CheckpointError) -> ValueError:
    return ValueError(f"{flag}: no checkpoint at {path} that qstar can load ({flag} takes a run dir, as `qstar demo` "
                      f"and `qstar train` write, or a checkpoint dir): {e}")


def checkpoint_task(path: str | Path) -> str | None:
    """The task the checkpoint at ``path`` was trained on (``meta["config"]["task"]``, which SFT, GRPO, expert
    iteration, distillation and reward models record); None when it records none or cannot be read."""
    try:
        meta = _read_json(resolve_checkpoint(path) / "qstar.json").get("meta")
    except CheckpointError:
        return None
    config = meta.get("config") if isinstance(meta, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    return task if isinstance(task, str) and task else None


def task_for(requested: str, checkpoints: Sequence[str | Path], *, default: str, doing: str = "evaluating",
             note: bool = True) -> str:
    """The task a command runs checkpoints on: ``requested`` (its --task) when given, else the first checkpoint's own
    task, else ``default``. A checkpoint put to another task than its own gets a note on stderr (unless not ``note``):
    a reasoner scores about 0 on a task it never saw, and that should not pass without a word."""
    if requested and not note:
        return requested
    trained = [(c, checkpoint_task(c)) for c in checkpoints if c]
    task = requested or next((t for _, t in trained if t), default)
    for c, t in trained:
        if note and t and t != task:
            print(f"note: {c} was trained on task {t!r}; {doing} it on task {task!r}", file=sys.stderr)
    return task


def load_checkpoint(directory: str | Path, *, device: str | torch.device = "cpu"):
    """Load ``(model, tokenizer, meta)`` from a checkpoint directory (model in eval mode, float32).

    Raises :class:`CheckpointError` naming the path and the problem for a missing directory or file, unreadable or
    truncated JSON/safetensors, a weights checksum mismatch, or a config that is not a qstar-compatible Llama.
    ``qstar.json`` is optional (meta = {}), so plain HF exports of the same architecture load too.
    """
    d = Path(directory)
    if not d.is_dir():
        raise CheckpointError(f"{d}: checkpoint directory does not exist")
    missing = [f for f in REQUIRED_FILES if not (d / f).is_file()]
    if missing:
        raise CheckpointError(f"{d}: checkpoint is missing {', '.join(missing)}")
    cfg = _model_config(d / "config.json")
    info = _read_json(d / "qstar.json") if (d / "qstar.json").exists() else {}
    expected = (info.get("sha256") or {}).get(WEIGHTS)
    if expected and _sha256(d / WEIGHTS) != expected:
        raise CheckpointError(f"{d / WEIGHTS}: checksum mismatch (file corrupt or modified after saving)")
    try:
        from safetensors.torch import load_file

        state = load_file(str(d / WEIGHTS))
    except Exception as e:  # safetensors raises its own error types for truncated/garbled headers
        raise CheckpointError(f"{d / WEIGHTS}: unreadable safetensors file ({type(e).__name__}: {e})") from None
    model = Transformer(cfg)
    if cfg.tie_embeddings:
        state.pop("lm_head.weight", None)
    want = {k: v.shape for k, v in model.state_dict().items() if not (cfg.tie_embeddings and k == "lm_head.weight")}
    got = {k: v.shape for k, v in state.items()}
    if want != got:
        diff = sorted(set(want) ^ set(got)) or [k for k in want if want[k] != got[k]]
        raise CheckpointError(f"{d / WEIGHTS}: tensors do not match config.json (first differences: {diff[:3]})")
    model.load_state_dict(state, strict=False)
    try:
        tokenizer = CharTokenizer.load(d)
    except (ValueError, KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{d / 'tokenizer.json'}: not a qstar character tokenizer ({e})") from None
    return model.to(device).eval(), tokenizer, info.get("meta", {})


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _model_config(path: Path) -> ModelConfig:
    c = _read_json(path)
    arch = c.get("architectures") or []
    if c.get("model_type") != "llama" or arch != ["LlamaForCausalLM"]:
        raise CheckpointError(
            f"{path}: architecture {c.get('model_type')!r} {arch} is not supported (need llama / LlamaForCausalLM)"
        )
    if c.get("hidden_act", "silu") != "silu" or c.get("attention_bias") or c.get("mlp_bias"):
        raise CheckpointError(f"{path}: only silu activations without biases are supported")
    rope = c.get("rope_scaling") or {}
    if rope and rope.get("rope_type", rope.get("type")) not in (None, "default"):
        raise CheckpointError(f"{path}: rope scaling {rope} is not supported")
    theta = c.get("rope_theta") or (c.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    try:
        heads = int(c["num_attention_heads"])
        if int(c.get("head_dim") or c["hidden_size"] // heads) * heads != int(c["hidden_size"]):
            raise CheckpointError(f"{path}: head_dim * num_attention_heads != hidden_size is not supported")
        return ModelConfig(
            vocab_size=int(c["vocab_size"]),
            d_model=int(c["hidden_size"]),
            n_layers=int(c["num_hidden_layers"]),
            n_heads=heads,
            n_kv_heads=int(c.get("num_key_value_heads") or heads),
            ffn_hidden=int(c["intermediate_size"]),
            max_seq_len=int(c["max_position_embeddings"]),
            rope_theta=float(theta),
            norm_eps=float(c.get("rms_norm_eps", 1e-6)),
            tie_embeddings=bool(c.get("tie_word_embeddings", False)),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid Llama config ({type(e).__name__}: {e})") from None
