"""``HFPolicy``: any Hugging Face causal LM in a local directory as a qstar :class:`~qstar.model.types.Policy`.

Generation goes through ``transformers``' ``generate``; per-token log-probabilities come from the raw logits
(``output_logits``), i.e. the model's own distribution before temperature / top-p. A qstar checkpoint is a Llama
directory, so it loads here too (useful to cross-check qstar's own sampler against ``transformers``).

Prompt rendering: with a chat template the question is the single user turn (generation prompt added) and the
partial chain follows verbatim; without one the qstar format ``<bos>question\\n`` + partial is used.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from qstar.model.types import Completion, Prompt, check_sample_args
from qstar.tasks.format import STEP_END, render_prompt

__all__ = ["HFPolicy"]


class _SuppressUnused:
    """Logits processor: token ids past the tokenizer's vocabulary (embedding padding) can never be sampled."""

    def __init__(self, n_vocab: int) -> None:
        self.n_vocab = n_vocab

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        out = scores.clone()  # not in place: generate keeps the raw logits, which give the reported log-probs
        out[:, self.n_vocab:] = float("-inf")
        return out


class HFPolicy:
    """A local ``transformers`` causal LM.

    ``sample`` runs one ``generate`` call for all prompts x n (left-padded batch); greedy requests
    (temperature 0) generate once per prompt and copy the result n times.
    """

    def __init__(self, model, tokenizer, *, name: str = "hf-model", use_chat_template: bool | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.params = int(sum(p.numel() for p in model.parameters()))
        if tokenizer.pad_token_id is None:  # many causal LMs ship without a pad token; eos is the usual stand-in
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        has_template = bool(getattr(tokenizer, "chat_template", None))
        self.use_chat_template = has_template if use_chat_template is None else use_chat_template and has_template
        gen = model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.max_len = int(getattr(model.config, "max_position_embeddings", 0) or 1 << 30)
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, device: str = "cpu", **kwargs) -> HFPolicy:
        """Load model + tokenizer from a local directory (no downloads). Raises ValueError naming the problem."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        d = Path(directory)
        if not (d / "config.json").is_file():
            raise ValueError(f"{d}: not a Hugging Face model directory (no config.json)")
        try:
            tok = AutoTokenizer.from_pretrained(d, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(d, local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"{d}: cannot load as a causal LM ({type(e).__name__}: {e})") from None
        return cls(model.to(device), tok, name=kwargs.pop("name", d.name), **kwargs)

    def render(self, prompt: Prompt) -> str:
        """Prompt text the model is conditioned on (before tokenisation)."""
        question, partial = prompt
        if self.use_chat_template:
            msgs = [{"role": "user", "content": question}]
            head = self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            return head + partial
        return render_prompt(question) + partial

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` on its own (no specials)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def sample(
        self,
        prompts: Sequence[Prompt],
        *,
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_tokens: int = 256,
        stop_at_step: bool = False,
    ) -> list[list[Completion]]:
        """``n`` completions per prompt, shape [len(prompts)][n]; see :class:`~qstar.model.types.Policy`."""
        check_sample_args(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens)
        if not prompts:
            return []
        greedy = temperature == 0
        per_prompt = 1 if greedy else n
        texts = [self.render(Prompt(*p)) for p in prompts]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not self.use_chat_template)
        lengths = enc["attention_mask"].sum(1).tolist()
        room = min(max_tokens, self.max_len - enc["input_ids"].shape[1])
        if room <= 0:  # no context left: an empty, length-truncated continuation (search treats it as a dead end)
            return [[Completion("", prompt_tokens=int(ln), finish="length") for _ in range(n)] for ln in lengths]
        with self._lock, torch.no_grad():
            out = self.model.generate(
                **{k: v.to(self.model.device) for k, v in enc.items()},
                max_new_tokens=room,
                do_sample=not greedy,
                temperature=None if greedy else temperature,
                top_p=None if greedy else top_p,
                top_k=None if greedy else 0,
                num_return_sequences=per_prompt,
                pad_token_id=self.tokenizer.pad_token_id,
                logits_processor=[_SuppressUnused(len(self.tokenizer))],
                stop_strings=[STEP_END] if stop_at_step else None,
                tokenizer=self.tokenizer if stop_at_step else None,
                output_logits=True,
                return_dict_in_generate=True,
            )
        gen = out.sequences[:, enc["input_ids"].shape[1]:].cpu()
        logp = torch.stack(out.logits, 1).float().log_softmax(-1).gather(-1, gen[:, : len(out.logits), None])
        rows = [self._completion(gen[r].tolist(), logp[r, :, 0].tolist(), stop_at_step, room) for r in range(len(gen))]
        result = []
        for i, ln in enumerate(lengths):
            mine = rows[i * per_prompt:(i + 1) * per_prompt]
            if greedy:
                c0 = mine[0]
                mine = [c0] + [replace(c0, logprobs=list(c0.logprobs), token_ids=list(c0.token_ids))
                               for _ in range(n - 1)]
            for c in mine:
                c.prompt_tokens = int(ln)
            result.append(mine)
        return result

    def _completion(self, ids: list[int], logprobs: list[float], stop_at_step: bool, room: int) -> Completion:
        """Cut one generated row at <eos> (not in the text, counted as a token) or after the first newline."""
        for k, tok in enumerate(ids):
            if tok in self.eos_ids:
                text = self.tokenizer.decode(ids[:k], skip_special_tokens=True)
                return Completion(text, logprobs[: k + 1], k + 1, finish="eos", token_ids=ids[: k + 1])
            if stop_at_step and STEP_END in self.tokenizer.decode([tok]):
                text = self.tokenizer.decode(ids[: k + 1], skip_special_tokens=True)
                text = text[: text.index(STEP_END) + 1]
                return Completion(text, logprobs[: k + 1], k + 1, finish="step", token_ids=ids[: k + 1])
        k = min(len(ids), room)
        text = self.tokenizer.decode(ids[:k], skip_special_tokens=True)
        return Completion(text, logprobs[:k], k, finish="length", token_ids=ids[:k])
