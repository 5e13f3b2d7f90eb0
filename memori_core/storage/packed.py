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

Kept current by the transaction that writes memories (``Store.upsert_memories`` calls
``pack``): once ``MIN_PACK`` of an entity's memories lie past its last block, they are packed
(the last block, while under ``CHUNK``, is written again with them), under the entity row's
lock that the same transaction took to bump its ``memory_version``. Dropped (``drop``) by every
change that would make a block hold what the entity no longer has: a memory deleted, an
entity forgotten (a deleted memory's codes never outlive it), an embedding replaced (re-embed).
``read`` checks that the blocks hold exactly the entity's memories up to their last id (count
and sum of ids): a memory committed late below it by a concurrent writer, or a block left by
a change that did not drop it, fails the check; the caller then reads every vector, and
``rebuild`` (run by the background index build after such a recall) packs the entity again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import Connection, delete, func, insert, select

from memori_core.storage import schema as s

__all__ = ["CHUNK", "MIN_PACK", "PACK_MOST", "Packed", "bounds", "drop", "pack", "quantize", "read",
           "rebuild", "text_length"]

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


@dataclass(frozen=True)
class Packed:
    """An entity's blocks, as read and checked (``read``).

    Attributes:
        ids: memory ids, int64 array, shape (n,), ascending.
        codes: int8 arrays, one per block, shape (rows, dim); row-aligned with ``ids`` in order.
        scales: float32 array, shape (n,).
        residuals: float32 array, shape (n,).
        last_id: the last block's last id: memories above it are in no block.
        chars: characters of the packed memories' indexed text, summed (BM25's mean length
            without reading every text: ``Store.lexical_corpus``).
    """

    ids: np.ndarray
    codes: list[np.ndarray]
    scales: np.ndarray
    residuals: np.ndarray
    last_id: int
    chars: int = 0

    def __len__(self) -> int:
        return len(self.ids)


class _Block(NamedTuple):
    row_count: int
    id_sum: int
    dim: int
    last_id: int
    chars: int
    ids: bytes
    codes: bytes
    scales: bytes
    residuals: bytes


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
    """The entity's blocks of ``dim``-d codes, checked: they hold exactly the entity's
    memories with an id up to the last block's (count and sum of ids, one indexed read).

    Args:
        rows_of: reads a statement's rows as tuples (``Store._rows``: PostgreSQL's binary
            protocol, half the bytes of hex); default: ``conn.execute``.

    Returns:
        the blocks, or why there are none to use: "no blocks", "blocks of another
        dimension", "blocks out of date" (the check failed).
    """
    b = s.vector_block.c
    stmt = (select(b.row_count, b.id_sum, b.dim, b.last_id, b.chars, b.ids, b.codes, b.scales,
                   b.residuals).where(b.entity_id == entity_pk).order_by(b.last_id))
    rows = [_Block(*r) for r in (rows_of(conn, stmt) if rows_of is not None
                                 else conn.execute(stmt).all())]
    if not rows:
        return "no blocks"
    if any(int(r.dim) != dim for r in rows):
        return "blocks of another dimension"
    last_id = int(rows[-1].last_id)
    f = s.entity_fact.c
    count, total = conn.execute(select(func.count(), func.coalesce(func.sum(f.id), 0))
                                .where(f.entity_id == entity_pk, f.id <= last_id)).one()
    if int(count) != sum(int(r.row_count) for r in rows) or \
            int(total) != sum(int(r.id_sum) for r in rows):
        return "blocks out of date"
    ids = np.frombuffer(b"".join(bytes(r.ids) for r in rows), dtype="<i8").astype(np.int64)
    codes = [np.frombuffer(bytes(r.codes), dtype=np.int8).reshape(int(r.row_count), dim)
             for r in rows]
    scales = np.frombuffer(b"".join(bytes(r.scales) for r in rows), dtype="<f4")
    residuals = np.frombuffer(b"".join(bytes(r.residuals) for r in rows), dtype="<f4")
    return Packed(ids, codes, scales.astype(np.float32), residuals.astype(np.float32), last_id,
                  sum(int(r.chars) for r in rows))


