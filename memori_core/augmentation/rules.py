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
    "Never call me before 9am"        -> preference "The user asks to never call them before 9am"

A message with a ``name`` (a named speaker) uses the name instead of "The user". Questions, and
sentences that are not about the speaker, yield nothing (the episodic memory of the message still
makes it recallable). A system message "You are a ..." becomes a process attribute. What it does
not understand it leaves alone: ``LLMExtractor`` is the one for open-ended extraction.

Only statements that say something on their own are kept: a predicate with an object or a
complement ("lives in Lisbon", "is allergic to peanuts"), not one that leans on the rest of the
turn: a dangling auxiliary ("I will", "I did"), an object that is only a pronoun ("I love it",
"I believe in them"), a verb with only a particle ("I won't give up"), small talk ("I'm good,
thanks"), a clause cut at a comma ("I get it, Jon"), or anything addressed to the listener
("I'm here for you", "I'll let you know"), whose "you" has no referent once the turn is gone.

Each memory is rated by ``rate_importance`` (``ExtractedMemory.importance``, in [0, 1]):
safety and health (allergies, intolerances, conditions, medication, diets, pregnancy,
disabilities) 0.9-1.0, standing instructions 0.8, identity 0.6-0.7, strong preferences 0.4,
everything else 0.
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

__all__ = ["RuleExtractor", "rate_importance"]

_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")
_ADVERBS = ("really", "also", "still", "usually", "always", "often", "sometimes", "currently",
            "now", "mostly", "generally", "actually", "definitely", "absolutely", "totally",
            "just", "recently", "finally", "never", "rarely", "typically", "normally", "even",
            "ever", "already", "probably", "maybe", "kinda", "sorta", "almost", "once", "so",
            "very", "super", "pretty", "quite", "def", "not", "too")
#: words in -ly that are no adverb (any other lower-case one before another word is:
#: "I highly recommend it", "is incredibly proud"; a last one is a complement: "is lonely")
_LY_WORDS = {"apply", "reply", "rely", "supply", "comply", "imply", "multiply", "fly", "ally",
             "bully", "rally", "tally", "sully", "dally", "family", "belly", "jelly", "lily",
             "assembly", "butterfly", "dragonfly", "firefly", "anomaly", "monopoly", "folly",
             "holly", "gully", "july", "italy", "sicily"}
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
#: the lead words kept before an event ("Yesterday the user ran ..."; not "Yes the user did")
_TIME_LEADS = {"yesterday", "today", "tonight", "recently", "lately", "last", "this", "next",
               "week", "month", "year", "weekend", "morning", "night", "earlier"}
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
_MY = re.compile(r"^my (?P<attr>[\w' -]{1,40}?) (?P<verb>is|are|was|were) (?P<value>.+)$", re.I)
_GOAL = re.compile(r"^(?P<attr>goal|target|plan|aim|objective|deadline)\s*:\s*(?P<value>.+)$",
                   re.I)
_PREFER_IMPERATIVE = re.compile(r"^(?P<verb>prefer|avoid)\s+(?P<rest>\S.*)$", re.I)
#: a standing instruction: "Always reply in French", "Please don't call me before 9am"
_INSTRUCTION = re.compile(r"^(?:please,?\s+(?P<please>always|never|(?:don't|do not)(?: ever)?)|"
                          r"(?P<bare>always|never|(?:don't|do not) ever))\s+(?P<rest>\S.*)$",
                          re.I)
_NAME = re.compile(r"^(?:my name is|i am called|i'm called|call me) (?P<o>[\w .'-]{1,60})$",
                   re.I)
_YOU_ARE = re.compile(r"^you are (?P<o>.+)$", re.I)


# ---- what makes a restated statement complete -------------------------------------------------
_BE = {"is", "am", "are", "was", "were", "be", "isn't", "aren't", "wasn't", "weren't"}
_HAVE = {"has", "have", "had"}
#: auxiliaries and modals: no predicate of their own ("I will", "I can't wait" keeps "wait")
_AUXILIARIES = _BE | _HAVE | {
    "been", "being", "having", "hasn't", "haven't", "hadn't", "do", "does", "did",
    "doesn't", "don't", "didn't", "will", "would", "can", "could", "should", "might", "must",
    "may", "shall", "won't", "wouldn't", "can't", "cannot", "couldn't", "shouldn't", "mustn't",
    "gonna", "wanna", "gotta", "going", "used", "get", "gets", "got", "gotten", "getting"}
#: the listener: a memory that names them has no referent once the turn is gone
_SECOND_PERSON = {"you", "your", "yours", "yourself", "yourselves", "you're", "you've",
                  "you'll", "you'd", "ya", "u", "y'all"}
#: pronouns, determiners, prepositions, particles, conjunctions: no object on their own
_FUNCTION = _AUXILIARIES | _SECOND_PERSON | {
    "it", "its", "it's", "itself", "this", "that", "that's", "these", "those", "them", "they",
    "they're", "they've", "they'll", "they'd", "themselves", "their", "theirs", "he", "him",
    "his", "himself", "she", "her", "hers", "herself", "we", "us", "our", "ours", "one", "ones",
    "some", "any", "all", "both", "each", "either", "neither", "other", "others", "another",
    "such", "same", "something", "anything", "everything", "nothing", "someone", "anyone",
    "everyone", "somebody", "anybody", "everybody", "stuff", "what", "which", "who", "whom",
    "whose", "why", "how", "when", "where", "whatever", "a", "an", "the", "no", "every", "much",
    "many", "few", "little", "lot", "lots", "own", "bit", "kind", "sort", "to", "in", "on",
    "at", "for", "of", "with", "about", "from", "by", "up", "down", "out", "off", "over",
    "into", "onto", "through", "back", "around", "along", "away", "forward", "ahead", "again",
    "as", "than", "and", "or", "but", "if", "then", "because", "though", "although",
    "yet", "else", "sometime", "someday", "soon", "later", "anytime", "there", "here",
    "there's", "here's", "thing", "things", "way"}
#: small-talk words: "I'm good", "I couldn't agree more", "I'll do my best", "happy to help"
_FILLER = {"ok", "okay", "alright", "fine", "good", "great", "well", "sure", "glad", "sorry",
           "ready", "nice", "cool", "awesome", "fun", "welcome", "thanks", "thank", "bye",
           "yeah", "yes", "yep", "nope", "lol", "haha", "right", "true", "done", "more", "less",
           "better", "worse", "best", "there", "here"}
#: where a clause ends: what follows a comma, colon, semicolon or dash is another clause
_CLAUSE_END = re.compile(r"\s*(?:[,;:()\u2013\u2014]|\s-+\s|--)")
#: "you" that is the one asked: "I want you to reply in French"
_ASKS_YOU = re.compile(r"\b(?:want|wants|need|needs|like|asks?|prefer|prefers)\s+(?:you|u)\s+to\b",
                       re.I)


def _words(text: str) -> list[str]:
    """Lower-case words of ``text`` without the punctuation around them, an adverb marked
    with a leading ``~`` (see ``_is_adverb``)."""
    out = [w.strip(".,!?;:\"'()[]{}*_~`\u201c\u201d\u2018\u2019") for w in text.split()]
    out = [w for w in out if w]
    return [("~" if _is_adverb(w, i + 1 < len(out)) else "") + w.lower()
            for i, w in enumerate(out)]


def _is_adverb(word: str, followed: bool = True) -> bool:
    """``word`` (as written) is an adverb: a known one, or a lower-case -ly word before another
    word ("highly recommend"; not "Italy", "family", nor a last "lonely")."""
    return word.lower() in _ADVERBS or (
        followed and len(word) > 3 and word.endswith("ly") and word.islower()
        and word not in _LY_WORDS)


def _is_content(word: str) -> bool:
    """A word of ``_words`` that can carry an object or complement: not a pronoun, particle,
    auxiliary, adverb or small-talk word."""
    return (word not in _FUNCTION and word not in _FILLER and not word.startswith("~")
            and any(c.isalnum() for c in word))


def _is_participle(word: str) -> bool:
    return word in _IRREGULAR_PAST or word.endswith(("ed", "en")) or word in (
        "been", "to", "got", "gotten", "done", "gone", "seen", "known", "run", "begun")


def _complete(predicate: str) -> bool:
    """Whether a restated predicate says something on its own (see the module docstring).

    ``predicate`` starts with its verb, restated ("lives in Lisbon", "is allergic to peanuts",
    "will keep you posted"). Judged on its first clause (up to a comma, colon or dash): a form of
    "be" needs a complement ("is excited", "is from Lisbon"; not "is good", "is in it"; "is
    working at Acme" needs its object), any other verb a word besides itself that is not a
    pronoun, particle or small talk ("plays chess"; not "loves it", "won't give up", "will").
    """
    words = _words(predicate)
    if any(w in _SECOND_PERSON for w in words) and not _ASKS_YOU.search(predicate):
        return False
    head = _words(_CLAUSE_END.split(predicate, maxsplit=1)[0])
    if not head:
        return False
    verb, rest = head[0], head[1:]
    if verb in _HAVE and rest[:1] == ["been"]:  # "has been to Jasper", "has been busy"
        verb, rest = "been", rest[1:]
    if verb in _BE or verb == "been":
        first = next((w for w in rest if w[0] != "~" and w not in ("a", "an", "the")), None)
        if first is None or first in _FILLER:
            return False
        if first.endswith("ing") or first in ("gonna", "going", "gotta"):
            return sum(map(_is_content, rest)) >= 2  # progressive: "is working at Acme"
        return any(map(_is_content, rest))
    if verb in _HAVE:  # "has a dog" (the verb), "has been running" (an auxiliary)
        following = next((w for w in rest if w[0] != "~"), "")
        main = not _is_participle(following)
    else:  # a modal or "doesn't" is no predicate; "does", "did", "gets" as said are
        main = verb not in _AUXILIARIES or verb in ("does", "did", "do", "gets", "got", "get")
    if main + sum(map(_is_content, rest)) >= 2:
        return True
    # a pastime says something on its own: "I sing", "I can swim"
    return any(w in _PASTIMES or w[:-1] in _PASTIMES or w[:-2] in _PASTIMES for w in head)


#: verbs that need no object to say what the speaker does
_PASTIMES = {"code", "program", "cook", "bake", "paint", "draw", "sing", "swim", "knit", "sew",
             "dance", "surf", "ski", "skate", "climb", "hike", "cycle", "jog", "run", "row",
             "fish", "garden", "meditate", "volunteer", "compose", "sculpt"}
#: words that start no instruction: "Never mind", "Always happy to help", and what a speaker
#: feels (a statement without its "I": "Always love having fun")
_NOT_IMPERATIVE = _VERB_KIND["preference"] | {
    "mind", "ever", "been", "feel", "think", "hope", "wish", "happy", "excited", "proud",
    "grateful", "thankful", "busy", "lucky", "down", "worth", "amazing", "interested"}


def _verb_like(word: str) -> bool:
    """The first word of an imperative: "reply", "call", "use" (not "here", "mind", "love")."""
    return word == "be" or (word.isalpha() and _is_content(word) and word not in _NOT_IMPERATIVE
                            and not word.endswith(("ing", "ed"))
                            and (not word.endswith("s") or word.endswith("ss"))  # "raises"
                            and word not in _IRREGULAR_PAST)


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
               "be": "is", "wanna": "wants to", "gotta": "has to"}
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
    agree = {"am": "are", "was": "were", "wasn't": "weren't"}  # "I was" -> "they were"
    text = re.sub(r"\b[iI] (am|was|wasn't)\b", lambda m: f"they {agree[m.group(1)]}", text)
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
    if (m := _MY.match(s)) and (key := _slot_key(m.group("attr").lower().strip())) and \
            "i" not in _words(m.group("attr")):  # "My husband and I are": about both
        # (a key is needed: "My ' is x" names no attribute, so it is not this statement)
        attr = m.group("attr").strip()  # as said: "My son Leo is 5"
        kind = "preference" if attr.lower().startswith(("favorite", "favourite")) else \
            "attribute"
        said = f"{m.group('verb').lower()} {_pronouns(m.group('value'))}"
        if not _complete(said):  # "My favorite is this one"
            return None
        return _Restated(f"{{S'}} {attr} {said}", kind, key, (key, m.group("value")))
    if m := _INSTRUCTION.match(s):
        how = (m.group("please") or m.group("bare")).lower()
        how = {"always": "always", "don't": "not", "do not": "not"}.get(how, "never")
        rest = _pronouns(m.group("rest"))
        first = _words(rest)[:1]
        if not first or not _verb_like(first[0]) or not _complete(rest):
            return None  # "Never mind", "Always here to help", "Never give up"
        return _Restated(f"{{S}} asks to {how} {rest}", "preference", None, None)
    if m := _PREFER_IMPERATIVE.match(s):
        verb = m.group("verb").lower()
        said = f"{verb}s {_pronouns(m.group('rest'))}"
        if not _complete(said):
            return None
        return _Restated(f"{{S}} {said}", "preference", None,
                         ("likes" if verb == "prefer" else "dislikes", m.group("rest")))
    words = s.split()
    lower = [w.lower() for w in words]
    if not lower:
        return None
    # strip a leading time or discourse phrase: "Yesterday I ran", "Currently I run", "So I ..."
    for i, w in enumerate(lower[:4]):
        if i and not all(x.strip(",") in _LEAD_WORDS for x in lower[:i]):
            return None  # "the first thing I said": not a statement about the speaker
        if w in ("i", "i'm", "i've", "i'd", "i'll"):
            lead = " ".join(x.strip(",") for x in words[:i] if x.lower().strip(",") in _TIME_LEADS)
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
    while rest_lower and _is_adverb(rest_words[0]):
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
    if lemma in ("think", "guess", "mean", "hope", "bet", "feel", "see", "know", "appreciate",
                 "agree", "suppose", "wonder") and \
            verb == lemma and not tail.lower().startswith(("how ", "to ")):
        return None  # "I think so", "I see", "I know, right": opinions of the moment
    if not _complete(" ".join(p for p in (restated, tail) if p)):
        return None  # "I will", "I love it", "I'm here for you": a piece of the turn
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


