"""``VLLMPolicy``: a :class:`~qstar.model.types.Policy` backed by an in-process vLLM engine, for rollouts and search on
a GPU (``pip install 'qstar[gpu]'``).

vLLM is imported only when an engine is built, so this module imports everywhere; on a machine without vLLM,
:meth:`VLLMPolicy.from_pretrained` raises one ImportError line naming the extra. Prompts are rendered exactly as
:class:`~qstar.backends.hf.HFPolicy` renders them (a qstar checkpoint is a Llama directory that vLLM loads as is), and
the reported log-probabilities are the sampled tokens' under the model's own distribution (vLLM's raw log-probs,
before temperature and top-p), as HFPolicy and qstar's sampler report them.

For GRPO (``qstar train grpo --generator vllm``) the engine also samples from token ids (``sample_ids``, qstar's
:class:`~qstar.model.sampler.Sample` rows, one seeded stream per prompt) and takes the trainer's weights after each
update (``load_weights``: the parameters go to every worker's model through ``collective_rpc``, and the prefix cache,
computed with the old weights, is dropped).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from qstar.backends.hf import HFPolicy
from qstar.model.sampler import Sample
from qstar.model.types import Completion, Prompt, check_sample_args
from qstar.tasks.format import STEP_END

__all__ = ["VLLMPolicy", "import_vllm"]

INSTALL = "the vLLM backend needs vLLM and a CUDA GPU: pip install 'qstar[gpu]'"


def import_vllm():
    """The ``vllm`` module, or an ImportError whose one line names the extra to install."""
    try:
        import vllm
    except ImportError:
        raise ImportError(INSTALL) from None
    return vllm


class VLLMPolicy:
    """An in-process ``vllm.LLM`` engine as a qstar Policy.

    ``sample`` submits every prompt x n in one ``generate`` call (vLLM batches and schedules them); greedy requests
    (temperature 0) generate once per prompt and copy the result n times, as HFPolicy does.
    """

    render = HFPolicy.render  # the same prompt text as HFPolicy: the chat template if any, else qstar's format
    count_tokens = HFPolicy.count_tokens

    def __init__(self, llm, *, name: str = "vllm-model", seed: int = 0, use_chat_template: bool | None = None) -> None:
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.name = name
        self.seed = seed
        config = llm.llm_engine.model_config
        self.max_len = int(config.max_model_len)
        self.params = 0  # vLLM does not expose a parameter count without reaching into its workers
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        self.use_chat_template = has_template if use_chat_template is None else use_chat_template and has_template
        self._calls = 0

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, name: str | None = None, seed: int = 0,
                        gpu_memory_utilization: float = 0.5, **engine_args) -> VLLMPolicy:
        """An engine over a local HF directory (an exported qstar checkpoint or any causal LM vLLM supports).

        ``gpu_memory_utilization`` leaves room on the GPU for a trainer beside the engine; ``engine_args`` go to
        ``vllm.LLM``. Raises ImportError (vLLM missing) or ValueError (not a model directory)."""
        vllm = import_vllm()
        d = Path(directory)
        if not (d / "config.json").is_file():
            raise ValueError(f"{d}: not a Hugging Face model directory (no config.json)")
        llm = vllm.LLM(model=str(d), seed=seed, gpu_memory_utilization=gpu_memory_utilization, **engine_args)
        return cls(llm, name=name or d.name, seed=seed)

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
        vllm = import_vllm()
        greedy = temperature == 0
        ids = [self.tokenizer(self.render(Prompt(*p)), add_special_tokens=not self.use_chat_template)["input_ids"]
               for p in prompts]
        result: list[list[Completion] | None] = [None] * len(ids)
        todo = []
        for i, prompt_ids in enumerate(ids):
            room = min(max_tokens, self.max_len - len(prompt_ids))
            if room <= 0:  # no context (or no tokens) left: an empty "length" stop, as every backend reports it
                result[i] = [Completion("", prompt_tokens=len(prompt_ids), finish="length") for _ in range(n)]
            else:
                todo.append((i, room))
        self._calls += 1  # a fresh seed per call: repeated calls must not repeat the same samples
        params = [vllm.SamplingParams(n=1 if greedy else n, temperature=temperature, top_p=1.0 if greedy else top_p,
                                      max_tokens=room, logprobs=0, stop=[STEP_END] if stop_at_step else None,
                                      include_stop_str_in_output=True, seed=self.seed * 1_000_003 + self._calls)
                  for _, room in todo]
        outputs = self.llm.generate([{"prompt_token_ids": ids[i]} for i, _ in todo], params, use_tqdm=False)
        for (i, _), out in zip(todo, outputs):
            rows = [self._completion(o, len(ids[i])) for o in out.outputs]
            if greedy:
                rows = [rows[0]] + [replace(rows[0], logprobs=list(rows[0].logprobs),
                                            token_ids=list(rows[0].token_ids)) for _ in range(n - 1)]
            result[i] = rows
        return result  # type: ignore[return-value]

    def sample_ids(self, prompts: Sequence[Sequence[int]], *, n: int, max_tokens: int, temperature: float,
                   stop_ids: Sequence[int], seeds: Sequence[int]) -> list[list[Sample]]:
        """``n`` chains per tokenised prompt as qstar sampler rows ([len(prompts)][n]): the stop token is kept in
        ``tokens``, log-probabilities are the raw model's, and prompt i's chains come from a stream seeded by
        ``seeds[i]`` (as :func:`qstar.model.sampler.generate` with ``seeds``)."""
        vllm = import_vllm()
        params = [vllm.SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens, logprobs=0, seed=seed,
                                      stop_token_ids=list(stop_ids), detokenize=False) for seed in seeds]
        outputs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], params, use_tqdm=False)
        stops = set(stop_ids)
        return [[Sample(list(o.token_ids), [float(step[t].logprob) for t, step in zip(o.token_ids, o.logprobs)],
                        "stop" if o.token_ids and o.token_ids[-1] in stops else "length",
                        len(prompt) if j == 0 else 0)
                 for j, o in enumerate(out.outputs)] for prompt, out in zip(prompts, outputs)]

    def load_weights(self, named: Iterable[tuple[str, object]]) -> None:
        """Put the trainer's parameters (HF names, as a qstar model's ``named_parameters``) into the engine."""
        weights = [(name, tensor.detach().to("cpu")) for name, tensor in named]
        self.llm.collective_rpc(_load_weights, args=(weights,))
        self.llm.reset_prefix_cache()  # cached prompt keys and values were computed with the old weights

    @staticmethod
    def _completion(out, prompt_tokens: int) -> Completion:
        """One vLLM CompletionOutput as a Completion: <eos> counted but not in the text; a step ends at its newline."""
        token_ids = list(out.token_ids)
        logprobs = [float(step[t].logprob) for t, step in zip(token_ids, out.logprobs or [])]
        if out.finish_reason == "length":
            finish = "length"
        elif out.stop_reason == STEP_END:
            finish = "step"
        else:
            finish = "eos"
        text = out.text
        if finish == "step":  # vLLM matches the stop string in the detokenised text; keep up to the newline
            text = text[: text.index(STEP_END) + 1]
        return Completion(text, logprobs, len(token_ids), prompt_tokens=prompt_tokens, finish=finish,
                          token_ids=token_ids)


def _load_weights(worker, weights) -> None:
    """Runs on each vLLM worker: the model's own loader maps HF names onto its fused layers."""
    worker.model_runner.model.load_weights(weights=weights)
