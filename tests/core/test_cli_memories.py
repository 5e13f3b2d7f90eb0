"""The ``memori init | migrate | memories | search`` commands on SQLite and PostgreSQL, and their
bad input: an unknown id or entity, a database that is not memori's, an unreachable server
(one line on stderr each, exit status 2, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from memori_core import Memori
from memori_core.cli import main
from memori_core.storage import migrations

LATEST = len(migrations.MIGRATIONS)
UNREACHABLE = "postgresql://127.0.0.1:1/x"
SERVERS = pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The one line a refused command prints on stderr (exit 2, nothing on stdout)."""
    status, out, err = run(capsys, *argv)
    assert (status, out) == (2, ""), err
    assert err.startswith("memori: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def sql(url: str, *statements: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as c:
            for statement in statements:
                c.execute(text(statement))
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    from sqlalchemy import inspect

    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return set(inspect(c).get_table_names())
    finally:
        engine.dispose()


@SERVERS
def test_init_and_migrate_build_upgrade_and_say_when_there_is_nothing_to_do(
        db_url: str, backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    if backend == "sqlite":  # migrate never creates a SQLite file: a typo stays a typo
        assert "memori init --db" in refused(capsys, "migrate", "--db", db_url)
        assert tables(db_url) == set()  # (inspecting creates the empty file)
    # a database holding the app's tables: migrate refuses it, init builds beside them
    sql(db_url, "CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    err = refused(capsys, "migrate", "--db", db_url)
    assert "holds 1 other table(s): invoices); run `memori init` (not migrate)" in err
    assert tables(db_url) == {"invoices"}
    status, out, _ = run(capsys, "init", "--db", db_url, "--json")
    assert status == 0
    report = json.loads(out)
    assert (report["before"], report["version"], report["latest"], report["changed"]) == (
        0, LATEST, LATEST, True)
    assert {"invoices", "memori_entity_fact", "memori_schema_version"} <= tables(db_url)
    # twice is fine, and says so
    for command in ("init", "migrate"):
        status, out, _ = run(capsys, command, "--db", db_url)
        assert status == 0
        assert out.endswith(f"already at version {LATEST}, the latest: nothing to do\n"), out
    # an older schema is upgraded (migrations are idempotent: the last one runs again)
    sql(db_url, f"DELETE FROM memori_schema_version WHERE version = {LATEST}")
    status, out, _ = run(capsys, "migrate", "--db", db_url)
    assert status == 0
    assert out.endswith(f"from version {LATEST - 1} to {LATEST}\n"), out
    with Memori(conn=db_url) as mem:
        assert mem.schema_status() == {"version": LATEST, "latest": LATEST}


def test_init_and_migrate_of_a_database_that_cannot_be_opened(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("not a database\n")
    for command in ("init", "migrate"):
        assert "file is not a database" in refused(capsys, command, "--db", f"sqlite:///{junk}")
        assert "Connection refused" in refused(capsys, command, "--db", UNREACHABLE)
    assert junk.read_text() == "not a database\n"
    status, out, _ = run(capsys, "init", "--db", f"sqlite:///{tmp_path / 'new.db'}")
    assert status == 0 and out.startswith(f"created memori's schema (version {LATEST}) in ")


def _memory(capsys: pytest.CaptureFixture[str], url: str, memory_id: int) -> dict[str, Any]:
    status, out, err = run(capsys, "memories", "get", str(memory_id), "--entity", "ann",
                           "--db", url, "--json")
    assert status == 0, err
    found: dict[str, Any] = json.loads(out)
    return found


@SERVERS
def test_memories_list_get_update_delete_and_search(
        db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Memori(conn=db_url, augmentation_workers=0) as mem:  # the CLI's own (local) model
        mem.config.storage.build()
        mem.attribution(entity_id="ann", process_id="cook")
        lisbon = mem.remember("The user lives in Lisbon", kind="attribute", slot="lives_in")
        mem.attribution(entity_id="ann", process_id="coach")
        bees = mem.remember("The user keeps bees on the roof")
        mem.attribution(entity_id="bob")
        bobs = mem.remember("The user is vegetarian", kind="preference")
    db = ("--db", db_url)

    status, out, _ = run(capsys, "memories", "list", "--entity", "ann", *db, "--json")
    assert status == 0
    listed = json.loads(out)
    assert [(m["id"], m["kind"], m["process_id"]) for m in listed] == [
        (bees, "fact", "coach"), (lisbon, "attribute", "cook")]  # newest first, bob's apart
    assert (listed[1]["content"], listed[1]["slot"], listed[1]["superseded_by"]) == (
        "The user lives in Lisbon", "lives_in", None)
    status, out, _ = run(capsys, "memories", "list", "--entity", "ann", "--kind", "attribute",
                         *db, "--json")
    assert [m["id"] for m in json.loads(out)] == [lisbon]
    status, out, _ = run(capsys, "memories", "list", "--entity", "ann", "--process", "coach",
                         *db, "--json")
    assert [m["id"] for m in json.loads(out)] == [bees]
    status, out, err = run(capsys, "memories", "list", "--entity", "ann", "--limit", "1", *db)
    assert status == 0 and out.splitlines()[0] == "1 memory of entity 'ann', newest first:"
    assert out.splitlines()[1].split()[:2] == [str(bees), "fact"]
    assert out.splitlines()[1].endswith("The user keeps bees on the roof  [process coach]")
    assert err == "memori: more than 1; --limit N shows more\n"

    first = _memory(capsys, db_url, lisbon)
    assert (first["content"], first["slot"], first["superseded_by"], first["history"]) == (
        "The user lives in Lisbon", "lives_in", None, [])

    # a correction is a new version; the old one is its history, as the API's update keeps it
    status, out, _ = run(capsys, "memories", "update", str(lisbon), "--entity", "ann", *db,
                         "--text", "The user lives in Porto", "--json")
    assert status == 0
    updated = json.loads(out)
    porto = updated["memory"]["id"]
    assert porto != lisbon and updated["supersedes"] == lisbon
    assert (updated["memory"]["content"], updated["memory"]["slot"],
            updated["memory"]["process_id"]) == ("The user lives in Porto", "lives_in", "cook")
    shown = _memory(capsys, db_url, porto)
    assert [(m["id"], m["content"], m["superseded_by"]) for m in shown["history"]] == [
        (lisbon, "The user lives in Lisbon", porto)]
    with Memori(conn=db_url, augmentation_workers=0) as mem:
        mem.attribution(entity_id="ann")
        assert [m.id for m in mem.memory_history(porto) or []] == [lisbon]
    status, out, _ = run(capsys, "memories", "list", "--entity", "ann", *db, "--json")
    assert [m["id"] for m in json.loads(out)] == [porto, bees]
    status, out, _ = run(capsys, "memories", "list", "--entity", "ann", *db,
                         "--include-superseded")
    assert f"The user lives in Lisbon  [process cook]  [superseded by {porto}]" in out

    # search (recall under the name users reach for) finds the correction, not the old text
    status, out, _ = run(capsys, "search", "where does the user live?", "--entity", "ann",
                         "--scope", "entity", *db, "--json")
    assert status == 0
    assert [ln["content"] for ln in json.loads(out)][0] == "The user lives in Porto"
    assert "The user lives in Lisbon" not in out

    status, out, _ = run(capsys, "memories", "delete", str(bees), "--entity", "ann", *db)
    assert (status, out) == (0, f"deleted memory {bees} of entity 'ann' (with its provenance "
                                "and triples)\n")
    status, out, _ = run(capsys, "memories", "list", "--entity", "ann", *db, "--json")
    assert [m["id"] for m in json.loads(out)] == [porto]

    # bad input: one line naming what is unknown; another entity's id is not found either
    unknown: tuple[tuple[str, ...], ...] = (
        ("get", str(bees)), ("delete", str(bees)), ("get", str(bobs)),
        ("update", str(bobs), "--text", "The user eats meat"), ("delete", str(bobs)))
    for argv in unknown:
        err = refused(capsys, "memories", *argv, "--entity", "ann", *db)
        assert f"no memory {argv[1]} of entity 'ann'" in err
    for argv in (("list",), ("get", str(porto)), ("update", str(porto), "--text", "x"),
                 ("delete", str(porto))):
        assert "no entity 'anne' in this database; did you mean 'ann'?" in refused(
            capsys, "memories", *argv, "--entity", "anne", *db)
    assert "no process 'cooks'" in refused(capsys, "memories", "list", "--entity", "ann",
                                           "--process", "cooks", *db)
    assert "--limit must be at least 1" in refused(capsys, "memories", "list", "--entity",
                                                   "ann", "--limit", "0", *db)
    with Memori(conn=db_url, augmentation_workers=0) as mem:  # nothing of bob's was touched
        mem.attribution(entity_id="bob")
        assert [(m.id, m.content) for m in mem.memories()] == [(bobs, "The user is vegetarian")]


@SERVERS
def test_memories_commands_refuse_a_database_that_is_not_memoris(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql(db_url, "CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    junk = tmp_path / "junk.db"
    junk.write_text("not a database\n")
    commands = (("list",), ("get", "1"), ("update", "1", "--text", "x"), ("delete", "1"))
    for db, said in ((db_url, "holds no memori schema"),
                     (f"sqlite:///{junk}", "file is not a database"),
                     (UNREACHABLE, "Connection refused")):
        for argv in commands:
            assert said in refused(capsys, "memories", *argv, "--entity", "ann", "--db", db)
    assert tables(db_url) == {"invoices"}  # nothing was created
