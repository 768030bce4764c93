"""`qstar ask`: routing questions in a user's own words, honest refusals, and confidence from agreement."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qstar.lab.ask import AskConfig, run_ask
from qstar.model.types import Completion
from qstar.tasks.routes import route


@pytest.mark.parametrize("question,task,prompt,answer", [
    ("How many r's are in strawberry?", "letters", "How many r's are in strawberry?", "3"),
    ("count the letter s in the word 'mississippi'", "letters", "How many s's are in mississippi?", "4"),
    ("In banana, how many a's?", "letters", "How many a's are in banana?", "3"),
    ("what's 12 x 34", "mult", "What is 12 times 34?", "408"),
    ("Please multiply 7 by 8.", "mult", "What is 7 times 8?", "56"),
    ("Which is bigger, 9.11 or 9.9?", "decimals", "Which is larger, 9.11 or 9.9?", "9.9"),
    ("is 3.14 less than 3.2?", "decimals", "Is 3.14 smaller than 3.2?", "yes"),
    ("decrypt 'wkh fdw' with a caesar shift of 3", "cipher", "Decode the Caesar cipher 'wkh fdw' with shift 3.",
     "the cat"),
])
def test_own_words_route_to_the_task_phrasing(question, task, prompt, answer):
    p = route(question)
    assert (p.task, p.question, p.answer) == (task, prompt, answer)


def test_the_princess_puzzle_is_parsed_into_the_ages_family():
    from qstar.tasks import check, get_task, verify

    p = route("The princess is as old as the prince will be when the princess is twice as old as the prince was when "
              "the princess's age was half the sum of their present ages. What are their ages?")
    assert (p.task, p.answer, p.data["family"]) == ("ages", "4k and 3k", 2)
    assert verify(p, "8k and 6k") and check(p, "4k and 3k") and not check(p, "3k and 4k")
    assert verify(p, get_task("ages").reference(p))  # the task's own chain solves the routed problem
    three = route("Ann is as old as Bob will be when Ann is three times as old as Bob was when Ann's age was half the "
                  "sum of their present ages.")
    assert three.answer == "11k and 7k" and three.question.startswith("Ann is as old as Bob")


def test_countdown_routes_through_the_task():
    from qstar.tasks import check

    p = route("Use 3, 4, 5 and 6 to make 17")
    assert p.task == "countdown" and p.data == {"nums": [3, 4, 5, 6], "target": 17}
    assert check(p, p.answer)  # the gold came from the task's own solver


@pytest.mark.parametrize("question", ["What is the capital of France?", "Write me a poem about the sea.",
                                      "what is 3 times 4 plus 2", "", "   "])
def test_out_of_scope_questions_are_refused(question, capsys):
    if not question.strip():
        with pytest.raises(ValueError, match="needs a question"):
            run_ask(AskConfig(question=question, checkpoint="does/not/exist"))
        return
    out = run_ask(AskConfig(question=question, checkpoint="does/not/exist"))  # refused before loading any model
    assert out["status"] == "out_of_scope" and out["answer"] is None
    assert "I can't answer that" in capsys.readouterr().out


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_route_never_raises(text):
    route(text)


class Voter:
    """A scripted policy whose i-th sample answers ``answers[i % len]`` with a two-step chain."""

    name, params = "voter", 0

    def __init__(self, answers):
        self.answers = answers

    def sample(self, prompts, *, n=1, temperature=1.0, top_p=1.0, max_tokens=256, stop_at_step=False):
        return [[Completion(text=f"thinking\nstill thinking\nAnswer: {self.answers[i % len(self.answers)]}",
                            n_tokens=9) for i in range(n)] for _ in prompts]


def test_agreement_and_checker_decide_confidence(capsys):
    q = "How many r's are in strawberry?"
    ok = run_ask(AskConfig(question=q, effort="low"), policy=Voter(["3", "3", "2"]))
    assert ok["status"] == "answered" and ok["answer"] == "3" and ok["agreement"] == pytest.approx(2 / 3)
    assert ok["thinking"] == ["thinking", "still thinking"] and ok["checked"] is True
    text = capsys.readouterr().out
    assert "Thinking:" in text and "Answer: 3" in text and "2 of 3 samples agree" in text
    wrong = run_ask(AskConfig(question=q, effort="low"), policy=Voter(["2"]))
    assert wrong["status"] == "unsure" and "fails the letters task's own check" in wrong["message"]
    ages = run_ask(AskConfig(question="Will is 21 years older than Olga and the sum of their ages is 35. How old "
                                      "are they?", effort="low"), policy=Voter(["28 and 7"]))
    assert ages["task"] == "ages" and ages["status"] == "answered" and ages["checked"] is None
    assert ages["verified"] is None  # the family was recognised, not parsed: agreement is the only evidence
    split = run_ask(AskConfig(question="what is 12 times 34", effort="medium"),
                    policy=Voter(["408", "407", "406", "405"]))  # mult has no reference-free check
    assert split["status"] == "unsure" and "disagree" in split["message"] and split["samples"] == 16


def test_the_check_picks_and_vouches_for_a_minority_answer():
    # best of N by the task's reference-free check: one right sample in four is found, and the check (not the
    # 1-in-4 agreement) decides the confidence
    q = "How many r's are in strawberry?"
    out = run_ask(AskConfig(question=q, effort="medium", checkpoint="no/run"), policy=Voter(["2", "2", "3", "1"]))
    assert (out["status"], out["answer"], out["scorer"]) == ("answered", "3", "checker")
    assert out["agreement"] == pytest.approx(0.25) and "passes the task's own check" in out["message"]
    assert "though 2 of 2 thinking steps do not" in out["message"]  # the scripted "thinking" lines are no spelling
    none_right = run_ask(AskConfig(question=q, effort="high"), policy=Voter(["2", "1"]))
    assert none_right["status"] == "unsure" and none_right["samples"] == 64


def test_ask_a_real_checkpoint(tiny_checkpoint, capsys):
    out = run_ask(AskConfig(question="How many r's are in strawberry?", checkpoint=str(tiny_checkpoint),
                            effort="low"))
    assert out["status"] in ("answered", "unsure") and out["task"] == "letters" and out["samples"] == 3
    assert out["thinking"] and "Thinking:" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no checkpoint at"):
        run_ask(AskConfig(question="How many r's are in strawberry?", checkpoint="does/not/exist"))
