"""Stored data that every JSON parser reads: ``NaN``, ``Infinity``, ``-Infinity`` and
numbers beyond a double's range become ``null``.

Creates refuse such data now, but earlier versions stored it (Python's ``json.dumps``
writes them as ``NaN``/``Infinity``), and the stored text is sent as it is: one such
row made a whole inbox page, replay or frame unreadable for ``JSON.parse``. Each such
number is rewritten as ``null`` (what ``JSON.stringify(NaN)`` writes), in
``notifications.data_json`` and ``contents.data_json``. Nothing else changes, byte for
byte: other values, key order, spacing, big integers, strings that hold the text
"NaN", and every other row.

Only the rows a cheap filter picks are read, ``BATCH`` keys at a time: text with
``NaN``, ``Infinity``, or a digit followed by a positive exponent (``1e999``,
``1E+400``). A number beyond a double's range with no positive exponent (more than 308
digits before the point) is not looked for: no version wrote one (``json.dumps``
writes such a value as ``Infinity``). A picked row is parsed; if it is not JSON at all (no version
wrote such text), it is left as it is and its key logged: erasing it would lose what
cannot be put back. One log line gives the counts.

``alembic upgrade --sql`` cannot read rows: it writes a comment instead. The
downgrade changes nothing: the numbers replaced are not kept, and ``null`` is data
that every earlier version reads.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("server.store.migrate")

#: Keys per batch: the rows read, and rewritten in one statement, at most.
BATCH = 1000
#: The tables that hold data, each with its key.
TABLES = (("notifications", "id"), ("contents", "content_id"))
#: Text that may hold a non-finite number, per dialect (case-sensitive, like JSON).
SUSPECT = {
    "sqlite": (
        "(data_json GLOB '*NaN*' OR data_json GLOB '*Infinity*' "
        "OR data_json GLOB '*[0-9][eE][+0-9]*')"
    ),
    "postgresql": "data_json ~ '(NaN|Infinity|[0-9][eE][+0-9])'",
}
#: Below every key (ids start at 1).
FIRST = -(2**63)
#: A JSON string (escapes included) or a number; what lies between them is kept as is.
TOKEN = re.compile(
    r'"[^"\\]*(?:\\.[^"\\]*)*"|-?Infinity|NaN|-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?',
    re.DOTALL,
)
NON_FINITE = frozenset({"NaN", "Infinity", "-Infinity"})


class Unreadable(ValueError):
    """Stored text that is not JSON, even with ``NaN`` and ``Infinity`` allowed."""


def finite_json(text: str) -> str:
    """``text`` with each non-finite number written ``null``, every other byte kept.

    Returns ``text`` itself when there is none; raises ``Unreadable`` when ``text`` is
    not JSON. The result is checked: strict JSON, and the same value as ``text`` with
    those numbers read as ``None``.
    """
    try:
        expected = json.loads(text, parse_constant=_none, parse_float=_finite_or_none)
    except (ValueError, RecursionError) as exc:
        raise Unreadable(str(exc)) from None
    rewritten = TOKEN.sub(_token, text)
    if rewritten == text:
        return text
    try:
        same = json.loads(rewritten, parse_constant=_refuse) == expected
    except (ValueError, RecursionError):
        same = False
    if not same:
        raise Unreadable("rewriting its numbers changed more than them")
    return rewritten


def _none(_: str) -> None:
    return None


def _finite_or_none(number: str) -> float | None:
    value = float(number)
    return None if math.isinf(value) else value


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _token(match: re.Match[str]) -> str:
    token = match.group()
    if token[0] == '"':
        return token
    if token in NON_FINITE:
        return "null"
    # An integer stays exact whatever its size; a fraction or exponent is a double.
    if ("." in token or "e" in token or "E" in token) and math.isinf(float(token)):
        return "null"
    return token


def upgrade() -> None:
    context = op.get_context()
    if context.as_sql:
        context.impl.static_output(
            "-- 0004: data with NaN, Infinity or numbers beyond a double's range is "
            "rewritten only by an online upgrade (tidings db upgrade)"
        )
        return
    bind = op.get_bind()
    suspect = SUSPECT[bind.dialect.name]
    counts: dict[str, int] = {}
    unreadable: list[str] = []
    for table, key in TABLES:
        counts[table] = _rewrite(bind, table, key, suspect, unreadable)
    message = (
        "migration 0004: rewrote non-finite numbers as null in the data of "
        "%d notifications and %d broadcast contents; %d unreadable left as they were%s"
    )
    shown = f" ({', '.join(unreadable[:10])})" if unreadable else ""
    level = logging.WARNING if unreadable else logging.INFO
    log.log(level, message, counts["notifications"], counts["contents"], len(unreadable), shown)


def _rewrite(bind: sa.Connection, table: str, key: str, suspect: str, unreadable: list[str]) -> int:
    """Rewrite the suspect rows of ``table``, ``BATCH`` keys at a time; how many changed.

    Each batch is a range of keys read from the primary key first, so the filter only
    ever scans that range: a ``LIMIT`` on the filtered rows let PostgreSQL, without
    statistics on a freshly loaded table, scan the whole table for every batch.
    """
    bound = sa.text(
        f"SELECT max({key}) FROM (SELECT {key} FROM {table} WHERE {key} > :after "
        f"ORDER BY {key} LIMIT {BATCH}) AS batch"
    )
    select = sa.text(
        f"SELECT {key}, data_json FROM {table} "
        f"WHERE {key} > :after AND {key} <= :upto AND {suspect} ORDER BY {key}"
    )
    update = sa.text(f"UPDATE {table} SET data_json = :data WHERE {key} = :key")
    changed = 0
    after = FIRST
    while (upto := bind.execute(bound, {"after": after}).scalar()) is not None:
        fixed = []
        for row_key, text in bind.execute(select, {"after": after, "upto": upto}):
            try:
                rewritten = finite_json(text)
            except Unreadable:
                unreadable.append(f"{table}.{key}={row_key}")
                continue
            if rewritten != text:
                fixed.append({"key": row_key, "data": rewritten})
        if fixed:
            bind.execute(update, fixed)
            changed += len(fixed)
        after = upto
    return changed


def downgrade() -> None:
    """Nothing to undo: the numbers replaced are not kept, and ``null`` reads everywhere."""
