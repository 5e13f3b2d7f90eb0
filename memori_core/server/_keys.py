"""API keys of ``memori serve``: creation, hashing (argon2id), verification with a bounded
cache, scopes, entity bindings, and the per-key rate limit.

A key is ``mk_<key_id>_<secret>``: ``key_id`` is 12 hex digits, public (``memori keys
list`` shows it, ``memori keys revoke`` takes it); ``secret`` is 64 hex digits (256 random
bits), stored only as an argon2id hash (``memori_api_key.secret_hash``). The whole key is
shown once, when it is made.

Verification runs argon2 once per key and process: a verified key is cached under the SHA-256
of the presented string (at most ``cache_size`` keys, least recently used dropped), and its
row is read again (one indexed read, no argon2) once its entry is ``ttl`` seconds old, so a
revocation made by another process counts within ``ttl``; one made through this ring counts at
once.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from memori_core.errors import ConfigurationError
from memori_core.storage import keys as key_rows
from memori_core.storage.store import Store
from memori_core.types import check_id

__all__ = ["SCOPES", "ApiKey", "KeyRing", "RateLimiter", "Scope"]

Scope = Literal["read", "write", "admin"]
#: scopes, each including the ones before it
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
_KEY = re.compile(r"mk_([0-9a-f]{12})_([0-9a-f]{64})")


@dataclass(frozen=True)
class ApiKey:
    """A key's grant (never its secret).

    Attributes:
        key_id: the public id (12 hex digits).
        scope: ``read`` (GET routes and recall), ``write`` (+ capture, remember, update and
            delete memories) or ``admin`` (+ forget, import, keys, queue retry; every entity).
        entity_ids: the only entities it may touch, or None.
        entity_prefix: or the prefix their ids start with, or None. Neither: every entity.
        name: a label, or None.
        created_at, revoked_at: UTC, naive (``revoked_at`` None while valid).
    """

    key_id: str
    scope: Scope
    entity_ids: tuple[str, ...] | None = None
    entity_prefix: str | None = None
    name: str | None = None
    created_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def bound(self) -> bool:
        """Whether the key is limited to some entities."""
        return self.entity_ids is not None or self.entity_prefix is not None

    def covers(self, scope: Scope) -> bool:
        """Whether the key's scope includes ``scope``."""
        return SCOPES.index(self.scope) >= SCOPES.index(scope)

    def allows(self, entity_id: str) -> bool:
        """Whether the key may read or write ``entity_id``'s rows (exact, case-sensitive)."""
        if self.entity_ids is not None:
            return entity_id in self.entity_ids
        if self.entity_prefix is not None:
            return entity_id.startswith(self.entity_prefix)
        return True

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ApiKey:
        ids = row.get("entity_ids")
        return cls(key_id=row["key_id"], scope=row["scope"],
                   entity_ids=None if ids is None else tuple(ids),
                   entity_prefix=row.get("entity_prefix"), name=row.get("name"),
                   created_at=row.get("created_at"), revoked_at=row.get("revoked_at"))


def check_grant(scope: object, entity_ids: Sequence[str] | None,
                entity_prefix: str | None) -> Scope:
    """A key's scope and entities, checked.

    Raises:
        ConfigurationError: an unknown scope; ids and a prefix both; an empty id list or
            prefix; an admin key limited to entities (admin keys reach every entity).
    """
    if scope not in SCOPES:
        raise ConfigurationError(f"scope must be read, write or admin, got {scope!r}",
                                 argument="scope")
    if entity_ids is not None and entity_prefix is not None:
        raise ConfigurationError("give entity ids or an entity prefix, not both",
                                 argument="entity_prefix")
    if entity_ids is not None:
        if isinstance(entity_ids, str) or not entity_ids:
            raise ConfigurationError("entity_ids must be a non-empty list of entity ids",
                                     argument="entity_ids")
        for e in entity_ids:
            check_id(e, "entity_ids")
    if entity_prefix is not None:
        check_id(entity_prefix, "entity_prefix")
    if scope == "admin" and (entity_ids is not None or entity_prefix is not None):
        raise ConfigurationError("an admin key reaches every entity: give read or write keys "
                                 "entities", argument="scope")
    return cast(Scope, scope)


