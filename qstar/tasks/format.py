"""The text format every qstar chain uses, shared by tasks, models, search and serving.

A chain is plain text, one step per line, ending with an answer line:

    prompt = question + "\\n"
    chain  = step_1 + "\\n" + ... + step_k + "\\n" + "Answer: " + answer

The model sees ``<bos> prompt chain <eos>``. Questions and steps never contain a newline, so
"\\n" is the end-of-step marker and <eos> (added by the tokenizer) the end-of-answer marker.

The steps are the chain's thinking; its line kinds (steps, checks, Wait, Retry, backtracking) are documented once, in
``qstar.tasks.thinking``.
"""

from __future__ import annotations

STEP_END = "\n"
ANSWER_PREFIX = "Answer: "


def clean_line(text: str) -> str:
    """Collapse newlines and runs of whitespace so a question or step is one line."""
    return " ".join(str(text).split())


def render_prompt(question: str) -> str:
    """Prompt text for a question (what the policy is conditioned on)."""
    return clean_line(question) + STEP_END


def render_chain(steps: list[str], answer: str) -> str:
    """Reasoning steps plus the final answer line (no trailing newline; <eos> follows)."""
    return "".join(clean_line(s) + STEP_END for s in steps) + ANSWER_PREFIX + clean_line(answer)


def split_chain(text: str) -> tuple[list[str], str | None]:
    """Split generated chain text into (steps, answer); answer is None without an answer line.

    Never raises. Steps after the first answer line are dropped.
    """
    steps: list[str] = []
    for line in str(text).split(STEP_END):
        if line.startswith(ANSWER_PREFIX):
            return steps, line[len(ANSWER_PREFIX):].strip()
        if line.strip():
            steps.append(line)
    return steps, None


def chain_steps(text: str) -> list[str]:
    """Non-empty lines of a chain with the answer line as the last step (lines after it are dropped): the steps a
    step scorer reads and a search tree holds.

    >>> chain_steps("a\\n\\nb\\nAnswer: 5\\nextra")
    ['a', 'b', 'Answer: 5']
    """
    steps, answer = split_chain(text)
    return steps + ([ANSWER_PREFIX + answer] if answer is not None else [])


# Budget forcing (sequential thinking): when a model tries to answer before its thinking budget is spent, the answer
# line is suppressed and this step is inserted instead; models trained on check-and-retry data (qstar.learn) learn to
# re-verify after it. Check lines start with CHECK_PREFIX; a failed check is followed by the corrected steps.
WAIT_STEP = "Wait"
CHECK_PREFIX = "Check: "
