"""Policy backends beside ``qstar.model``: any Hugging Face causal LM (:class:`HFPolicy`, ``qstar.backends.hf``) and
any OpenAI-compatible server (:class:`OpenAIPolicy`, ``qstar.backends.openai_compat``). Imported lazily so the
HTTP backend does not load torch/transformers."""

from __future__ import annotations

import importlib

__all__ = ["HFPolicy", "OpenAIPolicy", "UpstreamError"]
_WHERE = {"HFPolicy": "qstar.backends.hf", "OpenAIPolicy": "qstar.backends.openai_compat",
          "UpstreamError": "qstar.backends.openai_compat"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'qstar.backends' has no attribute {name!r}")
