"""docs/PROTOCOL.md is the one protocol reference a client author reads.

Every citation of it in the tree names a section it has, its §1–§8 keep the topics of
the contract, and it documents every WebSocket message type and error code the code
sends or accepts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge import wsschemas
from server.engine import errors

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "docs" / "PROTOCOL.md"

#: Where citations are looked for, and what is skipped (generated or third-party code).
SCANNED = ("server", "bridge", "clients", "tests", "bench", "docs", "proto", "README.md")
SKIPPED = (
    "clients/python/src/tidings/v1",
    "clients/typescript/gen",
)
SKIPPED_PARTS = {"node_modules", "__pycache__", ".venv", "dist", "build"}
SUFFIXES = {".py", ".pyi", ".ts", ".js", ".mjs", ".md", ".proto", ".html", ".yaml"}

#: "PROTOCOL.md §3", "docs/PROTOCOL.md §2, §5", "PROTOCOL §3 and §5", "PROTOCOL.md) §5".
CITATION = re.compile(
    r"PROTOCOL(?:\.md)?\)?[ \t]+((?:§\d+(?:\.\d+)*(?:[ \t]*(?:,|and|or)[ \t]*)?)+)"
)
SECTION = re.compile(r"§(\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#{2,4}[ \t]+(\d+(?:\.\d+)*)\.?[ \t]+(.+)$", re.MULTILINE)

#: The contract's numbering, which the project's document keeps (first words of each title).
CONTRACT_SECTIONS = {
    "1": "Shape",
    "2": "Identity and authorization",
    "3": "Notification",
    "4": "Delivery",
    "5": "WebSocket",
    "6": "REST",
    "7": "gRPC",
    "8": "Configuration",
}


def _protocol() -> str:
    assert PROTOCOL.is_file(), "docs/PROTOCOL.md is missing"
    return PROTOCOL.read_text(encoding="utf-8")


def _headings() -> dict[str, str]:
    return {number: title.strip() for number, title in HEADING.findall(_protocol())}


def _documented(name: str) -> bool:
    return f"`{name}`" in _protocol()


def _files() -> Iterator[Path]:
    for top in SCANNED:
        path = ROOT / top
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        for file in candidates:
            relative = file.relative_to(ROOT).as_posix()
            if (
                file.is_file()
                and file.suffix in SUFFIXES
                and file != Path(__file__).resolve()
                and not SKIPPED_PARTS.intersection(file.relative_to(ROOT).parts)
                and not relative.startswith(SKIPPED)
            ):
                yield file


def _source(relative: str) -> str:
    return (ROOT / relative).read_text(encoding="utf-8")


def test_sections_1_to_8_keep_the_topics_of_the_contract() -> None:
    headings = _headings()
    for number, topic in CONTRACT_SECTIONS.items():
        assert number in headings, f"docs/PROTOCOL.md has no section {number} ({topic})"
        assert headings[number].startswith(topic), (number, headings[number])


def test_every_citation_names_a_section_that_exists() -> None:
    headings = _headings()
    cited = 0
    missing: list[str] = []
    for file in _files():
        text = file.read_text(encoding="utf-8", errors="replace")
        for match in CITATION.finditer(text):
            for number in SECTION.findall(match.group(1)):
                cited += 1
                if number not in headings:
                    line = text.count("\n", 0, match.start()) + 1
                    missing.append(f"{file.relative_to(ROOT)}:{line}: §{number}")
    assert cited > 20, "the citation scan found almost nothing: is the pattern still right?"
    assert not missing, "citations of sections docs/PROTOCOL.md does not have:\n" + "\n".join(
        missing
    )


def test_references_inside_the_document_exist() -> None:
    headings = _headings()
    missing = sorted(set(SECTION.findall(_protocol())) - set(headings))
    assert not missing, f"docs/PROTOCOL.md refers to sections it does not have: {missing}"


def test_nothing_points_at_the_folded_choices_page() -> None:
    folded = "PROTOCOL-" + "CHOICES"
    stale = [
        str(f.relative_to(ROOT))
        for f in _files()
        if folded in f.read_text(encoding="utf-8", errors="replace")
    ]
    assert not stale, f"{folded}.md is now part of docs/PROTOCOL.md; still cited in {stale}"


def _websocket_types() -> set[str]:
    """Every message ``type`` of the models of bridge/wsschemas.py, both directions, and
    every one bridge/jsonwire.py writes."""
    schema = wsschemas.json_schema()
    modelled = {*schema["client"]["discriminator"]["mapping"]}
    modelled |= {*schema["server"]["discriminator"]["mapping"]}
    written = re.findall(r'"type"\s*:\s*"(\w+)"', _source("bridge/jsonwire.py"))
    return modelled | set(written)


def test_every_websocket_message_type_is_documented() -> None:
    types = _websocket_types()
    assert {"connection_established", "notification", "ping", "mark_read"} <= types, types
    undocumented = sorted(t for t in types if not _documented(t))
    assert not undocumented, f"message types missing from docs/PROTOCOL.md: {undocumented}"


def _engine_codes() -> set[str]:
    """The ``code`` of every class in the engine's exception tree."""
    return {
        value.code
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.TidingsError)
    }


def _sent_codes() -> set[str]:
    """Error codes written literally where the engine and the bridge answer clients."""
    codes: set[str] = set()
    sent = re.compile(r'(?:WireError|ErrorEvent|error_frame|BadMetadata)\(\s*"(\w+)"')
    http = re.compile(r'\(\s*\d{3},\s*"(\w+)"')
    for relative in (
        "server/engine/session.py",
        "bridge/jsonwire.py",
        "bridge/outcomes.py",
        "bridge/metadata.py",
        "bridge/ws.py",
        "bridge/rest.py",
    ):
        source = _source(relative)
        codes.update(sent.findall(source), http.findall(source))
    return codes


@pytest.mark.parametrize("source", ["engine", "edges"])
def test_every_error_code_is_documented(source: str) -> None:
    codes = _engine_codes() if source == "engine" else _sent_codes()
    assert len(codes) >= 5, codes
    undocumented = sorted(c for c in codes if not _documented(c))
    assert not undocumented, f"error codes missing from docs/PROTOCOL.md: {undocumented}"


def test_every_test_docs_reliability_names_exists() -> None:
    """docs/RELIABILITY.md proves each promise with a test: each one it names exists."""
    text = (ROOT / "docs" / "RELIABILITY.md").read_text()
    named = re.findall(r"`(tests/[\w/]+\.py)((?:::\w+)?)`", text)
    assert named, "RELIABILITY.md names no test"
    for path, test in named:
        source = (ROOT / path).read_text() if (ROOT / path).exists() else ""
        assert source, f"RELIABILITY.md names {path}, which does not exist"
        if test:
            assert f"def {test[2:]}(" in source, f"RELIABILITY.md names {path}{test}: no such test"
    for test in re.findall(r"`::(\w+)`", text):  # "`::name`": a test of the file named before it
        assert any(f"def {test}(" in (ROOT / p).read_text() for p, _ in named), test
