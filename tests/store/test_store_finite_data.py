"""Migration 0004: stored data with ``NaN``, ``Infinity`` or numbers beyond a double's
range (written by versions that did not refuse them) becomes strict JSON, ``null`` in
their place; every other byte and row stays as it was."""

from __future__ import annotations

import io
import json
import logging
import math
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command as commands
from alembic.script import ScriptDirectory
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.jsonwire import notification_frame
from server.rpc.convert import notification_to_pb
from server.store.engines import make_engine
from server.store.migrate import alembic_config, upgrade
from server.store.tables import UtcDateTime
from tests.store.conftest import Database, migrated_store

NOW = datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC)
PREVIOUS = "0003"

NOTIFICATIONS = sa.table(
    "notifications",
    *(sa.column(c) for c in ("id", "user_id", "type", "title", "message", "data_json")),
    *(sa.column(c) for c in ("priority", "queued", "content_id")),
    sa.column("created_at", UtcDateTime),
)
CONTENTS = sa.table("contents", *(sa.column(c) for c in ("content_id", "title", "message")),
                    sa.column("data_json"))  # fmt: skip

BIG = "123456789012345678901234567890"
#: Stored text -> the text expected after the upgrade.
INLINE = {
    '{"a":NaN,"b":1}': '{"a":null,"b":1}',
    '{"x":[1,Infinity,{"y":-Infinity}],"z":"NaN"}': '{"x":[1,null,{"y":null}],"z":"NaN"}',
    f'{{"big":1e999,"neg":-1E+400,"ok":1.5e300,"n":{BIG}}}': (
        f'{{"big":null,"neg":null,"ok":1.5e300,"n":{BIG}}}'
    ),
    # Not compact, escapes, exact decimals: only the numbers themselves change.
    '{ "k" : [ NaN , 2.50, 1E2 ] , "u" : "\\u00e9\\"NaN\\\\", "NaN": 1 }': (
        '{ "k" : [ null , 2.50, 1E2 ] , "u" : "\\u00e9\\"NaN\\\\", "NaN": 1 }'
    ),
    # Picked by the filter, nothing to change.
    '{"s":"NaN Infinity 1e999","Infinity":"x","e":3e5}': None,
    f'{{"n":{BIG},"m":-{BIG}}}': None,
    '{"i":1,"ü":"✓"}': None,
    "{}": None,
}
SHARED = {
    '{"c":[NaN,{"d":Infinity}],"e":"Infinity"}': '{"c":[null,{"d":null}],"e":"Infinity"}',
    '{"plain":[1,2]}': None,
}


async def test_upgrade_writes_non_finite_numbers_as_null(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    await upgrade(database.url, schema=database.schema, revision=PREVIOUS)
    inline = list(INLINE)
    shared = list(SHARED)
    rows = [_row(i, "a", data_json=text) for i, text in enumerate(inline, 1)]
    # Each content with two recipients (narrow rows: no inline content).
    narrow = [
        _row(len(rows) + 1 + i, user, content_id=c, title=None, message=None)
        for i, (c, user) in enumerate((c, u) for c in (1, 2) for u in "bc")
    ]
    engine = make_engine(database.url, schema=database.schema)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(CONTENTS),
                [
                    {"content_id": c, "title": "t", "message": "m", "data_json": text}
                    for c, text in enumerate(shared, 1)
                ],
            )
            await conn.execute(sa.insert(NOTIFICATIONS), [*rows, *narrow])
    finally:
        await engine.dispose()

    with caplog.at_level(logging.INFO, logger="server.store.migrate"):
        async with migrated_store(database) as store:
            found = await store.fetch(range(1, len(rows) + len(narrow) + 1))
    assert await _stored(database, NOTIFICATIONS, "id") == [
        *(after or before for before, after in INLINE.items()),
        *([None] * len(narrow)),
    ]
    assert await _stored(database, CONTENTS, "content_id") == [
        after or before for before, after in SHARED.items()
    ]
    expected = [after or before for before, after in INLINE.items()]
    expected += [after or before for before, after in SHARED.items() for _ in "bc"]
    assert [n.data_json for n in found] == expected
    assert [(n.id, n.user_id, n.title, n.message) for n in found] == [
        *((r["id"], "a", r["title"], "") for r in rows),
        *((r["id"], r["user_id"], "t", "m") for r in narrow),
    ]
    for n in found:
        frame = json.loads(notification_frame(notification_to_pb(n)), parse_constant=_refuse)
        assert frame["notification"]["data"] == json.loads(n.data_json)
        assert _finite(frame)
    assert [r.getMessage() for r in caplog.records if r.name == "server.store.migrate"] == [
        "migration 0004: rewrote non-finite numbers as null in the data of "
        "4 notifications and 1 broadcast contents; 0 unreadable left as they were"
    ]


