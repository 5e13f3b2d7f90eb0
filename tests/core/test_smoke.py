from memori_core import Memori


def test_capture_then_recall_across_sessions(mem: Memori) -> None:
    mem.attribution(entity_id="alice", process_id="coach")
    ids = mem.capture([{"role": "user", "content": "I run 30 minutes flat"},
                       {"role": "assistant", "content": "Great pace"}])
    assert len(ids) == 2
    assert mem.augmentation.wait(timeout=30)
    mem.new_session()
    hits = mem.recall("how many minutes do I run")
    assert [h.content for h in hits] == ["I run 30 minutes flat"]
    assert hits[0].source_message_ids == (ids[0],)
    mem.attribution(entity_id="bob", process_id="coach")
    assert mem.recall("how many minutes do I run") == []
