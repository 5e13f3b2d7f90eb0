"""Every accepted form of ``conn=`` does a real capture -> augmentation -> recall round-trip; the
rejected forms say what to pass instead."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from memori_ids import stable_id
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from memori_core import ConfigurationError, Memori
from memori_core.testing import HashEmbedder

FACT = "my favourite colour is teal 🙂 O'Brien; DROP TABLE x;--"


def round_trip(mem: Memori, *, build: bool = True) -> None:
    """Capture one turn, wait for its augmentation and recall it; then close ``mem``."""
    try:
        if build:
            mem.config.storage.build()
        entity = f"user-{uuid.uuid4().hex[:8]}"
        mem.attribution(entity_id=entity, process_id="conn-form")
        ids = mem.capture([{"role": "user", "content": FACT},
                           {"role": "assistant", "content": "noted"}])
        assert len(ids) == 2
        assert [m["content"] for m in mem.session_messages()] == [FACT, "noted"]
        assert mem.augmentation.wait(timeout=30)
        assert mem.augmentation.failed() == []
        hits = mem.recall("what is my favourite colour", kinds=["episodic"])
        assert [h.content for h in hits] == [FACT]
        assert hits[0].source_message_ids == (ids[0],)
        mem.attribution(entity_id=entity + "-other", process_id="conn-form")
        assert mem.recall("what is my favourite colour", kinds=["episodic"]) == []
    finally:
        mem.close()


def memori_tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {t for t in inspect(engine).get_table_names() if t.startswith("memori_")}
    finally:
        engine.dispose()


def dbapi_factory(backend: str, url: str) -> Any:
    u = make_url(url)
    if backend == "sqlite":
        return lambda: sqlite3.connect(u.database)
    if backend == "postgresql":
        return lambda: psycopg.connect(host=u.host, port=u.port, user=u.username,
                                       password=u.password or "", dbname=u.database)
    return lambda: pymysql.connect(host=u.host, port=u.port or 3306, user=u.username,
                                   password=u.password or "", database=u.database,
                                   charset="utf8mb4")


def default_isolation(engine: Any) -> str:
    with engine.connect() as c:
        return str(c.get_isolation_level())


# ---- None --------------------------------------------------------------------------------------

def test_none_uses_memori_database_url(db_url: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORI_DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)
    mem = Memori(embedder=HashEmbedder())  # builds itself
    assert mem.engine.url.database == make_url(db_url).database
    round_trip(mem, build=False)
    assert not (tmp_path / "memori.db").exists()
    assert {"memori_conversation_message", "memori_schema_version"} <= memori_tables(db_url)


def test_none_without_env_creates_memori_db_in_cwd(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMORI_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    mem = Memori(embedder=HashEmbedder())
    assert (tmp_path / "memori.db").exists()
    round_trip(mem, build=False)
    with sqlite3.connect(tmp_path / "memori.db") as raw:
        got = raw.execute("SELECT content FROM memori_conversation_message ORDER BY id").fetchall()
    raw.close()
    assert got == [(FACT,), ("noted",)]


# ---- URL, Engine, sessionmaker, Session ------------------------------------------------------------

def test_url_string(db_url: str) -> None:
    round_trip(Memori(conn=db_url, embedder=HashEmbedder()))
    assert "memori_entity_fact" in memori_tables(db_url)


def test_url_without_driver_maps_to_the_default_driver(backend: str, db_url: str) -> None:
    bare = db_url.replace("postgresql+psycopg://", "postgresql://").replace(
        "mysql+pymysql://", "mysql://")
    mem = Memori(conn=bare, embedder=HashEmbedder())
    assert mem.engine.driver == {"sqlite": "pysqlite", "postgresql": "psycopg",
                                 "mariadb": "pymysql"}[backend]
    round_trip(mem)


def test_engine(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        with engine.connect() as c:  # used by the app before memori sees it
            c.execute(text("SELECT 1"))
        isolation = default_isolation(engine)
        mem = Memori(conn=engine, embedder=HashEmbedder())
        assert mem.engine.pool is engine.pool
        round_trip(mem)
        # closing memori leaves the caller's engine usable, at its own isolation level
        with engine.connect() as c:
            assert c.execute(text("SELECT COUNT(*) FROM memori_conversation_message")
                             ).scalar_one() == 2
        assert default_isolation(engine) == isolation
    finally:
        engine.dispose()


def test_sessionmaker(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        factory = sessionmaker(bind=engine)
        mem = Memori(conn=factory, embedder=HashEmbedder())
        assert mem.engine.pool is engine.pool
        round_trip(mem)
        with factory() as s:
            assert s.execute(text("SELECT COUNT(*) FROM memori_entity_fact WHERE "
                                  "kind = 'episodic'")).scalar_one() == 1
    finally:
        engine.dispose()


def test_session(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        with Session(engine) as session:
            mem = Memori(conn=session, embedder=HashEmbedder())
            assert mem.engine.pool is engine.pool
            round_trip(mem)
    finally:
        engine.dispose()


def test_sessionmaker_without_bind_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="bind") as exc:
        Memori(conn=sessionmaker(), embedder=HashEmbedder())
    assert exc.value.argument == "conn"


# ---- DB-API factories ------------------------------------------------------------------------------

def test_dbapi_factory(backend: str, db_url: str) -> None:
    factory = dbapi_factory(backend, db_url)
    mem = Memori(conn=factory, embedder=HashEmbedder())
    assert mem.engine.dialect.name == {"sqlite": "sqlite", "postgresql": "postgresql",
                                       "mariadb": "mysql"}[backend]
    round_trip(mem)
    assert "memori_augmentation_job" in memori_tables(db_url)


def test_factory_returning_something_else_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="not a DB-API connection") as exc:
        Memori(conn=lambda: 42, embedder=HashEmbedder())
    assert exc.value.argument == "conn"

    def broken() -> Any:
        raise OSError("no route")

    with pytest.raises(ConfigurationError, match="no route") as exc:
        Memori(conn=broken, embedder=HashEmbedder())
    assert exc.value.argument == "conn"


# ---- rejected forms --------------------------------------------------------------------------------

@pytest.mark.parametrize("conn", [42, object(), 3.5, b"sqlite:///x.db", ["sqlite:///x.db"],
                                  Path("memori.db")], ids=stable_id)
def test_unsupported_object_lists_accepted_forms(conn: object) -> None:
    with pytest.raises(ConfigurationError) as exc:
        Memori(conn=conn, embedder=HashEmbedder())
    assert exc.value.argument == "conn"
    message = str(exc.value)
    for form in ("None", "URL", "Engine", "sessionmaker", "Session", "callable",
                 "DB-API", "Django"):
        assert form in message, form


def test_raw_dbapi_connections_are_rejected_with_a_factory_hint(backend: str,
                                                                 db_url: str) -> None:
    raw = dbapi_factory(backend, db_url)()
    try:
        with pytest.raises(ConfigurationError) as exc:
            Memori(conn=raw, embedder=HashEmbedder())
        assert exc.value.argument == "conn"
        assert "factory" in str(exc.value)
        assert "lambda" in str(exc.value)
    finally:
        raw.close()


@pytest.mark.parametrize(("url", "says"), [
    ("not a url", "not a database URL"),
    ("sqlite://", "in-memory"),
    ("sqlite:///:memory:", "in-memory"),
    ("nosuchdialect://x/y", "supported databases are SQLite, PostgreSQL and MySQL/MariaDB"),
    ("postgresql+nosuchdriver://u@127.0.0.1/x", 'pip install "memori-core[postgres]"'),
    ("mysql+nosuchdriver://u@127.0.0.1/x", 'pip install "memori-core[mysql]"'),
])
def test_bad_urls_are_configuration_errors(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as exc:
        Memori(conn=url, embedder=HashEmbedder())
    assert exc.value.argument == "conn"
    assert says in str(exc.value)


# ---- Django (settings.configure may run once per process: each case in its own process) -------------

DJANGO_SCRIPT = textwrap.dedent("""
    import json, sys
    import django
    from django.conf import settings

    settings.configure(DATABASES=json.loads(sys.argv[1]), USE_TZ=True)
    django.setup()
    from django.db import connection, connections

    from memori_core import ConfigurationError, Memori
    from memori_core.testing import HashEmbedder

    # Django itself keeps working next to memori on the same database
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE app_note (id integer primary key, body varchar(100))")
        cur.execute("INSERT INTO app_note (id, body) VALUES (1, 'from django')")

    mem = Memori(conn=connection, embedder=HashEmbedder())
    mem.config.storage.build()
    mem.attribution(entity_id="django-user", process_id="django-app")
    ids = mem.capture([{"role": "user", "content": "I deploy with Django on Fridays 🙂"},
                       {"role": "assistant", "content": "brave"}])
    ok = mem.augmentation.wait(timeout=30)
    hits = mem.recall("when do I deploy with Django", kinds=["episodic"])
    out = {"dialect": mem.engine.dialect.name, "ids": ids, "waited": ok,
           "failed": mem.augmentation.failed(),
           "hits": [[h.content, list(h.source_message_ids)] for h in hits],
           "messages": [m["content"] for m in mem.session_messages()]}
    mem.close()
    with connection.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM memori_conversation_message")
        out["django_sees_messages"] = cur.fetchone()[0]
        cur.execute("SELECT body FROM app_note")
        out["app_note"] = cur.fetchone()[0]
    if "memory" in connections.databases:
        try:
            Memori(conn=connections["memory"], embedder=HashEmbedder())
        except ConfigurationError as exc:
            out["memory"] = [type(exc).__name__, exc.argument, str(exc)]
    print("RESULT " + json.dumps(out))
