"""BM25 over one entity's memories, kept next to its vector index.

Okapi BM25 (k1 = 1.2, b = 0.75; Robertson & Zaragoza, "The Probabilistic Relevance Framework:
BM25 and Beyond", 2009). Terms are ``memori_core.tokens``' (lower-cased words minus stopwords,
Snowball-stemmed), hashed to 64-bit ints so an index holds no per-entity vocabulary;
postings are three flat numpy arrays sorted by token hash (16 bytes per posting), so a query
term is two binary searches and a vectorised slice. Rows are appended incrementally; the sort happens on the next search.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from memori_core.tokens import query_terms, tokenize

__all__ = ["BM25Index", "idf", "length_norm", "mean_length", "query_terms", "saturate",
           "score_postings", "score_texts", "term_counts", "tokenize"]

K1 = 1.2
B = 0.75


def idf(rows: int, df: int | np.ndarray) -> float | np.ndarray:
    """BM25's inverse document frequency of a term held by ``df`` of ``rows`` rows."""
    return np.log1p((rows - df + 0.5) / (df + 0.5))


def length_norm(lengths: np.ndarray, avg: float) -> np.ndarray:
    """BM25's length normalisation ``K1 * (1 - B + B * len / avg len)`` of rows of
    ``lengths`` tokens (float32 array), ``avg`` their corpus' mean length (0: taken as 1)."""
    return K1 * (1 - B + B * lengths / (avg or 1.0))


def mean_length(lengths: np.ndarray) -> float:
    """BM25's mean length of rows of ``lengths`` tokens (float32 array): the mean over the rows
    that hold text (1.0 when none does)."""
    filled = lengths[lengths > 0]
    return float(filled.mean()) if len(filled) else 1.0


def score_postings(lengths: np.ndarray, postings: Mapping[str, tuple[np.ndarray, np.ndarray]]
                   ) -> np.ndarray:
    """BM25 of every row of a corpus of rows of ``lengths`` tokens (float32 array, shape (n,))
    for the query terms whose postings are given: term -> (the rows holding it, int64 array;
    its count in each, float32 array; each row once): what ``BM25Index.scores`` gives for that
    corpus. For a corpus whose postings are in a database (``storage/packed.py``).

    Returns:
        float32 array, shape (n,); 0 where no term occurs.
    """
    out = np.zeros(len(lengths), dtype=np.float32)
    norm = length_norm(lengths, mean_length(lengths))
    for rows, tf in postings.values():
        if len(rows):
            out[rows] += idf(len(lengths), len(rows)) * saturate(tf, norm[rows])
    return out


def saturate(tf: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """BM25's term-frequency saturation ``tf * (K1 + 1) / (tf + norm)`` (``length_norm``)."""
    return tf * (K1 + 1) / (tf + norm)


def term_counts(texts: Sequence[str], stem: bool = True) -> list[Counter[str]]:
    """Each text's BM25 terms (``tokenize``) and how often it holds each: a row's length is
    the sum of its counts."""
    return [Counter(tokenize(t, stem)) for t in texts]


def score_texts(texts: Sequence[str] | Sequence[Counter[str]], terms: Sequence[str], rows: int,
                avg: float, df: Mapping[str, int], stem: bool = True) -> np.ndarray:
    """BM25 of each of ``texts`` (or their ``term_counts``) for the query ``terms``
    (``query_terms``) as rows of a corpus of ``rows`` rows of mean length ``avg`` tokens in
    which term ``t`` occurs in ``df[t]`` rows (missing or fewer than the texts holding it:
    those): what ``BM25Index.scores`` gives those rows of that corpus. For a pool of rows whose
    corpus is in a database (recall's candidate path).

    Returns:
        float32 array, shape (len(texts),); 0 where no term occurs.
    """
    out = np.zeros(len(texts), dtype=np.float32)
    if not terms or not texts:
        return out
    counts = [t if isinstance(t, Counter) else Counter(tokenize(t, stem)) for t in texts]
    norm = length_norm(np.asarray([sum(c.values()) for c in counts], dtype=np.float32), avg)
    for term in terms:
        tf = np.asarray([c.get(term, 0) for c in counts], dtype=np.float32)
        held = tf > 0
        if not held.any():
            continue
        n = max(int(df.get(term, 0)), int(held.sum()))
        out[held] += idf(rows, n) * saturate(tf[held], norm[held])
    return out


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
            self._norm = length_norm(self._doc_len, mean_length(self._doc_len))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for ``query``: float32 array, shape (rows,); 0 where no
        query term occurs."""
        self._merge()
        out = np.zeros(self.rows, dtype=np.float32)
        terms = query_terms(query, self._stem)
        if not terms or self.rows == 0:
            return out
        norm = self._norm
        for h in _hashes(terms):
            lo, hi = np.searchsorted(self._tok, [h, h + 1]) if h < np.iinfo(np.int64).max \
                else (np.searchsorted(self._tok, h), len(self._tok))
            if hi <= lo:
                continue
            rows, tf = self._row[lo:hi], self._tf[lo:hi]
            out[rows] += idf(self.rows, hi - lo) * saturate(tf, norm[rows])
        return out
