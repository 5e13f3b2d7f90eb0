"""``memori demo``: the seed's persona scenario, offline, on the embedded default database.

One user talks to a ``fitness-coach`` and a ``meal-planner`` process, a second user talks to the
same two; then, in a new session, what a model would be shown for each question (the context
pipeline, with ``conscious_ingest``) is printed, and the isolation across users and personas is
checked on every line shown. Running it again adds nothing new: the same
memories are deduplicated (their mention count grows).
"""

from __future__ import annotations

from collections.abc import Callable

from memori_core._memori import Memori

__all__ = ["SCENARIO", "run_demo"]

#: (entity, process, [user turn, assistant reply] ...), in sessions
SCENARIO: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("alice", "fitness-coach", [
        ("Goal: sub-25-minute 5K by June. Currently I run 30 minutes flat.",
         "Great goal. We'll build speed with intervals."),
        ("I can only train on Tuesday and Saturday mornings.",
         "Then Tuesday is intervals and Saturday the long run."),
    ]),
    ("alice", "meal-planner", [
        ("Prefer low-carb dinners on weekdays.", "Noted: low-carb weekday dinners."),
        ("I'm allergic to peanuts.", "I'll keep every recipe peanut-free."),
    ]),
    ("bob", "fitness-coach", [
        ("I'm training for a marathon in October and my long run is 18 km.",
         "Let's add 2 km to the long run every other week."),
    ]),
    ("bob", "meal-planner", [
        ("I'm vegetarian and I batch-cook on Sundays.", "Vegetarian batch recipes it is."),
    ]),
]

#: (entity, process, scope, question)
QUESTIONS = [
    ("alice", "fitness-coach", "process", "What is my running goal and current time?"),
    ("alice", "fitness-coach", "process", "What should I cook for dinner?"),
    ("alice", "meal-planner", "process", "What should I cook for dinner?"),
    ("alice", "meal-planner", "entity", "What do you know about my training and food?"),
    ("bob", "fitness-coach", "process", "What is my running goal?"),
    ("bob", "meal-planner", "process", "What should I cook for dinner?"),
    # only alice said these: bob's recall must not return them, even across his personas
    ("bob", "meal-planner", "entity", "Am I allergic to peanuts?"),
    ("bob", "fitness-coach", "entity", "Is my goal a sub-25-minute 5K by June?"),
]


def run_demo(db: str | None = None, out: Callable[[str], None] = print) -> bool:
    """Run the scenario; returns True when no memory shown crossed a user or persona boundary.

    For each question it prints what a model would be shown (``Memori.context``): the
    essential memories (``conscious_ingest``) first, then those recalled for the question,
    each once, dated, with who said it.

    Args:
        db: database URL; default the embedded default (``MEMORI_DATABASE_URL`` or
            ``./memori.db``).
        out: where lines are written.
    """
    said: dict[str, tuple[str, str]] = {}  # user text -> (entity, process)
    by_message: dict[int, tuple[str, str]] = {}  # captured message id -> (entity, process)
    with Memori(conn=db, conscious_ingest=True) as mem:
        mem.config.storage.build()
        out(f"database: {mem.engine.url.render_as_string()} (local embeddings, no network)")
        for entity, process, turns in SCENARIO:
            mem.attribution(entity_id=entity, process_id=process)
            mem.new_session()
            for user, assistant in turns:
                ids = mem.capture([{"role": "user", "content": user},
                                   {"role": "assistant", "content": assistant}])
                said[user] = (entity, process)
                by_message.update(dict.fromkeys(ids, (entity, process)))
                out(f"captured  {entity} -> {process}: {user!r}")
        if not mem.augmentation.wait(timeout=120):
            out("augmentation did not finish within 120 s")
            return False
        ok = True
        for entity, process, scope, question in QUESTIONS:
            mem.attribution(entity_id=entity, process_id=process)
            mem.new_session()
            ctx = mem.context(question, limit=3, scope=scope)  # type: ignore[arg-type]
            out(f"\n[{entity} / {process}, new session, scope={scope}] {question}")
            for ln in ctx.lines:
                # who said it: the messages the memory came from (provenance), checked against
                # what this run captured under which user and persona
                # (ids of an earlier run of the demo are not in by_message: skipped)
                owners = {by_message[m] for m in ln.source_message_ids if m in by_message}
                owner = owners.pop() if len(owners) == 1 else None
                leak = owner is None or owner[0] != entity or (
                    scope == "process" and owner[1] != process)
                ok = ok and not leak
                who = f"{owner[0]} -> {owner[1]}" if owner else "unknown"
                why = "essential" if ln.essential else f"{ln.score:.2f}"
                out(f"  {why:>9}  {ln.text}  (said by {who})" + ("  <-- LEAK" if leak else ""))
            if not any(ln.score > 0 for ln in ctx.lines):  # essential lines only, or none
                out("  (nothing recalled for this question: no memory relevant enough)")
            if scope == "process":
                hidden = sum(1 for e, p in said.values() if e == entity and p != process)
                out(f"  ({hidden} thing(s) {entity} told other personas stay out of this "
                    "process-scoped context)")
        mem.attribution(entity_id="alice")
        stored = len(mem.memories(scope="entity"))
        mem.attribution(entity_id="bob")
        stored += len(mem.memories(scope="entity"))
        out(f"\nmemories stored for alice and bob: {stored} (a second run adds none: what is "
            "said again is mentioned again)")
        out("isolation: " + ("checked on every line above: nothing shown crossed a user or "
                             "persona boundary" if ok else "FAILED: see LEAK above"))
        return ok
