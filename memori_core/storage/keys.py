"""Rows of ``memori_api_key``: the API keys of ``memori serve``. Hashing and verification live
in ``memori_core.server`` (argon2); this module only stores what it is given.

A key row is a dict ``{"key_id", "name", "scope", "entity_ids" (list or None),
"entity_prefix" (str or None), "secret_hash", "created_at", "revoked_at"}`` (UTC, naive).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select, update

from memori_core.storage import schema as s
from memori_core.storage.store import Store, _TxState, utcnow

__all__ = ["add_key", "find_key", "list_keys", "revoke_key"]

_k = s.api_key.c
_COLUMNS = (_k.key_id, _k.name, _k.scope, _k.entity_ids, _k.entity_prefix, _k.secret_hash,
            _k.created_at, _k.revoked_at)


def _row(r: Any) -> dict[str, Any]:
    return {**r._mapping, "entity_ids": None if r.entity_ids is None
            else list(json.loads(r.entity_ids))}


def add_key(store: Store, *, key_id: str, secret_hash: str, scope: str,
            entity_ids: Sequence[str] | None, entity_prefix: str | None,
            name: str | None) -> dict[str, Any]:
    """Store a new key. Returns its row.

    Raises:
        StorageError: the database failed, or ``key_id`` exists.
    """
    values = {"key_id": key_id, "name": name, "scope": scope,
              "entity_ids": None if entity_ids is None else json.dumps(list(entity_ids)),
              "entity_prefix": entity_prefix, "secret_hash": secret_hash,
              "created_at": utcnow(), "revoked_at": None}

    def tx(conn: Connection, _state: _TxState) -> None:
        conn.execute(s.api_key.insert().values(**values))

    store.write(tx)
    return {**values, "entity_ids": None if entity_ids is None else list(entity_ids)}


def find_key(store: Store, key_id: str) -> dict[str, Any] | None:
    """The key ``key_id`` (revoked ones included), or None."""
    with store.read() as conn:
        r = conn.execute(select(*_COLUMNS).where(_k.key_id == key_id)).first()
    return None if r is None else _row(r)


def list_keys(store: Store, *, include_revoked: bool = False) -> list[dict[str, Any]]:
    """Every key, oldest first (revoked ones only with ``include_revoked``)."""
    q = select(*_COLUMNS).order_by(_k.id)
    if not include_revoked:
        q = q.where(_k.revoked_at.is_(None))
    with store.read() as conn:
        return [_row(r) for r in conn.execute(q).all()]


def revoke_key(store: Store, key_id: str) -> bool:
    """Mark the key revoked (its row stays, for the record). Returns False when there is no
    such key or it was revoked already."""

    def tx(conn: Connection, _state: _TxState) -> bool:
        return bool(conn.execute(update(s.api_key).where(
            _k.key_id == key_id, _k.revoked_at.is_(None)).values(revoked_at=utcnow())).rowcount)

    return store.write(tx)
