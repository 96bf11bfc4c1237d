"""Log output: readable text by default, one JSON object per line with ``--log-format json``.

Nothing here sees credentials: the bridge never logs query strings or headers, and
the engine logs user ids at most.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Libraries whose routine information is noise at ``info``.
CHATTY = ("alembic", "hypercorn.access", "asyncio")


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg"[, "exc"]}`` per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure(level: str, fmt: str = "text") -> None:
    """Send logs to stderr at ``level`` in format ``text`` or ``json``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in CHATTY:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
