"""``POST /api/v1/notifications`` answered at the ASGI level when all goes well.

Through Quart, each create pays for a request object, its werkzeug headers, the app and
request contexts, URL matching, a receiver task and a handler task, response building
and three ASGI sends: about a third of the event loop's time per create (docs/BENCHMARKS.md,
"REST create, lean path"). The producers' hot call needs none of it: ``FastCreate``
reads the body, validates it and calls the engine with the same functions the Quart
handler uses (``bridge.rest.create_message``, ``created_answer``), and answers with the
same status, headers and body.

Whatever it would not answer the ordinary way — a body that is not strict JSON or not
valid, a content type, length or framing other than a JSON body of declared length, a
credential that cannot travel, a bridge not serving — goes to Quart untouched, its
body replayed, and Quart answers it as before (422 with caller check, 413, 401 …).
Once the engine has been called, its answer is given here: a success, or the engine's
error in the §6 shape (counted in the bridge's error metric, as Quart's handler does).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

import grpc
import orjson
from hypercorn.typing import ASGIReceiveCallable, ASGIReceiveEvent, ASGISendCallable, Scope
from werkzeug.exceptions import RequestTimeout

from bridge import schemas
from bridge.body import parse_body
from bridge.metadata import http_metadata
from bridge.outcomes import ApiError, http_error_code
from bridge.rest import create_message, created_answer
from bridge.state import BridgeState
from bridge.upstream import CALL_TIMEOUT

PATH: Final = "/api/v1/notifications"
JSON: Final = b"application/json"

ASGIApp = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]

#: The request headers the create reads (names as hypercorn gives them: lower case).
_WANTED: Final = frozenset(
    (
        b"content-type",
        b"content-length",
        b"transfer-encoding",
        b"authorization",
        b"x-tidings-user",
        b"idempotency-key",
    )
)


class _Headers:
    """The first value of each wanted header, as werkzeug's ``Headers.get`` gives it."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values

    def get(self, key: str) -> str | None:
        return self._values.get(key.lower())


def _wanted_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    for name, value in raw:
        name = name.lower()
        if name in _WANTED and name not in found:
            found[name] = value
    return found


def _is_json(content_type: bytes | None) -> bool:
    """``application/json``, with or without parameters (the charset is not read:
    the body is UTF-8 whatever it says, as ``bridge.body`` reads it)."""
    if content_type is None:
        return False
    return content_type.partition(b";")[0].strip().lower() == JSON


class FastCreate:
    """The lean create; ``fallback`` is the Quart app's own ASGI handler."""

    def __init__(
        self,
        state: BridgeState,
        fallback: ASGIApp,
        *,
        max_body: int,
        body_timeout: float | None,
        logger: logging.Logger,
    ) -> None:
        self._state = state
        self._fallback = fallback
        self._max_body = max_body
        self._body_timeout = body_timeout
        self._log = logger

    @staticmethod
    def takes(scope: Scope) -> bool:
        """Whether ``scope`` is a create this path may answer."""
        return (
            scope["type"] == "http"
            and scope["path"] == PATH
            and scope["method"] == "POST"
            and not scope.get("root_path")
        )

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        upstream = self._state.upstream_or_none
        headers = _wanted_headers(scope["headers"])  # type: ignore[typeddict-item]
        length = headers.get(b"content-length")
        if (
            upstream is None
            or b"transfer-encoding" in headers
            or length is None
            or not length.isdigit()
            or int(length) > self._max_body
            or not _is_json(headers.get(b"content-type"))
        ):
            await self._fallback(scope, receive, send)
            return
        messages: list[ASGIReceiveEvent] = []
        try:
            async with asyncio.timeout(self._body_timeout):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client left: nothing to answer (Quart's handler stops too)
                    messages.append(message)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            # Quart's answer to a body that does not come: RequestTimeout through the
            # HTTPException handler (bridge.app).
            timeout = RequestTimeout()
            error = ApiError(
                408,
                http_error_code(408, timeout.name),
                timeout.description or timeout.name,
            )
            await self._answer_error(send, error)
            return
        body = b"".join(m.get("body", b"") for m in messages)  # type: ignore[misc]
        try:
            data = schemas.CreateNotification.model_validate(parse_body(body))
            text = {k.decode("latin1"): v.decode("latin1") for k, v in headers.items()}
            lookup = _Headers(text)
            metadata = http_metadata(lookup)
            request = create_message(data, lookup.get("Idempotency-Key"))
        except Exception:
            # Refused by the bridge (or anything unforeseen before the engine was called):
            # Quart answers it as it always has, judging the caller first.
            await self._fallback(scope, _replay(messages, receive), send)
            return
        try:
            try:
                answer = await upstream.admin.CreateNotification(
                    request, metadata=metadata, timeout=CALL_TIMEOUT
                )
            except grpc.aio.AioRpcError as exc:
                await self._answer_error(send, ApiError.from_rpc(exc))
                return
            payload, extra = created_answer(answer)
        except Exception:
            self._log.error(f"Exception on request POST {PATH}", exc_info=True)
            await self._answer_error(send, ApiError(500, "internal_error", "internal error"))
            return
        await _send(send, 201, payload, extra)

    async def _answer_error(self, send: ASGISendCallable, error: ApiError) -> None:
        """As ``bridge.app``'s ``api_error`` answers an error the caller was judged for."""
        self._state.metrics.error("http", error.code)
        extra = ((b"www-authenticate", b"Bearer"),) if error.status == 401 else ()
        await _send(send, error.status, orjson.dumps(error.body), extra)


async def _send(
    send: ASGISendCallable, status: int, payload: bytes, extra: Iterable[tuple[bytes, bytes]]
) -> None:
    """A JSON answer, with the headers (and their order) Quart's ``Response`` gives it."""
    headers = [
        *extra,
        (b"content-type", JSON),
        (b"content-length", str(len(payload)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


def _replay(messages: list[ASGIReceiveEvent], receive: ASGIReceiveCallable) -> ASGIReceiveCallable:
    """``receive`` that first gives back ``messages`` (already taken from ``receive``)."""
    pending = deque(messages)

    async def replayed() -> ASGIReceiveEvent:
        if pending:
            return pending.popleft()
        return await receive()

    return replayed
