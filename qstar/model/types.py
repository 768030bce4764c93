"""The Policy seam: what search, learning and serving need from any model backend.

qstar's own checkpoints (``qstar.model.policy.ModelPolicy``), Hugging Face models and
OpenAI-compatible servers (``qstar.backends``) all implement ``Policy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable


class Prompt(NamedTuple):
    """A question plus the partial chain generated so far (``""`` at the root).

    The backend renders the question its own way (qstar template, chat template) and continues
    the partial chain verbatim.
    """

    question: str
    partial: str = ""


@dataclass
class Completion:
    """One sampled continuation.

    text: generated text only (not the prompt); with stop_at_step it ends at and includes "\\n",
        or ends at the end of the answer (<eos> itself is not in the text).
    logprobs: per generated token, natural log, same length as the generated tokens.
    n_tokens: generated tokens (the ledger counts these).
    prompt_tokens: prompt tokens the backend had to process (0 if served from a cache).
    finish: "step" (stopped at end of step), "eos" (answer finished) or "length" (max_tokens hit).
    token_ids: generated token ids where the backend exposes them, else [].
    """

    text: str
    logprobs: list[float] = field(default_factory=list)
    n_tokens: int = 0
    prompt_tokens: int = 0
    finish: str = "eos"
    token_ids: list[int] = field(default_factory=list)

    @property
    def logprob(self) -> float:
        """Total log-probability of the continuation."""
        return float(sum(self.logprobs))


@runtime_checkable
class Policy(Protocol):
    """Samples continuations for a batch of partial chains.

    name: shown in ledgers and served as the model id.
    params: parameter count used for FLOPs (2 * params per token forward); 0 if unknown.
    """

    name: str
    params: int

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
        """Return ``n`` completions for each prompt: shape [len(prompts)][n].

        temperature 0 means greedy. Implementations batch all prompts x n together.
        """
        ...


def check_sample_args(*, n: int, temperature: float, top_p: float, max_tokens: int) -> None:
    """The ValueError every backend raises for sampling arguments outside the :class:`Policy` contract."""
    if n < 1 or max_tokens < 0 or temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need n >= 1, max_tokens >= 0, temperature >= 0, 0 < top_p <= 1 "
                         f"(got n={n}, max_tokens={max_tokens}, temperature={temperature}, top_p={top_p})")
