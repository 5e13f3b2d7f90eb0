"""Numbered, append-only schema migrations, recorded in ``memori_schema_version``.

Each migration is a function ``(connection) -> None`` at position N (1-based) of ``MIGRATIONS``.
Never edit or reorder a released migration: append a new one. A migration must be safe on a database
where ``schema.py`` tables were already created by migration 1 at a newer revision (check the
inspector before adding a column).

Concurrency: ``apply`` holds a database-wide lock while it migrates (PostgreSQL advisory lock,
MySQL/MariaDB ``GET_LOCK``, SQLite ``BEGIN IMMEDIATE``), so two processes building at once both
succeed and each migration runs once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Engine, LargeBinary, inspect, select, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.schema import CreateColumn

from memori_core.errors import StorageError
from memori_core.storage import schema

__all__ = ["FTS_COLUMN", "FTS_CONFIG", "FTS_INDEX", "FTS_TABLE", "MIGRATIONS", "apply",
           "current_version", "sqlite_fulltext"]

_LOCK_KEY = 0x6D656D6F7269  # "memori"


def _m0001_initial(conn: Connection) -> None:
    schema.metadata.create_all(conn, tables=schema.TABLES, checkfirst=True)


def _add_column(conn: Connection, table: Any, name: str) -> None:
    """``ALTER TABLE ... ADD COLUMN`` for a column of ``schema.py``, unless migration 1 already
    created the table at a newer revision."""
    if name in {c["name"] for c in inspect(conn).get_columns(table.name)}:
        return
    # the column as CREATE TABLE spells it: type, NOT NULL and the server default, which
    # fills the rows already there
    spec = CreateColumn(table.c[name]).compile(dialect=conn.dialect)
    conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {spec}"))


def _add_index(conn: Connection, table: Any, name: str) -> None:
    """``CREATE INDEX`` for an index of ``schema.py`` unless it exists."""
    if name in {i["name"] for i in inspect(conn).get_indexes(table.name)}:
        return
    next(i for i in table.indexes if i.name == name).create(conn)


def _m0002_extras(conn: Connection) -> None:
    _add_column(conn, schema.conversation_message, "extra_json")
    _add_column(conn, schema.entity_fact, "search_text")
    _add_index(conn, schema.entity_fact, "ix_memori_fact_slot")


def _m0003_sqlite_autoincrement(conn: Connection) -> None:
    """SQLite: ids are never reused (``AUTOINCREMENT``). Without it a new row gets the highest
    id + 1, so after ``forget`` deleted the newest rows their ids went to someone else's, while
    other processes still cached them (entity and session ids) or indexed them (recall indexes
    are refreshed by id). Each table is rebuilt with its rows, foreign keys off (``apply``)."""
    if conn.dialect.name != "sqlite":
        return
    conn.exec_driver_sql("PRAGMA legacy_alter_table = ON")  # referencing tables keep the name
    try:
        for table in schema.TABLES:
            if not table.dialect_options["sqlite"]["autoincrement"]:
                continue
            sql = conn.execute(text("SELECT sql FROM sqlite_master WHERE type = 'table' AND "
                                    "name = :name"), {"name": table.name}).scalar()
            if sql is None or "AUTOINCREMENT" in str(sql).upper():
                continue
            old = f"{table.name}_before_m0003"
            conn.exec_driver_sql(f"ALTER TABLE {table.name} RENAME TO {old}")
            for index in table.indexes:  # their names move to the new table
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS {index.name}")
            table.create(conn)
            # the columns the old table has: a later migration adds the others (a column of
            # ``schema.py`` gets its server default here and is then left alone)
            have = {str(r[1]) for r in conn.exec_driver_sql(f"PRAGMA table_info({old})")}
            columns = ", ".join(c.name for c in table.columns if c.name in have)
            conn.exec_driver_sql(f"INSERT INTO {table.name} ({columns}) "
                                 f"SELECT {columns} FROM {old}")
            conn.exec_driver_sql(f"DROP TABLE {old}")
    finally:
        conn.exec_driver_sql("PRAGMA legacy_alter_table = OFF")
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise StorageError(f"rebuilding the SQLite tables broke foreign keys: {broken[:5]}")


def _m0004_importance(conn: Connection) -> None:
    """``memori_entity_fact.importance`` (a double in [0, 1], NOT NULL, default 0: every memory
    already stored is ordinary) and the index essential-memory reads use."""
    _add_column(conn, schema.entity_fact, "importance")
    _add_index(conn, schema.entity_fact, "ix_memori_fact_importance")


def _m0005_api_keys(conn: Connection) -> None:
    """``memori_api_key``: the API keys of ``memori serve`` (argon2 hashes, scope, entities)."""
    schema.api_key.create(conn, checkfirst=True)


#: SQLite: the FTS5 index of recall's candidate path and its triggers (contentless: it holds
#: the tokens, not a second copy of the text; a row is removed by giving FTS5 the text it was
#: indexed with). Created by ``sqlite_fulltext`` when ``recall_pushdown`` first needs it, not
#: by a migration: its triggers name ``search_text``, and SQLite refuses to drop a column a
#: trigger names.
FTS_TABLE = "memori_fact_fts"
_FTS_TEXT = "coalesce({row}.search_text, {row}.content)"
_SQLITE_FTS = [
    f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(text, content='', "
    "tokenize='porter unicode61')",
    f"CREATE TRIGGER {FTS_TABLE}_insert AFTER INSERT ON memori_entity_fact BEGIN "
    f"INSERT INTO {FTS_TABLE} (rowid, text) VALUES (new.id, {_FTS_TEXT.format(row='new')}); "
    "END",
    f"CREATE TRIGGER {FTS_TABLE}_delete AFTER DELETE ON memori_entity_fact BEGIN "
    f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}, rowid, text) VALUES "
    f"('delete', old.id, {_FTS_TEXT.format(row='old')}); END",
    f"CREATE TRIGGER {FTS_TABLE}_update AFTER UPDATE OF content, search_text ON "
    f"memori_entity_fact BEGIN "
    f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}, rowid, text) VALUES "
    f"('delete', old.id, {_FTS_TEXT.format(row='old')}); "
    f"INSERT INTO {FTS_TABLE} (rowid, text) VALUES (new.id, {_FTS_TEXT.format(row='new')}); "
    "END",
    f"INSERT INTO {FTS_TABLE} (rowid, text) SELECT id, {_FTS_TEXT.format(row='f')} "
    "FROM memori_entity_fact AS f",
]
#: PostgreSQL: the text search configuration; the indexed text's tsvector, stored in
#: ``FTS_COLUMN`` (kept by a trigger, not a generated column: a generated column would stop
#: ``search_text`` from being dropped, and ranking must not parse every matching text again);
#: the GIN index on it. MariaDB/MySQL: the FULLTEXT index's name.
FTS_CONFIG = "english"
FTS_COLUMN = "search_tsv"
FTS_INDEX = "ix_memori_fact_fts"
_PG_FTS = [
    f"ALTER TABLE memori_entity_fact ADD COLUMN IF NOT EXISTS {FTS_COLUMN} tsvector",
    f"""CREATE OR REPLACE FUNCTION memori_fact_tsv() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.content IS DISTINCT FROM OLD.content
            OR NEW.search_text IS DISTINCT FROM OLD.search_text THEN
        NEW.{FTS_COLUMN} := to_tsvector('{FTS_CONFIG}'::regconfig,
                                        coalesce(NEW.search_text, NEW.content));
    END IF;
    RETURN NEW;
