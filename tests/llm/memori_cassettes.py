"""The cassette format of the provider tests (and of ``author_cassettes.py``).

vcrpy YAML with three changes that keep cassettes reviewable and safe:

- JSON bodies are stored parsed (``parsed_body``), so a request reads as the JSON it is and the
  injected memori block is visible line by line; SSE bodies are YAML literal blocks.
- Only allow-listed headers are kept (``content-type``): no key, cookie or organisation id
  can be recorded. ``tests/test_cassettes.py`` checks every cassette anyway.
- Requests match on method (case-insensitive: aiohttp sends ``post``), URI and the *parsed*
  JSON body (``json_body``): the exact injected block is checked, key order is not.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it

ROOT = Path(__file__).resolve().parents[2]
CASSETTES = ROOT / "cassettes"
#: headers kept in recorded requests and responses
ALLOWED_HEADERS = frozenset({"content-type"})
#: query parameters never recorded (Gemini accepts the key as ?key=)
SECRET_QUERY = frozenset({"key", "api_key", "api-key", "access_token"})
MATCH_ON = ("method_ci", "uri", "json_body")


@functools.lru_cache(maxsize=4096)
def _parsed(text: str | bytes) -> str | None:
    """The canonical JSON text of a body (cached: a cassette compares every request with every
    recorded one), or None when it is not JSON."""
    value = _json(text)
    return None if value is None else json.dumps(value, sort_keys=True)


def _json(text: Any) -> Any:
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


class ReadableYaml:
    """vcrpy serializer: ``parsed_body`` for JSON bodies, literal blocks for the rest."""

    @staticmethod
    def deserialize(text: str) -> dict[str, Any]:
        data = yaml.load(text, Loader=_Loader) or {"interactions": [], "version": 1}
        for item in data.get("interactions", []):
            request, response = item["request"], item["response"]
            if "parsed_body" in request:
                request["body"] = json.dumps(request.pop("parsed_body"), ensure_ascii=False)
            request.setdefault("body", None)
            if "parsed_body" in response:
                response["body"] = {"string": json.dumps(response.pop("parsed_body"),
                                                         ensure_ascii=False)}
        return data

    @staticmethod
    def serialize(data: dict[str, Any]) -> str:
        for item in data.get("interactions", []):
            request, response = item["request"], item["response"]
            parsed = _json(request.get("body"))
            if parsed is not None:
                request["parsed_body"] = parsed
                del request["body"]
            body = (response.get("body") or {}).get("string")
            parsed = _json(body)
            if parsed is not None:
                response["parsed_body"] = parsed
                del response["body"]
        return yaml.dump(data, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=100)


def method_ci(r1: Any, r2: Any) -> None:
    """vcrpy matcher: the HTTP method, case-insensitive."""
    if r1.method.upper() != r2.method.upper():
        raise AssertionError(f"{r1.method} != {r2.method}")


def json_body(r1: Any, r2: Any) -> None:
    """vcrpy matcher: equal JSON bodies (parsed, whatever the headers say), else equal bytes."""
    b1, b2 = r1.body or b"", r2.body or b""
    j1 = _parsed(b1) if isinstance(b1, (str, bytes)) else None
    j2 = _parsed(b2) if isinstance(b2, (str, bytes)) else None
    if j1 is not None or j2 is not None:
        if j1 != j2:
            raise AssertionError(f"JSON bodies differ: {j1} != {j2}")
    elif b1 != b2:
        raise AssertionError("bodies differ")


def filter_request(request: Any) -> Any:
    """``before_record_request``: allow-listed headers only, no secret query parameters."""
    request.headers = {k: v for k, v in request.headers.items() if k.lower() in ALLOWED_HEADERS}
    parts = urlsplit(request.uri)
    if parts.query:
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                 if k.lower() not in SECRET_QUERY]
        request.uri = urlunsplit(parts._replace(query=urlencode(query)))
    return request


def filter_response(response: dict[str, Any]) -> dict[str, Any]:
    """``before_record_response``: allow-listed headers only."""
    response["headers"] = {k: v for k, v in response.get("headers", {}).items()
                           if k.lower() in ALLOWED_HEADERS}
    return response


def vcr_config() -> dict[str, Any]:
    """Keyword arguments of ``vcr.use_cassette`` for the provider tests."""
    return {"match_on": MATCH_ON, "before_record_request": filter_request,
            "before_record_response": filter_response, "decode_compressed_response": True}


def configure(vcr: Any) -> None:
    """Register the serializer (as ``yaml``, so files keep the ``.yaml`` suffix) and matchers."""
    vcr.register_serializer("yaml", ReadableYaml())
    vcr.register_matcher("method_ci", method_ci)
    vcr.register_matcher("json_body", json_body)


# ---- authoring --------------------------------------------------------------------------------
def interaction(method: str, uri: str, body: Any, response: Any, *, sse: bool = False,
                status: int = 200) -> dict[str, Any]:
    """One cassette interaction: ``body`` (JSON-ready) sent, ``response`` answered (a JSON value,
    or with ``sse`` the event-stream text)."""
    request: dict[str, Any] = {"method": method, "uri": uri,
                               "headers": {"content-type": ["application/json"]}}
    if body is not None:
        request["parsed_body"] = body
    reply: dict[str, Any] = {"status": {"code": status, "message": "OK" if status == 200 else "Error"}}
    if sse:
        reply["headers"] = {"content-type": ["text/event-stream"]}
        reply["body"] = {"string": response}
    else:
        reply["headers"] = {"content-type": ["application/json"]}
        reply["parsed_body"] = response
    return {"request": request, "response": reply}


def write(path: Path, interactions: list[dict[str, Any]]) -> None:
    """Write an authored cassette."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"interactions": interactions, "version": 1}
    path.write_text(yaml.dump(data, Dumper=_Dumper, allow_unicode=True, sort_keys=False,
                              width=100), encoding="utf-8")
