"""``POST /api/v1/notifications`` however its body travels: in pieces, chunked, after
``100 Continue``, or not at all (``bridge.fastcreate`` answers some, Quart the rest;
the client sees one behaviour)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.harness import ServerProcess

pytestmark = pytest.mark.timeout(60)


@pytest_asyncio.fixture
async def conn(insecure_server: ServerProcess) -> AsyncIterator[Wire]:
    host, port = insecure_server.http_addr.rsplit(":", 1)
    wire = Wire(*await asyncio.open_connection(host, int(port)))
    try:
        yield wire
    finally:
        wire.writer.close()


class Wire:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def answer(self) -> tuple[int, bytes, dict[str, object]]:
        """The next response: status, head, JSON body."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        match = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
        body = await self.reader.readexactly(int(match.group(1))) if match else b""
        return status, head, json.loads(body) if body else {}


def head(uid: str, extra: str) -> bytes:
    return (
        "POST /api/v1/notifications HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nX-Tidings-User: {uid}\r\n{extra}\r\n"
    ).encode()


def create_body(uid: str, title: str) -> bytes:
    return json.dumps({"user_id": uid, "type": "t", "title": title}).encode()


async def test_a_body_in_pieces_is_read_whole(conn: Wire, uid: str) -> None:
    body = create_body(uid, "pieces")
    conn.writer.write(head(uid, f"Content-Length: {len(body)}\r\n") + body[:10])
    await conn.writer.drain()
    await asyncio.sleep(0.2)
    conn.writer.write(body[10:])
    status, _, answer = await conn.answer()
    assert (status, answer["title"], answer["user_id"]) == (201, "pieces", uid)


async def test_a_chunked_body_is_read(conn: Wire, uid: str) -> None:
    body = create_body(uid, "chunked")
    chunks = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    conn.writer.write(head(uid, "Transfer-Encoding: chunked\r\n") + chunks)
    status, _, answer = await conn.answer()
    assert (status, answer["title"]) == (201, "chunked")


async def test_expect_100_continue(conn: Wire, uid: str) -> None:
    body = create_body(uid, "continued")
    conn.writer.write(head(uid, f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n"))
    interim = await conn.reader.readuntil(b"\r\n\r\n")
    assert interim.startswith(b"HTTP/1.1 100 ")
    conn.writer.write(body)
    status, _, answer = await conn.answer()
    assert (status, answer["title"]) == (201, "continued")


async def test_answers_on_one_connection_keep_their_order_and_headers(conn: Wire, uid: str) -> None:
    first = create_body(uid, "first")
    bad = b'{"user_id": "x"'
    replay = head(uid, f"Content-Length: {len(first)}\r\nIdempotency-Key: k\r\n") + first
    conn.writer.write(replay + head(uid, f"Content-Length: {len(bad)}\r\n") + bad + replay)
    created, created_head, one = await conn.answer()
    refused, _, error = await conn.answer()
    replayed, replayed_head, again = await conn.answer()
    assert (created, refused, replayed) == (201, 422, 201)
    assert b"idempotent-replayed" not in created_head.lower()
    assert b"idempotent-replayed: true" in replayed_head.lower()
    assert again == one
    assert error["error"] == {
        "code": "invalid_request",
        "message": error["error"]["message"],  # type: ignore[index]
    }


async def test_a_client_that_leaves_mid_body_does_not_stop_the_next(
    insecure_server: ServerProcess, conn: Wire, uid: str
) -> None:
    conn.writer.write(head(uid, "Content-Length: 100\r\n") + b'{"user_id"')
    await conn.writer.drain()
    conn.writer.close()
    host, port = insecure_server.http_addr.rsplit(":", 1)
    other = Wire(*await asyncio.open_connection(host, int(port)))
    try:
        body = create_body(uid, "next")
        other.writer.write(head(uid, f"Content-Length: {len(body)}\r\n") + body)
        status, _, answer = await other.answer()
        assert (status, answer["title"]) == (201, "next")
    finally:
        other.writer.close()
