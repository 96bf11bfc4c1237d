"""Log formats."""

from __future__ import annotations

import logging

import orjson

from server.logs import JsonFormatter


def test_json_lines() -> None:
    record = logging.LogRecord(
        "tidings", logging.INFO, __file__, 1, "grpc listening on %s", ("h:1",), None
    )
    line = JsonFormatter().format(record)
    entry = orjson.loads(line)
    assert entry["msg"] == "grpc listening on h:1"
    assert (entry["level"], entry["logger"]) == ("info", "tidings")
    assert entry["ts"].endswith("+00:00")
    assert "\n" not in line
