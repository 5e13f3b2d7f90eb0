"""Fixtures of the LangChain plugin's tests: LangChain's own fake chat models, a callback
handler that sees what the wrapped model received, fake AWS credentials and the vcrpy set-up
replaying the Bedrock runtime cassettes in ``cassettes/langchain/<test_module>/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from lc_helpers import SeenByModels

CASSETTES = Path(__file__).resolve().parents[3] / "cassettes" / "langchain"


@pytest.fixture
def seen() -> SeenByModels:
    return SeenByModels()


@pytest.fixture
def fake_model(seen: SeenByModels) -> GenericFakeChatModel:
    """A fake chat model answering three fixed texts in turn (and streaming them word by
    word); ``seen`` records what it was sent."""
    return GenericFakeChatModel(messages=iter(["Try apple slices and cheese.",
                                               "Lisbon is sunny today.",
                                               "Goodbye for now."]), callbacks=[seen])


# ---- Bedrock: fake credentials, cassettes -----------------------------------------------------
@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake AWS credentials, no instance metadata lookup, no user AWS config."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_BEARER_TOKEN_BEDROCK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def vcr_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Replay only (``--record-mode`` on the command line re-records); requests match on
    method, URI and body (JSON bodies compared parsed); credentials never reach a cassette."""
    return {
        "record_mode": request.config.getoption("--record-mode") or "none",
        "match_on": ["method", "uri", "body"],
        "filter_headers": ["authorization", "x-amz-date", "x-amz-security-token",
                           "amz-sdk-invocation-id", "amz-sdk-request", "user-agent",
                           "x-amz-content-sha256"],
        "decode_compressed_response": True,
    }


@pytest.fixture(scope="module")
def vcr_cassette_dir(request: pytest.FixtureRequest) -> str:
    return str(CASSETTES / Path(str(request.node.fspath)).stem)


@pytest.fixture
def no_default_db(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Run in an empty folder without MEMORI_DATABASE_URL, so ``Memori()`` makes a fresh
    ``./memori.db`` there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEMORI_DATABASE_URL", raising=False)
    return tmp_path
