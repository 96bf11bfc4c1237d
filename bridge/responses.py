"""JSON responses, encoded with orjson."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson
from quart import Response

from bridge.outcomes import ApiError

JSON: Final = "application/json"


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``body`` as a JSON response (``bytes`` are taken as JSON already encoded)."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(data, status=status, content_type=JSON, headers=dict(headers or {}))


def error_response(error: ApiError) -> Response:
    """The §6 error shape; 401s also say which scheme they want."""
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return json_response(error.body, error.status, headers)
