"""``qstar serve``: any Policy behind an o1-style OpenAI-compatible API.

Modules, bottom to top: ``config`` (``ServeConfig``, ``Effort``, the server's constants), ``protocol`` (request
validation, OpenAI error shapes), ``batching`` (BatchingPolicy: cross-request batching), ``engine`` (effort -> search,
token caps, usage), ``safety`` (the ``--safety-spec`` judge), ``app`` (``ServeApp``: the server's state and route
handlers; ``create_app(policy, config)``), ``cli`` (``run_serve``)."""

from __future__ import annotations

import importlib

__all__ = ["create_app", "ServeApp", "ServeConfig", "run_serve", "BatchingPolicy", "Effort"]
_WHERE = {"create_app": "qstar.serve.app", "ServeApp": "qstar.serve.app", "ServeConfig": "qstar.serve.config",
          "run_serve": "qstar.serve.cli", "BatchingPolicy": "qstar.serve.batching", "Effort": "qstar.serve.config"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'qstar.serve' has no attribute {name!r}")