async def test_unreadable_data_is_left_as_it_was(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Text that is not JSON at all (no version wrote any) is kept and its key logged."""
    await upgrade(database.url, schema=database.schema, revision=PREVIOUS)
    texts = ['{"a":NaN', '{"a":NaN}', "NaN-ish 1e5 garbage"]
    engine = make_engine(database.url, schema=database.schema)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(NOTIFICATIONS),
                [_row(i, "a", data_json=t) for i, t in enumerate(texts, 1)],
            )
    finally:
        await engine.dispose()
    with caplog.at_level(logging.INFO, logger="server.store.migrate"):
        await upgrade(database.url, schema=database.schema)
    assert await _stored(database, NOTIFICATIONS, "id") == [texts[0], '{"a":null}', texts[2]]
    (record,) = [r for r in caplog.records if r.name == "server.store.migrate"]
    assert record.levelno == logging.WARNING
    assert record.getMessage().endswith(
        "1 notifications and 0 broadcast contents; 2 unreadable left as they were "
        "(notifications.id=1, notifications.id=3)"
    )


async def test_rows_across_batches_and_gaps_in_the_keys(database: Database) -> None:
    """Bad rows on both sides of each batch's edge (1 000 keys) and after a gap of keys."""
    await upgrade(database.url, schema=database.schema, revision=PREVIOUS)
    ids = [*range(1, 2001), *range(10_000, 10_600)]
    bad = {1, 999, 1000, 1001, 2000, 10_000, 10_599}
    texts = {i: '{"v":NaN}' if i in bad else f'{{"s":"NaN","n":{i}}}' for i in ids}
    engine = make_engine(database.url, schema=database.schema)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(NOTIFICATIONS), [_row(i, "a", data_json=texts[i]) for i in ids]
            )
    finally:
        await engine.dispose()
    await upgrade(database.url, schema=database.schema)
    expected = ['{"v":null}' if i in bad else texts[i] for i in ids]
    assert await _stored(database, NOTIFICATIONS, "id") == expected


def test_an_offline_upgrade_only_says_the_data_needs_an_online_one() -> None:
    config = alembic_config()
    config.output_buffer = io.StringIO()
    config.set_main_option("sqlalchemy.url", "sqlite+aiosqlite:///unused.db")
    commands.upgrade(config, f"{PREVIOUS}:0004", sql=True)
    script = config.output_buffer.getvalue()
    assert "rewritten only by an online upgrade" in script
    assert "UPDATE notifications" not in script


# --- the rewrite itself -----------------------------------------------------------------


def _migration(revision: str) -> Any:
    script = ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    assert script is not None
    return script.module


finite_json = _migration("0004").finite_json

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=st.sampled_from('aN"\\ \n✓1e-'), max_size=8),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(VALUES, st.booleans())
def test_rewrite_is_strict_json_and_changes_only_non_finite_numbers(
    value: Any, compact: bool
) -> None:
    separators = (",", ":") if compact else (" , ", " : ")
    text = json.dumps(value, separators=separators, ensure_ascii=compact)
    rewritten = finite_json(text)
    assert json.loads(rewritten, parse_constant=_refuse) == _nulled(value)
    if text == json.dumps(_nulled(value), separators=separators, ensure_ascii=compact):
        assert rewritten is text, "nothing to change: the very same text"
    else:
        assert rewritten == json.dumps(_nulled(value), separators=separators, ensure_ascii=compact)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[1e308,1.7976931348623157e308,2e308,-1e309,1e-999,0.1e310]",
            "[1e308,1.7976931348623157e308,null,null,1e-999,null]",
        ),
        (f"[{'9' * 400},-{'9' * 400}]", None),  # integers stay exact, whatever their size
        ('["1e999", NaN]', '["1e999", null]'),
    ],
)
def test_rewrite_cases(text: str, expected: str | None) -> None:
    assert finite_json(text) == (expected or text)


def _nulled(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_nulled(v) for v in value]
    if isinstance(value, dict):
        return {k: _nulled(v) for k, v in value.items()}
    return value


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not strict JSON")


def _row(i: int, user: str, **changes: Any) -> dict[str, Any]:
    row = {
        "id": i,
        "user_id": user,
        "type": "t",
        "title": f"title {i}",
        "message": "",
        "data_json": None,
        "priority": "normal",
        "queued": False,
        "content_id": None,
        "created_at": NOW,
    }
    return row | changes


async def _stored(database: Database, table: sa.TableClause, key: str) -> list[str | None]:
    """The data column's stored text, row by row in key order."""
    engine = make_engine(database.url, schema=database.schema)
    try:
        async with engine.connect() as conn:
            query = sa.select(table.c.data_json).order_by(table.c[key])
            return list((await conn.execute(query)).scalars())
    finally:
        await engine.dispose()
