"""Turns, recall and memories: ``/v1/turns``, ``/v1/recall``, ``/v1/memories``."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Header, Query, Request, Response

from memori_core.integration import attributed
from memori_core.server._deps import Read, Write, cursor, entity_for, state, v1_router
from memori_core.server._errors import ApiError, documented
from memori_core.server.models import (
    ContextOut,
    DeletedOut,
    EntityQuery,
    HitOut,
    MemoryCreate,
    MemoryList,
    MemoryOut,
    MemoryPage,
    MemoryQuery,
    MemoryUpdate,
    MemoryUpdated,
    ProvenanceOut,
    RecallIn,
    RecallOut,
    TurnIn,
    TurnOut,
    encode_cursor,
)
from memori_core.types import normalize_messages

__all__ = ["router"]

router = v1_router()
T = TypeVar("T")


def memory_out(memory: Any) -> MemoryOut:
    """A ``Memory`` as the API answers it."""
    return MemoryOut.model_validate(dataclasses.asdict(memory))


def _not_found(memory_id: int) -> ApiError:
    return ApiError("not_found", f"the entity has no memory {memory_id}", "memory_id")


def _of_memory(request: Request, entity: str, memory_id: int,
               call: Callable[[Any, int], T | None]) -> T:
    """``call(memori, memory_id)`` attributed to ``entity``; 404 when it gives None."""
    mem = state(request).memori
    with attributed(mem, entity):
        found = call(mem, memory_id)
    if found is None:
        raise _not_found(memory_id)
    return found


#: requests with the same ``Idempotency-Key`` run one at a time (keys hashed onto these)
_TURN_LOCKS = [threading.Lock() for _ in range(64)]


@router.post("/turns", status_code=201, response_model=TurnOut, tags=["turns"],
             summary="Capture a turn (scope: write)",
             responses={**documented(403), 200: {"model": TurnOut, "description": "the turn was stored before "
                              "(same Idempotency-Key): its ids"}})
def capture(body: TurnIn, request: Request, response: Response, key: Write,
            idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None
            ) -> TurnOut:
    """Store one turn's messages and queue their augmentation, in one transaction: durable
    when this answers. Memories drawn from it are recallable once its job is done
    (``GET /v1/queue``).

    With an ``Idempotency-Key`` header (a client's id for the turn; the SDK's remote mode
    sends one), every message needs ``created_at``, and a turn sent again (its first answer
    lost: a timeout, the server restarted) is stored once: when the session holds every
    message of it already (role, content, ``created_at``), the answer is 200 with their ids
    and nothing is written. Requests with the same key run one at a time."""
    entity = entity_for(key, body.entity_id)
    mem = state(request).memori
    messages = [m.model_dump(exclude_none=True) for m in body.messages]
    if idempotency_key is None:
        with attributed(mem, entity, body.process_id, body.session_id):
            return TurnOut(message_ids=mem.capture(messages), session_id=mem.session_id)
    for i, m in enumerate(body.messages):
        if m.created_at is None:
            raise ApiError("invalid_request", "a turn sent with Idempotency-Key needs "
                           "created_at on every message (so a retry is recognised)",
                           f"messages.{i}.created_at")
    lock = _TURN_LOCKS[int(hashlib.sha256(idempotency_key.encode()).hexdigest(), 16) % 64]
    with lock, attributed(mem, entity, body.process_id, body.session_id):
        stored = mem._store.stored_turn(entity, mem.session_id, normalize_messages(messages))
        if stored is not None:
            response.status_code = 200
            return TurnOut(message_ids=stored, session_id=mem.session_id)
        return TurnOut(message_ids=mem.capture(messages), session_id=mem.session_id)


@router.post("/recall", response_model=RecallOut, tags=["recall"],
             summary="Recall memories and the context block (scope: read)", responses=documented(403))
def recall(body: RecallIn, request: Request, key: Read) -> RecallOut:
    """The entity's memories most relevant to ``query`` (``Memori.recall``) and the framed
    block a model is shown for it (``Memori.context``). Each hit's ``why`` gives the parts of
    its score: dense and lexical rank, fused, recency, mentions, context."""
    entity = entity_for(key, body.entity_id)
    mem = state(request).memori
    with attributed(mem, entity, body.process_id):
        hits = mem.recall(body.query, body.limit, scope=body.scope, kinds=body.kinds,
                          include_superseded=body.include_superseded)
        ctx = mem.context(body.query, limit=body.limit, scope=body.scope,
                          history=None if body.history is None else
                          [m.model_dump(exclude_none=True) for m in body.history]) \
            if body.context else None
    context = None if ctx is None else ContextOut.model_validate({
        "block": ctx.block, "tokens": ctx.tokens, "budget": ctx.budget,
        "lines": [{**dataclasses.asdict(line), "text": line.text} for line in ctx.lines]})
    return RecallOut(hits=[HitOut.model_validate(dataclasses.asdict(h)) for h in hits],
                     context=context)


@router.get("/memories", response_model=MemoryPage, tags=["memories"],
            summary="List memories, newest first (scope: read)", responses=documented(403))
def list_memories(q: Annotated[MemoryQuery, Query()], request: Request, key: Read
                  ) -> MemoryPage:
    """The entity's memories, newest first, a page at a time (``next_cursor``); with ``q``
    only those whose text holds it (case-insensitive), with ``since`` / ``until`` only those
    created in ``[since, until)`` (``Memori.memory_page``). A bad date, or ``until`` not
    after ``since``: 422 naming the field."""
    entity = entity_for(key, q.entity_id)
    before = cursor(q.cursor)
    mem = state(request).memori
    with attributed(mem, entity, q.process_id):
        items, nxt = mem.memory_page(kinds=q.kind, scope=q.scope, before=before, limit=q.limit,
                                     include_superseded=q.include_superseded, q=q.q,
                                     since=q.since, until=q.until)
    return MemoryPage(items=[memory_out(m) for m in items], next_cursor=encode_cursor(nxt))


@router.post("/memories", status_code=201, response_model=MemoryOut, tags=["memories"],
             summary="Remember directly (scope: write)", responses=documented(403, 404))
def remember(body: MemoryCreate, request: Request, key: Write) -> MemoryOut:
    """Store a memory without a turn (``Memori.remember``); recallable when this answers.
    The same text again is the same memory, mentioned once more."""
    entity = entity_for(key, body.entity_id)
    mem = state(request).memori
    with attributed(mem, entity, body.process_id):
        mid = mem.remember(body.content, kind=body.kind, slot=body.slot,
                           importance=body.importance)
        memory = mem.memory(mid)
    if memory is None:  # forgotten in between
        raise _not_found(mid)
    return memory_out(memory)


@router.get("/memories/{memory_id}", response_model=MemoryOut, tags=["memories"],
            summary="Get a memory (scope: read)", responses=documented(403, 404))
def get_memory(memory_id: int, q: Annotated[EntityQuery, Query()], request: Request,
               key: Read) -> MemoryOut:
    """One memory of the entity, current or superseded."""
    return memory_out(_of_memory(request, entity_for(key, q.entity_id), memory_id,
                                 lambda mem, mid: mem.memory(mid)))


@router.patch("/memories/{memory_id}", response_model=MemoryUpdated, tags=["memories"],
              summary="Correct a memory: a new version (scope: write)",
              responses=documented(403, 404))
def update_memory(memory_id: int, body: MemoryUpdate, q: Annotated[EntityQuery, Query()],
                  request: Request, key: Write) -> MemoryUpdated:
    """A new version replaces the memory; the old one stays as its history
    (``GET /v1/memories/{id}/history`` of the new one)."""
    def update(mem: Any, mid: int) -> Any:
        new_id = mem.update_memory(mid, body.content, kind=body.kind, slot=body.slot,
                                   importance=body.importance)
        return None if new_id is None else mem.memory(new_id)

    memory = _of_memory(request, entity_for(key, q.entity_id), memory_id, update)
    return MemoryUpdated(memory=memory_out(memory), supersedes=memory_id)


@router.delete("/memories/{memory_id}", response_model=DeletedOut, tags=["memories"],
               summary="Delete a memory (scope: write)", responses=documented(403, 404))
def delete_memory(memory_id: int, q: Annotated[EntityQuery, Query()], request: Request,
                  key: Write) -> DeletedOut:
    """Delete one memory of the entity, with its provenance and triples."""
    deleted = _of_memory(request, entity_for(key, q.entity_id), memory_id,
                         lambda mem, mid: mem.forget_memories([mid]) or None)
    return DeletedOut(deleted=deleted)


@router.get("/memories/{memory_id}/history", response_model=MemoryList, tags=["memories"],
            summary="A memory's earlier versions, newest first (scope: read)",
            responses=documented(403, 404))
def memory_history(memory_id: int, q: Annotated[EntityQuery, Query()], request: Request,
                   key: Read) -> MemoryList:
    """The versions the memory replaced, and those they replaced."""
    items = _of_memory(request, entity_for(key, q.entity_id), memory_id,
                       lambda mem, mid: mem.memory_history(mid))
    return MemoryList(items=[memory_out(m) for m in items])


@router.get("/memories/{memory_id}/provenance", response_model=ProvenanceOut,
            tags=["memories"], summary="A memory's source messages (scope: read)",
            responses=documented(403, 404))
def memory_provenance(memory_id: int, q: Annotated[EntityQuery, Query()], request: Request,
                      key: Read) -> ProvenanceOut:
    """The messages the memory was drawn from, oldest first, and their conversations."""
    found = _of_memory(request, entity_for(key, q.entity_id), memory_id,
                       lambda mem, mid: mem.memory_provenance(mid))
    return ProvenanceOut.model_validate({"memory_id": memory_id, **found})
