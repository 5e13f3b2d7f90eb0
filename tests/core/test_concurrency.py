"""One ``Memori`` instance shared by many threads and asyncio tasks, each for its own entity; two
processes building the schema at the same moment."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from memori_core import Memori
from memori_core.storage import migrations
from memori_core.testing import HashEmbedder

THREADS = 8
TURNS = 200
TASKS = 100


@pytest.fixture
def shared(mem: Memori) -> Memori:
    """One instance every thread or task of a test shares."""
    return mem


def messages_by_entity(mem: Memori) -> dict[str, list[tuple[int, str, str]]]:
    """(message id, role, content) per external entity id, from the database."""
    out: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    with mem.engine.connect() as c:
        rows = c.execute(text(
            "SELECT e.external_id, m.id, m.role, m.content FROM memori_conversation_message m "
            "JOIN memori_entity e ON e.id = m.entity_id ORDER BY m.id")).all()
    for entity, mid, role, content in rows:
        out[entity].append((int(mid), role, content))
    return dict(out)


def run_threads(target: Callable[[int], None], n: int) -> None:
    """Run ``target(0..n-1)`` in n threads and wait for all of them."""
    pool = [threading.Thread(target=target, args=(t,)) for t in range(n)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_threads_share_one_instance_without_mixing_entities(shared: Memori) -> None:
    mem = shared
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []
    captured: dict[int, list[int]] = {}

    def worker(t: int) -> None:
        try:
            start.wait(timeout=30)
            mem.attribution(entity_id=f"thread-{t}", process_id="shared-agent")
            ids: list[int] = []
            for turn in range(TURNS):
                ids += mem.capture([
                    {"role": "user", "content": f"t{t} says turn {turn} zebra{t}"},
                    {"role": "assistant", "content": f"t{t} reply {turn}"}])
                assert mem.entity_id == f"thread-{t}"
            captured[t] = ids
        except BaseException as exc:  # noqa: BLE001 - every failure is reported below
            errors.append(exc)

    run_threads(worker, THREADS)
    assert errors == []
    assert mem.entity_id is None  # the main thread never had an attribution

    stored = messages_by_entity(mem)
    assert set(stored) == {f"thread-{t}" for t in range(THREADS)}
    for t in range(THREADS):
        rows = stored[f"thread-{t}"]
        assert len(rows) == 2 * TURNS
        assert [r[0] for r in rows] == captured[t]
        expected = []
        for turn in range(TURNS):
            expected += [("user", f"t{t} says turn {turn} zebra{t}"),
                         ("assistant", f"t{t} reply {turn}")]
        assert [(r[1], r[2]) for r in rows] == expected
    with mem.engine.connect() as c:
        per_entity = dict(c.execute(text(
            "SELECT e.external_id, COUNT(*) FROM memori_conversation_message m "
            "JOIN memori_entity e ON e.id = m.entity_id GROUP BY e.external_id")).all())
        assert per_entity == {f"thread-{t}": 2 * TURNS for t in range(THREADS)}
        assert c.execute(text("SELECT COUNT(*) FROM memori_augmentation_job")
                         ).scalar_one() == THREADS * TURNS
        assert c.execute(text("SELECT COUNT(*) FROM memori_session")).scalar_one() == THREADS

    assert mem.augmentation.wait(timeout=120)
    assert mem.augmentation.failed() == []
    for t in range(THREADS):
        mem.attribution(entity_id=f"thread-{t}", process_id="shared-agent")
        own = set(captured[t])
        hits = mem.recall(f"t{t} says turn 17 zebra{t}", limit=20)
        assert hits[0].content == f"t{t} says turn 17 zebra{t}"
        assert len(hits) == 20
        for h in hits:
            assert h.content.startswith(f"t{t} says turn ")
            assert set(h.source_message_ids) <= own
        # any other entity's exact text finds nothing of theirs here
        other = (t + 1) % THREADS
        for h in mem.recall(f"t{other} says turn 17 zebra{other}", limit=20):
            assert h.content.startswith(f"t{t} says")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_asyncio_tasks_share_one_instance_without_mixing_entities(shared: Memori) -> None:
    mem = shared

    async def task(i: int, everyone: asyncio.Barrier) -> tuple[str, list[int]]:
        mem.attribution(entity_id=f"task-{i}", process_id="bot")
        session = mem.new_session()
        await everyone.wait()  # every task has set its own attribution before any captures
        ids = []
        for turn in range(2):
            ids += await asyncio.to_thread(mem.capture, [
                {"role": "user", "content": f"task{i} turn{turn} walrus{i}"}])
            assert (mem.entity_id, mem.session_id) == (f"task-{i}", session)
            ids += mem.capture([{"role": "assistant", "content": f"task{i} direct{turn}"}])
            await asyncio.sleep(0)  # interleave with the other tasks
            assert (mem.entity_id, mem.session_id) == (f"task-{i}", session)
        return session, ids

    async def main() -> list[tuple[str, list[int]]]:
        everyone = asyncio.Barrier(TASKS)
        return await asyncio.gather(*(task(i, everyone) for i in range(TASKS)))

    results = asyncio.run(main())
    assert len({s for s, _ in results}) == TASKS

    stored = messages_by_entity(mem)
    assert set(stored) == {f"task-{i}" for i in range(TASKS)}
    for i, (_session, ids) in enumerate(results):
        rows = stored[f"task-{i}"]
        assert [r[0] for r in rows] == ids
        assert [r[2] for r in rows] == [f"task{i} turn0 walrus{i}", f"task{i} direct0",
                                        f"task{i} turn1 walrus{i}", f"task{i} direct1"]
    with mem.engine.connect() as c:
        sessions = dict(c.execute(text(
            "SELECT s.external_id, e.external_id FROM memori_session s "
            "JOIN memori_entity e ON e.id = s.entity_id")).all())
    assert sessions == {s: f"task-{i}" for i, (s, _) in enumerate(results)}

    assert mem.augmentation.wait(timeout=60)
    assert mem.augmentation.failed() == []

    async def recall(i: int) -> list[str]:
        mem.attribution(entity_id=f"task-{i}", process_id="bot")
        await asyncio.sleep(0)
        threaded = await asyncio.to_thread(mem.recall, f"task{i} turn0 walrus{i}", 10)
        direct = mem.recall(f"task{i} turn0 walrus{i}", limit=10)
        assert [h.id for h in threaded] == [h.id for h in direct]
        return [h.content for h in direct]

    async def recall_all() -> list[list[str]]:
        return await asyncio.gather(*(recall(i) for i in range(TASKS)))

    for i, contents in enumerate(asyncio.run(recall_all())):
        assert contents[0] == f"task{i} turn0 walrus{i}"
        assert set(contents) <= {f"task{i} turn0 walrus{i}", f"task{i} turn1 walrus{i}"}


@pytest.mark.parametrize("form", ["url", "engine"])
def test_racing_first_captures_create_each_id_once(db_url: str, form: str) -> None:
    """Threads capturing for the same new entity and process at the same moment: one row each,
    no error (on MariaDB also through a caller's Engine at its default REPEATABLE READ)."""
    engine = create_engine(db_url)
    mem = Memori(conn=db_url if form == "url" else engine, embedder=HashEmbedder())
    rounds = 10
    try:
        mem.config.storage.build()
        errors: list[BaseException] = []

        def racer(r: int, t: int, start: threading.Barrier) -> None:
            try:
                mem.attribution(entity_id=f"shared-{r}", process_id=f"persona-{r}")
                mem.new_session()
                start.wait(timeout=30)
                mem.capture([{"role": "user", "content": f"round {r} racer {t}"}])
            except BaseException as exc:  # noqa: BLE001 - every failure is reported below
                errors.append(exc)

        for r in range(rounds):
            start = threading.Barrier(THREADS)
            threads = [threading.Thread(target=racer, args=(r, t, start))
                       for t in range(THREADS)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        assert errors == []
        with mem.engine.connect() as c:
            def q(sql: str) -> list[tuple[object, ...]]:
                return [tuple(row) for row in c.execute(text(sql)).all()]
            assert q("SELECT external_id FROM memori_entity ORDER BY id") == [
                (f"shared-{r}",) for r in range(rounds)]
            assert sorted(q("SELECT external_id FROM memori_process")) == sorted(
                (f"persona-{r}",) for r in range(rounds))
            assert q("SELECT COUNT(*) FROM memori_session") == [(rounds * THREADS,)]
            per_entity = q("SELECT e.external_id, COUNT(*) FROM memori_conversation_message m "
                           "JOIN memori_entity e ON e.id = m.entity_id GROUP BY e.external_id")
        assert sorted(per_entity) == sorted((f"shared-{r}", THREADS) for r in range(rounds))
        assert mem.augmentation.wait(timeout=60)
        assert mem.augmentation.failed() == []
    finally:
        mem.close()
        engine.dispose()


# ---- two processes building the schema at once -------------------------------------------------------

BUILD_SCRIPT = textwrap.dedent("""
    import sys
    from memori_core import Memori
    from memori_core.testing import HashEmbedder

    mem = Memori(conn=sys.argv[1], embedder=HashEmbedder())
    with mem.engine.connect():
        pass  # connected (and for SQLite: WAL set) before the start signal
    print("ready", flush=True)
    assert sys.stdin.readline() == "go\\n"
    mem.config.storage.build()
    mem.attribution(entity_id=sys.argv[2])
    ids = mem.capture([{"role": "user", "content": "built by " + sys.argv[2]}])
    assert mem.augmentation.wait(timeout=60)
    assert [h.content for h in mem.recall("built by " + sys.argv[2])] == ["built by " + sys.argv[2]]
    mem.close()
    print("built", ids[0], flush=True)
""")


def test_two_processes_build_the_schema_at_the_same_moment(db_url: str, tmp_path: Path) -> None:
    script = tmp_path / "build.py"
    script.write_text(BUILD_SCRIPT)
    procs = [subprocess.Popen([sys.executable, str(script), db_url, f"process-{n}"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path)
             for n in range(2)]
    try:
        for p in procs:  # both are connected and waiting
            assert p.stdout is not None
            assert p.stdout.readline() == "ready\n"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert out.startswith("built "), out + err

    engine = create_engine(db_url)
    try:
        with engine.connect() as c:
            versions = c.execute(text("SELECT version FROM memori_schema_version ORDER BY version")
                                 ).scalars().all()
            entities = c.execute(text("SELECT external_id FROM memori_entity ORDER BY external_id")
                                 ).scalars().all()
    finally:
        engine.dispose()
    assert versions == list(range(1, len(migrations.MIGRATIONS) + 1))
    assert entities == ["process-0", "process-1"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sixteen_threads_interleaving_attribution_changes(shared: Memori) -> None:
    """16 threads switch between their own two entities on every turn; each capture lands under
    the entity that thread set just before, and recall never crosses entities."""
    mem = shared
    threads_n, turns = 16, 25
    start = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            start.wait(timeout=30)
            for turn in range(turns):
                entity = f"t{t}-{'even' if turn % 2 == 0 else 'odd'}"
                with mem.attribution(entity_id=entity):
                    mem.capture([{"role": "user", "content": f"{entity} secret {turn}"}])
                    assert mem.entity_id == entity
                assert mem.entity_id is None
        except BaseException as exc:  # noqa: BLE001 - every failure is reported below
            errors.append(exc)

    run_threads(worker, threads_n)
    assert errors == []
    stored = messages_by_entity(mem)
    assert len(stored) == 2 * threads_n
    for entity, rows in stored.items():
        assert all(content.startswith(f"{entity} secret ") for _, _, content in rows)
    assert mem.augmentation.wait(timeout=120)
    for t in range(threads_n):
        mem.attribution(entity_id=f"t{t}-odd")
        hits = mem.recall(f"t{t}-odd secret", limit=50)
        assert hits and all(h.content.startswith(f"t{t}-odd secret ") for h in hits)
