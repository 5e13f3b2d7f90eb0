"""The schema, in SQLAlchemy Core, one definition for SQLite, PostgreSQL and MariaDB/MySQL.

Seed table names are kept: ``memori_entity``, ``memori_process``, ``memori_session``,
``memori_conversation``, ``memori_conversation_message``, ``memori_entity_fact``,
``memori_process_attribute``, ``memori_knowledge_graph``; added: ``memori_fact_mention``
(provenance: memory -> source message), ``memori_augmentation_job`` (the durable queue),
``memori_meta`` (embedding model and dimension of the database), ``memori_api_key`` (the keys of
``memori serve``, hashed), ``memori_vector_block`` (each entity's embeddings packed as 8-bit
codes for cold recall, derived from ``memori_entity_fact``), ``memori_term_block`` (the BM25
postings of each block, by term hash) and ``memori_schema_version``.

External ids (entity, process, session) are looked up through ``external_key``, the sha256 hex of
the id, so lookups are exact on every dialect (MariaDB's default collations are case- and
trailing-space-insensitive, which would merge ``"Ann"`` and ``"ann "``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects import mysql

__all__ = ["metadata", "TABLES"]

metadata = MetaData()

# 64-bit ids everywhere except SQLite, where only INTEGER PRIMARY KEY is the autoincrementing rowid.
PK = BigInteger().with_variant(Integer(), "sqlite")
FK = BigInteger().with_variant(Integer(), "sqlite")
# Unbounded text: MySQL's TEXT stops at 64 KiB.
LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
Blob = LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")
# Microsecond timestamps (MySQL's DATETIME defaults to whole seconds). Naive UTC.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

_TABLE_KW: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_engine": "InnoDB", "mariadb_charset": "utf8mb4",
             "mariadb_engine": "InnoDB"}


#: tables with an ``id`` primary key: on SQLite ``AUTOINCREMENT``, so the id of a deleted row
#: (``forget``) is never given to a new one; ids are cached by every process, and recall
#: indexes are refreshed by id (PostgreSQL sequences and MariaDB counters never reuse ids)
_ID_TABLE_KW: dict[str, Any] = {**_TABLE_KW, "sqlite_autoincrement": True}


def _pk() -> Column:
    return Column("id", PK, primary_key=True, autoincrement=True)


schema_version = Table(
    "memori_schema_version", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", Timestamp, nullable=False),
    **_TABLE_KW,
)

meta = Table(
    "memori_meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    **_TABLE_KW,
)

entity = Table(
    "memori_entity", metadata,
    _pk(),
    Column("external_id", String(255), nullable=False),
    Column("external_key", String(64), nullable=False, unique=True),
    Column("created_at", Timestamp, nullable=False),
    # bumped in the transaction that adds or removes the entity's memories: recall caches
    # compare it (a primary-key read) before trusting their index
    Column("memory_version", BigInteger, nullable=False, default=0, server_default="0"),
    **_ID_TABLE_KW,
)

process = Table(
    "memori_process", metadata,
    _pk(),
    Column("external_id", String(255), nullable=False),
    Column("external_key", String(64), nullable=False, unique=True),
    Column("created_at", Timestamp, nullable=False),
    **_ID_TABLE_KW,
)

session = Table(
    "memori_session", metadata,
    _pk(),
    Column("entity_id", FK, ForeignKey("memori_entity.id"), nullable=False),
    Column("process_id", FK, ForeignKey("memori_process.id"), nullable=True),
    Column("external_id", String(255), nullable=False),
    # sha256 of "<entity pk>:<session id>": a session id is unique per entity.
    Column("external_key", String(64), nullable=False, unique=True),
    Column("created_at", Timestamp, nullable=False),
    **_ID_TABLE_KW,
)

conversation = Table(
    "memori_conversation", metadata,
    _pk(),
    Column("session_id", FK, ForeignKey("memori_session.id"), nullable=False),
    Column("entity_id", FK, ForeignKey("memori_entity.id"), nullable=False),
    Column("process_id", FK, ForeignKey("memori_process.id"), nullable=True),
    Column("summary", LongText, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("last_activity_at", Timestamp, nullable=False),
    Index("ix_memori_conversation_session", "session_id", "id"),
    **_ID_TABLE_KW,
)

conversation_message = Table(
    "memori_conversation_message", metadata,
    _pk(),
    Column("conversation_id", FK, ForeignKey("memori_conversation.id"), nullable=False),
    Column("session_id", FK, ForeignKey("memori_session.id"), nullable=False),
    Column("entity_id", FK, ForeignKey("memori_entity.id"), nullable=False),
    Column("process_id", FK, ForeignKey("memori_process.id"), nullable=True),
    Column("role", String(16), nullable=False),
    Column("name", String(255), nullable=True),
    Column("content", LongText, nullable=False),
    # the original content parts as JSON when the caller passed a list, for an exact round-trip
    Column("content_json", LongText, nullable=True),
    # tool_calls / tool_call_id / metadata as given to capture, JSON (migration 2)
    Column("extra_json", LongText, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_memori_message_conversation", "conversation_id", "id"),
    Index("ix_memori_message_session", "session_id", "id"),
    Index("ix_memori_message_entity", "entity_id", "id"),
    **_ID_TABLE_KW,
)

entity_fact = Table(
    "memori_entity_fact", metadata,
    _pk(),
    Column("entity_id", FK, ForeignKey("memori_entity.id"), nullable=False),
    Column("process_id", FK, ForeignKey("memori_process.id"), nullable=True),
    Column("kind", String(32), nullable=False),
    Column("content", LongText, nullable=False),
    # sha256 of entity, process, kind and normalized text: one memory per entity and text
    Column("dedup_key", String(64), nullable=False, unique=True),
    Column("slot", String(255), nullable=True),
    # the text BM25 indexes when it differs from content (an episodic memory adds the speaker,
    # date and the message before it); migration 2
    Column("search_text", LongText, nullable=True),
    Column("embedding", Blob, nullable=False),  # float32 little-endian, embedding_dim values
    Column("embedding_model", String(255), nullable=False),
    Column("embedding_dim", Integer, nullable=False),
    Column("mention_count", Integer, nullable=False, default=1),
    Column("created_at", Timestamp, nullable=False),
    Column("last_seen_at", Timestamp, nullable=False),
    Column("superseded_by", FK, nullable=True),
    # in [0, 1], 0 = ordinary: how much it matters that recall never misses it (essential
    # memories: ``Store.essential_memories``); a double, so 0.9 reads back as 0.9 (MySQL's FLOAT
    # is single precision); migration 4
    Column("importance", Double, nullable=False, default=0.0, server_default=text("0")),
    Index("ix_memori_fact_entity", "entity_id", "id"),
    Index("ix_memori_fact_slot", "entity_id", "slot"),  # migration 2
    # essential memories: a range over the few rows with importance > 0 (migration 4)
    Index("ix_memori_fact_importance", "entity_id", "importance"),
    **_ID_TABLE_KW,
)

fact_mention = Table(
    "memori_fact_mention", metadata,
    Column("fact_id", FK, ForeignKey("memori_entity_fact.id"), primary_key=True),
    Column("message_id", FK, ForeignKey("memori_conversation_message.id"), primary_key=True),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_memori_mention_message", "message_id"),
    **_TABLE_KW,
)

process_attribute = Table(
    "memori_process_attribute", metadata,
    _pk(),
    Column("process_id", FK, ForeignKey("memori_process.id"), nullable=False),
    Column("entity_id", FK, ForeignKey("memori_entity.id"), nullable=True),
    Column("content", LongText, nullable=False),
    Column("dedup_key", String(64), nullable=False, unique=True),
    Column("mention_count", Integer, nullable=False, default=1),
    Column("created_at", Timestamp, nullable=False),
    Column("last_seen_at", Timestamp, nullable=False),
    **_ID_TABLE_KW,
)

knowledge_graph = Table(
    "memori_knowledge_graph", metadata,
    _pk(),
    Column("entity_id", FK, ForeignKey("memori_entity.id"), nullable=False),
    Column("process_id", FK, ForeignKey("memori_process.id"), nullable=True),
    Column("subject", String(255), nullable=False),
    Column("predicate", String(255), nullable=False),
    Column("object", LongText, nullable=False),
    Column("dedup_key", String(64), nullable=False, unique=True),
    Column("fact_id", FK, ForeignKey("memori_entity_fact.id"), nullable=True),
    Column("mention_count", Integer, nullable=False, default=1),
    Column("created_at", Timestamp, nullable=False),
    Column("last_seen_at", Timestamp, nullable=False),
    Index("ix_memori_kg_entity", "entity_id", "id"),
    **_ID_TABLE_KW,
)

augmentation_job = Table(
    "memori_augmentation_job", metadata,
    _pk(),
    Column("entity_id", FK, ForeignKey("memori_entity.id"), nullable=False),
    Column("process_id", FK, ForeignKey("memori_process.id"), nullable=True),
    Column("conversation_id", FK, ForeignKey("memori_conversation.id"), nullable=False),
    Column("message_ids", Text, nullable=False),  # JSON list of memori_conversation_message ids
    Column("status", String(16), nullable=False),  # queued | running | done | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", LongText, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("run_after", Timestamp, nullable=False),
    Column("claimed_at", Timestamp, nullable=True),
    Column("claimed_by", String(64), nullable=True),
    Column("finished_at", Timestamp, nullable=True),
    Index("ix_memori_job_status", "status", "run_after", "id"),
    **_ID_TABLE_KW,
)

api_key = Table(
    "memori_api_key", metadata,
    _pk(),
    # the public part of the key (``mk_<key_id>_<secret>``): how a presented key finds its row
    Column("key_id", String(32), nullable=False, unique=True),
    Column("name", String(255), nullable=True),
    Column("scope", String(16), nullable=False),  # read | write | admin
    Column("entity_ids", Text, nullable=True),  # JSON list of entity ids the key may touch
    Column("entity_prefix", String(255), nullable=True),  # or the prefix they start with
    Column("secret_hash", String(255), nullable=False),  # argon2id of the secret part
    Column("created_at", Timestamp, nullable=False),
    Column("revoked_at", Timestamp, nullable=True),
    **_ID_TABLE_KW,
)  # migration 5

vector_block = Table(
    "memori_vector_block", metadata,
    _pk(),
    Column("entity_id", FK, ForeignKey("memori_entity.id"), nullable=False),
    # the memories it holds: ids first_id .. last_id of the entity (not every id between is
    # the entity's), row_count of them, their ids summed (to audit a block against the rows)
    Column("first_id", FK, nullable=False),
    Column("last_id", FK, nullable=False),
    Column("row_count", Integer, nullable=False),
    Column("id_sum", BigInteger, nullable=False),
    Column("dim", Integer, nullable=False),
    # characters of their indexed text (search_text, else content), summed: BM25's mean length
    Column("chars", BigInteger, nullable=False),
    Column("ids", Blob, nullable=False),  # int64 little-endian, row_count values, ascending
    Column("codes", Blob, nullable=False),  # int8, row_count x dim, row-major
    Column("scales", Blob, nullable=False),  # float32 little-endian per row: vector ~ scale x code
    Column("residuals", Blob, nullable=False),  # float32 little-endian per row: |vector - that|
    # uint16 little-endian per row: BM25 tokens of its indexed text (migration 8)
    Column("lengths", Blob, nullable=True),
    Index("ix_memori_vector_block_entity", "entity_id", "last_id"),
    **_ID_TABLE_KW,
)  # migration 7: an entity's vectors packed for recall's candidate path (storage/packed.py)

term_block = Table(
    "memori_term_block", metadata,
    _pk(),
    # the block whose memories' BM25 postings these are: they go with it
    Column("block_id", FK, ForeignKey("memori_vector_block.id", ondelete="CASCADE"),
           nullable=False),
    Column("entity_id", FK, nullable=False),
    Column("bucket", Integer, nullable=False),  # of every term here: term hash mod BUCKETS
    Column("terms", Blob, nullable=False),  # int64 little-endian term hashes, ascending
    Column("starts", Blob, nullable=False),  # int32 per term + 1: its postings' start
    Column("rows", Blob, nullable=False),  # uint16 per posting: the memory's row in the block
    Column("tfs", Blob, nullable=False),  # uint16 per posting: the term's count in the memory
    Index("ix_memori_term_block_entity", "entity_id", "bucket"),
    Index("ix_memori_term_block_block", "block_id"),
    **_ID_TABLE_KW,
)  # migration 8: the BM25 postings of each block (storage/packed.py)

#: Every table, in creation order.
TABLES = [schema_version, meta, entity, process, session, conversation, conversation_message,
          entity_fact, fact_mention, process_attribute, knowledge_graph, augmentation_job,
          api_key, vector_block, term_block]
