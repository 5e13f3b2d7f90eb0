"""No cassette under cassettes/ (the provider wrappers' and every plugin's) may hold an API key,
a cookie or an organisation id. Recording filters are not retroactive, so this reads every file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

CASSETTES = Path(__file__).resolve().parents[1] / "cassettes"
#: headers that carry credentials, sessions or account ids (compared lower-case)
SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key",
    "x-goog-user-project", "cookie", "set-cookie", "openai-organization", "openai-project",
    "anthropic-organization-id", "x-organization-id", "x-amz-security-token",
    "x-amz-content-sha256", "ocp-apim-subscription-key"})
#: query parameters that carry keys
SECRET_QUERY = re.compile(r"[?&](key|api_key|api-key|access_token|token)=", re.I)
#: key and id shapes of the providers memori talks to
SECRET_VALUES = {
    "OpenAI / Anthropic / DeepSeek key": re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"),
    "xAI key": re.compile(r"\bxai-[A-Za-z0-9]{20,}"),
    "NVIDIA key": re.compile(r"\bnvapi-[A-Za-z0-9_\-]{20,}"),
    "AWS access key": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "OpenAI organisation id": re.compile(r"\borg-[A-Za-z0-9]{16,}"),
    "OpenAI project id": re.compile(r"\bproj_[A-Za-z0-9]{16,}"),
    "bearer token": re.compile(r"\bBearer\s+[A-Za-z0-9._\-]{8,}", re.I),
    "cookie header": re.compile(r"^\s*-?\s*['\"]?(set-)?cookie['\"]?\s*:", re.I | re.M),
}


def _headers(part: Any) -> list[str]:
    headers = part.get("headers") if isinstance(part, dict) else None
    return [str(k).lower() for k in headers] if isinstance(headers, dict) else []


def findings(text: str) -> list[str]:
    """Everything in one cassette's text that looks like a secret."""
    found = [f"{name}: {m.group(0)[:12]}..." for name, rx in SECRET_VALUES.items()
             for m in rx.finditer(text)]
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return [*found, f"not YAML: {exc}"]
    interactions = data.get("interactions", []) if isinstance(data, dict) else []
    for i, item in enumerate(interactions or []):
        for side in ("request", "response"):
            for header in _headers(item.get(side)):
                if header in SECRET_HEADERS:
                    found.append(f"interaction {i} {side} header {header}")
        uri = str((item.get("request") or {}).get("uri", ""))
        if SECRET_QUERY.search(uri):
            found.append(f"interaction {i} key in the URI query")
    return found


def cassette_files() -> list[Path]:
    return sorted(p for p in CASSETTES.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))


def test_no_cassette_holds_a_key_cookie_or_organisation_id() -> None:
    bad = {str(p.relative_to(CASSETTES)): f for p in cassette_files()
           if (f := findings(p.read_text(encoding="utf-8")))}
    assert not bad, f"secrets in cassettes (re-record, or scrub by hand): {bad}"


def _cassette(headers: dict[str, list[str]], uri: str = "https://api.example.com/v1") -> str:
    return yaml.safe_dump({"interactions": [{
        "request": {"method": "POST", "uri": uri, "headers": headers},
        "response": {"status": {"code": 200}, "headers": {"content-type": ["text/plain"]}}}],
        "version": 1})


@pytest.mark.parametrize(("header", "value"), [
    ("authorization", "Bearer sk-proj-abcdefghijklmnopqrstuvwx"),
    ("x-api-key", "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"),
    ("x-goog-api-key", "AIzaSyA1234567890abcdefghijklmnopqrstu"),
    ("openai-organization", "org-abcdefghijklmnopqrstuv"),
    ("Set-Cookie", "__cf_bm=abc; path=/"),
])
def test_the_scan_finds_planted_secrets(header: str, value: str) -> None:
    found = findings(_cassette({header: [value]}))
    assert f"interaction 0 request header {header.lower()}" in found
    # the value alone, under a harmless header name, is found too
    if header != "Set-Cookie":
        assert findings(_cassette({"x-note": [value]}))


def test_the_scan_finds_a_key_in_the_query() -> None:
    assert findings(_cassette({}, "https://x.googleapis.com/v1/m?key=abc")) == [
        "interaction 0 key in the URI query"]


def test_the_provider_cassettes_are_scanned() -> None:
    names = {p.parts[len(CASSETTES.parts)] for p in cassette_files()}
    assert {"openai", "anthropic", "google"} <= names
