"""The ``memori`` command line.

    memori demo [--db URL]
    memori stats [--db URL] [--json]
    memori recall QUERY --entity ID [--process ID] [--limit N] [--scope process|entity] [--json]
    memori eval locomo --data PATH [--db URL] [--conversations 1-5] [--set NAME=VALUE] [--json]
    memori worker --db URL [--workers N]
    memori export --entity ID [--process ID] [--db URL] [--out FILE]
    memori import FILE [--db URL] [--entity ID] [--model NAME] [--json]
    memori forget --entity ID [--process ID] [--db URL] [--yes] [--vacuum] [--json]
    memori serve | keys ...   (memori_core.server.cli)

``--db`` defaults to ``MEMORI_DATABASE_URL`` or the embedded ``./memori.db``. Errors are printed
as one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
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


def _parser() -> argparse.ArgumentParser:
    from memori_core import __version__

    p = argparse.ArgumentParser(prog="memori", description="memori: memory for LLM apps")
    p.add_argument("--version", action="version", version=f"memori {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def db_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--db", default=None,
                        help="database URL (default: MEMORI_DATABASE_URL or ./memori.db)")

    def init_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--init", action="store_true",
                        help="add memori's tables to a database that holds other tables")

    d = sub.add_parser("demo", help="two users, two personas, offline")
    db_arg(d)
    d.set_defaults(fn=_cmd_demo)

    s = sub.add_parser("stats", help="row counts per table")
    db_arg(s)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(fn=_cmd_stats)

    r = sub.add_parser("recall", help="the memories a model would be shown for a query (the "
                       "context pipeline: recall, one line per turn, cut, budget)")
    r.add_argument("query", help="the text to match, e.g. a user's question")
    r.add_argument("--entity", required=True, help="entity (user) id the memories belong to")
    r.add_argument("--process", default=None,
                   help="process (agent / persona) id; with --scope process only its memories")
    r.add_argument("--limit", type=int, default=5, help="at most this many hits (default 5)")
    r.add_argument("--scope", choices=("process", "entity"), default="process",
                   help="process (default): the process's memories; entity: all of the entity's")
    r.add_argument("--conscious", action="store_true",
                   help="lead with the entity's essential memories (conscious_ingest)")
    r.add_argument("--block", action="store_true",
                   help="print the framed block exactly as a model receives it")
    r.add_argument("--json", action="store_true", help="print a JSON list of the lines shown")
    db_arg(r)
    r.set_defaults(fn=_cmd_recall)

    e = sub.add_parser("eval", help="evaluations on public data")
    esub = e.add_subparsers(dest="dataset", required=True)
    lo = esub.add_parser("locomo", help="LoCoMo: capture every turn, recall every question")
    lo.add_argument("--data", required=True, help="path of locomo10.json")
    lo.add_argument("--db", default=None,
                    help="database URL (default: a temporary SQLite file); one already holding "
                    "the conversations is reused: recall only, no ingestion")
    lo.add_argument("--conversations", type=_conversations_arg, default=None,
                    help="which conversations, 1-based: 3, 1-5 or 1,4,7-8 (default all)")
    lo.add_argument("--set", type=_setting_arg, action="append", default=[],
                    metavar="NAME=VALUE",
                    help="a Config setting for the run, e.g. recall_rrf_k=20 (repeatable)")
    lo.add_argument("--json", action="store_true", help="print one JSON object")
    lo.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    lo.set_defaults(fn=_cmd_eval_locomo)

    sa = sub.add_parser("set-aside", help="list the turns memori could not write, or write "
                        "them (--retry)")
    db_arg(sa)
    sa.add_argument("--retry", action="store_true",
                    help="write them now; exit 1 while any is still refused")
    sa.add_argument("--json", action="store_true", help="print the turns as one JSON array")
    sa.set_defaults(fn=_cmd_set_aside)

    i = sub.add_parser("ingest", help="capture turns from a JSON-lines file")
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

    re_ = sub.add_parser("reembed", help="re-embed every memory with the configured model")
    db_arg(re_)
    re_.add_argument("--model", default=None,
                     help="embedding model (default MEMORI_EMBEDDINGS_MODEL or all-MiniLM-L6-v2)")
    re_.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    re_.set_defaults(fn=_cmd_reembed)

    x = sub.add_parser("export", help="write everything stored for an entity as JSON")
    x.add_argument("--entity", required=True, help="entity (user) id to export")
    x.add_argument("--process", default=None, help="only this process's (persona's) rows")
    x.add_argument("--out", default=None, help="file to write (default: stdout)")
    db_arg(x)
    x.set_defaults(fn=_cmd_export)

    im = sub.add_parser("import", help="restore a `memori export` file into a database")
    im.add_argument("file", help="the JSON file written by memori export")
    im.add_argument("--entity", default=None, help="import under this entity id instead")
    im.add_argument("--model", default=None,
                    help="embedding model of this database (default MEMORI_EMBEDDINGS_MODEL or "
                    "all-MiniLM-L6-v2); memories of another model are embedded again")
    im.add_argument("--json", action="store_true", help="print the row counts as JSON")
    db_arg(im)
    init_arg(im)
    im.set_defaults(fn=_cmd_import)

    fo = sub.add_parser("forget", help="delete every row of an entity (or of one process)")
    fo.add_argument("--entity", required=True, help="entity (user) id to erase")
    fo.add_argument("--vacuum", action="store_true",
                    help="PostgreSQL / MariaDB: also remove the deleted rows' old versions "
                         "(VACUUM FULL / OPTIMIZE TABLE; locks memori's tables while it runs)")
    fo.add_argument("--process", default=None,
                    help="only this process's (persona's) rows of the entity")
    fo.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    fo.add_argument("--json", action="store_true", help="print the row counts as JSON")
    db_arg(fo)
    fo.set_defaults(fn=_cmd_forget)

    w = sub.add_parser("worker", help="run augmentation workers as their own process")
    db_arg(w)
    w.add_argument("--workers", type=int, default=1, help="worker threads (default 1)")
    w.set_defaults(fn=_cmd_worker)

    from memori_core.mcp.cli import add_parser as add_mcp_parser
    add_mcp_parser(sub)

    from memori_core.server.cli import add_commands as add_server_commands
    add_server_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``memori`` command. Returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except MemoriError as exc:
        print(f"memori: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
