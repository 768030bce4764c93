"""``ModelPolicy``: a qstar checkpoint behind the :class:`qstar.model.types.Policy` seam."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from qstar.model.checkpoint import load_checkpoint, load_model, resolve_checkpoint
from qstar.model.model import Transformer
from qstar.model.sampler import Sample, generate, score_tokens
from qstar.model.tokenizer import CharTokenizer
from qstar.model.types import Completion, Prompt
from qstar.tasks.format import render_prompt

__all__ = ["ModelPolicy", "DECODE_DTYPES", "decode_dtype", "load_policy"]

#: decoding dtypes a command line may name (see :func:`qstar.model.sampler.generate`)
DECODE_DTYPES = {"float32": None, "bfloat16": torch.bfloat16}


def decode_dtype(name: str) -> torch.dtype | None:
    """The dtype for ``--decode-dtype NAME`` (None: the model's own, fp32); a clear error for anything else."""
    if name not in DECODE_DTYPES:
        raise ValueError(f"unknown decode dtype {name!r}; choose from {', '.join(DECODE_DTYPES)}")
    return DECODE_DTYPES[name]


class ModelPolicy:
    """Samples chain continuations from a qstar :class:`Transformer`.

    The model sees ``<bos> + render_prompt(question) + partial`` and continues it. With ``stop_at_step`` a
    completion ends after its first "\\n" (finish "step", the "\\n" is kept in the text); it always ends at <eos>
    (finish "eos", <eos> not in the text but counted in ``n_tokens``, ``token_ids`` and ``logprobs``) or after
    ``max_tokens`` (finish "length"). Log-probs are under the raw model distribution (see qstar.model.sampler).

    max_batch: most sample rows (prompts x n) decoded together; larger requests are split into chunks.
    seed: seeds this policy's private generator (reproducible sequence of calls); None = torch's global RNG. It is
        also ``stream_seed``: a search's Meter mixes it with each problem and chain index into the ``seeds`` of
        ``sample``, so a problem's k-th chain is the same however the search batches its draws.
    dtype: decoding dtype (see :func:`qstar.model.sampler.generate`); ``torch.bfloat16`` samples faster on CPUs with
        AVX512-BF16 at the cost of logprobs ~1e-2 from the fp32 model's (``logprobs`` stays fp32). None = the model's.
    length_prompt: the model was RL-trained to follow a thinking-length target stated in its prompt (L1; GRPO's
        ``length_targets`` records it in the checkpoint's meta), so the ``think`` strategy states its budget there.
    """

    def __init__(
        self,
        model: Transformer,
        tokenizer: CharTokenizer,
        *,
        name: str = "qstar",
        max_batch: int = 256,
        seed: int | None = None,
        dtype: torch.dtype | None = None,
        length_prompt: bool = False,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.params = model.num_params()
        self.max_batch = max_batch
        self.generator = None if seed is None else torch.Generator(model.lm_head.weight.device).manual_seed(seed)
        self.stream_seed = seed
        self.dtype = dtype
        self.length_prompt = length_prompt

    def reseed(self, seed: int) -> None:
        """Restart this policy's sampling stream at ``seed`` (a private generator is created if it had none), so one
        loaded policy can serve many seeded runs without touching torch's global generator."""
        self.generator = torch.Generator(self.model.lm_head.weight.device).manual_seed(seed)
        self.stream_seed = seed

    @classmethod
    def from_checkpoint(cls, directory: str | Path, *, name: str | None = None, **kwargs) -> ModelPolicy:
        """Load a checkpoint directory (raises CheckpointError); ``name`` defaults to the directory name."""
        model, tokenizer, meta = load_checkpoint(directory)
        kwargs.setdefault("length_prompt", bool(meta.get("length_prompt")))
        return cls(model, tokenizer, name=name or Path(directory).name, **kwargs)

    def encode(self, prompt: Prompt) -> list[int]:
        """Token ids the model is conditioned on for ``prompt`` (starts with <bos>)."""
        return self.tokenizer.encode(render_prompt(prompt.question) + prompt.partial, bos=True)

    def sample(
        self,
        prompts: Sequence[Prompt],
        *,
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_tokens: int = 256,
        stop_at_step: bool = False,
        seeds: Sequence[Sequence[int]] | None = None,
    ) -> list[list[Completion]]:
        """``n`` completions per prompt, shape [len(prompts)][n]; temperature 0 = greedy. seeds: per prompt, one
        seed per completion, each drawing from a stream of its own (``generate``'s per-chain seeds) instead of the
        policy's generator."""
        if n < 1 or max_tokens < 1:
            raise ValueError(f"need n >= 1 and max_tokens >= 1, got n={n}, max_tokens={max_tokens}")
        if seeds is not None and (len(seeds) != len(prompts) or any(len(s) != n for s in seeds)):
            raise ValueError(f"seeds: n={n} per prompt for each of {len(prompts)} prompts")
        if not prompts:
            return []
        tok = self.tokenizer
        stop = {tok.eos_id, tok.newline_id} if stop_at_step else {tok.eos_id}
        ids = [self.encode(Prompt(*p)) for p in prompts]
        longest = max(map(len, ids), default=0)
        limit = self.model.cfg.max_seq_len
        room = limit - longest
        if room < 1:
            raise ValueError(f"prompt of {longest} tokens leaves no room to generate within max_seq_len={limit}")
        opts = dict(max_new_tokens=min(max_tokens, room), temperature=temperature, top_p=top_p, stop_ids=stop,
                    generator=self.generator, dtype=self.dtype)
        out: list[list[Completion]] = [[] for _ in ids]
        if n <= self.max_batch:  # whole prompts per chunk
            per = self.max_batch // n
            for c in range(0, len(ids), per):
                chunk = None if seeds is None else seeds[c : c + per]
                for i, samples in enumerate(generate(self.model, ids[c : c + per], n=n, seeds=chunk, **opts), start=c):
                    out[i] = [self._completion(s) for s in samples]
        else:  # one prompt's n samples span several chunks
            for i, p in enumerate(ids):
                for c in range(0, n, self.max_batch):
                    k = min(self.max_batch, n - c)
                    chunk = None if seeds is None else [seeds[i][c : c + k]]
                    samples = generate(self.model, [p], n=k, seeds=chunk, **opts)[0]
                    out[i] += [self._completion(s) for s in samples]  # each chunk prefills the prompt again
        return out

    def _completion(self, s: Sample) -> Completion:
        tok = self.tokenizer
        last = s.tokens[-1] if s.tokens else None
        finish = {tok.eos_id: "eos", tok.newline_id: "step"}.get(last, "length") if s.finish == "stop" else "length"
        text_ids = s.tokens[:-1] if finish == "eos" else s.tokens
        return Completion(
            text=tok.decode(text_ids),
            logprobs=s.logprobs,
            n_tokens=len(s.tokens),
            prompt_tokens=s.prompt_tokens,
            finish=finish,
            token_ids=s.tokens,
        )

    def logprobs(self, prompt_ids: Sequence[int], completion_ids: Sequence[int]) -> list[float]:
        """Per-token log-probs of ``completion_ids`` after ``prompt_ids`` by one full forward pass (no cache)."""
        return score_tokens(self.model, prompt_ids, completion_ids)


def load_policy(path: str | Path, *, flag: str = "--checkpoint", dtype: str = "float32", seed: int | None = 0,
                name: str | None = None) -> ModelPolicy:
    """The policy of a run dir or checkpoint dir: the one constructor every command (search, sweep, ask, serve,
    benchmarks) turns a path into a policy with.

    dtype: decoding dtype name (``DECODE_DTYPES``). seed: seeds the policy's own sampling generator
    (``run_strategy`` restarts it per run with ``reseed``); None samples from torch's global generator. name: the
    policy's name (default: the checkpoint directory's). Errors are ValueErrors naming ``flag``.
    """
    torch_dtype = decode_dtype(dtype)  # a typo fails before the (slower) load
    model, tokenizer, meta = load_model(path, flag=flag)
    return ModelPolicy(model, tokenizer, name=name or resolve_checkpoint(path).name, seed=seed, dtype=torch_dtype,
                       length_prompt=bool(meta.get("length_prompt")))
