"""The vLLM backend's import guard: without vLLM (every CPU install) it imports, and building an engine fails with one
line naming the ``gpu`` extra, never a traceback from deep inside an optional package."""

from __future__ import annotations

import importlib.util
import sys

import pytest

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