# ---- importance ----------------------------------------------------------------------------------
_DIETS = (r"(?:vegetarian|vegan|pescatarian|halal|kosher|(?:gluten|dairy|lactose|nut|sugar)"
          r"[- ]free)")
#: (importance, pattern): the highest that matches is the rating
_IMPORTANCE: list[tuple[float, re.Pattern[str]]] = [
    (1.0, re.compile(r"\b(?:allerg\w*|anaphyla\w*|epi-?pens?)\b", re.I)),
    (0.9, re.compile(
        r"\b(?:intoleran\w*|c(?:o)?eliac|diabet\w*|insulin|asthma\w*|inhalers?|epilep\w*|"
        r"seizures?|medications?|meds|prescri(?:bed|ptions?)|diagnosed|chronic|disorders?|"
        r"disabilit\w*|disabled|wheelchairs?|deaf|(?:legally |partially |colou?r[- ]?)?blind"
        r"(?! date| spot)|pregnan\w*|expecting a baby|heart condition|blood pressure|"
        r"hypertension|cancer|chemo\w*|dementia|autis\w*|adhd|dyslexi\w*|migraines?|"
        r"medical condition|pacemaker)\b"
        # dietary restrictions: "is vegan", "eats only halal", "a gluten-free diet", "doesn't
        # eat meat"
        rf"|\b(?:is|am|'m|are|was|being|went|gone|became|eats?|eating|keeps?|follows?)\s+"
        rf"(?:(?:an?|strictly|strict|only|mostly)\s+)*{_DIETS}\b|\b{_DIETS}\s+diet\b"
        r"|\b(?:doesn't|does not|don't|do not|can't|cannot|can not|never|won't|mustn't|"
        r"must not)\s+(?:eat|drink)\s+\w", re.I)),
    # standing instructions: at the start, after a colon or "please", or asked for
    (0.8, re.compile(
        r"(?:^|[:;]\s*|\bplease,?\s+|\b(?:asks?|asked|wants?|would like|needs?|told\s+\w+)"
        r"\s+to\s+)(?:always|never|(?:do not|don't|not) ever|from now on)\b"
        r"|\bplease,?\s+(?:don't|do not)\b|\basks? to not\b", re.I)),
    # identity: name, pronouns (0.7); where they live, age, occupation, family names (0.6)
    (0.7, re.compile(r"\b(?:name is|names are|(?:is|am|'m|are) called|call (?:me|them|him|her)"
                     r"|goes by|pronouns|she/her|he/him|they/them)\b", re.I)),
    (0.6, re.compile(
        r"(?i:\b(?:lives? in|living in|moved to|relocated to|(?:is|am|'m|are|comes?) from|"
        r"grew up in|born (?:in|on)|hometown|years? old|age is|birthday is|"
        r"(?:works?|working) (?:as|at|for)\s+(?!(?:it|that|this|them|everyone|everybody|me|you|us|"
        r"him|her)\b)|job is|occupation|profession|employed|retired|nationality|"
        r"citizen of|(?:is|am|'m) an? (?:\w+ )?(?:teacher|nurse|doctor|engineer|developer|"
        r"programmer|lawyer|student|designer|writer|artist|chef|accountant|manager|scientist|"
        r"researcher|photographer|musician|pilot|firefighter|police officer|consultant|"
        r"architect|pharmacist|dentist|therapist|farmer|mechanic|electrician|plumber|"
        r"carpenter|veteran|soldier|freelancer|entrepreneur|professor|journalist|librarian|"
        r"paramedic)s?)\b)"
        # a family member's name: "their son Leo", "their wife's name is Ana"
        r"|(?i:\b(?:wife|husband|partner|spouse|sons?|daughters?|kids?|children|child|baby|"
        r"mom|mum|mother|dad|father|parents|brothers?|sisters?|siblings?|girlfriend|boyfriend|"
        r"fianc[eé]e?|grandma|grandmother|grandpa|grandfather|grandson|granddaughter|aunt|"
        r"uncle|cousin|niece|nephew|twins?)(?:'s)?(?:\s+name)?\s+(?:(?:is|are|was|named|"
        r"called)\s+)*)[A-Z][a-z]+")),
    (0.4, re.compile(r"\b(?:loves?|loved|adores?|adored|hates?|hated|detests?|despises?|"
                     r"loathes?|(?:can't|cannot|can not|couldn't) stand)\b", re.I)),
]


