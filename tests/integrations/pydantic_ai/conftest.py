"""Fixtures for the Pydantic AI plugin: cassettes under cassettes/pydantic_ai/, a fixed clock.

Cassettes are replayed with ``record_mode="none"`` (``--record-mode=rewrite`` re-records them
with a real ``OPENAI_API_KEY``), matched on method, URI and body, and stored with JSON bodies as
readable YAML; only the ``content-type`` header is kept, so no key or account header is written.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import time_machine
import yaml
from memori_loops import close_left_loop

ROOT = Path(__file__).resolve().parents[3]
CASSETTES = ROOT / "cassettes" / "pydantic_ai"
#: The day the cassette and the README examples were made: memory lines carry their date.
FROZEN_DAY = datetime(2026, 1, 15, 9, 0, tzinfo=timezone.utc)
_KEPT_HEADERS = {"content-type"}


def _is_json(headers: dict[str, Any]) -> bool:
    for name, value in headers.items():
        if name.lower() == "content-type":
            values = value if isinstance(value, list) else [value]
            return any("json" in str(v) for v in values)
    return False


class ReadableJsonYaml:
    """vcrpy serializer: YAML with JSON bodies stored as YAML data (``parsed_body``)."""

    @staticmethod
    def serialize(cassette: dict[str, Any]) -> str:
        data = copy.deepcopy(cassette)
        for interaction in data["interactions"]:
            request, response = interaction["request"], interaction["response"]
            body = request.get("body")
            if body and _is_json(request["headers"]):
                request["parsed_body"] = json.loads(body)
                del request["body"]
            body = response["body"].get("string")
            if body and _is_json(response["headers"]):
                response["parsed_body"] = json.loads(body)
                del response["body"]
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)

    @staticmethod
    def deserialize(text: str) -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load(text)
        for interaction in data["interactions"]:
            request, response = interaction["request"], interaction["response"]
            if "parsed_body" in request:
                request["body"] = json.dumps(request.pop("parsed_body"))
            if "parsed_body" in response:
                response["body"] = {"string": json.dumps(response.pop("parsed_body"))}
        return data


def pytest_recording_configure(config: pytest.Config, vcr: Any) -> None:
    # hooks reach every test session's VCR: only this plugin's cassettes use the serializer
    if Path(vcr.cassette_library_dir).resolve().is_relative_to(CASSETTES):
        vcr.register_serializer("yaml", ReadableJsonYaml)


def _keep_headers(message: Any) -> Any:
    headers = message.headers if hasattr(message, "headers") else message["headers"]
    for name in [n for n in headers if n.lower() not in _KEPT_HEADERS]:
        del headers[name]
    return message


@pytest.fixture
def vcr_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {
        "record_mode": request.config.getoption("--record-mode") or "none",
        "match_on": ["method", "uri", "body"],
        "filter_headers": ["authorization"],
        "before_record_request": _keep_headers,
        "before_record_response": _keep_headers,
        "decode_compressed_response": True,
    }


@pytest.fixture(scope="module")
def vcr_cassette_dir(request: pytest.FixtureRequest) -> str:
    return str(CASSETTES / request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture
def frozen_day(memori_clock: Any) -> Iterator[None]:
    """The wall clock and memori's (tests/conftest.py's ``memori_clock``) start at
    ``FROZEN_DAY`` (and keep ticking), so stored memories carry that date; monotonic time,
    which timeouts use, is untouched."""
    if memori_clock is not None:
        memori_clock.travel(FROZEN_DAY)
    with time_machine.travel(FROZEN_DAY):
        yield


@pytest.fixture(autouse=True)
def run_sync_loop_closer() -> Iterator[Callable[[], None]]:
    yield close_left_loop
    close_left_loop()
