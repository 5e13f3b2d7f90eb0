"""Operations: ``/healthz``, ``/readyz``, ``/v1/stats``, ``/v1/queue`` and ``/v1/keys``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from memori_core.errors import StorageError
from memori_core.integration import attributed
from memori_core.server._deps import Admin, Read, cursor, entity_for, state, unbound, v1_router
from memori_core.server._errors import RETRY_AFTER_S, ApiError, documented, error_response
from memori_core.server._keys import ApiKey
from memori_core.server.models import (
    ApiKeyOut,
    EntityQuery,
    KeyCreated,
    KeyIn,
    KeyList,
    QueueOut,
    QueueQuery,
    RetryOut,
    StatusOut,
    encode_cursor,
)

__all__ = ["health", "router"]

health = APIRouter()
router = v1_router()


@health.get("/healthz", response_model=StatusOut, tags=["health"],
            response_model_exclude_none=True,
            summary="The process is up (no key)")
def healthz() -> StatusOut:
    """Answers while the server process runs; reads nothing."""
    return StatusOut(status="ok")


@health.get("/readyz", response_model=StatusOut, tags=["health"],
            summary="The database is reachable and its schema current (no key)",
            responses=documented(503))
def readyz(request: Request) -> Any:
    """200 when the database answers and its schema is this memori's; else 503 with
    ``Retry-After``."""
    try:
        status = state(request).memori.schema_status()
    except StorageError as exc:
        return error_response("unavailable", f"the database is unreachable: {exc}"[:2000],
                              None, {"Retry-After": str(RETRY_AFTER_S)})
    if status["version"] != status["latest"]:
        return error_response(
            "unavailable", f"the database schema is at version {status['version']}, this "
            f"memori's is {status['latest']}", None, {"Retry-After": str(RETRY_AFTER_S)})
    return StatusOut(status="ready", schema_version=status["version"])


@router.get("/stats", response_model=dict[str, Any], tags=["operations"],
            summary="Row counts and counters (scope: read, a key for every entity)",
            responses=documented(403))
def stats(request: Request, key: Read) -> dict[str, Any]:
    """Row counts per table, augmentation counters and recall-cache size (``Memori.stats``):
    figures across entities, so not for a key limited to some."""
    unbound(key, "stats")
    found: dict[str, Any] = state(request).memori.stats()
    return found


@router.get("/queue", response_model=QueueOut, tags=["operations"],
            summary="An entity's augmentation jobs (scope: read)", responses=documented(403))
def queue(q: Annotated[QueueQuery, Query()], request: Request, key: Read) -> QueueOut:
    """Counts per status (queued, running, done, failed) and the jobs, newest first; failed
    ones with their error."""
    mem = state(request).memori
    before = cursor(q.cursor)
    with attributed(mem, entity_for(key, q.entity_id)):
        counts, items, nxt = mem.jobs(statuses=q.status, before=before, limit=q.limit)
    return QueueOut.model_validate({"counts": counts, "items": items,
                                    "next_cursor": encode_cursor(nxt)})


@router.post("/queue/{job_id}/retry", response_model=RetryOut, tags=["operations"],
             summary="Queue a failed job again (scope: admin)", responses=documented(403, 404))
def retry(job_id: int, q: Annotated[EntityQuery, Query()], request: Request,
          key: Admin) -> RetryOut:
    """A failed augmentation job of the entity, queued again with its attempts reset."""
    mem = state(request).memori
    with attributed(mem, entity_for(key, q.entity_id)):
        done = mem.retry_job(job_id)
    if not done:
        raise ApiError("not_found", f"the entity has no failed job {job_id}", "job_id")
    return RetryOut(id=job_id, status="queued")


def key_out(key: ApiKey) -> ApiKeyOut:
    """A key's grant as the API answers it."""
    return ApiKeyOut(key_id=key.key_id, scope=key.scope, name=key.name,
                     entity_ids=None if key.entity_ids is None else list(key.entity_ids),
                     entity_prefix=key.entity_prefix, created_at=key.created_at,
                     revoked_at=key.revoked_at)


@router.get("/keys", response_model=KeyList, tags=["keys"], summary="List keys (scope: admin)",
            responses=documented(403))
def list_keys(request: Request, key: Admin) -> KeyList:
    """Every valid key's grant (never a secret)."""
    return KeyList(items=[key_out(k) for k in state(request).keys.list()])


@router.get("/keys/me", response_model=ApiKeyOut, tags=["keys"],
            summary="The grant of the key sending this request (scope: read)")
def my_key(key: Read) -> ApiKeyOut:
    """The caller's own key: its scope and the entities it may touch (a client of a key
    bound to one entity learns the entity here)."""
    return key_out(key)


@router.post("/keys", status_code=201, response_model=KeyCreated, tags=["keys"],
             summary="Make a key (scope: admin)", responses=documented(403))
def create_key(body: KeyIn, request: Request, key: Admin) -> KeyCreated:
    """A new key, shown once in ``key``; only its argon2 hash is stored."""
    secret, grant = state(request).keys.create(
        body.scope, entity_ids=body.entity_ids, entity_prefix=body.entity_prefix,
        name=body.name)
    return KeyCreated(key=secret, grant=key_out(grant))


@router.delete("/keys/{key_id}", response_model=ApiKeyOut, tags=["keys"],
               summary="Revoke a key (scope: admin)", responses=documented(403, 404))
def revoke_key(key_id: str, request: Request, key: Admin) -> ApiKeyOut:
    """Revoke a key: this server refuses it at once, others within their key cache TTL."""
    ring = state(request).keys
    if not ring.revoke(key_id):
        raise ApiError("not_found", f"no valid key {key_id!r}", "key_id")
    return key_out(next(k for k in ring.list(include_revoked=True) if k.key_id == key_id))
