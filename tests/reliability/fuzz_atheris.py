"""Coverage-guided fuzzing (atheris, libFuzzer) of the two extractor parsers.

    python tests/reliability/fuzz_atheris.py rules [--workdir DIR] [-runs=100000] [-max_len=4096]
    python tests/reliability/fuzz_atheris.py llm   [--workdir DIR] [libFuzzer options ...]

A seed corpus and a token dictionary for the target are written to ``--workdir`` (default: a
new temporary directory); libFuzzer adds the inputs it finds interesting there.

- ``rules``: ``RuleExtractor`` on a turn built from the input (text split into messages of
  varied roles, with or without a speaker name): it must return an ``Extraction`` of valid
  kinds, non-empty content and ``\\w+`` slots, and never raise.
- ``llm``: the input, as the reply text of an OpenAI-compatible model, through
  ``LLMExtractor.extract``: a valid ``Extraction`` (storable text, keys of at most 255
  characters) or an ``AugmentationError`` that carries the raw output; nothing else.

Any other exception or a broken property ends the run with the crashing input written to
``-artifact_prefix`` (libFuzzer's behaviour). ``test_fuzz_extractor.py`` runs both for a bounded
number of inputs; not collected by pytest itself (not ``test_*.py``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

import atheris

with atheris.instrument_imports(include=["memori_core"]):
    from memori_core.augmentation.base import MEMORY_KINDS, Conversation, Extraction
    from memori_core.augmentation.llm import LLMExtractor
    from memori_core.augmentation.rules import RuleExtractor
    from memori_core.errors import AugmentationError

ROLES = ("user", "user", "assistant", "system")
RULES = RuleExtractor()
TURN = Conversation("fuzz", None, [{"id": 1, "role": "user", "content": "I live in Porto"},
                                    {"id": 2, "role": "assistant", "content": "Nice"}])


def text_of(data: bytes) -> str:
    """The input as text, byte for byte: UTF-8, with invalid bytes as lone surrogates (which
    a JSON reply can carry too, as ``\\udc80`` escapes)."""
    return data.decode("utf-8", "surrogateescape")


def check_rules(data: bytes) -> None:
    # "\x1e" separates messages; a first chunk starting with "@" names the speaker
    chunks = text_of(data).split("\x1e")[:8]
    name = chunks.pop(0)[1:] if len(chunks) > 1 and chunks[0].startswith("@") else None
    messages = [{"id": i + 1, "role": ROLES[i % len(ROLES)], "content": chunk,
                 **({"name": name} if name else {})} for i, chunk in enumerate(chunks)]
    extraction = RULES.extract(Conversation("fuzz", None, messages))
    assert isinstance(extraction, Extraction)
    for memory in extraction.memories:
        assert memory.kind in MEMORY_KINDS and memory.kind != "episodic", memory
        assert memory.content.strip(), memory
        assert memory.slot is None or (memory.slot and all(
            c.isalnum() or c == "_" for c in memory.slot)), memory
    for triple in extraction.triples:
        assert triple.subject and triple.predicate.strip(), triple


class _Reply:
    """The parts of an ``openai`` client and response that ``LLMExtractor`` reads."""

    def __init__(self, text: str) -> None:
        message = type("Message", (), {"content": text, "refusal": None})()
        self.choices = [type("Choice", (), {"message": message})()]
        self.chat = type("Chat", (), {"completions": self})()

    def create(self, **_kwargs: Any) -> _Reply:
        return self


def check_llm(data: bytes) -> None:
    raw = text_of(data)
    extractor = LLMExtractor("fuzz", client=_Reply(raw), attempts=1)
    try:
        extraction = extractor.extract(TURN)
    except AugmentationError as exc:
        error = str(exc)
    else:
        error = ""
    if error:
        assert f"raw output: {raw!r}" in error, error
        return
    for memory in extraction.memories:
        assert memory.kind in MEMORY_KINDS and "\x00" not in memory.content, memory
        assert memory.slot is None or len(memory.slot) <= 255, memory
        assert set(memory.source_message_ids) <= {1, 2}, memory
    for triple in extraction.triples:
        assert len(triple.subject) <= 255 and len(triple.predicate) <= 255, triple


TARGETS = {"rules": check_rules, "llm": check_llm}

#: starting inputs: what each parser understands, so mutations start from the interesting part
SEEDS = {
    "rules": ["I live in Lisbon.", "My favorite color is teal", "Goal: sub-25-minute 5K by June.",
              "You are a chef.\x1eI'm allergic to peanuts; I really prefer window seats!",
              "@Ann\x1eYesterday I ran a half marathon. Call me Ann", "I am 42 years old\nMy ' is x"],
    "llm": ['{"memories": [{"content": "The user lives in Porto", "kind": "attribute", '
            '"slot": "lives_in", "source_message_ids": [1]}], "triples": [{"subject": "user", '
            '"predicate": "lives_in", "object": "Porto"}], "process_attributes": ["Role: chef"], '
            '"summary": null}', '{"memories": [], "triples": [], "process_attributes": [], '
            '"summary": "s"}', '{"memories": [{"content": "x", "kind": "fact\\n"}]}'],
}
#: libFuzzer dictionary entries (tokens inserted by mutations)
TOKENS = {
    "rules": ["I ", "I'm ", "my ", "My ", " is ", " live in ", "prefer ", "Goal: ", "You are ",
              "yesterday ", ". ", "? ", "\n", "\x1e", "call me ", " years old", " us", " myself",
              "\u0130", "\u0131", "\u017f", "\u212a"],  # case-folding oddities: İ ı ſ K
    "llm": ['"memories"', '"triples"', '"process_attributes"', '"summary"', '"content"',
            '"kind"', '"slot"', '"source_message_ids"', '"subject"', '"predicate"', '"object"',
            '"fact"', '"preference"', '"skill"', '"attribute"', '"event"', "null", "true",
            "[", "]", "{", "}", ":", ",", '"\\u0000"', '"\\ud800"', "1e400", "-1"],
}


def _escape(token: str) -> str:
    """A dictionary entry's bytes as libFuzzer reads them: printable ASCII, else \\xNN."""
    return "".join(chr(b) if 32 <= b < 127 and chr(b) not in '"\\' else f"\\x{b:02X}"
                   for b in token.encode("utf-8"))


def prepare(target: str, workdir: str) -> list[str]:
    """Write the seed corpus and the dictionary of ``target`` into ``workdir``; returns the
    libFuzzer arguments that use them."""
    corpus = os.path.join(workdir, f"corpus-{target}")
    os.makedirs(corpus, exist_ok=True)
    for i, seed in enumerate(SEEDS[target]):
        with open(os.path.join(corpus, f"seed-{i}"), "w", encoding="utf-8") as f:
            f.write(seed)
    dictionary = os.path.join(workdir, f"{target}.dict")
    with open(dictionary, "w", encoding="utf-8") as f:
        f.writelines(f'"{_escape(token)}"\n' for token in TOKENS[target])
    return [f"-dict={dictionary}", corpus]


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [--workdir DIR] "
                 "[libFuzzer options]")
    target = args.pop(0)
    workdir = None
    if args[:1] == ["--workdir"] and len(args) > 1:
        workdir = args[1]
        args = args[2:]
    workdir = workdir or tempfile.mkdtemp(prefix="memori-atheris-")
    print(f"seed corpus and dictionary in {workdir}", file=sys.stderr)
    atheris.Setup([sys.argv[0], *args, *prepare(target, workdir)], TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