END $$""",
    "DROP TRIGGER IF EXISTS memori_fact_tsv ON memori_entity_fact",
    "CREATE TRIGGER memori_fact_tsv BEFORE INSERT OR UPDATE ON memori_entity_fact "
    "FOR EACH ROW EXECUTE FUNCTION memori_fact_tsv()",
    f"UPDATE memori_entity_fact SET {FTS_COLUMN} = to_tsvector('{FTS_CONFIG}'::regconfig, "
    f"coalesce(search_text, content)) WHERE {FTS_COLUMN} IS NULL",
    f"CREATE INDEX IF NOT EXISTS {FTS_INDEX} ON memori_entity_fact USING gin ({FTS_COLUMN})",
]
_FULLTEXT_COLUMNS = ["content", "search_text"]


def sqlite_fulltext(conn: Connection) -> str | None:
    """Make the SQLite FTS5 index of recall's candidate path (table, triggers, every memory
    indexed), unless it is there with its triggers. Idempotent; run inside a write
    transaction.

    Returns:
        None when it is there, else why it cannot be (this SQLite has no FTS5).
    """
    have = {str(r[0]) for r in conn.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE name LIKE 'memori_fact_fts%'")}
    if {FTS_TABLE, f"{FTS_TABLE}_insert", f"{FTS_TABLE}_delete", f"{FTS_TABLE}_update"} <= have:
        return None
    for trigger in ("insert", "delete", "update"):
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {FTS_TABLE}_{trigger}")
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {FTS_TABLE}")
    try:
        conn.exec_driver_sql(_SQLITE_FTS[0])
    except OperationalError as exc:  # no such module: fts5 (the transaction goes on)
        return f"this SQLite has no FTS5 ({exc.orig})"
    for sql in _SQLITE_FTS[1:]:
        conn.exec_driver_sql(sql)
    return None


def _m0006_fulltext(conn: Connection) -> None:
    """Full-text search over each memory's indexed text (``search_text``, else ``content``),
    kept current by the transaction that writes the memory: recall's candidate path
    (``Config.recall_pushdown``) takes its lexical candidates from it. PostgreSQL: the text's
    ``tsvector`` (English configuration) in ``search_tsv``, set by a row trigger on insert and
    on a change of the text, every row filled here, and a GIN index on it; MariaDB/MySQL: a
    ``FULLTEXT`` index on (content, search_text). SQLite: nothing here (``sqlite_fulltext``).
    Idempotent: run again (a dropped index or column), it makes what is missing."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        for sql in _PG_FTS:
            conn.exec_driver_sql(sql)
    elif dialect in ("mysql", "mariadb"):
        have = {i["name"]: i["column_names"]
                for i in inspect(conn).get_indexes("memori_entity_fact")}
        if have.get(FTS_INDEX) == _FULLTEXT_COLUMNS:
            return
        if FTS_INDEX in have:  # lost a column: made again on both
            conn.exec_driver_sql(f"DROP INDEX {FTS_INDEX} ON memori_entity_fact")
        conn.exec_driver_sql(f"ALTER TABLE memori_entity_fact ADD FULLTEXT INDEX {FTS_INDEX} "
                             f"({', '.join(_FULLTEXT_COLUMNS)})")


