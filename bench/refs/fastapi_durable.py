"""Reference (durable): the REST create a team would write instead — FastAPI + aiosqlite.

    python -m bench.refs.fastapi_durable --db PATH --port 0 [--loop uvloop|asyncio]

``POST /api/v1/notifications`` validates the body (pydantic, the §3 limits), inserts one
row and commits (one transaction per request, SQLite WAL, ``synchronous=FULL`` as
Tidings), then sends the notification as JSON to the user's open sockets
(``/ws?user_id=ID``) and answers 201 with it. No group commit, no queue, no replay:
durable before anyone is told, and nothing more.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import defaultdict
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import aiosqlite
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field

from bench.refs._common import HELLO, run, serve_uvicorn

SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, type TEXT NOT NULL,
    title TEXT NOT NULL, message TEXT NOT NULL, data_json TEXT NOT NULL,
    priority TEXT NOT NULL, created_at TEXT NOT NULL, read_at TEXT
);
CREATE INDEX IF NOT EXISTS ix_notifications_user_id_id ON notifications (user_id, id);
"""


class Create(BaseModel):
    user_id: Annotated[str, Field(min_length=1, max_length=128)]
    type: Annotated[str, Field(min_length=1, max_length=64)]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    message: Annotated[str, Field(max_length=4000)] = ""
    data: dict[str, Any] = Field(default_factory=dict)
    priority: Literal["low", "normal", "high", "urgent"] = "normal"


class State:
    db: aiosqlite.Connection
    path = "durable.db"


state = State()
by_user: defaultdict[str, set[WebSocket]] = defaultdict(set)


@asynccontextmanager
async def lifespan(app: FastAPI) -> Any:
    state.db = await aiosqlite.connect(state.path)
    await state.db.execute("PRAGMA journal_mode=WAL")
    await state.db.execute("PRAGMA synchronous=FULL")
    await state.db.executescript(SCHEMA)
    await state.db.commit()
    yield
    await state.db.close()


app = FastAPI(lifespan=lifespan)


@app.post("/api/v1/notifications", status_code=201)
async def create(body: Create) -> dict[str, Any]:
    now = datetime.now(UTC)
    data_json = json.dumps(body.data, separators=(",", ":"))
    cursor = await state.db.execute(
        "INSERT INTO notifications (user_id, type, title, message, data_json, priority, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (body.user_id, body.type, body.title, body.message, data_json, body.priority,
         now.isoformat()),
    )  # fmt: skip
    await state.db.commit()
    notification = {
        "id": cursor.lastrowid, "user_id": body.user_id, "type": body.type,
        "title": body.title, "message": body.message, "data": body.data,
        "priority": body.priority,
        "created_at": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "read": False, "read_at": None,
    }  # fmt: skip
    sockets = by_user.get(body.user_id)
    if sockets:
        frame = json.dumps({"type": "notification", "notification": notification})
        await asyncio.gather(*(ws.send_text(frame) for ws in list(sockets)), return_exceptions=True)
    return notification


@app.websocket("/ws")
async def client(ws: WebSocket, user_id: str = "") -> None:
    await ws.accept()
    by_user[user_id].add(ws)
    try:
        await ws.send_text(HELLO)
        while True:
            await ws.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        by_user[user_id].discard(ws)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--db", required=True, help="SQLite file (created)")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    args = parser.parse_args()
    state.path = args.db
    run(serve_uvicorn(app, args.host, args.port), args.loop)


if __name__ == "__main__":
    main()
