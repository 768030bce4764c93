"""`qstar ask "How many r's are in strawberry?"`: the trained reasoner thinks out loud and answers, or says it can't.

1) Route: the question (in the user's own words) is parsed into a task Problem (qstar.tasks.routes); no task
   recognises it -> "I can't answer that", without guessing.
2) Think: the effort level picks a strategy and budget (a registry below); the reasoner samples chains on the
   task's own phrasing of the question.
3) Judge: the task's reference-free check (it reads the question, never a gold answer) decides where the task has
   one; elsewhere agreement among the samples measures confidence. A rejected answer, or agreement below
   ``min_agreement``, makes the reply say it is not confident instead of asserting it.

Medium and high effort pick the best of N samples with that same check (and the run's PRM where the check cannot
judge): on the demo's reasoner it was the only strategy whose accuracy kept rising with N (LOG.md, 2026-11-22).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from qstar.tasks.format import split_chain
from qstar.tasks.routes import RECOGNISERS, route

#: effort -> (strategy, budget N, scorer wanted); "checker+prm" falls back to "checker" when the run has no PRM
EFFORTS: dict[str, tuple[str, int, str]] = {
    "low": ("majority", 3, "none"),
    "medium": ("best_of_n", 16, "checker+prm"),
    "high": ("best_of_n", 64, "checker+prm"),
}
SKILLS = ("count a letter in a word, multiply whole numbers, compare two decimals, decode a Caesar cipher with a "
          "given shift, solve a Countdown numbers puzzle, or work out two people's ages")


@dataclass
class AskConfig:
    """Ask the trained reasoner a question; it prints its thinking and answer, or says it can't answer."""

    question: str = field(default="", metadata={"positional": True})
    """The question, in your own words (quote it)."""
    checkpoint: str = "runs/demo"
    """Reasoner: a demo run dir (its final checkpoint), any run dir, or a Hugging Face checkpoint dir."""
    effort: str = field(default="medium", metadata={"choices": sorted(EFFORTS)})
    """Test-time compute: low (majority of 3 samples), medium (best of 16 by the task's check), high (best of 64)."""
    min_agreement: float = 0.5
    """Below this share of samples agreeing on the answer, the reply says it is not confident."""
    seed: int = 0
    """Sampling seed."""
    json: bool = False
    """Print the result as one JSON object instead of text."""


def run_ask(cfg: AskConfig, *, policy=None) -> dict:
    """Answer ``cfg.question``; returns {status, question, task, prompt, thinking, answer, agreement, checked,
    message}. status: answered | unsure | out_of_scope. ``policy`` overrides loading the checkpoint (tests)."""
    if cfg.effort not in EFFORTS:
        raise ValueError(f"unknown effort {cfg.effort!r}; choose from {', '.join(EFFORTS)}")
    if not 0 <= cfg.min_agreement <= 1:
        raise ValueError(f"min_agreement must be in [0, 1], got {cfg.min_agreement}")
    if not cfg.question.strip():
        raise ValueError('ask needs a question, e.g. qstar ask "How many r\'s are in strawberry?"')
    problem = route(cfg.question)
    if problem is None:
        return _emit(cfg, {"status": "out_of_scope", "question": cfg.question, "task": None, "answer": None,
                           "message": f"I can't answer that: it is not a kind of question I was trained on. "
                                      f"I can {SKILLS}."})
    return _emit(cfg, think(cfg, problem, policy=policy))


def think(cfg: AskConfig, problem, *, policy=None) -> dict:
    """Run the effort's strategy on one routed Problem and judge the answer (see module doc)."""
    import torch

    from qstar.learn.evaluate import chain_budget
    from qstar.scorers import get_scorer
    from qstar.search import get_strategy
    from qstar.tasks import get_task

    task = get_task(problem.task)
    strategy, budget, want = EFFORTS[cfg.effort]
    scorer, scorer_name = _scorer(cfg.checkpoint, want, get_scorer)
    if policy is None:
        from qstar.model.policy import load_policy

        policy = load_policy(cfg.checkpoint, seed=None)  # torch's global generator, seeded below
    # a family the router only recognised (no parsed data, no gold) has no reference chain, checker or verifier:
    # its token budget comes from the task's own held-out problems
    parsed = bool(problem.answer)
    max_tokens = chain_budget(task, [problem] if parsed else task.generate(64, seed=0, split="test"))
    torch.manual_seed(cfg.seed)
    (res,) = get_strategy(strategy)(policy, scorer, [problem], budget, max_tokens=max_tokens)
    answers = res.info.get("answers") or [res.answer]
    agreement = sum(a == res.answer for a in answers) / len(answers) if res.answer is not None else 0.0
    steps, _ = split_chain(res.chain)
    # reference-free check (judges from the question alone; None: the task has none) and the exact verifier
    check = task.check(problem, res.answer) if parsed else None
    correct = task.accepts(problem, res.answer) if parsed else None
    slips = _failing_steps(task, problem, steps) if parsed else 0
    out = {"question": cfg.question, "task": problem.task, "prompt": problem.question, "thinking": steps,
           "answer": res.answer, "agreement": agreement, "samples": len(answers), "strategy": strategy,
           "budget": budget, "scorer": scorer_name, "checked": check, "verified": correct}
    agree_text = f"{round(agreement * len(answers))} of {len(answers)} samples agree"
    if res.answer is None:
        out.update(status="unsure", message="I couldn't reach an answer: none of my attempts finished with one.")
    elif check is False:
        out.update(status="unsure", message=f"I'm not confident: my best answer {res.answer} fails the "
                                            f"{problem.task} task's own check ({agree_text}).")
    elif check is None and agreement < cfg.min_agreement:
        out.update(status="unsure", message=f"I'm not confident: my attempts disagree ({agree_text} on "
                                            f"{res.answer}), so treat it as a guess.")
    else:
        passed = "; it passes the task's own check" if check else ""
        if check and slips:  # say so rather than pass off a lucky chain as sound reasoning
            passed += f", though {slips} of {len(steps)} thinking steps do not"
        out.update(status="answered", message=f"{res.answer} ({agree_text}{passed})")
    return out


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
        print("Thinking:")
        for line in out["thinking"]:
            print(f"  {line}")
        print(f"Answer: {out['answer']}")
    print(out["message"])
    if out.get("verified") is not None and out.get("answer") is not None:
        print(f"(exact verifier of the {out['task']} task: {'correct' if out['verified'] else 'wrong'})")
    return out


__all__ = ["AskConfig", "run_ask", "EFFORTS", "RECOGNISERS"]
