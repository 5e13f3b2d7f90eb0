"""BM25 over one entity's memories, kept next to its vector index.

Okapi BM25 (k1 = 1.2, b = 0.75; Robertson & Zaragoza, "The Probabilistic Relevance Framework:
BM25 and Beyond", 2009). Tokens are lower-cased word characters minus a short English stopword
list, reduced to their Snowball (Porter 2) English stem by PyStemmer ("running", "runs" ->
"run"), hashed to 64-bit ints so an index holds no per-entity vocabulary; postings are three flat
numpy arrays sorted by token hash (16 bytes per posting), so a query term is two binary searches
and a vectorised slice. Rows are appended incrementally; the sort happens on the next search.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Sequence

import numpy as np
import Stemmer

__all__ = ["BM25Index", "tokenize"]

_WORD = re.compile(r"\w+", re.UNICODE)
_STOP = frozenset("""
a an the and or but if of to in on at for with from by is are was were be been being am i you he
she it we they me him her us them my your his its our their this that these those do does did
have has had not no so as what when where who whom which how why can could would should will
just than then there here about into over also very really too s t m re ve ll d
""".split())

K1 = 1.2
B = 0.75


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


def _hashes(tokens: Sequence[str]) -> np.ndarray:
    # Python's str hash is salted per process; the index lives in this process only
    return np.fromiter((hash(t) for t in tokens), dtype=np.int64, count=len(tokens))


class BM25Index:
    """Postings of the rows of one entity index, addressed by row position (0..n-1).

    Not thread-safe: ``EntityIndex`` holds its lock around every call.
    """

    def __init__(self, stem: bool = True) -> None:
        self._stem = stem
        self._tok = np.empty(0, dtype=np.int64)
        self._row = np.empty(0, dtype=np.int32)
        self._tf = np.empty(0, dtype=np.float32)
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._lengths: list[np.ndarray] = []
        self._set_lengths: dict[int, int] = {}  # rows given their text later (``add_to``)
        self._doc_len = np.empty(0, dtype=np.float32)
        self._norm = np.empty(0, dtype=np.float32)  # K1 * (1 - B + B * len / avg len), per row
        self.rows = 0

    @property
    def nbytes(self) -> int:
        """Resident size in bytes of postings and lengths."""
        pending = sum(a.nbytes + b.nbytes + c.nbytes for a, b, c in self._pending)
        return (self._tok.nbytes + self._row.nbytes + self._tf.nbytes + pending
                + 8 * self.rows)  # lengths and norms, float32 each

    def add(self, texts: Sequence[str]) -> None:
        """Append rows ``self.rows .. self.rows + len(texts) - 1``."""
        toks: list[str] = []
        rows: list[int] = []
        tfs: list[int] = []
        lengths: list[int] = []
        for i, text in enumerate(texts):
            counts = Counter(tokenize(text, self._stem))
            lengths.append(sum(counts.values()))
            toks.extend(counts)
            rows.extend([self.rows + i] * len(counts))
            tfs.extend(counts.values())
        if toks:
            self._pending.append((_hashes(toks), np.asarray(rows, dtype=np.int32),
                                  np.asarray(tfs, dtype=np.float32)))
        self._lengths.append(np.asarray(lengths, dtype=np.float32))
        self.rows += len(texts)

    def add_to(self, row: int, text: str) -> None:
        """Index ``text`` as the text of row ``row`` (``0 <= row < rows``), which holds none
        yet: a field filled after its row was added (the reply to a turn)."""
        counts = Counter(tokenize(text, self._stem))
        if counts:
            self._pending.append((_hashes(list(counts)),
                                  np.full(len(counts), row, dtype=np.int32),
                                  np.asarray(list(counts.values()), dtype=np.float32)))
        self._set_lengths[row] = sum(counts.values())

    def _merge(self) -> None:
        if self._pending:
            tok = np.concatenate([self._tok, *(p[0] for p in self._pending)])
            row = np.concatenate([self._row, *(p[1] for p in self._pending)])
            tf = np.concatenate([self._tf, *(p[2] for p in self._pending)])
            order = np.argsort(tok, kind="stable")
            self._tok, self._row, self._tf = tok[order], row[order], tf[order]
            self._pending = []
        if self._lengths or self._set_lengths:
            self._doc_len = np.concatenate([self._doc_len, *self._lengths])
            self._lengths = []
            for at, n in self._set_lengths.items():
                self._doc_len[at] = n
            self._set_lengths = {}
            filled = self._doc_len[self._doc_len > 0]  # the mean over rows that hold text
            avg = float(filled.mean()) if len(filled) else 1.0
            self._norm = K1 * (1 - B + B * self._doc_len / (avg or 1.0))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for ``query``: float32 array, shape (rows,); 0 where no
        query term occurs."""
        self._merge()
        out = np.zeros(self.rows, dtype=np.float32)
        terms = list(dict.fromkeys(tokenize(query, self._stem)))
        if not terms or self.rows == 0:
            return out
        norm = self._norm
        for h in _hashes(terms):
            lo, hi = np.searchsorted(self._tok, [h, h + 1]) if h < np.iinfo(np.int64).max \
                else (np.searchsorted(self._tok, h), len(self._tok))
            if hi <= lo:
                continue
            rows, tf = self._row[lo:hi], self._tf[lo:hi]
            df = hi - lo
            idf = np.log1p((self.rows - df + 0.5) / (df + 0.5))
            out[rows] += idf * tf * (K1 + 1) / (tf + norm[rows])
        return out