class KeyRing:
    """The keys of one database, with verification cached.

    Args:
        store: the database's store (``Memori._store``).
        cache_size: at most this many verified keys cached.
        ttl: seconds a cached verification is trusted before the key's row is read again.
    """

    def __init__(self, store: Store, *, cache_size: int = 1024, ttl: float = 5.0) -> None:
        self._store = store
        self._hasher = PasswordHasher()
        self._cache: OrderedDict[str, tuple[ApiKey | None, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._size = cache_size
        self._ttl = ttl

    def create(self, scope: str, *, entity_ids: Sequence[str] | None = None,
               entity_prefix: str | None = None, name: str | None = None
               ) -> tuple[str, ApiKey]:
        """Make a key.

        Returns:
            (the key, to show once: ``mk_<key_id>_<secret>``; its grant).

        Raises:
            ConfigurationError: a bad grant (``check_grant``) or name.
            StorageError: the database failed.
        """
        grant = check_grant(scope, entity_ids, entity_prefix)
        if name is not None:
            check_id(name, "name")
        key_id, secret = secrets.token_hex(6), secrets.token_hex(32)
        row = key_rows.add_key(self._store, key_id=key_id, secret_hash=self._hasher.hash(secret),
                               scope=grant, entity_ids=entity_ids, entity_prefix=entity_prefix,
                               name=name)
        return f"mk_{key_id}_{secret}", ApiKey.from_row(row)

    def list(self, *, include_revoked: bool = False) -> list[ApiKey]:
        """Every key (revoked ones with ``include_revoked``), oldest first."""
        return [ApiKey.from_row(r) for r in key_rows.list_keys(
            self._store, include_revoked=include_revoked)]

    def revoke(self, key_id: str) -> bool:
        """Revoke a key; this ring refuses it at once, other processes within ``ttl``.
        Returns False for an unknown or already revoked key."""
        done = key_rows.revoke_key(self._store, key_id)
        with self._lock:
            for digest in [d for d, (k, _) in self._cache.items()
                           if k is not None and k.key_id == key_id]:
                del self._cache[digest]
        return done

    def verify(self, presented: str) -> ApiKey | None:
        """The grant of a presented key, or None when it is malformed, unknown, revoked or
        wrong. argon2 runs at most once per key per ``ttl`` window of a wrong guess and once
        per valid key while it stays cached.

        Raises:
            StorageError: the database failed (on a cache miss or a recheck).
        """
        found = _KEY.fullmatch(presented)
        if found is None:
            return None
        digest = hashlib.sha256(presented.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
            if cached is not None:
                self._cache.move_to_end(digest)
        if cached is not None and now - cached[1] < self._ttl:
            return cached[0]
        key_id, secret = found.groups()
        row = key_rows.find_key(self._store, key_id)
        if row is None or row["revoked_at"] is not None:
            self._remember(digest, None, now)
            return None
        if cached is not None and cached[0] is not None:
            grant: ApiKey | None = ApiKey.from_row(row)  # rechecked: still valid, no argon2
        else:
            try:
                self._hasher.verify(row["secret_hash"], secret)
                grant = ApiKey.from_row(row)
            except (VerificationError, InvalidHashError):
                grant = None
        self._remember(digest, grant, now)
        return grant

    def _remember(self, digest: str, grant: ApiKey | None, now: float) -> None:
        with self._lock:
            self._cache[digest] = (grant, now)
            self._cache.move_to_end(digest)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)


class RateLimiter:
    """A token bucket per key: ``rate`` requests per second on average, bursts of up to
    ``burst``. ``rate`` 0 turns it off. Thread-safe; buckets of keys idle for a minute are
    dropped.

    Args:
        rate: requests per second per key (0: unlimited).
        burst: bucket size, in requests (at least 1).
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = float(rate)
        self.burst = max(1, int(burst))
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._swept = time.monotonic()

    def take(self, key: str) -> float:
        """Spend one token of ``key``'s bucket.

        Returns:
            0.0 when the request may go on, else the seconds until a token is there.
        """
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
            if now - self._swept > 60:
                self._swept = now
                idle = (self.burst / self.rate) + 60
                for k in [k for k, (_, t) in self._buckets.items() if now - t > idle]:
                    del self._buckets[k]
        return wait

    @staticmethod
    def retry_after(wait: float) -> str:
        """``Retry-After`` for a wait in seconds: whole seconds, at least 1."""
        return str(max(1, math.ceil(wait)))
