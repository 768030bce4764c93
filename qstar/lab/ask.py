"""`qstar ask "How many r's are in strawberry?"`: the trained reasoner thinks out loud and answers, or says it can't.

1) Route: the question (in the user's own words) is parsed into a task Problem (qstar.tasks.routes); no task
   recognises it -> "I can't answer that", without guessing.
2) Think: the effort level runs what the effort table (``qstar.search.effort``, shared with ``qstar serve`` and
   ``qstar search``) says, by default ``think`` with that level's thinking budget: none answers at once, xhigh votes
   over 4 budgeted chains. The reasoner thinks on the task's own phrasing of the question; the reply shows the
   thinking lines (attempts, checks, retries) and the answer. ``--effort all`` shows the thinking at every level.
3) Judge: the task's reference-free check (it reads the question, never a gold answer) decides where the task has
   one, else its cheap check of the candidate (``Task.cheap_check``: casting out nines, ...); elsewhere agreement
   among the chains measures confidence (one chain is no evidence either way). A rejected answer, or agreement
   below ``min_agreement``, makes the reply say it is not confident instead of asserting it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from qstar.search.effort import LEVELS, Effort, effort_of
from qstar.tasks.format import split_chain
from qstar.tasks.routes import RECOGNISERS, route

#: the --effort value that runs every level in turn
ALL = "all"
SKILLS = ("count a letter in a word, multiply whole numbers, compare two decimals, decode a Caesar cipher with a "
          "given shift, solve a Countdown numbers puzzle, work out two people's ages, or tell whether a bit string "
          "has an even or odd number of 1s")


@dataclass
class AskConfig:
    """Ask the trained reasoner a question; it prints its thinking and answer, or says it can't answer."""

    question: str = field(default="", metadata={"positional": True})
    """The question, in your own words (quote it)."""
    checkpoint: str = "runs/demo"
    """Reasoner: a demo run dir (its final checkpoint), any run dir, or a Hugging Face checkpoint dir."""
    effort: str = "medium"
    """Reasoning effort: none, minimal, low, medium, high or xhigh (thinking budgets of 0, 16, 48, 128, 256 tokens,
    xhigh a vote of 4 such chains; qstar.search.effort), or all: the thinking at every level in turn."""
    min_agreement: float = 0.5
    """Below this share of chains agreeing on the answer, the reply says it is not confident."""
    seed: int = 0
    """Sampling seed."""
    json: bool = False
    """Print the result as one JSON object instead of text."""


def run_ask(cfg: AskConfig, *, policy=None) -> dict:
    """Answer ``cfg.question``; returns {status, question, task, prompt, effort, thinking, answer, agreement,
    checked, message, ...}; with ``--effort all`` the highest level's, plus ``levels`` (one such dict per level).
    status: answered | unsure | out_of_scope. ``policy`` overrides loading the checkpoint (tests)."""
    levels = levels_of(cfg.effort)
    if not 0 <= cfg.min_agreement <= 1:
        raise ValueError(f"min_agreement must be in [0, 1], got {cfg.min_agreement}")
    if not cfg.question.strip():
        raise ValueError('ask needs a question, e.g. qstar ask "How many r\'s are in strawberry?"')
    problem = route(cfg.question)
    if problem is None:
        return _emit(cfg, {"status": "out_of_scope", "question": cfg.question, "task": None, "answer": None,
                           "message": f"I can't answer that: it is not a kind of question I was trained on. "
                                      f"I can {SKILLS}."})
    if policy is None:
        from qstar.model.policy import load_policy

        policy = load_policy(cfg.checkpoint, seed=None)  # torch's global generator, seeded per level
    outs = [think(cfg, problem, level, policy=policy) for level in levels]
    return _emit(cfg, outs[0] if len(outs) == 1 else {**outs[-1], "effort": ALL, "levels": outs})


def levels_of(effort: str) -> list[str]:
    """The levels ``--effort`` runs; ValueError listing them for an unknown one."""
    if effort == ALL:
        return list(LEVELS)
    try:
        effort_of(effort)
    except ValueError as e:
        raise ValueError(f"{e}, or {ALL}") from None
    return [effort]


def describe(effort: Effort) -> str:
    """An effort in words: "no thinking", "128 thinking tokens", "4 chains of 256 thinking tokens, majority"."""
    if effort.strategy != "think":
        return f"{effort.strategy} at budget {effort.budget}, scorer {effort.scorer}"
    k = int(effort.options.get("parallel", 1))
    what = "no thinking" if effort.budget == 0 else f"{effort.budget} thinking tokens"
    return what if k == 1 else f"{k} chains of {what}, majority"


