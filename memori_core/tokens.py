"""The BM25 terms of a text, shared by the in-process index (``recall/lexical.py``) and the
postings packed with each entity's vectors (``storage/packed.py``), so both score the same
terms.

Tokens are lower-cased word characters minus a short English stopword list, reduced to their
Snowball (Porter 2) English stem by PyStemmer ("running", "runs" -> "run"). ``term_hash`` is a
term's stable 64-bit hash (BLAKE2b), the same in every process: what the packed postings are
keyed by.
"""

from __future__ import annotations

import hashlib
import re
import threading

import Stemmer

__all__ = ["query_terms", "term_hash", "tokenize"]

_WORD = re.compile(r"\w+", re.UNICODE)
_STOP = frozenset("""
a an the and or but if of to in on at for with from by is are was were be been being am i you he
she it we they me him her us them my your his its our their this that these those do does did
have has had not no so as what when where who whom which how why can could would should will
just than then there here about into over also very really too s t m re ve ll d
""".split())

_local = threading.local()  # a PyStemmer Stemmer (with its cache) is not shared across threads


def _stemmer() -> Stemmer.Stemmer:
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


def tokenize(text: str, stem: bool = True) -> list[str]:
    """Lower-cased word tokens without stopwords, stemmed unless ``stem`` is False: what BM25
    matches on."""
    words = [w for w in _WORD.findall(text.lower()) if w not in _STOP]
    return _stemmer().stemWords(words) if stem and words else words


def query_terms(query: str, stem: bool = True) -> list[str]:
    """The distinct BM25 terms of ``query`` (``tokenize``), in first-seen order."""
    return list(dict.fromkeys(tokenize(query, stem)))


def term_hash(term: str) -> int:
    """A term's stable signed 64-bit hash: the first 8 bytes of its UTF-8 BLAKE2b digest,
    little-endian."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=8).digest(),
                          "little", signed=True)
