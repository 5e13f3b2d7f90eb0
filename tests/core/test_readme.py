"""Every example of the README runs and prints what the README says it prints: alone, in a
fresh directory, and one after another in one directory (in README order and reversed, on two
dates), so no example depends on another, disturbs another, or on the day it runs.

A ```python block followed by "prints" and a ``` block is run here, offline (Agno ships no
test model: its example gets the plugin tests' offline model in ``OpenAIChat``'s place). A block
that needs something else carries a tag (``<!-- provider: openai -->``, ``<!-- remote -->``,
``<!-- database -->``) naming where it runs; an untagged block without documented output fails.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import pytest
from memori_databases import create_database
from sqlalchemy import create_engine, inspect

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
_BLOCK = re.compile(r"(?:<!-- (?P<tag>[^>]*) -->\n)?```python\n(?P<code>.*?)```"
                    r"(?:\n\nprints\n\n```\n(?P<prints>.*?)```)?", re.S)
# warnings raised inside LlamaIndex itself when its example runs (as its plugin tests allow)
pytestmark = [
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20:inspect"),
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211:inspect"),
    # LlamaIndex makes the main thread's event loop (asyncio.get_event_loop) and never closes
    # it; the next asyncio.run() drops it and the collector reports it
    pytest.mark.filterwarnings("ignore:unclosed event loop:ResourceWarning"),
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
    pytest.mark.filterwarnings(r"ignore:<aiosqlite\.core\.Connection object .* was deleted "
                               "before being closed:ResourceWarning"),
]
#: tagged blocks and the test that runs each
ELSEWHERE = {
    "provider": "tests/llm/test_readme_llm.py (against a cassette)",
    "remote": "tests/remote/test_remote_readme.py (against a real memori serve)",
    "database": "test_the_database_line_builds_memori_on_postgresql, below",
}


class Example(NamedTuple):
    heading: str
    code: str
    prints: str

    @property
    def name(self) -> str:
        return f"{self.heading} ({self.code.split('Memori(', 1)[-1].split(')', 1)[0]})"


def _python_blocks() -> list[re.Match[str]]:
    return list(_BLOCK.finditer(README.read_text(encoding="utf-8")))


def _heading(at: int) -> str:
    before = re.sub(r"^```.*?^```", "", README.read_text(encoding="utf-8")[:at], flags=re.S | re.M)
    return re.findall(r"^#+ (.*)$", before, re.M)[-1]


def examples() -> list[Example]:
    """The README's runnable examples, in order."""
    return [Example(_heading(m.start()), m["code"], m["prints"])
            for m in _python_blocks() if m["prints"] is not None]


def _run(example: Example) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example.code, f"README.md ({example.heading})", "exec"),
             {"__name__": "readme"})
    return out.getvalue()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEMORI_DATABASE_URL", raising=False)
    monkeypatch.delenv("MEMORI_URL", raising=False)
    monkeypatch.setenv("AGNO_TELEMETRY", "false")
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "integrations" / "agno"))
    import agno.models.openai
    from agno_offline_model import OfflineModel

    monkeypatch.setattr(agno.models.openai, "OpenAIChat", OfflineModel)
    sys.modules.pop("agno_offline_model", None)  # imported again where the Agno tests need it
    return tmp_path


def test_readme_starts_with_the_two_commands() -> None:
    first = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S)[0]
    assert first.splitlines()[0].startswith("make demo")
    assert first.splitlines()[1].startswith("make test")


def test_every_python_block_is_run_somewhere() -> None:
    for block in _python_blocks():
        tag = (block["tag"] or "").split(":")[0]
        assert block["prints"] is not None or tag in ELSEWHERE, (
            f"README block under {_heading(block.start())!r} shows no output and has no tag "
            f"naming the test that runs it ({', '.join(ELSEWHERE)}):\n{block['code'][:200]}")
    headings = [e.heading for e in examples()]
    assert headings[:1] == ["Quickstart"]
    assert len(headings) >= 3


@pytest.mark.real_clock
@pytest.mark.parametrize("example", examples(), ids=lambda e: e.name)
def test_example_alone_prints_its_documented_output(workdir: Path, example: Example) -> None:
    """On the real clock: the day the tests run."""
    assert _run(example) == example.prints
    assert list(workdir.glob("*.db")), "an example keeps its memories in its own database file"


@pytest.mark.parametrize(("order", "day"), [
    ("readme", datetime(2023, 5, 8, 13, 56)), ("reversed", datetime(2031, 2, 28, 23, 59))])
def test_examples_one_after_another_in_one_directory(
        workdir: Path, memori_clock, order: str, day: datetime) -> None:  # type: ignore[no-untyped-def]
    memori_clock.travel(day)
    runs = examples() if order == "readme" else examples()[::-1]
    for example in runs:
        assert _run(example) == example.prints, example.name
    files = sorted(p.name for p in workdir.glob("*.db"))
    assert len(files) == len(set(files)) and "memori.db" not in files, files


def test_quickstart_is_short() -> None:
    quickstart = examples()[0]
    code = [ln for ln in quickstart.code.splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(code) <= 16, "the quickstart stays short"
    assert "offline_openai()" in quickstart.code and "wait(" in quickstart.code


def test_the_database_line_builds_memori_on_postgresql(
        workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The "Your database" line, with the test server's database in its URL: memori's tables
    are built on first use, beside a table the app already has."""
    block = next(m for m in _python_blocks() if (m["tag"] or "") == "database")
    url, drop = create_database("postgresql", tmp_path_factory)
    app = create_engine(url)
    try:
        with app.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE orders (id int primary key)")
        documented = re.search(r'conn="(postgresql://[^"]+)"', block["code"])
        assert documented is not None
        code = block["code"].replace(documented.group(1),
                                     url.replace("postgresql+psycopg://", "postgres://"))
        namespace: dict[str, object] = {"__name__": "readme"}
        exec(compile(code, "README.md (Your database)", "exec"), namespace)
        mem = namespace["mem"]
        try:
            with mem.attribution(entity_id="db-user"):  # type: ignore[attr-defined]
                mem.remember("The user lives in Lisbon")  # type: ignore[attr-defined]
                assert [h.content for h in mem.recall("Lisbon")] == [  # type: ignore[attr-defined]
                    "The user lives in Lisbon"]
        finally:
            mem.close()  # type: ignore[attr-defined]
        tables = set(inspect(app).get_table_names())
        assert "orders" in tables and {"memori_entity", "memori_entity_fact"} <= tables
    finally:
        app.dispose()
        drop()
