"""The ``qstar`` command. Each subcommand is a (module, Config dataclass, function) triple, imported lazily so
``qstar --help`` stays fast and a missing optional dependency only affects its own command."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

import qstar  # noqa: F401  (sets thread env before torch loads)
from qstar.config import add_config_arguments, config_from_namespace

# command words -> "module:ConfigClass:function"
COMMANDS: dict[str, str] = {
    "train sft": "qstar.learn.sft:SFTConfig:train_sft",
    "train grpo": "qstar.learn.grpo:GRPOConfig:train_grpo",
    "train prm": "qstar.learn.reward_model:RewardConfig:train_prm",
    "train orm": "qstar.learn.reward_model:RewardConfig:train_orm",
    "train expert-iteration": "qstar.learn.expert_iteration:ExpertIterationConfig:train_expert_iteration",
    "train distill": "qstar.learn.distill:DistillConfig:train_distill",
    "train value": "qstar.learn.value:ValueConfig:train_value",
    "train alphazero": "qstar.learn.alphazero:AlphaZeroConfig:train_alphazero",
    "search": "qstar.search.cli:SearchConfig:run_search",
    "fit compute-optimal": "qstar.search.compute_optimal:FitConfig:fit_compute_optimal",
    "eval": "qstar.lab.eval:EvalConfig:run_eval",
    "relabel": "qstar.lab.relabel:RelabelConfig:run_relabel",
    "serve": "qstar.serve.cli:ServeConfig:run_serve",
    "demo": "qstar.lab.demo:DemoConfig:run_demo",
    "sweep": "qstar.lab.sweep:SweepConfig:run_sweep",
    "report": "qstar.lab.report:ReportConfig:run_report",
    "ask": "qstar.lab.ask:AskConfig:run_ask",
    "safety": "qstar.lab.safety:SafetyConfig:run_safety",
    "tasks": "qstar.tasks.cli:TasksConfig:run_tasks",
}

#: commands that train data-parallel under torchrun (qstar.learn.distributed); the others refuse a multi-process
#: launch, where every process would run the whole command and write the same files
DATA_PARALLEL = {"train sft", "train grpo", "train prm", "train orm"}


class UserError(Exception):
    """An error caused by the user's input; printed as one line, exit code 2."""


def _command(spec: str):
    """(Config class, function) of a command spec (imports its module)."""
    module, cls, fn = spec.split(":")
    mod = importlib.import_module(module)
    return getattr(mod, cls), getattr(mod, fn)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qstar", description="Reasoning models that improve with compute.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for words, spec in COMMANDS.items():
        *group, name = words.split()
        target = sub
        if group:
            if group[0] not in groups:
                gp = sub.add_parser(group[0], help=f"{group[0]} subcommands")
                groups[group[0]] = gp.add_subparsers(dest="subcommand", metavar="STAGE")
            target = groups[group[0]]
        # add_help=False: the second pass (the dataclass flags) owns --help for the command.
        p = target.add_parser(name, help=spec.split(":")[0], add_help=False)
        p.set_defaults(_spec=spec)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # First pass finds the command; second pass parses its dataclass flags.
    known, _ = parser.parse_known_args(argv)
    spec = getattr(known, "_spec", None)
    if spec is None:
        parser.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    words = [w for w, s in COMMANDS.items() if s == spec][0]
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and words not in DATA_PARALLEL:
        only = ", ".join(sorted(DATA_PARALLEL))
        print(f"qstar {words}: error: does not run data-parallel under torchrun (only {only} do); run it as one "
              "process", file=sys.stderr)
        return 2
    try:
        cfg_cls, fn = _command(spec)
    except ImportError as e:
        print(f"qstar {words}: not available ({e})", file=sys.stderr)
        return 2
    sub = argparse.ArgumentParser(prog=f"qstar {words}", description=(cfg_cls.__doc__ or "").strip())
    add_config_arguments(sub, cfg_cls)
    ns = sub.parse_args(argv[len(words.split()):])
    try:
        cfg = config_from_namespace(cfg_cls, ns)
        result = fn(cfg)
    # ImportError: an optional engine's guard naming its extra; ConnectionError: an unreachable cluster or server
    except (UserError, ValueError, FileNotFoundError, ImportError, ConnectionError) as e:
        print(f"qstar {words}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"qstar {words}: interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
