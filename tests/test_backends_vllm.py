"""The vLLM backend on CPU: its conversions, GRPO's wiring to it (a scripted engine), and its import guard: without vLLM
(every CPU install) it imports, and building an engine fails with one
line naming the ``gpu`` extra, never a traceback from deep inside an optional package."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from qstar.backends.hf import HFPolicy

pytestmark = pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")


def test_vllm_backend_imports_without_vllm_and_names_the_extra(tmp_path):
    from qstar.backends.vllm import VLLMPolicy

    assert "vllm" not in sys.modules  # importing the backend does not import the engine
    with pytest.raises(ImportError) as err:
        VLLMPolicy.from_pretrained(tmp_path)
    message = str(err.value)
    assert "pip install 'qstar[gpu]'" in message and "\n" not in message
    assert err.value.__cause__ is None and err.value.__suppress_context__  # one line, not a chained traceback
    assert VLLMPolicy.render is HFPolicy.render  # one prompt rendering for both local-model backends


def test_vllm_outputs_become_completions_by_the_policy_contract():
    # scripted vLLM CompletionOutputs: this checks the conversion logic only, not vLLM itself (no GPU here)
    from types import SimpleNamespace as NS

    from qstar.backends.vllm import VLLMPolicy

    def out(text, ids, finish_reason, stop_reason=None):
        return NS(text=text, token_ids=ids, finish_reason=finish_reason, stop_reason=stop_reason,
                  logprobs=[{t: NS(logprob=-0.5 * (k + 1))} for k, t in enumerate(ids)])

    step = VLLMPolicy._completion(out("12 + 3\n", [5, 6, 7], "stop", "\n"), 9)
    assert (step.text, step.finish, step.n_tokens, step.prompt_tokens) == ("12 + 3\n", "step", 3, 9)
    assert step.logprobs == [-0.5, -1.0, -1.5] and step.token_ids == [5, 6, 7]
    eos = VLLMPolicy._completion(out("Answer: 15", [5, 6, 2], "stop"), 9)  # <eos> counted, not in the text
    assert (eos.text, eos.finish, eos.n_tokens, len(eos.logprobs)) == ("Answer: 15", "eos", 3, 3)
    cut = VLLMPolicy._completion(out("12 + ", [5, 6], "length"), 9)
    assert (cut.finish, cut.n_tokens) == ("length", 2)


class _ScriptedLLM:
    """vLLM's ``LLM`` surface that GRPO uses (generate, collective_rpc, reset_prefix_cache), sampling with qstar's
    own sampler from a model that receives weights only through ``collective_rpc``: it checks the wiring of
    ``--generator vllm`` (seeded streams, sample conversion, a weight push after each update), not vLLM itself."""

    def __init__(self, directory, seed=0, **_):
        from types import SimpleNamespace as NS

        from qstar.model.checkpoint import load_checkpoint

        self.model = load_checkpoint(directory)[0]
        with torch.no_grad():
            for p in self.model.parameters():
                p.zero_()  # useless until the trainer's weights arrive
        self.worker = NS(model_runner=NS(model=NS(load_weights=self._load)))
        self.llm_engine = NS(model_config=NS(max_model_len=self.model.cfg.max_seq_len))
        self.pushes = self.resets = 0

    def get_tokenizer(self):
        return None

    def _load(self, weights):
        self.model.load_state_dict(dict(weights), strict=False)
        self.pushes += 1

    def collective_rpc(self, fn, args=()):
        fn(self.worker, *args)

    def reset_prefix_cache(self):
        self.resets += 1

    def generate(self, prompts, params, use_tqdm=False):
        from types import SimpleNamespace as NS

        from qstar.model.sampler import generate

        outs = []
        for prompt, sp in zip(prompts, params):
            rows = generate(self.model, [prompt["prompt_token_ids"]], n=sp.n, max_new_tokens=sp.max_tokens,
                            temperature=sp.temperature, stop_ids=sp.stop_token_ids, seeds=[sp.seed])[0]
            outs.append(NS(outputs=[NS(token_ids=s.tokens, logprobs=[{t: NS(logprob=lp)} for t, lp in
                                                                    zip(s.tokens, s.logprobs)]) for s in rows]))
        return outs


def test_grpo_with_the_vllm_generator_trains_as_with_qstars_sampler(tiny_checkpoint, tmp_path, monkeypatch):
    from types import SimpleNamespace as NS

    import qstar.backends.vllm as backend
    from qstar.learn.grpo import GRPOConfig, train_grpo
    from qstar.model.checkpoint import load_checkpoint

    engines = []
    monkeypatch.setitem(sys.modules, "vllm", NS(SamplingParams=lambda **kw: NS(**kw)))
    monkeypatch.setattr(backend.VLLMPolicy, "from_pretrained", classmethod(
        lambda cls, d, seed=0, **kw: engines.append(cls(_ScriptedLLM(d), seed=seed)) or engines[-1]))
    toy = dict(init=str(tiny_checkpoint), task="letters", problems_per_batch=4, group_size=4,
               max_completion_tokens=48, eval_problems=0, seconds=0, max_updates=3, lr=5e-4, warmup_updates=1)
    ours = train_grpo(GRPOConfig(out=str(tmp_path / "qstar"), **toy))
    theirs = train_grpo(GRPOConfig(out=str(tmp_path / "vllm"), generator="vllm", **toy))
    assert (ours["skipped_updates"], theirs["skipped_updates"], ours["zero_signal_updates"]) == (0, 0, 0)
    llm = engines[0].llm
    assert (llm.pushes, llm.resets) == (1 + 3, 1 + 3)  # the start's weights, then one push per update
    a, b = (load_checkpoint(tmp_path / k / "checkpoint")[0].state_dict() for k in ("qstar", "vllm"))
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-5) for k in a)  # the same chains, the same updates
    engine = {k: v for k, v in llm.model.state_dict().items()}
    assert all(torch.allclose(engine[k], b[k], rtol=0, atol=0) for k in b)  # the engine holds the last weights
