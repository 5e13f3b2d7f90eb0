"""Each entity's embeddings packed as 8-bit codes: what a cold recall reads instead of every
float32 vector (``memori_vector_block``, migration 7).

A block holds up to ``CHUNK`` memories of one entity in id order: their ids (int64), codes
(int8, one row of ``dim`` per memory), scales and residuals (float32 per memory). Symmetric
scalar quantisation per memory: ``scale = max|x| / 127``, ``code = round(x / scale)``, so every
component of ``x - scale * code`` is at most ``scale / 2``, and ``residual = ||x - scale *
code||``. For a query ``q`` the score ``scale * (code . q)`` is then within ``min(scale / 2 *
||q||_1, residual * ||q||_2)`` of the exact ``x . q`` (``bounds``): recall
(``memori_core.recall.dense``) ranks by the codes and re-scores exactly from the stored float32
vectors every memory whose upper bound reaches the k-th exact score, so its dense top-k is the
exact one, not an approximation. A quarter of the bytes of the vectors (388 per 384-d memory
instead of 1,536), in a few rows instead of one per memory.

With each block, its memories' BM25 postings (migration 8): ``lengths`` (each memory's BM25
tokens, ``memori_core.tokens.tokenize`` of its indexed text) in the block's row, and rows of
``memori_term_block`` holding, for the terms whose hash (``term_hash``) falls in one of
``BUCKETS`` buckets, each term's postings (the memory's row in the block and the term's count
in it). A cold recall reads the buckets of its query's terms only (``postings``): BM25 of every
memory, exactly as the in-process index scores it, from a few rows whatever the entity's size.

Kept current by the transaction that writes memories (``Store.upsert_memories`` calls
``pack``): once ``MIN_PACK`` of an entity's memories lie past its last block, they are packed
(the last block, while under ``CHUNK``, is written again with them), under the entity row's
lock that the same transaction took to bump its ``memory_version``. Dropped (``drop``) by every
change that would make a block hold what the entity no longer has: a memory deleted, an
entity forgotten (a deleted memory's codes never outlive it), an embedding replaced (re-embed).
A block holds every memory of its entity up to its last id: ``pack`` runs under the
entity's row lock, and a writer whose memories got ids below a block committed meanwhile (by a
concurrent writer that took the lock first) drops the blocks from there and packs them again
(``pack``'s ``written``). A memory deleted behind memori's back (not through it) leaves its
code and postings in a block: recall re-reads the rows it returns, so it is never returned, and
only BM25's statistics count it until the entity is packed again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import Connection, delete, func, insert, select

from memori_core.storage import schema as s
from memori_core.tokens import term_hash, tokenize

__all__ = ["BUCKETS", "CHUNK", "MIN_PACK", "PACK_MOST", "Packed", "Postings", "bounds", "drop",
           "lacks_postings", "pack", "postings", "quantize", "read", "rebuild", "text_length"]

#: memories per block at most (a block of 384-d memories: about 1.6 MB)
CHUNK = 4096
#: memories past the last block from which ``pack`` packs them (fewer are read exactly by
#: recall, as every memory of a small entity is)
MIN_PACK = 256
#: memories one ``pack`` call packs at most (about 50-100 ms of a write transaction): a
#: database migrated with large entities is packed over their next writes and cold recalls,
#: never in one long transaction holding the writer's lock
PACK_MOST = 2 * CHUNK
#: float32 rounding of the score and its bound, added to every bound
ROUNDING = 1e-5
#: term buckets of a block's postings (``memori_term_block`` rows per block at most): a query
#: reads the buckets of its terms only
BUCKETS = 64
#: a memory's BM25 length and a term's count in it are stored as uint16
_U16 = 65_535


@dataclass(frozen=True)
class Packed:
    """An entity's blocks, as read (``read``).

    Attributes:
        ids: memory ids, int64 array, shape (n,), ascending.
        codes: int8 arrays, one per block, shape (rows, dim); row-aligned with ``ids`` in order.
        scales: float32 array, shape (n,).
        residuals: float32 array, shape (n,).
        last_id: the last block's last id: memories above it are in no block.
        chars: characters of the packed memories' indexed text, summed (BM25's mean length
            without reading every text: ``Store.lexical_corpus``).
        block_ids: each block's row id, in order.
    """

    ids: np.ndarray
    codes: list[np.ndarray]
    scales: np.ndarray
    residuals: np.ndarray
    last_id: int
    chars: int = 0
    block_ids: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.ids)


class _Block(NamedTuple):
    id: int
    row_count: int
    dim: int
    last_id: int
    chars: int
    ids: bytes
    codes: bytes
    scales: bytes
    residuals: bytes


@dataclass(frozen=True)
class Postings:
    """Some terms' postings in an entity's blocks, with what BM25 needs of every packed memory
    (``postings``).

    Attributes:
        block_ids: the entity's blocks when read, in order (a recall uses the postings only
            when they are the blocks its ``Packed`` holds).
        last_id: the last block's last id: memories above it are in none.
        ids: int64 array, shape (n,): the packed memories' ids, ascending.
        lengths: float32 array, shape (n,): their BM25 lengths in tokens.
        found: term -> (positions in ``ids``, int64 array; the term's count in each, float32
            array) of the packed memories holding it.
    """

    block_ids: tuple[int, ...]
    last_id: int
    ids: np.ndarray
    lengths: np.ndarray
    found: dict[str, tuple[np.ndarray, np.ndarray]]


def quantize(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, int8 array, shape (n, dim); scales, float32 array, shape (n,); residuals,
    float32 array, shape (n,)) of float32 ``vectors`` shape (n, dim): per row ``scale = max|x|
    / 127`` (0 for a zero row), ``code = round(x / scale)``, ``residual = ||x - scale *
    code||`` (computed in float64)."""
    x = np.asarray(vectors, dtype=np.float32)
    peak = np.abs(x).max(axis=1) if x.size else np.zeros(len(x), np.float32)
    scales = (peak / 127.0).astype(np.float32)
    safe = np.where(scales > 0, scales, 1.0).astype(np.float32)
    codes = np.clip(np.rint(x / safe[:, None]), -127, 127).astype(np.int8)
    back = codes.astype(np.float64) * scales.astype(np.float64)[:, None]
    residuals = np.linalg.norm(x.astype(np.float64) - back, axis=1).astype(np.float32)
    return codes, scales, residuals