""")


def run_django(databases: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    script = tmp_path / "django_case.py"
    script.write_text(DJANGO_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), json.dumps(databases)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(lines) == 1, proc.stdout + proc.stderr
    return json.loads(lines[0][len("RESULT "):])


def check_django(out: dict[str, Any], dialect: str) -> None:
    assert out["dialect"] == dialect
    assert out["waited"] is True
    assert out["failed"] == []
    assert out["messages"] == ["I deploy with Django on Fridays 🙂", "brave"]
    assert out["hits"] == [["I deploy with Django on Fridays 🙂", [out["ids"][0]]]]
    assert out["django_sees_messages"] == 2
    assert out["app_note"] == "from django"


def test_django_connection_sqlite(tmp_path: Path) -> None:
    out = run_django({
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "dj.db")},
        "memory": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    }, tmp_path)
    check_django(out, "sqlite")
    assert out["memory"][:2] == ["ConfigurationError", "conn"]
    assert "in-memory" in out["memory"][2]


def test_django_connection_postgresql(pg_url: str, tmp_path: Path) -> None:
    u = make_url(pg_url)
    out = run_django({"default": {
        "ENGINE": "django.db.backends.postgresql", "NAME": u.database, "USER": u.username,
        "PASSWORD": u.password or "", "HOST": u.host, "PORT": str(u.port or 5432)}}, tmp_path)
    check_django(out, "postgresql")