def pack(conn: Connection, entity_pks: Sequence[int], dim: int, min_rows: int = MIN_PACK,
         most: int = PACK_MOST) -> int:
    """Pack each entity's memories past its last block once there are ``min_rows`` of them,
    the oldest ``most`` at most (the rest on later calls): the last block, while it holds
    under ``CHUNK``, is written again with them; then blocks of ``CHUNK``. Called in the
    transaction that wrote them, after it locked the entity row (``Store._bump_version``), so
    two writers of one entity pack one after the other.

    Memories of another dimension (a re-embed under way) stop the packing of their entity.

    Returns:
        memories packed.
    """
    done = 0
    b, f = s.vector_block.c, s.entity_fact.c
    for entity_pk in entity_pks:
        last = conn.execute(select(b.id, b.first_id, b.last_id, b.row_count)
                            .where(b.entity_id == entity_pk)
                            .order_by(b.last_id.desc()).limit(1)).first()
        after = 0 if last is None else int(last.last_id)
        fresh = int(conn.execute(select(func.count()).where(
            f.entity_id == entity_pk, f.id > after)).scalar_one())
        if fresh < min_rows:
            continue
        redo = last is not None and int(last.row_count) < CHUNK
        start = int(last.first_id) - 1 if redo and last is not None else after
        rows = conn.execute(select(f.id, f.embedding, _length(conn)).where(
            f.entity_id == entity_pk, f.id > start).order_by(f.id).limit(max(most, CHUNK))
        ).all()
        if any(len(r[1]) != 4 * dim for r in rows):
            continue
        if redo and last is not None:
            conn.execute(delete(s.vector_block).where(b.id == last.id))
        done += _write(conn, entity_pk, dim, rows)
    return done


def rebuild(conn: Connection, entity_pk: int, dim: int, most: int = PACK_MOST) -> int:
    """Pack the entity again from its oldest memory (its blocks dropped first), ``most`` at
    most (``pack`` goes on from there); nothing when one is of another dimension.

    Returns:
        memories packed.
    """
    drop(conn, [entity_pk])
    return pack(conn, [entity_pk], dim, min_rows=1, most=most)


def drop(conn: Connection, entity_pks: Sequence[int] | None) -> int:
    """Delete the blocks of these entities (None: of every entity). Returns: blocks deleted."""
    stmt = delete(s.vector_block)
    if entity_pks is not None:
        if not entity_pks:
            return 0
        stmt = stmt.where(s.vector_block.c.entity_id.in_(sorted(set(entity_pks))))
    return max(int(conn.execute(stmt).rowcount or 0), 0)


def text_length(dialect: str) -> Any:
    """The SQL function counting a text's characters on ``dialect`` (MariaDB/MySQL's
    ``LENGTH`` counts bytes)."""
    return func.length if dialect in ("sqlite", "postgresql") else func.char_length


def _length(conn: Connection) -> Any:
    """Characters of a memory's indexed text (``search_text``, else ``content``)."""
    f = s.entity_fact.c
    return func.coalesce(text_length(conn.dialect.name)(func.coalesce(f.search_text, f.content)),
                         0)


def _write(conn: Connection, entity_pk: int, dim: int, rows: Sequence[Sequence[Any]]) -> int:
    """Blocks of ``CHUNK`` of (id, float32 embedding bytes, text characters) rows, in order."""
    for at in range(0, len(rows), CHUNK):
        part = rows[at:at + CHUNK]
        ids = [int(r[0]) for r in part]
        vectors = np.frombuffer(b"".join(bytes(r[1]) for r in part),
                                dtype="<f4").reshape(-1, dim)
        codes, scales, residuals = quantize(vectors)
        conn.execute(insert(s.vector_block).values(
            entity_id=entity_pk, first_id=ids[0], last_id=ids[-1], row_count=len(ids),
            id_sum=sum(ids), dim=dim, chars=sum(int(r[2] or 0) for r in part),
            ids=np.asarray(ids, dtype="<i8").tobytes(), codes=codes.tobytes(),
            scales=scales.astype("<f4").tobytes(), residuals=residuals.astype("<f4").tobytes()))
    return len(rows)
