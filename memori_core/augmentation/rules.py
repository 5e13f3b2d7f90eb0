"""``RuleExtractor``: the offline default extractor. Deterministic, no network, no model.

It reads the user's first-person statements and restates them in the third person, classified
by kind, with a slot where a newer value should replace an older one, and simple triples:

    "I live in Lisbon."               -> attribute  "The user lives in Lisbon"   slot lives_in
                                         triple     (user, lives_in, Lisbon)
    "I prefer window seats"           -> preference "The user prefers window seats"
    "I use Python and Rust"           -> skill      "The user uses Python and Rust"
    "I ran a half marathon last May"  -> event      "The user ran a half marathon last May"
    "My favorite color is teal"       -> preference "The user's favorite color is teal"
                                         slot favorite_color
    "Goal: sub-25-minute 5K by June." -> fact       "The user's goal: sub-25-minute 5K by June"
                                         slot goal

A message with a ``name`` (a named speaker) uses the name instead of "The user". Questions, and
sentences that are not about the speaker, yield nothing (the episodic memory of the message still
makes it recallable). A system message "You are a ..." becomes a process attribute. What it does
not understand it leaves alone: ``LLMExtractor`` is the one for open-ended extraction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from memori_core.augmentation.base import (
    Conversation,
    ExtractedMemory,
    Extraction,
    Triple,
    message_text,
)

__all__ = ["RuleExtractor"]

_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")
_ADVERBS = ("really", "also", "still", "usually", "always", "often", "sometimes", "currently",
            "now", "mostly", "generally", "actually", "definitely", "absolutely", "totally",
            "just", "recently", "finally", "never", "rarely", "typically", "normally")
_MODALS = {"can", "could", "will", "would", "should", "might", "must", "may", "shall",
           "can't", "cannot", "won't", "wouldn't", "couldn't", "shouldn't", "didn't", "wasn't",
           "used"}
_IRREGULAR_PAST = {
    "went", "ran", "saw", "got", "made", "took", "bought", "met", "had", "did", "came", "began",
    "became", "found", "gave", "left", "lost", "won", "wrote", "sang", "swam", "drove", "flew",
    "ate", "drank", "read", "spent", "sold", "told", "thought", "felt", "kept", "built", "sent",
    "taught", "caught", "brought", "fought", "held", "heard", "paid", "quit", "rode", "broke",
    "chose", "forgot", "grew", "knew", "threw", "woke", "wore", "was", "adopted", "moved",
    "said", "put", "let", "set", "cut", "hit", "hurt", "shut", "understood", "stood",
    "sat", "slept", "meant", "dreamt", "learnt", "spoke", "fell", "forgave", "hid", "lent",
}
#: words that may come before "I" in a statement ("Yesterday I ran", "So, I ...")
_LEAD_WORDS = {"yesterday", "today", "tonight", "currently", "now", "so", "well", "also", "and",
               "but", "recently", "lately", "last", "this", "next", "week", "month", "year",
               "weekend", "morning", "night", "then", "honestly", "actually", "oh", "yes",
               "yeah", "no", "btw", "anyway", "usually", "sometimes", "finally", "earlier"}
_VERB_KIND = {
    "preference": {"like", "love", "enjoy", "prefer", "adore", "hate", "dislike", "detest",
                   "want", "wish", "favor", "favour", "fancy", "crave", "avoid"},
    "skill": {"use", "speak", "code", "program", "know", "play", "cook", "write", "build",
              "develop", "design", "teach", "practice", "practise", "study", "learn", "paint",
              "draw", "sing", "swim", "drive", "knit", "bake"},
    "attribute": {"live", "work", "am", "have", "own", "come", "belong", "weigh", "stand",
                  "suffer", "need", "run"},
}
_SLOT_PATTERNS: list[tuple[re.Pattern[str], str | None, str]] = [
    # (pattern on the restated predicate, slot, triple predicate)
    (re.compile(r"^(?:lives|is living|live) in (?P<o>.+)$"), "lives_in", "lives_in"),
    (re.compile(r"^(?:moved|relocated) to (?P<o>.+)$"), "lives_in", "lives_in"),
    (re.compile(r"^(?:works|is working) (?:at|for) (?P<o>.+)$"), "works_at", "works_at"),
    (re.compile(r"^works as (?:an? )?(?P<o>.+)$"), "occupation", "occupation"),
    (re.compile(r"^is from (?P<o>.+)$"), "from", "from"),
    (re.compile(r"^comes from (?P<o>.+)$"), "from", "from"),
    (re.compile(r"^is (?P<o>\d{1,3}) years? old$"), "age", "age"),
    (re.compile(r"^is allergic to (?P<o>.+)$"), None, "allergic_to"),
    (re.compile(r"^(?:likes|loves|enjoys|prefers|adores) (?P<o>.+)$"), None, "likes"),
    (re.compile(r"^(?:dislikes|hates|detests|avoids) (?P<o>.+)$"), None, "dislikes"),
    (re.compile(r"^(?:uses|speaks|plays|knows) (?P<o>.+)$"), None, "uses"),
    (re.compile(r"^(?:has|owns) (?P<o>an? .+)$"), None, "has"),
]
_MY = re.compile(r"^my (?P<attr>[\w' -]{1,40}?) (?:is|are|was) (?P<value>.+)$", re.I)
_GOAL = re.compile(r"^(?P<attr>goal|target|plan|aim|objective|deadline)\s*:\s*(?P<value>.+)$",
                   re.I)
_PREFER_IMPERATIVE = re.compile(r"^(?:prefer|avoid|no|always|never)\b", re.I)
_NAME = re.compile(r"^(?:my name is|i am called|i'm called|call me) (?P<o>[\w .'-]{1,60})$",
                   re.I)
_YOU_ARE = re.compile(r"^you are (?P<o>.+)$", re.I)


@dataclass(frozen=True)
class _Restated:
    text: str
    kind: str
    slot: str | None
    triple: tuple[str, str] | None  # (predicate, object)


def _sentences(text: str) -> list[str]:
    return [s.strip().strip("\"'").strip() for s in _SENTENCE.split(text) if s.strip()]


def _third_person(verb: str) -> str:
    """Present-tense third person singular of a verb: use -> uses, study -> studies."""
    special = {"am": "is", "'m": "is", "have": "has", "'ve": "has", "do": "does", "go": "goes",
               "be": "is"}
    if verb in special:
        return special[verb]
    if re.search(r"(s|sh|ch|x|z|o)$", verb):
        return verb + "es"
    if re.search(r"[^aeiou]y$", verb):
        return verb[:-1] + "ies"
    return verb + "s"


def _pronouns(text: str) -> str:
    """Second half of a restated sentence: my -> their, me -> them, myself -> themselves."""
    swaps = {"my": "their", "me": "them", "myself": "themselves", "mine": "theirs",
             "i": "they", "i'm": "they're", "i've": "they've", "i'll": "they'll",
             "i'd": "they'd", "we": "they", "our": "their", "us": "them"}
    return re.sub(r"\b(my|me|myself|mine|i'm|i've|i'll|i'd|i|we|our|us)\b",
                  # re.I also matches "İ" for "i" and "ſ" for "s": those are left as they are
                  lambda m: swaps.get(m.group(1).lower(), m.group(1)), text, flags=re.I)


def _kind_of(verb: str, past: bool, lemma: str) -> str:
    if past:
        return "event"
    for kind, verbs in _VERB_KIND.items():
        if lemma in verbs or verb in verbs:
            return kind
    return "fact"


def _lemma(verb: str) -> str:
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", "")):
        if verb.endswith(suffix) and len(verb) > len(suffix) + 2:
            return verb[: -len(suffix)] + repl
    return verb


def _slot_key(attr: str) -> str:
    """``favorite color`` -> ``favorite_color``; empty when ``attr`` has no word."""
    return re.sub(r"[^\w]+", "_", attr).strip("_")


def _restate(sentence: str) -> _Restated | None:
    """One first-person sentence in the third person (subject left as ``{S}``), or None."""
    s = sentence.rstrip(".!;").strip()
    if not s or s.endswith("?") or len(s) > 400:
        return None
    if m := _GOAL.match(s):
        attr = m.group("attr").lower()
        return _Restated(f"{{S'}} {attr}: {m.group('value')}", "fact", attr,
                         (attr, m.group("value")))
    if m := _NAME.match(s):
        return _Restated(f"{{S'}} name is {m.group('o')}", "attribute", "name",
                         ("name", m.group("o")))
    if (m := _MY.match(s)) and (key := _slot_key(m.group("attr").lower().strip())):
        # (a key is needed: "My ' is x" names no attribute, so it is not this statement)
        attr = m.group("attr").lower().strip()
        kind = "preference" if attr.startswith(("favorite", "favourite")) else "attribute"
        return _Restated(f"{{S'}} {attr} is {_pronouns(m.group('value'))}", kind, key,
                         (key, m.group("value")))
    if _PREFER_IMPERATIVE.match(s) and not s.lower().startswith(("no ", "never ")) or \
            s.lower().startswith("prefer "):
        rest = s.split(" ", 1)[1] if " " in s else ""
        verb = s.split(" ", 1)[0].lower()
        if rest and verb in ("prefer", "avoid", "always", "never"):
            said = {"prefer": "prefers", "avoid": "avoids", "always": "always", "never": "never"}
            return _Restated(f"{{S}} {said[verb]} {_pronouns(rest)}", "preference", None,
                             (("likes" if verb == "prefer" else "dislikes"), rest)
                             if verb in ("prefer", "avoid") else None)
    words = s.split()
    lower = [w.lower() for w in words]
    if not lower:
        return None
    # strip a leading time or discourse phrase: "Yesterday I ran", "Currently I run", "So I ..."
    for i, w in enumerate(lower[:4]):
        if i and not all(x.strip(",") in _LEAD_WORDS for x in lower[:i]):
            return None  # "the first thing I said": not a statement about the speaker
        if w in ("i", "i'm", "i've", "i'd", "i'll"):
            lead = " ".join(words[:i]).rstrip(",")
            words, lower = words[i:], lower[i:]
            break
    else:
        return None
    head = lower[0]
    rest_words = words[1:]
    rest_lower = lower[1:]
    if head in ("i'm", "i've", "i'd", "i'll"):
        aux = {"i'm": "is", "i've": "has", "i'd": "would", "i'll": "will"}[head]
        rest_words = [aux, *rest_words]
        rest_lower = [aux, *rest_lower]
    if not rest_lower:
        return None
    adverbs = []
    while rest_lower and rest_lower[0] in _ADVERBS:
        adverbs.append(rest_words[0])
        rest_words, rest_lower = rest_words[1:], rest_lower[1:]
    if not rest_lower:
        return None
    verb = rest_lower[0]
    tail = _pronouns(" ".join(rest_words[1:]))
    if verb in ("is", "has", "would", "will"):  # from a contraction, already restated
        restated, past, lemma = verb, False, {"is": "am", "has": "have"}.get(verb, verb)
        if verb == "is" and rest_lower[1:2] and rest_lower[1].endswith("ing"):
            lemma = rest_lower[1][:-3]
    elif verb == "don't":
        restated, past = "doesn't", False
        lemma = rest_lower[1] if len(rest_lower) > 1 else verb
    elif verb in _MODALS:
        restated, past, lemma = verb, verb in ("didn't", "wasn't", "used", "could"), (
            rest_lower[1] if len(rest_lower) > 1 else verb)
    elif verb in _IRREGULAR_PAST or (verb.endswith("ed") and len(verb) > 4):
        restated, past, lemma = verb, True, verb
    elif verb.isalpha():
        restated, past, lemma = _third_person(verb), False, verb
    else:
        return None
    if lemma in ("think", "guess", "mean", "hope", "bet", "feel", "see", "know") and \
            verb == lemma and not tail.lower().startswith(("how ", "to ")):
        return None  # "I think so", "I see", "I know, right": opinions of the moment
    kind = _kind_of(verb, past, _lemma(lemma))
    if lemma in ("am", "is") and tail.lower().startswith(("a ", "an ")):
        kind = "attribute"
    phrase = " ".join(p for p in (*adverbs, restated, tail) if p)
    when = f"{lead} " if lead and past else ""
    body = phrase[0].lower() + phrase[1:] if phrase else phrase
    slot: str | None = None
    triple: tuple[str, str] | None = None
    core = " ".join(p for p in (restated, tail) if p).lower()
    for pattern, slot_name, predicate in _SLOT_PATTERNS:
        m = pattern.match(core)
        if m:
            slot, triple = slot_name, (predicate, m.group("o").strip())
            break
    text = f"{{S}} {body}" if not when else f"{when[0].upper()}{when[1:]}{{s}} {body}"
    return _Restated(text, kind, slot, triple)


class RuleExtractor:
    """The offline default extractor (see the module docstring for what it understands).

    Deterministic: the same turn always gives the same memories. Reads only user messages (and
    a system message's "You are ..." as a process attribute); returns no summary.
    """

    def extract(self, conversation: Conversation) -> Extraction:
        """Memories, triples and process attributes of one turn.

        Returns:
            an ``Extraction``; empty when nothing in the turn is a first-person statement.
        """
        out = Extraction()
        for message in conversation.messages:
            text = message_text(message)
            if not text:
                continue
            if message["role"] == "system":
                for sentence in _sentences(text)[:1]:
                    if m := _YOU_ARE.match(sentence.rstrip(".")):
                        out.process_attributes.append(f"Role: {m.group('o')}")
                continue
            if message["role"] != "user":
                continue
            subject = str(message.get("name") or "The user")
            for sentence in _sentences(text):
                r = _restate(sentence)
                if r is None:
                    continue
                content = (r.text.replace("{S'}", f"{subject}'s")
                           .replace("{S}", subject)
                           .replace("{s}", subject if message.get("name") else "the user"))
                out.memories.append(ExtractedMemory(content, r.kind, (message["id"],), r.slot))
                if r.triple is not None:
                    who = str(message.get("name") or "user")
                    out.triples.append(Triple(who, r.triple[0], r.triple[1]))
        return out
