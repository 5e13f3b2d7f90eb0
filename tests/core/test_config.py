"""Settings: seed defaults, keyword and environment overrides, and mistakes caught early."""

from __future__ import annotations

import logging

import pytest

from memori_core import Config, ConfigurationError, Memori
from memori_core.testing import HashEmbedder


def test_seed_defaults() -> None:
    c = Config.from_env(environ={})
    assert (c.recall_embeddings_limit, c.recall_facts_limit, c.recall_relevance_threshold,
            c.session_timeout_minutes, c.request_num_backoff, c.request_backoff_factor,
            c.request_secs_timeout, c.embeddings.model, c.debug_truncate) == (
        1000, 5, 0.1, 30, 5, 1, 5, "all-MiniLM-L6-v2", True)


def test_keyword_beats_environment_beats_default() -> None:
    env = {"MEMORI_RECALL_FACTS_LIMIT": "7", "MEMORI_EMBEDDINGS_MODEL": "my/model",
           "MEMORI_DEBUG_TRUNCATE": "false"}
    c = Config.from_env({"recall_facts_limit": 9}, environ=env)
    assert (c.recall_facts_limit, c.embeddings.model, c.debug_truncate) == (9, "my/model", False)


def test_a_mistyped_environment_variable_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="memori_core.config"):
        c = Config.from_env(environ={"MEMORI_RECALL_RELEVENCE_THRESHOLD": "0.3",
                                     "MEMORI_DATABASE_URL": "sqlite:///x.db"})
    assert c.recall_relevance_threshold == 0.1
    assert "MEMORI_RECALL_RELEVENCE_THRESHOLD is not a memori setting" in caplog.text
    assert "MEMORI_DATABASE_URL" not in caplog.text.split("settings:")[0]


def test_a_mistyped_attribute_is_an_error_not_a_silent_new_field() -> None:
    with pytest.raises(AttributeError):
        Config().recall_fact_limit = 3  # type: ignore[attr-defined]


def test_one_config_shared_by_two_instances_stays_each_ones_own(tmp_path: object) -> None:
    shared = Config.from_env(environ={})
    a = Memori(conn=f"sqlite:///{tmp_path}/a.db", config=shared, embedder=HashEmbedder(),
               recall_facts_limit=2)
    try:
        assert a.config.recall_facts_limit == 2 and shared.recall_facts_limit == 5
    finally:
        a.close()


def test_unbound_config_cannot_build() -> None:
    with pytest.raises(ConfigurationError, match="not bound to a database"):
        Config().storage.build()


def test_raw_connection_hint_names_the_right_driver(pg_url: str) -> None:
    import psycopg

    raw = psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql"))
    try:
        with pytest.raises(ConfigurationError, match=r"conn=lambda: psycopg\.connect"):
            Memori(conn=raw)
    finally:
        raw.close()


@pytest.mark.parametrize(("setting", "value"), [("request_backoff_factor", 1e9),
                                                ("request_num_backoff", 60)])
def test_a_retry_delay_over_100_years_names_the_setting_given(setting: str,
                                                              value: float) -> None:
    """Found by the long API fuzz: a backoff factor too long under the default 5 attempts
    was reported as request_num_backoff, a setting the caller never gave."""
    with pytest.raises(ConfigurationError) as err:
        Config.from_env({setting: value}, environ={})
    assert err.value.argument == setting
    assert f"lower {setting}" in str(err.value)
