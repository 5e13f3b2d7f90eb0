"""Entities and their records: ``/v1/entities``, ``/v1/processes``, ``/v1/sessions``,
``/v1/conversations``, ``/v1/triples``; export, import and forget."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query, Request
from starlette.convertors import Convertor, register_url_convertor

from memori_core.integration import attributed
from memori_core.server._deps import Admin, Read, Write, cursor, entity_for, state, v1_router
from memori_core.server._errors import ApiError, documented
from memori_core.server.models import (
    ConversationPage,
    ConversationQuery,
    DeletedOut,
    EntityId,
    EntityListQuery,
    EntityPage,
    EntityQuery,
    ExportQuery,
    ForgetOut,
    ForgetQuery,
    ImportIn,
    ImportOut,
    MessageList,
    MessagePage,
    PageQuery,
    ProcessList,
    ProcessPageQuery,
    SessionPage,
    TriplePage,
    encode_cursor,
)

__all__ = ["router"]



class _IdConvertor(Convertor[str]):
    """An id in a path: every character, ``/`` and line breaks too (sent percent-encoded,
    decoded before routing), so ``{entity_id:id}`` takes the rest of the path."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("id", _IdConvertor())

router = v1_router()


@router.get("/entities", response_model=EntityPage, tags=["entities"],
            summary="List entities, in creation order (scope: read)")
def list_entities(q: Annotated[EntityListQuery, Query()], request: Request, key: Read
                  ) -> EntityPage:
    """Entities with counts (only those named by ``entity_id`` when given); a key limited to
    some entities sees only those."""
    ids = list(key.entity_ids) if key.entity_ids is not None else None
    if q.entity_id is not None:
        ids = [i for i in dict.fromkeys(q.entity_id) if ids is None or i in ids]
        if not ids:
            return EntityPage(items=[], next_cursor=None)
    prefix = q.prefix
    if key.entity_prefix is not None:
        if prefix is None or key.entity_prefix.startswith(prefix):
            prefix = key.entity_prefix
        elif not prefix.startswith(key.entity_prefix):
            return EntityPage(items=[], next_cursor=None)
    items, nxt = state(request).memori.entities(ids=ids, prefix=prefix, after=cursor(q.cursor),
                                                limit=q.limit)
    if ids is not None and q.prefix is not None:
        items = [e for e in items if e["entity_id"].startswith(q.prefix)]
    return EntityPage.model_validate({"items": items, "next_cursor": encode_cursor(nxt)})


@router.get("/processes", response_model=ProcessList, tags=["entities"],
            summary="An entity's processes, with counts (scope: read)", responses=documented(403))
def list_processes(q: Annotated[EntityQuery, Query()], request: Request, key: Read
                   ) -> ProcessList:
    """The processes (personas) the entity has rows under; ``process_id`` null: rows
    captured without one."""
    mem = state(request).memori
    with attributed(mem, entity_for(key, q.entity_id)):
        return ProcessList.model_validate({"items": mem.processes()})


@router.get("/sessions", response_model=SessionPage, tags=["entities"],
            summary="An entity's sessions, newest first (scope: read)", responses=documented(403))
def list_sessions(q: Annotated[ProcessPageQuery, Query()], request: Request, key: Read
                  ) -> SessionPage:
    """The entity's sessions (of ``process_id`` when given) with counts."""
    mem = state(request).memori
    before = cursor(q.cursor)
    with attributed(mem, entity_for(key, q.entity_id), q.process_id):
        items, nxt = mem.sessions(before=before, limit=q.limit)
    return SessionPage.model_validate({"items": items, "next_cursor": encode_cursor(nxt)})


@router.get("/sessions/{session_id:id}/messages", response_model=MessageList, tags=["entities"],
            summary="A session's messages, oldest first (scope: read)", responses=documented(403))
def session_messages(session_id: Annotated[EntityId, Path()], q: Annotated[EntityQuery, Query()],
                     request: Request, key: Read) -> MessageList:
    """Every message of one of the entity's sessions, as captured (``Memori.session_messages``:
    what a client replays as history); empty for an unknown session."""
    mem = state(request).memori
    with attributed(mem, entity_for(key, q.entity_id)):
        items = mem.session_messages(session_id)
    return MessageList.model_validate({"items": items})