def rate_importance(text: str, kind: str) -> float:
    """How much it matters that a memory is never missed, from its text alone.

    The same rating ``RuleExtractor`` gives its memories and ``Memori.remember`` gives by
    default. It reads third-person memories ("The user is allergic to peanuts") and
    first-person text ("Never call me before 9am") alike.

    Args:
        text: the memory's content.
        kind: its kind (``MEMORY_KINDS``); ``episodic`` memories are always 0.

    Returns:
        importance in [0, 1]: 1.0 allergies; 0.9 other safety and health (intolerances,
        medical conditions, medication, dietary restrictions such as vegetarian, vegan, halal,
        kosher or gluten-free, pregnancy, disabilities); 0.8 standing instructions ("never
        ...", "always ...", "don't ever ...", "please always ..."); 0.7 name and pronouns;
        0.6 where they live or are from, age, occupation, family members' names; 0.4 strong
        preferences (love, hate, can't stand); 0 anything else.
    """
    if kind == "episodic":
        return 0.0
    return next((score for score, pattern in _IMPORTANCE if pattern.search(text)), 0.0)


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
                out.memories.append(ExtractedMemory(
                    content, r.kind, (message["id"],), r.slot,
                    importance=rate_importance(content, r.kind)))
                if r.triple is not None:
                    who = str(message.get("name") or "user")
                    out.triples.append(Triple(who, r.triple[0], r.triple[1]))
        return out
