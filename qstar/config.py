"""One dataclass per entrypoint; its fields are the CLI flags and their docstrings the help text.

    @dataclass
    class Config:
        steps: int = 100
        \"\"\"Optimizer updates.\"\"\"

``parse_config(Config, argv)`` turns that into ``--steps 100`` with the docstring as help. A field with
``metadata={"positional": True}`` becomes a positional argument.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (a string literal right after an annotated field), by field name; fields a dataclass
    inherits (e.g. ``qstar.executor.ExecutorOptions``) keep their base's docstring unless the subclass gives one."""
    docs: dict[str, str] = {}
    for base in reversed(cls.__mro__[1:]):
        if dataclasses.is_dataclass(base):
            docs.update(_own_docs(base))
    return docs | _own_docs(cls)


def _own_docs(cls: type) -> dict[str, str]:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for prev, node in zip(body, body[1:]):
        if (
            isinstance(prev, ast.AnnAssign)
            and isinstance(prev.target, ast.Name)
            and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            docs[prev.target.id] = " ".join(node.value.value.split())
    return docs


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(inner type, is_sequence) for X, X | None, list[X], tuple[X, ...]."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0]) if len(args) == 1 else (str, False)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return (args[0] if args else str), True
    return tp, False


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per dataclass field to ``parser``."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, seq = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        help_ = docs.get(f.name, "") + (f" (default: {default})" if default not in (None, "") else "")
        help_ = help_.replace("%", "%%")  # argparse %-formats help text
        if f.metadata.get("positional"):
            nargs = "?" if default is not None else None
            parser.add_argument(f.name, type=tp, nargs=nargs, default=default, help=help_)
        elif tp is bool:
            parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, action=argparse.BooleanOptionalAction,
                                default=default, help=help_)
        else:
            parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=tp, nargs="+" if seq else None,
                                default=default, choices=f.metadata.get("choices"), help=help_,
                                required=f.metadata.get("required", False))


def config_from_namespace(cls: type[T], ns: argparse.Namespace) -> T:
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        value = getattr(ns, f.name)
        if isinstance(value, list) and typing.get_origin(typing.get_type_hints(cls)[f.name]) is tuple:
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def parse_config(cls: type[T], argv: list[str] | None = None, prog: str | None = None) -> T:
    """Parse ``argv`` into a ``cls`` instance (a dataclass)."""
    parser = argparse.ArgumentParser(prog=prog, description=(cls.__doc__ or "").strip())
    add_config_arguments(parser, cls)
    return config_from_namespace(cls, parser.parse_args(argv))