@router.delete("/sessions/{session_id:id}", response_model=DeletedOut, tags=["entities"],
               summary="Delete a session's messages (scope: write)", responses=documented(403))
def clear_session(session_id: Annotated[EntityId, Path()], q: Annotated[EntityQuery, Query()],
                  request: Request, key: Write) -> DeletedOut:
    """Delete the messages of one of the entity's sessions with their queued augmentation
    (``Memori.clear_session``); memories drawn from them stay."""
    mem = state(request).memori
    with attributed(mem, entity_for(key, q.entity_id)):
        return DeletedOut(deleted=mem.clear_session(session_id))


@router.get("/conversations", response_model=ConversationPage, tags=["entities"],
            summary="An entity's conversations, newest first (scope: read)", responses=documented(403))
def list_conversations(q: Annotated[ConversationQuery, Query()], request: Request,
                       key: Read) -> ConversationPage:
    """The entity's conversations (of ``session_id`` when given) with message counts."""
    mem = state(request).memori
    before = cursor(q.cursor)
    with attributed(mem, entity_for(key, q.entity_id)):
        items, nxt = mem.conversations(q.session_id, before=before, limit=q.limit)
    return ConversationPage.model_validate({"items": items,
                                            "next_cursor": encode_cursor(nxt)})


@router.get("/conversations/{conversation_id}/messages", response_model=MessagePage,
            tags=["entities"], summary="A conversation's messages, oldest first (scope: read)",
            responses=documented(403, 404))
def conversation_messages(conversation_id: int, q: Annotated[PageQuery, Query()],
                          request: Request, key: Read) -> MessagePage:
    """The messages of one of the entity's conversations, as captured."""
    mem = state(request).memori
    after = cursor(q.cursor)
    with attributed(mem, entity_for(key, q.entity_id)):
        found = mem.conversation_messages(conversation_id, after=after, limit=q.limit)
    if found is None:
        raise ApiError("not_found", f"the entity has no conversation {conversation_id}",
                       "conversation_id")
    items, nxt = found
    return MessagePage.model_validate({"items": items, "next_cursor": encode_cursor(nxt)})


@router.get("/triples", response_model=TriplePage, tags=["entities"],
            summary="An entity's knowledge-graph triples, newest first (scope: read)",
            responses=documented(403))
def list_triples(q: Annotated[ProcessPageQuery, Query()], request: Request, key: Read
                 ) -> TriplePage:
    """(subject, predicate, object) triples drawn from the entity's turns; with
    ``process_id``, that process's and those captured without one."""
    mem = state(request).memori
    before = cursor(q.cursor)
    with attributed(mem, entity_for(key, q.entity_id), q.process_id):
        items, nxt = mem.triples(before=before, limit=q.limit)
    return TriplePage.model_validate({"items": items, "next_cursor": encode_cursor(nxt)})


@router.get("/export", response_model=dict[str, Any], tags=["portability"],
            summary="Export an entity (scope: read)", responses=documented(403))
def export(q: Annotated[ExportQuery, Query()], request: Request, key: Read) -> dict[str, Any]:
    """Everything stored for the entity (``Memori.export``: ``"format": "memori.export"``),
    for ``POST /v1/import`` or ``memori import``."""
    entity = entity_for(key, q.entity_id)
    data: dict[str, Any] = state(request).memori.export(entity_id=entity,
                                                        process_id=q.process_id)
    return data


@router.post("/import", status_code=201, response_model=ImportOut, tags=["portability"],
             summary="Import an export (scope: admin)", responses=documented(403))
def import_(body: ImportIn, request: Request, key: Admin) -> ImportOut:
    """Restore an export in one transaction (``Memori.import_``); an entity that already has
    rows is refused (422), never merged."""
    counts = state(request).memori.import_(body.data, entity_id=body.entity_id)
    return ImportOut(counts=counts)


@router.delete("/entities/{entity_id:id}", response_model=ForgetOut, tags=["portability"],
               summary="Forget an entity, or one of its processes (scope: admin)",
               responses=documented(403))
def forget(entity_id: Annotated[EntityId, Path()], q: Annotated[ForgetQuery, Query()],
           request: Request, key: Admin) -> ForgetOut:
    """Erase every row of the entity (``Memori.forget``), or of one process of it."""
    counts = state(request).memori.forget(entity_id, process_id=q.process_id)
    return ForgetOut(counts=counts)
