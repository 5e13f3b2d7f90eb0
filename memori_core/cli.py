"""The ``memori`` command line.

    memori demo [--db URL]
    memori init | migrate [--db URL] [--json]
    memori stats [--db URL] [--json]
    memori recall | search QUERY --entity ID [--process ID] [--limit N] [--scope process|entity]
        [--json]
    memori memories list --entity ID [--kind K ...] [--process ID] [--limit N] [--json]
    memori memories get | update | delete MEMORY_ID --entity ID [--text TEXT] [--json]
    memori eval locomo --data PATH [--db URL] [--conversations 1-5] [--set NAME=VALUE] [--json]
    memori worker --db URL [--workers N]
    memori export --entity ID [--process ID] [--db URL] [--out FILE]
    memori import FILE [--db URL] [--entity ID] [--model NAME] [--json]
    memori forget --entity ID [--process ID] [--db URL] [--yes] [--vacuum] [--json]
    memori serve | keys ...   (memori_core.server.cli)

``--db`` defaults to ``MEMORI_DATABASE_URL`` or the embedded ``./memori.db``. Errors are printed
as one line on stderr with exit status 2. Every command's ``--help`` ends with an example.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from memori_core._cli_db import build_schema, new_sqlite_file, open_existing, open_memori
from memori_core.errors import MemoriError

__all__ = ["main"]


def _progress(enabled: bool) -> Any:
    def wrap(it: Iterable[Any], label: str, total: int) -> Iterable[Any]:
        if not enabled:
            return it
        from tqdm import tqdm

        return tqdm(it, desc=label, total=total, unit="it", file=sys.stderr, leave=False)

    return wrap


def _cmd_demo(args: argparse.Namespace) -> int:
    from memori_core._demo import run_demo

    return 0 if run_demo(args.db) else 1


def _cmd_schema(args: argparse.Namespace) -> int:
    """``memori init`` and ``memori migrate``: one implementation, told apart by the command."""
    from memori_core.errors import ConfigurationError
    from memori_core.storage.connect import DEFAULT_URL

    init = args.command == "init"
    url = args.db or os.environ.get("MEMORI_DATABASE_URL") or DEFAULT_URL
    missing = new_sqlite_file(url)
    if missing is not None and not init:
        raise ConfigurationError(f"no database at {missing}: migrate upgrades an existing one; "
                                 f"`memori init --db {url}` creates it", argument="db")
    # a URL string: Memori builds nothing by itself, so the version before is the database's
    mem = open_memori(url, augmentation_workers=0)
    try:
        before = mem.schema_status()["version"]
        build_schema(mem, init, how_to_init="run `memori init` (not migrate)")
        status = mem.schema_status()
        where = mem.engine.url.render_as_string()
    finally:
        mem.close()
    if args.json:
        print(json.dumps({"database": where, "before": before, **status,
                          "changed": before != status["version"]}))
    elif before == status["version"]:
        print(f"memori's schema in {where} is already at version {before}, the latest: "
              "nothing to do")
    elif before == 0:
        print(f"created memori's schema (version {status['version']}) in {where}")
    else:
        print(f"upgraded memori's schema in {where} from version {before} to "
              f"{status['version']}")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    mem = open_existing(args.db)
    try:
        tables = mem.stats()["tables"]
        aside = len(mem.llm.set_aside())
        where = mem.engine.url.render_as_string()
    finally:
        mem.close()
    _print_counts(tables, args.json)
    if aside:
        print(f"memori: {aside} turn(s) memori could not write wait in the set-aside file: "
              f"`memori set-aside --db {where}` lists them, --retry writes them",
              file=sys.stderr)
    return 0


def _cmd_set_aside(args: argparse.Namespace) -> int:
    mem = open_existing(args.db)
    try:
        path = mem.llm._set_aside.path
        if args.retry:
            written, left = mem.llm.retry_set_aside()
            print(f"wrote {written} set-aside turn(s); {left} still set aside"
                  + (f" in {path}" if left and path else ""))
            return 1 if left else 0
        entries = mem.llm.set_aside()
    finally:
        mem.close()
    if args.json:
        print(json.dumps(entries, ensure_ascii=False))
        return 0
    print(f"{len(entries)} set-aside turn(s)" + (f" in {path}" if path else "")
          + (":" if entries else ""))
    for e in entries:
        print(f"{e['at']}  entity {e['entity_id']!r} process {e.get('process_id')!r} "
              f"session {e['session_id']!r}  {len(e['messages'])} message(s), "
              f"{e.get('chars', 0):,} characters\n    {e['error']}")
    return 0


def _cmd_recall(args: argparse.Namespace) -> int:
    mem = open_existing(args.db)
    try:
        mem.attribution(entity_id=args.entity, process_id=args.process)
        if args.conscious:
            mem.config.conscious_ingest = True
        ctx = mem.context(args.query, limit=args.limit, scope=args.scope)
        where = mem.engine.url.render_as_string()
        unknown = [f"{kind} {name!r}" for kind, name in (("entity", args.entity),
                                                          ("process", args.process))
                   if name is not None and mem._store.find_pk(kind, name) is None]
    finally:
        mem.close()
    if unknown and not args.json:
        print(f"{' and '.join(unknown)} not found in {where}: nothing was ever captured "
              "under this id", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([{"id": ln.memory_ids[0], "content": ln.content, "kind": ln.kind,
                           "score": ln.score, "similarity": ln.similarity,
                           "created_at": ln.created_at.isoformat() if ln.created_at else None,
                           "essential": ln.essential, "memory_ids": list(ln.memory_ids),
                           "source_message_ids": list(ln.source_message_ids),
                           "truncated_from": ln.total_chars} for ln in ctx.lines]))
    elif args.block:
        print(ctx.block or "")
    elif not ctx.lines:
        print("no memory above the relevance threshold: nothing would be injected")
    else:
        for ln in ctx.lines:
            print(f"{'essential' if ln.essential else f'{ln.score:.3f}':>9}  {ln.text}")
        print(f"({len(ctx.lines)} lines, about {ctx.tokens} of {ctx.budget} tokens)")
    return 0


def _memory_json(memory: Any) -> dict[str, Any]:
    """A ``Memory`` as JSON values: datetimes in ISO 8601 (UTC), ids as a list."""
    return {k: v.isoformat() if hasattr(v, "isoformat") else list(v) if isinstance(v, tuple)
            else v for k, v in dataclasses.asdict(memory).items()}


def _memory_line(memory: Any) -> str:
    """One memory on one line: id, kind, last seen, text (newlines shown as \\n), state."""
    state = ("" if memory.superseded_by is None else "  [deleted]"
             if memory.superseded_by == memory.id else f"  [superseded by {memory.superseded_by}]")
    process = f"  [process {memory.process_id}]" if memory.process_id is not None else ""
    text = memory.content.replace("\n", "\\n")
    return (f"{memory.id:>6}  {memory.kind:<10}  {memory.last_seen_at:%Y-%m-%d}  {text}"
            f"{process}{state}")


def _open_entity(args: argparse.Namespace) -> Any:
    """A Memori on the existing database ``--db``, attributed to ``--entity`` (and
    ``--process``), both known.

    Raises:
        ConfigurationError: no memori schema, or an unknown entity or process.
        StorageError: the database is unreachable.
    """
    mem = open_existing(args.db)
    try:
        _require_known(mem, args.entity, getattr(args, "process", None))
        mem.attribution(entity_id=args.entity, process_id=getattr(args, "process", None))
    except BaseException:
        mem.close()
        raise
    return mem


def _unknown_memory(args: argparse.Namespace) -> MemoriError:
    from memori_core.errors import ConfigurationError

    return ConfigurationError(f"no memory {args.memory_id} of entity {args.entity!r} in this "
                              "database (`memori memories list --entity ID` lists them)",
                              argument="memory_id")


def _cmd_memories_list(args: argparse.Namespace) -> int:
    from memori_core.errors import ConfigurationError

    if args.limit < 1:
        raise ConfigurationError(f"--limit must be at least 1, got {args.limit}",
                                 argument="limit")
    mem = _open_entity(args)
    try:
        found = mem.memories(kinds=args.kind, include_superseded=args.include_superseded,
                             scope="process" if args.process else "entity",
                             limit=args.limit + 1)
    finally:
        mem.close()
    shown, more = found[:args.limit], len(found) > args.limit
    if args.json:
        print(json.dumps([_memory_json(m) for m in shown], ensure_ascii=False))
    else:
        print(f"{len(shown)} {'memory' if len(shown) == 1 else 'memories'} of entity "
              f"{args.entity!r}" + (f" process {args.process!r}" if args.process else "")
              + (", newest first:" if shown else ""))
        for m in shown:
            print(_memory_line(m))
    if more:
        print(f"memori: more than {args.limit}; --limit N shows more", file=sys.stderr)
    return 0


def _cmd_memories_get(args: argparse.Namespace) -> int:
    mem = _open_entity(args)
    try:
        memory = mem.memory(args.memory_id)
        # None, not [], for a first version (Records._found reads an empty list as "unknown")
        history = (mem.memory_history(args.memory_id) or []) if memory is not None else []
    finally:
        mem.close()
    if memory is None:
        raise _unknown_memory(args)
    if args.json:
        print(json.dumps({**_memory_json(memory), "history": [_memory_json(m) for m in history]},
                         ensure_ascii=False))
        return 0
    state = ("current" if memory.superseded_by is None else "deleted as no longer true"
             if memory.superseded_by == memory.id else f"superseded by {memory.superseded_by}")
    sources = ", ".join(map(str, memory.source_message_ids)) or "none (given, not captured)"
    print(f"memory {memory.id} of entity {args.entity!r}")
    for label, value in (("content", memory.content), ("kind", memory.kind),
                         ("process", memory.process_id or "-"), ("slot", memory.slot or "-"),
                         ("state", state), ("mentions", memory.mention_count),
                         ("importance", memory.importance),
                         ("first seen", f"{memory.created_at:%Y-%m-%d %H:%M:%S} UTC"),
                         ("last seen", f"{memory.last_seen_at:%Y-%m-%d %H:%M:%S} UTC"),
                         ("messages", sources)):
        print(f"  {label:<11} {value}")
    print("history: the versions it replaced, newest first" if history
          else "history: none (a first version)")
    for m in history:
        print(_memory_line(m))
    return 0


def _cmd_memories_update(args: argparse.Namespace) -> int:
    mem = _open_entity(args)
    try:
        new_id = mem.update_memory(args.memory_id, args.text)
        memory = mem.memory(new_id) if new_id is not None else None
    finally:
        mem.close()
    if memory is None:
        raise _unknown_memory(args)
    changed = memory.id != args.memory_id
    if args.json:
        print(json.dumps({"memory": _memory_json(memory),
                          "supersedes": args.memory_id if changed else None},
                         ensure_ascii=False))
    elif changed:
        print(f"memory {args.memory_id} corrected: the new version is memory {memory.id}; "
              f"{args.memory_id} is kept as its history (`memori memories get {memory.id} "
              f"--entity {args.entity}` shows both)")
    else:
        print(f"memory {args.memory_id} already says that: nothing changed")
    return 0


def _cmd_memories_delete(args: argparse.Namespace) -> int:
    mem = _open_entity(args)
    try:
        deleted = mem.forget_memories([args.memory_id])
    finally:
        mem.close()
    if not deleted:
        raise _unknown_memory(args)
    if args.json:
        print(json.dumps({"deleted": deleted, "id": args.memory_id}))
    else:
        print(f"deleted memory {args.memory_id} of entity {args.entity!r} (with its provenance "
              "and triples)")
    return 0


def _cmd_eval_locomo(args: argparse.Namespace) -> int:
    from memori_core.evals import locomo

    result = locomo.run(args.data, db=args.db, conversations=args.conversations,
                        settings=dict(args.set), progress=_progress(not args.no_progress))
    print(json.dumps(result.as_dict()) if args.json else locomo.report(result))
    return 0


def _conversations_arg(text: str) -> str:
    """``--conversations``: checked for form here, against the data's size by the eval."""
    from memori_core.errors import ConfigurationError
    from memori_core.evals.locomo import conversation_ranges

    try:
        conversation_ranges(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def _setting_arg(text: str) -> tuple[str, str]:
    """``--set NAME=VALUE`` -> ``(NAME, VALUE)``; the value is converted by ``Config``."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(
            f"--set {text!r}: expected NAME=VALUE with NAME a Config setting, e.g. "
            "--set recall_rrf_k=20")
    return name.strip(), value.strip()


def _cmd_worker(args: argparse.Namespace) -> int:
    mem = open_memori(args.db, augmentation_workers=args.workers)
    stop = {"now": False}

    def _stop(_sig: int, _frame: object) -> None:
        stop["now"] = True
        mem.augmentation.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    mem.config.storage.build()
    mem._ensure_ready()  # starts the worker threads
    print(f"memori worker: {args.workers} thread(s) on {mem.engine.url.render_as_string()}",
          flush=True)
    while not stop["now"]:
        signal.pause()
    counters = mem.stats()["augmentation"]
    mem.close()
    print(f"memori worker stopped: {counters['jobs_done']} job(s) done, "
          f"{counters['jobs_failed']} failed", flush=True)
    return 0


def _read_turns(path: str, entity: str | None) -> list[dict[str, Any]]:
    """Parse and validate every line of a JSON-lines file before anything is stored."""
    from memori_core.errors import ConfigurationError
    from memori_core.types import check_id, normalize_messages

    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.readlines()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}", argument="file") from exc
    turns = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ConfigurationError(f"{path}:{n} is not JSON: {exc}", argument="file") from exc
        if not isinstance(obj, dict):
            raise ConfigurationError(f"{path}:{n} must be a JSON object", argument="file")
        if "messages" not in obj and "role" in obj:  # one message per line
            obj = {**{k: obj[k] for k in ("entity_id", "process_id", "session_id") if k in obj},
                   "messages": [{k: v for k, v in obj.items()
                                 if k not in ("entity_id", "process_id", "session_id")}]}
        turn = {"entity_id": obj.get("entity_id", entity), "process_id": obj.get("process_id"),
                "session_id": obj.get("session_id"), "messages": obj.get("messages")}
        try:
            if turn["entity_id"] is None:
                raise ConfigurationError("no entity_id (put one in the line or pass --entity)",
                                         argument="entity_id")
            for key in ("entity_id", "process_id", "session_id"):
                if turn[key] is not None:
                    check_id(turn[key], key)
            normalize_messages(turn["messages"])
        except ConfigurationError as exc:
            raise ConfigurationError(f"{path}:{n}: {exc}; nothing was ingested",
                                     argument=exc.argument) from exc
        turns.append(turn)
    return turns


def _cmd_ingest(args: argparse.Namespace) -> int:
    from memori_core.errors import ConfigurationError

    turns = _read_turns(args.file, args.entity)
    if not turns:
        raise ConfigurationError(f"{args.file} holds no turns; nothing was ingested",
                                 argument="file")
    mem = open_memori(args.db)
    try:
        build_schema(mem, args.init)
        ids = 0
        for turn in _progress(not args.no_progress)(turns, "ingest", len(turns)):
            mem.attribution(entity_id=turn["entity_id"], process_id=turn["process_id"])
            if turn["session_id"] is not None:
                mem.set_session(turn["session_id"])
            ids += len(mem.capture(turn["messages"]))
        print(f"ingested {len(turns)} turn(s), {ids} message(s) into "
              f"{mem.engine.url.render_as_string()}", flush=True)
        if not args.no_wait:
            mem.augmentation.wait(timeout=None)
            failed = mem.augmentation.failed()
            print(f"augmentation done; {len(failed)} job(s) failed")
            return 1 if failed else 0
        return 0
    finally:
        mem.close()


def _cmd_reembed(args: argparse.Namespace) -> int:
    settings = {"embeddings_model": args.model} if args.model else {}
    mem = open_memori(args.db, augmentation_workers=0, **settings)
    try:
        mem._ensure_ready()
        bar = None
        if not args.no_progress:
            from tqdm import tqdm

            bar = tqdm(desc="reembed", unit="memory", file=sys.stderr, leave=False)

        def progress(done: int, total: int) -> None:
            if bar is not None:
                bar.total = total
                bar.update(done - bar.n)

        n = mem.reembed(progress)
        if bar is not None:
            bar.close()
        print(f"re-embedded {n} memories with {mem.embedder.name} ({mem.embedder.dim}-d)")
    finally:
        mem.close()
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from memori_core.errors import ConfigurationError

    mem = open_existing(args.db)
    try:
        _require_known(mem, args.entity, args.process)
        data = mem.export(entity_id=args.entity, process_id=args.process)
    finally:
        mem.close()
    text = json.dumps(data, ensure_ascii=False)
    if args.out is None:
        print(text)
        return 0
    try:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    except OSError as exc:
        raise ConfigurationError(f"cannot write {args.out}: {exc}", argument="out") from exc
    messages = sum(len(c["messages"]) for sess in data["sessions"] for c in sess["conversations"])
    print(f"exported {messages} message(s), {len(data['memories'])} memories, "
          f"{len(data['triples'])} triple(s) of entity {args.entity!r} to {args.out}")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from memori_core.errors import ConfigurationError

    try:
        with open(args.file, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise ConfigurationError(f"cannot read {args.file}: {exc}", argument="file") from exc
    except ValueError as exc:
        raise ConfigurationError(f"{args.file} is not JSON: {exc}", argument="file") from exc
    settings = {"embeddings_model": args.model} if args.model else {}
    new_file = new_sqlite_file(args.db)
    # no workers here: queued jobs are left to `memori worker` or the apps
    mem = open_memori(args.db, augmentation_workers=0, **settings)
    try:
        build_schema(mem, args.init)
        counts = mem.import_(data, entity_id=args.entity)
        where = mem.engine.url.render_as_string()
    except BaseException:
        mem.close()
        if new_file is not None:  # a failed import leaves no database file behind
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{new_file}{suffix}").unlink(missing_ok=True)
        raise
    mem.close()
    _print_counts(counts, args.json, f"imported into {where}:")
    if not args.json and counts["memori_augmentation_job"]:
        print(f"{counts['memori_augmentation_job']} augmentation job(s) queued: run "
              "`memori worker` (or an app) on this database to finish them")
    return 0


def _cmd_forget(args: argparse.Namespace) -> int:
    from memori_core.errors import ConfigurationError

    what = f"entity {args.entity!r}" + (f" process {args.process!r}" if args.process else "")
    mem = open_existing(args.db)
    try:
        where = mem.engine.url.render_as_string()
        _require_known(mem, args.entity, args.process)
        if not args.yes:
            if not sys.stdin.isatty():
                raise ConfigurationError(f"forget deletes every row of {what} in {where}: "
                                         "pass --yes to confirm", argument="yes")
            answer = input(f"delete every row of {what} in {where}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing deleted")
                return 1
        counts = mem.forget(args.entity, process_id=args.process, vacuum=args.vacuum)
    finally:
        mem.close()
    _print_counts(counts, args.json,
                  f"forgot {what}: {sum(counts.values())} row(s) deleted from {where}")
    return 0


def _require_known(mem: Any, entity_id: str, process_id: str | None) -> None:
    """Raises: ConfigurationError when the database has no such entity (or process), with
    the closest existing ids: an erasure or export that would do nothing says so."""
    import difflib

    from memori_core.errors import ConfigurationError

    for kind, value in (("entity", entity_id), ("process", process_id)):
        if value is None or mem._store.find_pk(kind, value) is not None:
            continue
        close = difflib.get_close_matches(value, mem._store.external_ids(kind), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigurationError(f"no {kind} {value!r} in this database{hint}", argument=kind)


def _print_counts(counts: dict[str, int], as_json: bool, title: str | None = None) -> None:
    """Rows per table: one JSON object, or a title and a two-column table."""
    if as_json:
        print(json.dumps(counts))
        return
    if title:
        print(title)
    for name, count in counts.items():
        print(f"{name:<32}{count:>10}")


def _example(*lines: str, note: str | None = None) -> str:
    """A ``--help`` epilog: ``example:`` (``note`` after it) and each command line indented."""
    head = ("example" if len(lines) == 1 else "examples") + (f" ({note})" if note else "")
    return head + ":" + "".join(f"\n  {line}" for line in lines)


def _command(sub: Any, name: str, example: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand of ``sub`` whose ``--help`` ends with ``example`` (``_example``)."""
    sp: argparse.ArgumentParser = sub.add_parser(
        name, epilog=example, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
    return sp


#: the examples of the commands ``memori_core.mcp.cli`` and ``memori_core.server.cli`` add,
#: by command path; a command that brings its own epilog keeps it
_OTHER_EXAMPLES = {
    ("mcp",): _example("memori mcp --db sqlite:///memori.db",
                       note="the MCP client runs it with MEMORI_ENTITY_ID=user_123"),
    ("serve",): _example("memori serve --db postgresql://app@localhost/app --port 8765"),
    ("keys",): _example("memori keys create --db sqlite:///memori.db --scope read "
                        "--entity user_123", "memori keys list --db sqlite:///memori.db"),
    ("keys", "create"): _example("memori keys create --db sqlite:///memori.db --scope write "
                                 "--entity user_123 --name support-bot"),
    ("keys", "list"): _example("memori keys list --db sqlite:///memori.db --all --json"),
    ("keys", "revoke"): _example("memori keys revoke 0123456789ab --db sqlite:///memori.db"),
}


def _subcommands(p: argparse.ArgumentParser, path: tuple[str, ...] = ()
                 ) -> Iterable[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every subcommand under ``p``, depth first, with its path of names."""
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sp in action.choices.items():
                yield (*path, name), sp
                yield from _subcommands(sp, (*path, name))


def _parser() -> argparse.ArgumentParser:
    from memori_core import __version__
    from memori_core.augmentation.base import MEMORY_KINDS

    p = argparse.ArgumentParser(prog="memori", description="memori: memory for LLM apps",
                                epilog=_example("memori init --db sqlite:///memori.db",
                                                "memori memories list --entity user_123"),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"memori {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def db_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--db", default=None,
                        help="database URL (default: MEMORI_DATABASE_URL or ./memori.db)")

    def init_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--init", action="store_true",
                        help="add memori's tables to a database that holds other tables")

    def json_arg(sp: argparse.ArgumentParser, what: str = "print one JSON object") -> None:
        sp.add_argument("--json", action="store_true", help=what)

    def entity_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--entity", required=True, help="entity (user) id the memories belong to")

    d = _command(sub, "demo", _example("memori demo --db sqlite:///demo.db"),
                 help="two users, two personas, offline")
    db_arg(d)
    d.set_defaults(fn=_cmd_demo)

    for name, example, text in (
            ("init", _example("memori init --db sqlite:///memori.db",
                              "memori init --db postgresql://app@localhost/app"),
             "Create memori's schema, or upgrade it, and print its version. Idempotent: a "
             "second run says there is nothing to do. A database that already holds other "
             "tables (your app's) gets memori's tables beside them; a missing SQLite file is "
             "created."),
            ("migrate", _example("memori migrate --db postgresql://app@localhost/app"),
             "Upgrade memori's schema to this memori-core's version and print it. Idempotent. "
             "An empty database gets the whole schema; a database holding only other tables "
             "is refused (memori init adds memori's tables to it), and a missing SQLite file "
             "is never created (memori init creates it).")):
        sc = _command(sub, name, example, description=text, help=text.split(". ")[0].lower())
        db_arg(sc)
        json_arg(sc, "print {database, before, version, latest, changed} as JSON")
        sc.set_defaults(fn=_cmd_schema)

    s = _command(sub, "stats", _example("memori stats --db sqlite:///memori.db --json"),
                 help="row counts per table")
    db_arg(s)
    json_arg(s)
    s.set_defaults(fn=_cmd_stats)

    for name, what in (("recall", "the memories a model would be shown for a query (the "
                        "context pipeline: recall, one line per turn, cut, budget)"),
                       ("search", "the same as memori recall")):
        r = _command(sub, name, _example(f'memori {name} "what should I cook?" --entity '
                                         "user_123 --db sqlite:///memori.db"), help=what)
        r.add_argument("query", help="the text to match, e.g. a user's question")
        entity_arg(r)
        r.add_argument("--process", default=None,
                       help="process (agent / persona) id; with --scope process only its "
                       "memories")
        r.add_argument("--limit", type=int, default=5, help="at most this many hits (default 5)")
        r.add_argument("--scope", choices=("process", "entity"), default="process",
                       help="process (default): the process's memories; entity: all of the "
                       "entity's")
        r.add_argument("--conscious", action="store_true",
                       help="lead with the entity's essential memories (conscious_ingest)")
        r.add_argument("--block", action="store_true",
                       help="print the framed block exactly as a model receives it")
        json_arg(r, "print a JSON list of the lines shown")
        db_arg(r)
        r.set_defaults(fn=_cmd_recall)

    mm = _command(sub, "memories", _example(
        "memori memories list --entity user_123",
        "memori memories update 42 --entity user_123 --text \"The user lives in Porto\""),
        help="list, show, correct or delete an entity's stored memories")
    msub = mm.add_subparsers(dest="memories_command", required=True)

    ml = _command(msub, "list", _example(
        "memori memories list --entity user_123 --kind preference --limit 20"),
        help="an entity's current memories, newest first (no ranking: see memori search)")
    entity_arg(ml)
    ml.add_argument("--kind", action="append", choices=MEMORY_KINDS, default=None,
                    help="only this kind (repeatable; default all)")
    ml.add_argument("--process", default=None,
                    help="only this process's (persona's) memories and those without one")
    ml.add_argument("--limit", type=int, default=100,
                    help="at most this many (default 100; more: a note on stderr)")
    ml.add_argument("--include-superseded", action="store_true",
                    help="also the versions a newer one replaced")
    json_arg(ml, "print a JSON list of memories")
    db_arg(ml)
    ml.set_defaults(fn=_cmd_memories_list)

    for name, example, what, fn in (
            ("get", _example("memori memories get 42 --entity user_123 --json"),
             "one memory by id, with the versions it replaced", _cmd_memories_get),
            ("update", _example('memori memories update 42 --entity user_123 --text "The user '
                                'lives in Porto"'),
             "correct a memory: a new version replaces it, the old one is kept as its history",
             _cmd_memories_update),
            ("delete", _example("memori memories delete 42 --entity user_123"),
             "delete one memory, with its provenance and triples", _cmd_memories_delete)):
        mc = _command(msub, name, example, help=what)
        mc.add_argument("memory_id", type=int, metavar="MEMORY_ID",
                        help="the memory's id (memori memories list shows it)")
        entity_arg(mc)
        if name == "update":
            mc.add_argument("--text", required=True, help="the corrected text")
        json_arg(mc)
        db_arg(mc)
        mc.set_defaults(fn=fn)

    locomo_example = _example("memori eval locomo --data locomo10.json --conversations 1")
    e = _command(sub, "eval", locomo_example, help="evaluations on public data")
    esub = e.add_subparsers(dest="dataset", required=True)
    lo = _command(esub, "locomo", locomo_example,
                  help="LoCoMo: capture every turn, recall every question")
    lo.add_argument("--data", required=True, help="path of locomo10.json")
    lo.add_argument("--db", default=None,
                    help="database URL (default: a temporary SQLite file); one already holding "
                    "the conversations is reused: recall only, no ingestion")
    lo.add_argument("--conversations", type=_conversations_arg, default=None,
                    help="which conversations, 1-based: 3, 1-5 or 1,4,7-8 (default all)")
    lo.add_argument("--set", type=_setting_arg, action="append", default=[],
                    metavar="NAME=VALUE",
                    help="a Config setting for the run, e.g. recall_rrf_k=20 (repeatable)")
    json_arg(lo)
    lo.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    lo.set_defaults(fn=_cmd_eval_locomo)

    sa = _command(sub, "set-aside", _example("memori set-aside --db sqlite:///memori.db --retry"),
                  help="list the turns memori could not write, or write them (--retry)")
    db_arg(sa)
    sa.add_argument("--retry", action="store_true",
                    help="write them now; exit 1 while any is still refused")
    json_arg(sa, "print the turns as one JSON array")
    sa.set_defaults(fn=_cmd_set_aside)

    i = _command(sub, "ingest", _example("memori ingest turns.jsonl --db sqlite:///memori.db"),
                 help="capture turns from a JSON-lines file")
    i.add_argument("file", help='one turn per line: {"entity_id": ..., "process_id": ..., '
                   '"session_id": ..., "messages": [{"role": ..., "content": ..., '
                   '"created_at": ...}]} (or one message per line)')
    db_arg(i)
    i.add_argument("--entity", default=None, help="entity id for lines without one")
    i.add_argument("--no-wait", action="store_true",
                   help="return once captured; augmentation finishes in the background")
    i.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    init_arg(i)
    i.set_defaults(fn=_cmd_ingest)

    re_ = _command(sub, "reembed", _example("memori reembed --db sqlite:///memori.db --model "
                                            "all-MiniLM-L6-v2"),
                   help="re-embed every memory with the configured model")
    db_arg(re_)
    re_.add_argument("--model", default=None,
                     help="embedding model (default MEMORI_EMBEDDINGS_MODEL or all-MiniLM-L6-v2)")
    re_.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    re_.set_defaults(fn=_cmd_reembed)

    x = _command(sub, "export", _example("memori export --entity user_123 --out user_123.json"),
                 help="write everything stored for an entity as JSON")
    x.add_argument("--entity", required=True, help="entity (user) id to export")
    x.add_argument("--process", default=None, help="only this process's (persona's) rows")
    x.add_argument("--out", default=None, help="file to write (default: stdout)")
    db_arg(x)
    x.set_defaults(fn=_cmd_export)

    im = _command(sub, "import", _example("memori import user_123.json --db sqlite:///copy.db"),
                  help="restore a `memori export` file into a database")
    im.add_argument("file", help="the JSON file written by memori export")
    im.add_argument("--entity", default=None, help="import under this entity id instead")
    im.add_argument("--model", default=None,
                    help="embedding model of this database (default MEMORI_EMBEDDINGS_MODEL or "
                    "all-MiniLM-L6-v2); memories of another model are embedded again")
    json_arg(im, "print the row counts as JSON")
    db_arg(im)
    init_arg(im)
    im.set_defaults(fn=_cmd_import)

    fo = _command(sub, "forget", _example("memori forget --entity user_123 --yes"),
                  help="delete every row of an entity (or of one process)")
    fo.add_argument("--entity", required=True, help="entity (user) id to erase")
    fo.add_argument("--vacuum", action="store_true",
                    help="PostgreSQL / MariaDB: also remove the deleted rows' old versions "
                         "(VACUUM FULL / OPTIMIZE TABLE; locks memori's tables while it runs)")
    fo.add_argument("--process", default=None,
                    help="only this process's (persona's) rows of the entity")
    fo.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    json_arg(fo, "print the row counts as JSON")
    db_arg(fo)
    fo.set_defaults(fn=_cmd_forget)

    w = _command(sub, "worker", _example("memori worker --db postgresql://app@localhost/app "
                                         "--workers 4"),
                 help="run augmentation workers as their own process")
    db_arg(w)
    w.add_argument("--workers", type=int, default=1, help="worker threads (default 1)")
    w.set_defaults(fn=_cmd_worker)

    from memori_core.mcp.cli import add_parser as add_mcp_parser
    add_mcp_parser(sub)

    from memori_core.server.cli import add_commands as add_server_commands
    add_server_commands(sub)
    for path, sp in _subcommands(p):
        if sp.epilog is None and path in _OTHER_EXAMPLES:
            sp.epilog = _OTHER_EXAMPLES[path]
            sp.formatter_class = argparse.RawDescriptionHelpFormatter
    return p


def _one_line(exc: BaseException) -> str:
    """An error's message on one line: a driver's multi-line text joined, SQLAlchemy's
    statement, parameters and background link left out."""
    lines = [ln.strip() for ln in str(exc).splitlines()]
    return " ".join(ln for ln in lines if ln and not ln.startswith(
        ("[SQL:", "[parameters:", "(Background on this error")))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``memori`` command. Returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except MemoriError as exc:
        print(f"memori: error: {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
