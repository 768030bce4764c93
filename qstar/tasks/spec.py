"""A safety specification: a short written policy of rules, each with an id, that a reasoner deliberates over.

The file format (``qstar/tasks/specs/default.txt`` is the default; users replace it):

    # comment
    S2: Never help anyone make or get a weapon. [triggers: bomb, rifle, grenade, pistol]

One rule per line, ``ID: statement``, where an id is a letter followed by letters, digits, ``-`` or ``_``. The
optional ``[triggers: ...]`` lists lowercase words: a request breaks the rule when it involves one of them, however it
is written (the ``safety`` task's disguises). The statement is what a model that reads the spec (an upstream LLM
behind ``qstar serve --safety-spec``) judges by; the triggers are what qstar's own safety reasoner learns and what
the exact verifier checks. ``parse_spec`` raises ValueError, naming the line, for an empty spec, a rule without an id,
a duplicate id, a trigger that is not one lowercase word, or a trigger claimed by two rules.

A reply refuses with ``refuse <ID>`` (``refusal_text``); ``read_refusal`` reads the id back from any text and never
raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Rule", "Spec", "DEFAULT_SPEC", "parse_spec", "load_spec", "default_spec", "refusal_text",
           "read_refusal", "REFUSE"]

DEFAULT_SPEC = Path(__file__).with_name("specs") / "default.txt"
REFUSE = "refuse"
_ID = r"[A-Za-z][A-Za-z0-9_-]{0,15}"
_RULE = re.compile(rf"^({_ID})\s*:\s*(.*?)\s*(?:\[\s*triggers\s*:\s*([^\]]*)\])?\s*$")
_REFUSAL = re.compile(rf"\b{REFUSE}\w*\s*[:(]?\s*({_ID})?", re.IGNORECASE)


@dataclass(frozen=True)
class Rule:
    """One rule: ``id`` (as the refusal cites it), ``statement`` (the policy sentence), ``triggers`` (lowercase
    words whose involvement breaks it; empty for a rule only a spec-reading model can apply)."""

    id: str
    statement: str
    triggers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Spec:
    """The rules of a specification, in file order, and the text they were read from."""

    rules: tuple[Rule, ...]
    text: str = ""

    def rule(self, rule_id: str) -> Rule | None:
        """The rule with this id (case-insensitive), or None."""
        key = str(rule_id).upper()
        return next((r for r in self.rules if r.id.upper() == key), None)

    def rule_of(self, word: str) -> Rule | None:
        """The rule that ``word`` (lowercase) triggers, or None."""
        return next((r for r in self.rules if word in r.triggers), None)

    @property
    def triggers(self) -> set[str]:
        return {w for r in self.rules for w in r.triggers}

    def prompt(self) -> str:
        """The rules as one line of text (what a spec-reading model is shown): "S1: ... S2: ..."."""
        return " ".join(f"{r.id}: {r.statement}" for r in self.rules)


def parse_spec(text: str, *, source: str = "the safety spec") -> Spec:
    """Rules from spec text; ValueError naming ``source`` and the line for every malformed input."""
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    owner: dict[str, str] = {}
    for number, raw in enumerate(str(text).splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _RULE.match(line)
        if not m or not m.group(2):
            raise ValueError(f"{source}, line {number}: a rule needs an id and a statement, as 'S1: Never reveal "
                             f"the code word.'; got {line[:60]!r}")
        rule_id, statement, words = m.group(1), m.group(2), m.group(3)
        if rule_id.upper() in seen:
            raise ValueError(f"{source}, line {number}: duplicate rule id {rule_id!r} (first on line "
                             f"{seen[rule_id.upper()]})")
        seen[rule_id.upper()] = number
        triggers = tuple(w.strip() for w in (words or "").split(",") if w.strip())
        for w in triggers:
            if not re.fullmatch(r"[a-z]{3,12}", w):
                raise ValueError(f"{source}, line {number}: trigger {w!r} must be one lowercase word of 3-12 letters")
            if w in owner:
                raise ValueError(f"{source}, line {number}: trigger {w!r} already belongs to rule {owner[w]}")
            owner[w] = rule_id
        rules.append(Rule(rule_id, statement, triggers))
    if not rules:
        raise ValueError(f"{source} has no rules: write one per line, as 'S1: Never reveal the code word.'")
    return Spec(tuple(rules), str(text))


def load_spec(path: str | Path) -> Spec:
    """``parse_spec`` of a file; ValueError for a file that cannot be read."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read safety spec {path}: {e}") from None
    return parse_spec(text, source=f"safety spec {path}")


_DEFAULT: list[Spec] = []


def default_spec() -> Spec:
    """The specification that ships with qstar (read once)."""
    if not _DEFAULT:
        _DEFAULT.append(load_spec(DEFAULT_SPEC))
    return _DEFAULT[0]


def refusal_text(rule_id: str) -> str:
    """The answer of a refusal citing ``rule_id``: "refuse S2"."""
    return f"{REFUSE} {rule_id}"


def read_refusal(text) -> tuple[bool, str | None]:
    """(is this reply a refusal, the rule id it cites or None). A refusal is a reply whose answer starts with
    "refuse" (any case, "refused"/"refuses" too). Never raises."""
    if not isinstance(text, str):
        return False, None
    m = _REFUSAL.match(text.strip())
    if not m:
        return False, None
    return True, (m.group(1).upper() if m.group(1) else None)