def _m0007_vector_blocks(conn: Connection) -> None:
    """``memori_vector_block``: each entity's embeddings packed as 8-bit codes, what a cold
    recall reads instead of every float32 vector (``storage/packed.py``). Empty here: the
    writes of memories fill it (``packed.pack``). PostgreSQL: its blobs stored out of line
    uncompressed (``STORAGE EXTERNAL``: codes do not compress, and a read skips pglz)."""
    _create_external(conn, schema.vector_block)


def _m0008_term_blocks(conn: Connection) -> None:
    """``memori_term_block``: the BM25 postings of each packed block (by term hash) and, in
    ``memori_vector_block.lengths``, each packed memory's BM25 length, so a cold recall scores
    BM25 exactly from a few rows (``storage/packed.py``). The blocks packed before (derived
    data, without postings) are dropped with their table, made again with the new column:
    the next writes and cold recalls of each entity pack it again."""
    schema.term_block.drop(conn, checkfirst=True)
    schema.vector_block.drop(conn, checkfirst=True)
    _create_external(conn, schema.vector_block)
    _create_external(conn, schema.term_block)


def _create_external(conn: Connection, table: Any) -> None:
    """Make ``table`` (unless it is); PostgreSQL: its blobs stored out of line uncompressed
    (``STORAGE EXTERNAL``: codes and postings do not compress, and a read skips pglz)."""
    table.create(conn, checkfirst=True)
    if conn.dialect.name == "postgresql":
        for column in table.c:
            if isinstance(column.type, LargeBinary):
                conn.exec_driver_sql(f"ALTER TABLE {table.name} ALTER COLUMN {column.name} "
                                     "SET STORAGE EXTERNAL")


MIGRATIONS: list[Callable[[Connection], None]] = [_m0001_initial, _m0002_extras,
                                                  _m0003_sqlite_autoincrement,
                                                  _m0004_importance, _m0005_api_keys,
                                                  _m0006_fulltext, _m0007_vector_blocks,
                                                  _m0008_term_blocks]


def current_version(conn: Connection) -> int:
    """The highest applied migration number, 0 for an empty database."""
    if not inspect(conn).has_table(schema.schema_version.name):
        return 0
    rows = conn.execute(select(schema.schema_version.c.version)).scalars().all()
    return max(rows, default=0)


def apply(engine: Engine) -> int:
    """Apply every pending migration.

    Returns:
        the schema version after migrating.

    Raises:
        StorageError: when a DDL statement fails or the schema is newer than this memori.
    """
    dialect = engine.dialect.name
    try:
        with engine.connect() as conn:
            if dialect in ("mysql", "mariadb"):
                # DDL commits implicitly on MySQL, so the lock is per session, not per transaction
                got = conn.execute(text("SELECT GET_LOCK('memori_schema', 120)")).scalar()
                if got != 1:
                    raise StorageError("timed out after 120 s waiting for the schema lock")
                try:
                    return _migrate(conn)
                finally:
                    conn.execute(text("SELECT RELEASE_LOCK('memori_schema')"))
            if dialect == "sqlite":
                # foreign keys off while migrating (a no-op inside a transaction, so on the
                # driver's connection before BEGIN): migration 3 rebuilds referenced tables
                raw = conn.connection.dbapi_connection
                assert raw is not None
                raw.execute("PRAGMA foreign_keys = OFF")
                try:
                    with conn.execution_options(memori_write=True).begin():
                        return _migrate(conn, commit=False)
                finally:
                    raw.execute("PRAGMA foreign_keys = ON")
            with conn.begin():
                if dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
                return _migrate(conn, commit=False)
    except SQLAlchemyError as exc:
        raise StorageError(f"building the memori schema failed: {exc}") from exc


def _migrate(conn: Connection, commit: bool = True) -> int:
    version = current_version(conn)
    if version > len(MIGRATIONS):
        raise StorageError(
            f"the database schema is at version {version}, newer than this memori-core "
            f"({len(MIGRATIONS)}); upgrade memori-core")
    for number in range(version + 1, len(MIGRATIONS) + 1):
        MIGRATIONS[number - 1](conn)
        conn.execute(schema.schema_version.insert().values(
            version=number, applied_at=datetime.now(timezone.utc).replace(tzinfo=None)))
        if commit:
            conn.commit()
    return len(MIGRATIONS)
