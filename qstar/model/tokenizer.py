"""Character tokenizer with a fixed 100-id vocabulary, exportable as a Hugging Face fast tokenizer.

Vocabulary: 0 ``<pad>``, 1 ``<bos>``, 2 ``<eos>``, 3 ``<unk>``, 4 ``"\\n"``, then ``chr(32)..chr(126)`` at ids 5..99.
Every character is one token, so token counts are character counts (plus specials).

Chat template (``CHAT_TEMPLATE``, written into ``tokenizer_config.json``): a conversation is read as ONE question
line, the format every qstar model is trained on. The rule: the text of every message (system, user, assistant,
...; content strings or text parts), in order, whitespace-collapsed and joined by single spaces, then ``"\\n"``,
after ``<bos>``. A single user turn therefore renders exactly as training's ``<bos>question\\n``. Earlier turns and
system messages are kept in the line (the model was never trained on transcripts; it sees them as part of the
question). An assistant's reasoning fields are not rendered, as in every reasoning API.
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
CHARS = ("\n",) + tuple(chr(c) for c in range(32, 127))

#: Jinja chat template (transformers / vLLM / SGLang syntax) implementing the rule in the module docstring.
CHAT_TEMPLATE = (
    "{{ bos_token }}{%- set ns = namespace(parts=[]) -%}"
    "{%- for m in messages -%}"
    "{%- if m['content'] is string -%}{%- set ns.parts = ns.parts + [m['content']] -%}"
    "{%- elif m['content'] is iterable -%}{%- for p in m['content'] -%}"
    "{%- if p is mapping and p['type'] == 'text' -%}{%- set ns.parts = ns.parts + [p['text']] -%}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endfor -%}"
    "{{ (ns.parts | join(' ')).split() | join(' ') }}{{ '\\n' }}"
)


class CharTokenizer:
    """Maps text to ids one character at a time; unknown characters become ``<unk>``."""

    pad_id = 0
    bos_id = 1
    eos_id = 2
    unk_id = 3
    newline_id = 4
    vocab_size = len(SPECIALS) + len(CHARS)  # 100

    def __init__(self) -> None:
        self._ids = {ch: i + len(SPECIALS) for i, ch in enumerate(CHARS)}
        self._chars = {i: ch for ch, i in self._ids.items()}

    def encode(self, text: str, *, bos: bool = True, eos: bool = False) -> list[int]:
        """Token ids for ``text``: optional ``<bos>`` first, optional ``<eos>`` last."""
        unk = self.unk_id
        ids = [self._ids.get(ch, unk) for ch in text]
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids) -> str:
        """Text for ``ids`` (a list or 1-D tensor); special tokens are dropped."""
        chars = self._chars
        return "".join(chars.get(int(i), "") for i in ids)

    def save(self, directory: str | Path) -> None:
        """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json`` into ``directory``.

        ``transformers.AutoTokenizer.from_pretrained(directory)`` then encodes exactly like :meth:`encode`
        (``<bos>`` prepended) and ``decode(ids, skip_special_tokens=True)`` round-trips.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "tokenizer.json").write_text(_hf_tokenizer(self).to_str())
        specials = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"}
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            **specials,
            "add_bos_token": True,
            "add_eos_token": False,
            "clean_up_tokenization_spaces": False,
            # The chat template writes <bos> as text, so HF must match special tokens in text (as every HF chat model
            # does); pass sanitize_control_tokens=True to apply_chat_template to keep a user's "<eos>" plain text.
            "split_special_tokens": False,
            "chat_template": CHAT_TEMPLATE,
            "model_max_length": 1_000_000,
            "padding_side": "left",
        }
        (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
        (directory / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> CharTokenizer:
        """Check that ``directory`` holds this tokenizer's vocabulary and return a CharTokenizer."""
        path = Path(directory) / "tokenizer.json"
        vocab = json.loads(path.read_text())["model"]["vocab"]
        tok = cls()
        expected = {**{s: i for i, s in enumerate(SPECIALS)}, **tok._ids}
        if vocab != expected:
            raise ValueError(f"{path}: vocabulary differs from qstar's CharTokenizer ({len(vocab)} entries)")
        return tok


def render_chat(messages: list[dict], *, bos: str = "", template: str = CHAT_TEMPLATE) -> str:
    """A conversation rendered by ``template`` (default ``CHAT_TEMPLATE``: ``bos`` + the question line + ``"\\n"``)
    as transformers renders it, in jinja's sandbox, with the generation prompt. ValueError for a template that
    cannot render these messages."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    try:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(template).render(messages=messages, bos_token=bos, add_generation_prompt=True)
    except (TemplateError, TypeError, AttributeError) as e:
        raise ValueError(f"the chat template cannot render these messages ({type(e).__name__}: {e})") from None


def _hf_tokenizer(tok: CharTokenizer):
    """A ``tokenizers.Tokenizer``: WordLevel over single characters, ``<bos>`` added by the post-processor."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = {**{s: i for i, s in enumerate(SPECIALS)}, **tok._ids}
    hf = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # Split every character on its own (including spaces and "\n"); no normalizer, so nothing is stripped.
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    hf.decoder = decoders.Fuse()  # concatenate characters, no spaces in between
    hf.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", tok.bos_id)]
    )
    hf.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    return hf