def think(cfg: AskConfig, problem, level: str, *, policy) -> dict:
    """Run ``level``'s effort on one routed Problem and judge the answer (see module doc)."""
    import torch

    from qstar.scorers import get_scorer
    from qstar.search import get_strategy
    from qstar.tasks import get_task

    task = get_task(problem.task)
    effort = effort_of(level)
    scorer, scorer_name = _scorer(cfg.checkpoint, effort.scorer, get_scorer)
    # a family the router only recognised (no parsed data, no gold) has no reference chain, checker or verifier
    parsed = bool(problem.answer)
    options = dict(effort.options)
    if effort.strategy != "think":  # think's budget is its cap; whole-chain strategies get the evaluation cap
        options.setdefault("max_tokens", _chain_cap(task, problem, parsed))
    torch.manual_seed(cfg.seed)
    (res,) = get_strategy(effort.strategy)(policy, scorer, [problem], effort.budget, **options)
    answers = res.info.get("answers") or [res.answer]
    agreement = sum(a == res.answer for a in answers) / len(answers) if res.answer is not None else 0.0
    steps, _ = split_chain(res.chain)
    # reference-free check (judges from the question alone; None: the task has none) and the exact verifier
    check = task.check(problem, res.answer) if parsed else None
    how = "own check"
    if check is None and parsed and res.answer is not None:  # else its cheap check (casting out nines, ...)
        cheap = task.cheap_check(problem, res.answer)
        check, how = (cheap[1], f"cheap check ({task.check_method})") if cheap else (None, how)
    correct = task.accepts(problem, res.answer) if parsed else None
    slips = _failing_steps(task, problem, steps) if parsed else 0
    chosen = res.info.get("chosen", 0)  # think's per-chain info, of the chain it answers with
    forced, spent = (res.info[k][chosen] if k in res.info else None for k in ("forced", "thinking_tokens"))
    out = {"question": cfg.question, "task": problem.task, "prompt": problem.question, "effort": level,
           "effort_says": describe(effort), "thinking": steps, "answer": res.answer, "agreement": agreement,
           "samples": len(answers), "strategy": effort.strategy, "budget": effort.budget, "scorer": scorer_name,
           "checked": check, "verified": correct, "forced": forced, "thinking_tokens": spent}
    agree_text = "one chain" if len(answers) == 1 else \
        f"{round(agreement * len(answers))} of {len(answers)} samples agree"
    if forced:
        agree_text += f", thinking cut at its {effort.budget}-token budget" if effort.budget else ", no thinking"
    if res.answer is None:
        out.update(status="unsure", message="I couldn't reach an answer: none of my attempts finished with one.")
    elif check is False:
        out.update(status="unsure", message=f"I'm not confident: my best answer {res.answer} fails the "
                                            f"{problem.task} task's {how} ({agree_text}).")
    elif check is None and len(answers) > 1 and agreement < cfg.min_agreement:
        out.update(status="unsure", message=f"I'm not confident: my attempts disagree ({agree_text} on "
                                            f"{res.answer}), so treat it as a guess.")
    else:
        passed = f"; it passes the task's {how}" if check else ""
        if check is None and len(answers) == 1:
            passed = "; not checked: no reference-free check applies to it"
        if check and slips:  # say so rather than pass off a lucky chain as sound reasoning
            passed += f", though {slips} of {len(steps)} thinking steps do not"
        out.update(status="answered", message=f"{res.answer} ({agree_text}{passed})")
    return out


def _chain_cap(task, problem, parsed: bool) -> int:
    """Token cap per chain for strategies other than think: the evaluation budget of the task's reference chains
    (its held-out problems' for a family the router only recognised)."""
    from qstar.learn.evaluate import chain_budget

    return chain_budget(task, [problem] if parsed else task.generate(64, seed=0, split="test"))


def _failing_steps(task, problem, steps: list[str]) -> int:
    """How many thinking steps the task's step checker rejects (unparseable text counts as rejected)."""
    from qstar.scorers.programmatic import check_step_safely

    return sum(check_step_safely(task, problem, steps[:j], step) is False for j, step in enumerate(steps))


def _scorer(checkpoint: str, want: str, get_scorer) -> tuple[object, str]:
    """The effort's scorer: "checker+prm" with the PRM the demo trained next to the reasoner, or the checker alone
    when the run has none."""
    if want == "checker+prm":
        prm = Path(checkpoint) / "stages" / "prm" / "checkpoint"
        if (prm / "config.json").is_file():
            return get_scorer("checker+prm", checkpoint=str(prm)), "checker+prm"
        return get_scorer("checker"), "checker"
    return get_scorer(want), want


def _emit(cfg: AskConfig, out: dict) -> dict:
    if cfg.json:
        print(json.dumps(out))
        return out
    if out.get("thinking") is not None:
        print(f"[{out['task']}] {out['prompt']}")
    for one in out.get("levels") or [out]:
        if one.get("thinking") is not None:
            print(f"Effort {one['effort']} ({one['effort_says']}):")
            print("Thinking:" + ("" if one["thinking"] else " (none)"))
            for line in one["thinking"]:
                print(f"  {line}")
            print(f"Answer: {one['answer']}")
        print(one["message"])
        if one.get("verified") is not None and one.get("answer") is not None:
            print(f"(exact verifier of the {one['task']} task: {'correct' if one['verified'] else 'wrong'})")
    return out


__all__ = ["AskConfig", "run_ask", "levels_of", "describe", "ALL", "RECOGNISERS"]