def bounds(packed: Packed, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scores, float32 array, shape (n,): ``scale * (code . query)`` of every packed memory;
    margins, float32 array, shape (n,): how far each exact ``vector . query`` can be from its
    score, ``min(scale / 2 * ||query||_1, residual * ||query||_2) + ROUNDING``)."""
    q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
    parts = [c.astype(np.float32) @ q for c in packed.codes]
    scores = (np.concatenate(parts) if parts else np.empty(0, np.float32)) * packed.scales
    l1, l2 = float(np.abs(q).sum()), float(np.linalg.norm(q))
    margins = np.minimum(packed.scales * (l1 / 2), packed.residuals * l2) + ROUNDING
    return scores.astype(np.float32), margins.astype(np.float32)


def read(conn: Connection, entity_pk: int, dim: int,
         rows_of: Callable[[Connection, Any], Sequence[Sequence[Any]]] | None = None
         ) -> Packed | str:
    """The entity's blocks of ``dim``-d codes, in one read (no memory row is read).

    Args:
        rows_of: reads a statement's rows as tuples (``Store._rows``: PostgreSQL's binary
            protocol, half the bytes of hex); default: ``conn.execute``.

    Returns:
        the blocks, or why there are none to use: "no blocks", "blocks of another
        dimension".
    """
    b = s.vector_block.c
    stmt = (select(b.id, b.row_count, b.dim, b.last_id, b.chars, b.ids, b.codes, b.scales,
                   b.residuals).where(b.entity_id == entity_pk).order_by(b.last_id))
    rows = [_Block(*r) for r in (rows_of(conn, stmt) if rows_of is not None
                                 else conn.execute(stmt).all())]
    if not rows:
        return "no blocks"
    if any(int(r.dim) != dim for r in rows):
        return "blocks of another dimension"
    ids = np.frombuffer(b"".join(bytes(r.ids) for r in rows), dtype="<i8").astype(np.int64)
    codes = [np.frombuffer(bytes(r.codes), dtype=np.int8).reshape(int(r.row_count), dim)
             for r in rows]
    scales = np.frombuffer(b"".join(bytes(r.scales) for r in rows), dtype="<f4")
    residuals = np.frombuffer(b"".join(bytes(r.residuals) for r in rows), dtype="<f4")
    return Packed(ids, codes, scales.astype(np.float32), residuals.astype(np.float32),
                  int(rows[-1].last_id), sum(int(r.chars) for r in rows),
                  tuple(int(r.id) for r in rows))


def postings(conn: Connection, entity_pk: int, terms: Sequence[str],
             rows_of: Callable[[Connection, Any], Sequence[Sequence[Any]]] | None = None
             ) -> Postings | str:
    """The postings of ``terms`` (BM25 terms, ``tokens.tokenize``) in the entity's blocks,
    and the ids and BM25 lengths of every packed memory: the blocks' heads (no codes) and the
    rows of the terms' hash buckets only (two indexed reads).

    Args:
        rows_of: as ``read``'s.

    Returns:
        the postings, or why there are none to use: "no blocks", "blocks without postings"
        (packed before migration 8), "blocks changed while read" (packed again between the
        two reads).
    """
    b, tb = s.vector_block.c, s.term_block.c
    run = rows_of if rows_of is not None else (lambda c, q: c.execute(q).all())
    heads = run(conn, select(b.id, b.last_id, b.ids, b.lengths).where(
        b.entity_id == entity_pk).order_by(b.last_id))
    if not heads:
        return "no blocks"
    if any(r[3] is None for r in heads):
        return "blocks without postings"
    block_ids = tuple(int(r[0]) for r in heads)
    ids = np.frombuffer(b"".join(bytes(r[2]) for r in heads), dtype="<i8").astype(np.int64)
    lengths = np.frombuffer(b"".join(bytes(r[3]) for r in heads), dtype="<u2")
    offsets = np.cumsum([0] + [len(r[3]) // 2 for r in heads]).tolist()
    at = {block: offsets[n] for n, block in enumerate(block_ids)}
    hashes = {term_hash(t): t for t in dict.fromkeys(terms)}
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    buckets = sorted({h % BUCKETS for h in hashes})
    rows = run(conn, select(tb.block_id, tb.bucket, tb.terms, tb.starts, tb.rows, tb.tfs).where(
        tb.entity_id == entity_pk, tb.bucket.in_(buckets))) if buckets else []
    for block_id, bucket, raw_terms, raw_starts, raw_rows, raw_tfs in rows:
        if int(block_id) not in at:
            return "blocks changed while read"
        keys = np.frombuffer(bytes(raw_terms), dtype="<i8")
        starts = np.frombuffer(bytes(raw_starts), dtype="<i4")
        for h, term in hashes.items():
            if h % BUCKETS != int(bucket):
                continue
            j = int(np.searchsorted(keys, h))
            if j < len(keys) and int(keys[j]) == h:
                lo, hi = int(starts[j]), int(starts[j + 1])
                parts.setdefault(term, []).append((
                    at[int(block_id)] + np.frombuffer(bytes(raw_rows), dtype="<u2", count=hi - lo,
                                                      offset=2 * lo).astype(np.int64),
                    np.frombuffer(bytes(raw_tfs), dtype="<u2", count=hi - lo,
                                  offset=2 * lo).astype(np.float32)))
    found = {term: (np.concatenate([p for p, _ in got]), np.concatenate([f for _, f in got]))
             for term, got in parts.items()}
    return Postings(block_ids, int(heads[-1][1]), ids, lengths.astype(np.float32), found)


def pack(conn: Connection, entity_pks: Sequence[int], dim: int, min_rows: int = MIN_PACK,
         most: int = PACK_MOST, written: Mapping[int, Sequence[int]] | None = None) -> int:
    """Pack each entity's memories past its last block once there are ``min_rows`` of them,
    the oldest ``most`` at most (the rest on later calls): the last block, while it holds
    under ``CHUNK``, is written again with them; then blocks of ``CHUNK``. Called in the
    transaction that wrote them, after it locked the entity row (``Store._bump_version``), so
    two writers of one entity pack one after the other.

    Args:
        written: entity row id -> ids of the memories this transaction wrote. A block that a
            writer packed meanwhile up to an id above one of them (committed while this
            transaction held its memories uncommitted) lacks it: that block and those after
            it are dropped, and packed again here.

    Memories of another dimension (a re-embed under way) stop the packing of their entity.

    Returns:
        memories packed.
    """
    done = 0
    b, f = s.vector_block.c, s.entity_fact.c
    for entity_pk in entity_pks:
        need = min_rows
        late = min(written.get(entity_pk, ()), default=None) if written else None
        last_of = (select(b.id, b.first_id, b.last_id, b.row_count)
                   .where(b.entity_id == entity_pk).order_by(b.last_id.desc()).limit(1))
        last = conn.execute(last_of).first()
        if late is not None and last is not None and int(late) <= int(last.last_id):
            _delete(conn, (b.entity_id == entity_pk, b.last_id >= int(late)))
            need = 1  # what the dropped blocks held, packed again now
            last = conn.execute(last_of).first()
        after = 0 if last is None else int(last.last_id)
        fresh = int(conn.execute(select(func.count()).where(
            f.entity_id == entity_pk, f.id > after)).scalar_one())
        if fresh < need:
            continue
        redo = last is not None and int(last.row_count) < CHUNK
        start = int(last.first_id) - 1 if redo and last is not None else after
        rows = conn.execute(select(f.id, f.embedding, func.coalesce(f.search_text, f.content))
                            .where(f.entity_id == entity_pk, f.id > start).order_by(f.id)
                            .limit(max(most, CHUNK))).all()
        if any(len(r[1]) != 4 * dim for r in rows):
            continue
        if redo and last is not None:
            _delete(conn, (b.id == last.id,))
        done += _write(conn, entity_pk, dim, rows)
    return done


def lacks_postings(conn: Connection, entity_pk: int) -> bool:
    """Whether a block of the entity has no BM25 postings (packed before migration 8)."""
    b = s.vector_block.c
    return conn.execute(select(b.id).where(b.entity_id == entity_pk, b.lengths.is_(None))
                        .limit(1)).first() is not None


def rebuild(conn: Connection, entity_pk: int, dim: int, most: int = PACK_MOST) -> int:
    """Pack the entity again from its oldest memory (its blocks dropped first), ``most`` at
    most (``pack`` goes on from there); nothing when one is of another dimension.

    Returns:
        memories packed.
    """
    drop(conn, [entity_pk])
    return pack(conn, [entity_pk], dim, min_rows=1, most=most)


def drop(conn: Connection, entity_pks: Sequence[int] | None) -> int:
    """Delete the blocks (and their postings) of these entities (None: of every entity).

    Returns:
        blocks deleted.
    """
    if entity_pks is not None and not entity_pks:
        return 0
    b = s.vector_block.c
    return _delete(conn, () if entity_pks is None else (b.entity_id.in_(sorted(set(entity_pks))),))


def _delete(conn: Connection, where: Sequence[Any]) -> int:
    """Delete the blocks matching ``where`` and their postings. Returns: blocks deleted."""
    tb = s.term_block.c
    conn.execute(delete(s.term_block).where(
        tb.block_id.in_(select(s.vector_block.c.id).where(*where))))
    return max(int(conn.execute(delete(s.vector_block).where(*where)).rowcount or 0), 0)


def text_length(dialect: str) -> Any:
    """The SQL function counting a text's characters on ``dialect`` (MariaDB/MySQL's
    ``LENGTH`` counts bytes)."""
    return func.length if dialect in ("sqlite", "postgresql") else func.char_length


def _write(conn: Connection, entity_pk: int, dim: int, rows: Sequence[Sequence[Any]]) -> int:
    """Blocks of ``CHUNK`` of (id, float32 embedding bytes, indexed text) rows, in order, each
    with its postings (``_postings``)."""
    hashes: dict[str, int] = {}  # term -> term_hash, once per call
    for at in range(0, len(rows), CHUNK):
        part = rows[at:at + CHUNK]
        ids = [int(r[0]) for r in part]
        vectors = np.frombuffer(b"".join(bytes(r[1]) for r in part),
                                dtype="<f4").reshape(-1, dim)
        texts = [str(r[2] or "") for r in part]
        counts = [Counter(tokenize(t)) for t in texts]
        codes, scales, residuals = quantize(vectors)
        lengths = np.minimum([sum(c.values()) for c in counts], _U16).astype("<u2")
        made = conn.execute(insert(s.vector_block).values(
            entity_id=entity_pk, first_id=ids[0], last_id=ids[-1], row_count=len(ids),
            id_sum=sum(ids), dim=dim, chars=sum(len(t) for t in texts),
            ids=np.asarray(ids, dtype="<i8").tobytes(), codes=codes.tobytes(),
            scales=scales.astype("<f4").tobytes(), residuals=residuals.astype("<f4").tobytes(),
            lengths=lengths.tobytes())).inserted_primary_key
        assert made is not None
        block_id = made[0]
        buckets = _postings(counts, hashes)
        if buckets:
            conn.execute(insert(s.term_block), [
                dict(block_id=int(block_id), entity_id=entity_pk, bucket=bucket, **arrays)
                for bucket, arrays in buckets.items()])
    return len(rows)


def _postings(counts: Sequence[Counter[str]], hashes: dict[str, int]
              ) -> dict[int, dict[str, bytes]]:
    """A block's postings by bucket: for the terms hashing into it, ascending, ``terms``
    (int64 hashes), ``starts`` (int32, one more than terms), ``rows`` and ``tfs`` (uint16 per
    posting, rows ascending within a term)."""
    keys: list[int] = []
    rows: list[int] = []
    tfs: list[int] = []
    for row, c in enumerate(counts):
        for term, tf in c.items():
            h = hashes.get(term)
            if h is None:
                h = hashes[term] = term_hash(term)
            keys.append(h)
            rows.append(row)
            tfs.append(min(tf, _U16))
    out: dict[int, dict[str, bytes]] = {}
    if not keys:
        return out
    key = np.asarray(keys, dtype=np.int64)
    row_a = np.asarray(rows, dtype=np.int64)
    tf_a = np.asarray(tfs, dtype=np.int64)
    bucket = key % BUCKETS
    order = np.lexsort((row_a, key, bucket))
    key, row_a, tf_a, bucket = key[order], row_a[order], tf_a[order], bucket[order]
    edges = np.flatnonzero(np.diff(bucket)) + 1
    for lo, hi in zip(np.r_[0, edges], np.r_[edges, len(key)], strict=True):
        k = key[lo:hi]
        first = np.r_[0, np.flatnonzero(np.diff(k)) + 1]
        out[int(bucket[lo])] = dict(
            terms=k[first].astype("<i8").tobytes(),
            starts=np.r_[first, hi - lo].astype("<i4").tobytes(),
            rows=row_a[lo:hi].astype("<u2").tobytes(), tfs=tf_a[lo:hi].astype("<u2").tobytes())
    return out
