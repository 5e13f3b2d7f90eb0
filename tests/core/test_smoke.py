import pytest

from memori_core import Memori


def test_capture_then_recall_across_sessions(mem: Memori) -> None:
    mem.attribution(entity_id="alice", process_id="coach")
    ids = mem.capture([{"role": "user", "content": "I run 30 minutes flat"},
                       {"role": "assistant", "content": "Great pace"}])
    assert len(ids) == 2
    assert mem.augmentation.wait(timeout=30)
    mem.new_session()
    hits = mem.recall("how many minutes do I run", kinds=["episodic"])
    assert [h.content for h in hits] == ["I run 30 minutes flat"]
    assert hits[0].source_message_ids == (ids[0],)
    mem.attribution(entity_id="bob", process_id="coach")
    assert mem.recall("how many minutes do I run", kinds=["episodic"]) == []


def test_debug_log_truncates_long_text_unless_disabled(
        mem: Memori, caplog: "pytest.LogCaptureFixture") -> None:
    import logging

    long = "I collect vintage typewriters " * 20
    mem.attribution(entity_id="alice")
    with caplog.at_level(logging.DEBUG, logger="memori_core"):
        mem.capture([{"role": "user", "content": long}])
    assert "typewriters" not in caplog.text  # no content in logs unless asked (log_content)
    assert f"<{len(long)} characters>" in caplog.text
    caplog.clear()
    mem.config.log_content = True
    with caplog.at_level(logging.DEBUG, logger="memori_core"):
        mem.capture([{"role": "user", "content": long}])
    assert long not in caplog.text and long[:77] + "..." in caplog.text
    caplog.clear()
    mem.config.debug_truncate = False
    with caplog.at_level(logging.DEBUG, logger="memori_core"):
        mem.capture([{"role": "user", "content": long}])
    assert long in caplog.text
