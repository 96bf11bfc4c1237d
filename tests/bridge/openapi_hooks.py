"""Schemathesis hooks for ``test_openapi_fuzz.py``: the one rule JSON Schema cannot say.

``expires_at`` must be later than now (docs/PROTOCOL.md §3): a schema can say "a
date-time", not "a future one", so a generated instant in the past would be a request
the schema allows and the server rightly refuses. Such instants (only those: aware,
parseable, not in the future) are moved a day ahead of now; everything else the
generator made, valid or not, is sent as it was.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis

AHEAD = timedelta(days=1)


def _future(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None or moment > datetime.now(UTC):
            return value
    except (ValueError, OverflowError):
        return value
    return (datetime.now(UTC) + AHEAD).isoformat()


def _fix(item: object) -> None:
    if isinstance(item, dict) and "expires_at" in item:
        item["expires_at"] = _future(item["expires_at"])


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    body = case.body
    if isinstance(body, dict):
        _fix(body)
        items = body.get("notifications")
        if isinstance(items, list):
            for item in items:
                _fix(item)
    return case
