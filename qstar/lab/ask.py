"""`qstar ask "How many r's are in strawberry?"`: the trained reasoner thinks out loud and answers, or says it can't.

1) Route: the question (in the user's own words) is parsed into a task Problem (qstar.lab.routes); no task
   recognises it -> "I can't answer that", without guessing.
2) Think: the effort level picks a strategy and budget (a registry below); the reasoner samples chains on the
   task's own phrasing of the question.
3) Judge: agreement among the samples measures confidence; below ``min_agreement``, or when the task's
   reference-free check rejects the answer, the reply says it is not confident instead of asserting it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from qstar.tasks.format import split_chain
from qstar.tasks.routes import RECOGNISERS, route

#: effort -> (strategy, budget N, scorer wanted); "prm" falls back to "none" when the run has no trained PRM
EFFORTS: dict[str, tuple[str, int, str]] = {
    "low": ("majority", 3, "none"),
    "medium": ("majority", 8, "none"),
    "high": ("weighted_best_of_n", 16, "prm"),
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
    """Test-time compute: low (3 samples), medium (8), high (16, PRM-weighted when the run trained one)."""
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

    from qstar.learn.sft import chain_budget
    from qstar.scorers import get_scorer
    from qstar.search import get_strategy
    from qstar.tasks import get_task

    task = get_task(problem.task)
    strategy, budget, want = EFFORTS[cfg.effort]
    scorer, scorer_name = _scorer(cfg.checkpoint, want, get_scorer)
    if policy is None:
        from qstar.lab.sweep import load_policy

        policy = load_policy(cfg.checkpoint)
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
    correct = bool(task.verify(problem, res.answer)) if parsed else None
    out = {"question": cfg.question, "task": problem.task, "prompt": problem.question, "thinking": steps,
           "answer": res.answer, "agreement": agreement, "samples": len(answers), "strategy": strategy,
           "budget": budget, "scorer": scorer_name, "checked": check, "verified": correct}
    agree_text = f"{round(agreement * len(answers))} of {len(answers)} samples agree"
    if res.answer is None:
        out.update(status="unsure", message="I couldn't reach an answer: none of my attempts finished with one.")
    elif check is False:
        out.update(status="unsure", message=f"I'm not confident: my best answer {res.answer} fails the "
                                            f"{problem.task} task's own check ({agree_text}).")
    elif agreement < cfg.min_agreement:
        out.update(status="unsure", message=f"I'm not confident: my attempts disagree ({agree_text} on "
                                            f"{res.answer}), so treat it as a guess.")
    else:
        out.update(status="answered", message=f"{res.answer} ({agree_text}"
                                              + ("; it passes the task's own check)" if check else ")"))
    return out


def _scorer(checkpoint: str, want: str, get_scorer) -> tuple[object, str]:
    """The PRM the demo trained next to the reasoner when effort asks for one and it exists; else "none"."""
    if want == "prm":
        prm = Path(checkpoint) / "stages" / "prm" / "checkpoint"
        if (prm / "config.json").is_file():
            return get_scorer("prm", checkpoint=str(prm)), "prm"
    return get_scorer("none"), "none"


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
