"""The Subscriber: one user's notifications as an async iterator that survives reconnects.

The rules it keeps (docs/CLIENTS.md states them for every client):

* A lost connection is re-made after a delay from the backoff policy (exponential,
  full jitter, capped); after ``max_attempts`` consecutive failures the iterator raises
  ``ReconnectGaveUp``. After an operator disconnect (ABORTED) it waits at least
  ``Backoff.after_abort``. UNAUTHENTICATED / PERMISSION_DENIED end the iterator with
  ``AuthenticationError`` / ``PermissionDeniedError``: retrying would not help.
* Every connection after the first resumes with ``since`` = the id of the last
  notification the application *processed*: the iterator hands out a notification, and
  it counts as processed when the application asks for the next one.
* Ids already handed out (or waiting in the buffer) are dropped when they come again.
* Silence for twice the ``heartbeat_interval`` of ``connection_established`` means the
  connection is dead: the channel is dropped and a new one made.
* The type filter is the Subscriber's own state: ``subscribe``/``unsubscribe`` change
  it on the live stream and every reconnect asks for it whole (``ConnectParams``).
* With a ``token_provider``, the session's token is refreshed in-band when the server
  says it is expiring (``token_expiring``, docs/PROTOCOL.md §2.7), and a session that
  ended because its token expired (UNAUTHENTICATED ``token_expired``) reconnects with
  a fresh token. Without one, that ending is an ``AuthenticationError``.

Commands on the live stream are answered in order (the server handles one at a time):
each ``mark_read`` by ``notification_marked_read`` or an ``error``, each subscribe or
unsubscribe by ``subscription_updated``, ``mark_seen`` by ``notifications_seen``,
``mark_all_read`` by ``notifications_marked_read``, ``archive`` / ``unarchive`` /
``delete`` by ``notification_archived`` / ``_unarchived`` / ``_deleted``,
``get_counts`` by ``counts`` and ``update_preferences`` by ``preferences_updated`` —
or an ``error``. The Subscriber keeps its unanswered commands in a FIFO, matches answers
to its head, and sends the FIFO again after a reconnect. Every command may be sent
twice without harm, but a ``delete`` the server carried out before the connection broke
is answered ``not_found`` the second time: the Subscriber takes that as done.

The events of the user's other sessions and calls (another device archiving, a script
muting a type) arrive on the same stream; they answer no command of this Subscriber
unless they match its head exactly, and every one of them (and every answer) reaches
``on_event`` as a typed ``InboxEvent``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

import grpc

from tidings import metadata as keys
from tidings.client import convert
from tidings.client.backoff import Backoff, BackoffPolicy
from tidings.client.buffer import Buffer
from tidings.client.channel import (
    AUTHORIZATION_KEY,
    DEFAULT_TARGET,
    Identity,
    Target,
    Targets,
    TokenSource,
    open_channel,
)
from tidings.client.dedupe import RecentIds
from tidings.client.errors import (
    ClosedError,
    CommandError,
    ReconnectGaveUp,
    TidingsError,
    error_from_rpc,
)
from tidings.client.events import (
    InboxEvent,
    InboxListener,
    NotificationArchived,
    NotificationDeleted,
    NotificationMarkedRead,
    NotificationsMarkedRead,
    NotificationsSeen,
    NotificationUnarchived,
    PreferencesUpdated,
)
from tidings.client.models import ConnectionInfo, Counts, Notification, Subscription
from tidings.client.states import (
    Connected,
    Connecting,
    ConnectionState,
    Disconnected,
    DisconnectReason,
    Reconnecting,
    StateEvent,
    StateListener,
)
from tidings.v1 import stream_pb2, stream_pb2_grpc

log = logging.getLogger("tidings.client")

#: A connection is dead after this many heartbeat intervals without any message.
DEAD_AFTER_HEARTBEATS = 2.0

#: How the Subscriber names itself in ``ConnectParams``.
CLIENT_NAME = "tidings-python"
try:
    CLIENT_VERSION = importlib.metadata.version("tidings-client")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
    CLIENT_VERSION = ""

_FATAL = {
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNIMPLEMENTED,
}

_CommandKind = Literal[
    "mark_read",
    "subscribe",
    "unsubscribe",
    "refresh",
    "mark_seen",
    "mark_all_read",
    "archive",
    "unarchive",
    "delete",
    "get_counts",
    "update_preferences",
]
#: A callable giving a fresh JWT (plain or async), asked before every connection and
#: whenever the server says the session's token is expiring.
TokenProvider = Callable[[], str | Awaitable[str]]
ConnectCall = grpc.aio.StreamStreamCall[stream_pb2.ConnectRequest, stream_pb2.ConnectResponse]


@dataclass(slots=True)
class _Command:
    kind: _CommandKind
    request: stream_pb2.ConnectRequest
    future: asyncio.Future[Any]
    notification_id: int = 0
    #: What an answer must say to be this command's (see ``Subscriber._matches``).
    expect: Any = None
    #: How many connections it was written on (a ``delete`` written twice and answered
    #: ``not_found`` was done by the first).
    writes: int = 0


class _Ended(Exception):
    """How one connection (or attempt) ended; raised inside the run loop only."""

    def __init__(
        self,
        reason: DisconnectReason,
        detail: str = "",
        status: grpc.StatusCode | None = None,
        fatal: TidingsError | None = None,
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.status = status
        self.fatal = fatal


def _retrieve(future: asyncio.Future[Any]) -> None:
    # An answer nobody waits for any more (its caller timed out) must not be reported
    # as "exception never retrieved".
    if not future.cancelled():
        future.exception()


class Subscriber:
    """A live, resuming stream of one user's notifications.

    ::

        async with Subscriber("127.0.0.1:50051", token=jwt) as sub:
            async for n in sub:
                print(n.title, n.data)
                await sub.mark_read(n.id)

    ``target`` is an address, a list of them (tried in turn), or a callable asked before
    every attempt. Give ``token`` (a JWT or a callable returning one) in secure mode, or
    ``user`` against a server in insecure development mode. A ``token_provider`` (a
    plain or async callable) keeps the session alive past its token's expiry: it is
    asked for a fresh token before each connection and whenever the server warns that
    the token is about to expire. ``since`` resumes after an
    id the application stored; ``types`` is the initial filter ("only these types").
    ``on_event`` hears every inbox event of the user (``tidings.client.events``): marks,
    archive, delete and preference changes made by any session or call.
    """

    def __init__(
        self,
        target: Target = DEFAULT_TARGET,
        *,
        token: TokenSource | None = None,
        token_provider: TokenProvider | None = None,
        user: str | None = None,
        since: int | None = None,
        types: Sequence[str] | None = None,
        backoff: BackoffPolicy | None = None,
        on_state: StateListener | None = None,
        on_marked_read: Callable[[int], None] | None = None,
        on_event: InboxListener | None = None,
        connect_timeout: float = 10.0,
        command_timeout: float = 10.0,
        buffer_size: int = 1000,
        channel_credentials: grpc.ChannelCredentials | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if since is not None and since < 0:
            raise ValueError("since must be a non-negative notification id")
        if buffer_size < 2:
            raise ValueError("buffer_size must be at least 2")
        self._targets = Targets(target)
        self._identity = Identity(token=token, user=user)
        self._token_provider = token_provider
        self._refreshing: asyncio.Task[None] | None = None
        self._initial_since = since
        self._backoff: BackoffPolicy = backoff or Backoff()
        self._on_state = on_state
        self._on_marked_read = on_marked_read
        self._on_event = on_event
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._buffer_size = buffer_size
        self._channel_credentials = channel_credentials
        self._channel_options = tuple(channel_options)

        self._subscription = Subscription().subscribe(types) if types else Subscription()
        self._buffer = Buffer()
        self._seen = RecentIds(max(10_000, 4 * buffer_size))
        self._handed: Notification | None = None
        self._last_processed: int | None = None
        self._first_received: int | None = None
        self._pending: deque[_Command] = deque()
        self._write_lock = asyncio.Lock()
        self._call: ConnectCall | None = None
        self._info: ConnectionInfo | None = None
        self._connected = asyncio.Event()
        self._state = ConnectionState.IDLE
        self._failure: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._greeted = False

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def start(self) -> None:
        """Begin connecting in the background (``async with`` and iteration do this)."""
        if self._closed:
            raise ClosedError("this Subscriber is closed")
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tidings-subscriber")

    async def close(self) -> None:
        """End the stream: the iterator stops, unanswered commands raise ``ClosedError``."""
        if self._closed:
            return
        self._closed = True
        self._buffer.end(discard=True)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._refreshing is not None:
            self._refreshing.cancel()
        self._fail_pending(ClosedError("the Subscriber was closed"))
        if self._state is not ConnectionState.CLOSED:
            self._state = ConnectionState.CLOSED
            self._emit(Disconnected(DisconnectReason.CLOSED, will_reconnect=False))

    # --- what the application sees -----------------------------------------------------

    def __aiter__(self) -> Self:
        self.start()
        return self

    async def __anext__(self) -> Notification:
        """The next notification; asking for it marks the previous one processed."""
        if self._handed is not None:
            self._last_processed = self._handed.id
            self._handed = None
        notification = await self._buffer.get()
        self._handed = notification
        return notification

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def connection(self) -> ConnectionInfo | None:
        """The greeting of the live session, or None while disconnected."""
        return self._info if self._state is ConnectionState.CONNECTED else None

    @property
    def last_processed_id(self) -> int | None:
        """The id a restart should pass as ``since`` to resume where the application was."""
        return self._last_processed

    @property
    def subscription(self) -> Subscription:
        """The type filter this Subscriber keeps (and restores on reconnect)."""
        return self._subscription

    async def wait_connected(self) -> ConnectionInfo:
        """Wait for a live session; raises the Subscriber's failure if it gave up."""
        self.start()
        while True:
            if self._failure is not None:
                raise self._failure
            if self._closed:
                raise ClosedError("this Subscriber is closed")
            if self._connected.is_set() and self._info is not None:
                return self._info
            assert self._task is not None
            waiter = asyncio.ensure_future(self._connected.wait())
            try:
                await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if self._task.done() and self._failure is None and not self._closed:
                raise ClosedError("the Subscriber stopped")

    # --- commands on the live stream ---------------------------------------------------

    async def mark_read(self, notification_id: int, *, timeout: float | None = None) -> None:
        """Mark one of the user's notifications read; returns when the server confirmed.

        Raises ``CommandError`` (code ``not_found``) for an id that is not the user's.
        """
        request = stream_pb2.ConnectRequest(
            mark_read=stream_pb2.MarkReadCommand(notification_id=notification_id)
        )
        await self._command("mark_read", request, timeout, notification_id=notification_id)

    async def subscribe(
        self, types: Iterable[str], *, timeout: float | None = None
    ) -> Subscription:
        """Receive (also) these types; returns the filter the server now applies."""
        names = list(types)
        self._subscription = self._subscription.subscribe(names)
        request = stream_pb2.ConnectRequest(
            subscribe=stream_pb2.SubscribeCommand(notification_types=names)
        )
        result: Subscription = await self._command("subscribe", request, timeout)
        return result

    async def unsubscribe(
        self, types: Iterable[str], *, timeout: float | None = None
    ) -> Subscription:
        """Stop receiving these types; returns the filter the server now applies."""
        names = list(types)
        self._subscription = self._subscription.unsubscribe(names)
        request = stream_pb2.ConnectRequest(
            unsubscribe=stream_pb2.UnsubscribeCommand(notification_types=names)
        )
        result: Subscription = await self._command("unsubscribe", request, timeout)
        return result

    async def mark_seen(self, up_to_id: int | None = None, *, timeout: float | None = None) -> int:
        """Mark the user's notifications seen up to ``up_to_id`` (None: the newest); returns
        the id the mark went up to once the server confirmed. Every session of the user
        hears ``NotificationsSeen``."""
        request = stream_pb2.ConnectRequest(
            mark_seen=stream_pb2.MarkSeenCommand(up_to_id=up_to_id or 0)
        )
        result: int = await self._command("mark_seen", request, timeout, expect=up_to_id or 0)
        return result

    async def mark_all_read(
        self,
        notification_type: str | None = None,
        *,
        up_to_id: int | None = None,
        timeout: float | None = None,
    ) -> int:
        """Mark the user's unread notifications read (of ``notification_type`` only, up to
        ``up_to_id`` when given); returns the id the mark went up to. Every session of the
        user hears one ``NotificationsMarkedRead``."""
        request = stream_pb2.ConnectRequest(
            mark_all_read=stream_pb2.MarkAllReadCommand(
                notification_type=notification_type or "", up_to_id=up_to_id or 0
            )
        )
        expect = (notification_type or None, up_to_id or 0)
        result: int = await self._command("mark_all_read", request, timeout, expect=expect)
        return result

    async def archive(self, notification_id: int, *, timeout: float | None = None) -> None:
        """Archive one notification; raises ``CommandError`` ``not_found`` for an id that
        is not the user's."""
        request = stream_pb2.ConnectRequest(
            archive=stream_pb2.ArchiveCommand(notification_id=notification_id)
        )
        await self._command("archive", request, timeout, notification_id=notification_id)

    async def unarchive(self, notification_id: int, *, timeout: float | None = None) -> None:
        """Bring an archived notification back to the default list."""
        request = stream_pb2.ConnectRequest(
            unarchive=stream_pb2.UnarchiveCommand(notification_id=notification_id)
        )
        await self._command("unarchive", request, timeout, notification_id=notification_id)

    async def delete(self, notification_id: int, *, timeout: float | None = None) -> None:
        """Delete one notification for good; raises ``CommandError`` ``not_found`` for an
        id that is not the user's (or already deleted)."""
        request = stream_pb2.ConnectRequest(
            delete=stream_pb2.DeleteCommand(notification_id=notification_id)
        )
        await self._command("delete", request, timeout, notification_id=notification_id)

    async def get_counts(self, *, timeout: float | None = None) -> Counts:
        """The user's unread and unseen counts, in total and per type (as ``Inbox.counts``)."""
        request = stream_pb2.ConnectRequest(get_counts=stream_pb2.GetCountsCommand())
        result: Counts = await self._command("get_counts", request, timeout)
        return result

    async def update_preferences(
        self, muted_types: Iterable[str], *, timeout: float | None = None
    ) -> tuple[str, ...]:
        """Replace the user's muted types; returns them as stored (sorted). Raises
        ``CommandError`` ``invalid_message`` for a bad list (nothing changes)."""
        names = list(muted_types)
        request = stream_pb2.ConnectRequest(
            update_preferences=stream_pb2.UpdatePreferencesCommand(muted_types=names)
        )
        result: tuple[str, ...] = await self._command(
            "update_preferences", request, timeout, expect=tuple(sorted(set(names)))
        )
        return result

    async def refresh(self, token: str | None = None, *, timeout: float | None = None) -> None:
        """Send the live session a fresh token (``token``, or the ``token_provider``'s);
        returns once the server accepted it. Raises ``CommandError`` (``unauthorized``)
        for a token it refused."""
        if token is None:
            token = await self._fresh_token()
        if token is None:
            raise ValueError("no token given and no token_provider")
        request = stream_pb2.ConnectRequest(refresh=stream_pb2.RefreshCommand(token=token))
        await self._command("refresh", request, timeout)

    async def _fresh_token(self) -> str | None:
        if self._token_provider is None:
            return None
        token = self._token_provider()
        if inspect.isawaitable(token):
            token = await token
        return token

    def _refresh_soon(self) -> None:
        """The server warned that the token expires: refresh it, once at a time."""
        if self._token_provider is None or (
            self._refreshing is not None and not self._refreshing.done()
        ):
            return
        self._refreshing = asyncio.create_task(self._auto_refresh(), name="tidings-refresh")

    async def _auto_refresh(self) -> None:
        try:
            await self.refresh()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the session ends at exp and reconnects with a new token
            log.warning("token refresh failed: %s", exc)

    async def _command(
        self,
        kind: _CommandKind,
        request: stream_pb2.ConnectRequest,
        timeout: float | None,
        *,
        notification_id: int = 0,
        expect: Any = None,
    ) -> Any:
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise ClosedError("this Subscriber is closed")
        self.start()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        async with self._write_lock:
            # Appended and written under one lock, so the FIFO order is the wire order.
            command = _Command(kind, request, future, notification_id, expect)
            self._pending.append(command)
            if self._call is not None:
                await self._write(self._call, request)
                command.writes += 1
        async with asyncio.timeout(self._command_timeout if timeout is None else timeout):
            return await asyncio.shield(future)

    async def _write(self, call: ConnectCall, request: stream_pb2.ConnectRequest) -> None:
        try:
            await call.write(request)
        except (grpc.RpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as exc:
            # The stream is going away; the reader will see why, and the command is
            # sent again on the next connection.
            log.debug("write failed: %s", exc)

    def _answer(self, kind: str, value: Any) -> None:
        """An answer-shaped message arrived: settle the head command if it is its answer."""
        if not self._pending:
            return
        head = self._pending[0]
        if kind == "error":
            code, message = value
            self._pending.popleft()
            if head.future.done():
                return
            if head.kind == "delete" and head.writes > 1 and code == "not_found":
                head.future.set_result(None)  # the first attempt went through
            else:
                head.future.set_exception(CommandError(code, message))
        elif _matches(head, kind, value):
            self._pending.popleft()
            if not head.future.done():
                head.future.set_result(_result_of(value))

    def _fail_pending(self, error: BaseException) -> None:
        while self._pending:
            command = self._pending.popleft()
            if not command.future.done():
                command.future.set_exception(error)

    # --- the connection loop -----------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        try:
            while True:
                self._greeted = False
                try:
                    address = self._targets.next()
                except Exception as exc:
                    ended = _Ended(DisconnectReason.CONNECT_FAILED, f"no target: {exc}")
                else:
                    self._state = ConnectionState.CONNECTING
                    self._emit(Connecting(address, failures))
                    ended = await self._connection(address)
                self._state = ConnectionState.RECONNECTING
                if self._greeted:
                    failures = 0
                if ended.fatal is not None:
                    self._finish(ended, ended.fatal)
                    return
                if ended.reason is DisconnectReason.BUFFER_FULL:
                    # Not a failure: wait until the application has caught up, then resume.
                    self._emit(Disconnected(ended.reason, ended.detail))
                    await self._buffer.wait_until_at_most(self._buffer_size // 2)
                    continue
                limit = self._backoff.max_attempts
                if limit is not None and failures >= limit:
                    self._finish(ended, ReconnectGaveUp(failures, ended.detail or ended.reason))
                    return
                self._emit(Disconnected(ended.reason, ended.detail, ended.status))
                if ended.reason is DisconnectReason.ABORTED:
                    delay = self._backoff.delay_after_abort(failures)
                else:
                    delay = self._backoff.delay(failures)
                self._emit(Reconnecting(delay, failures))
                failures += 1
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: surface it rather than hang the application
            log.exception("subscriber loop failed")
            self._finish(_Ended(DisconnectReason.ERROR, repr(exc)), exc)

    def _finish(self, ended: _Ended, error: BaseException) -> None:
        self._failure = error
        self._state = ConnectionState.CLOSED
        self._emit(Disconnected(ended.reason, ended.detail, ended.status, will_reconnect=False))
        self._buffer.end(error)
        self._fail_pending(error)

    async def _connection(self, address: str) -> _Ended:
        """Run one connection until it ends; returns how it ended."""
        channel = open_channel(
            address, credentials=self._channel_credentials, options=self._channel_options
        )
        call: ConnectCall | None = None
        try:
            stub = stream_pb2_grpc.NotificationStreamStub(channel)
            try:
                fresh = await self._fresh_token() if self._identity.token is None else None
            except Exception as exc:
                return _Ended(DisconnectReason.CONNECT_FAILED, f"token_provider failed: {exc}")
            call = stub.Connect(metadata=self._metadata(fresh))
            first = await self._read(call, self._connect_timeout, DisconnectReason.CONNECT_TIMEOUT)
            if first.WhichOneof("kind") != "connection_established":
                return _Ended(DisconnectReason.ERROR, "the server did not greet the session")
            self._info = convert.connection_info(first.connection_established)
            self._greeted = True
            async with self._write_lock:
                self._drop_refreshes()  # this connection carries a fresh token already
                for command in list(self._pending):
                    await self._write(call, command.request)
                    command.writes += 1
                self._call = call
            self._state = ConnectionState.CONNECTED
            self._connected.set()
            self._emit(Connected(self._info, address))
            interval = self._info.heartbeat_interval
            silence = DEAD_AFTER_HEARTBEATS * interval if interval > 0 else None
            while True:
                self._dispatch(await self._read(call, silence, DisconnectReason.HEARTBEAT_TIMEOUT))
        except _Ended as ended:
            return ended
        finally:
            self._call = None
            self._connected.clear()
            if call is not None:
                call.cancel()
            await channel.close()

    def _drop_refreshes(self) -> None:
        for command in [c for c in self._pending if c.kind == "refresh"]:
            self._pending.remove(command)
            if not command.future.done():
                command.future.set_result(None)

    def _metadata(self, token: str | None = None) -> list[tuple[str, str | bytes]]:
        pairs: list[tuple[str, str | bytes]] = list(self._identity.metadata())
        if token:
            pairs.append((AUTHORIZATION_KEY, f"Bearer {token}"))
        params = stream_pb2.ConnectParams(client_name=CLIENT_NAME, client_version=CLIENT_VERSION)
        since = self._resume_since()
        if since is not None:
            params.since = since
        wanted = self._subscription
        if wanted.types is not None:  # "only these", or none at all
            params.filter.mode = stream_pb2.FILTER_MODE_ONLY
            params.filter.notification_types.extend(sorted(wanted.types))
        elif wanted.excluded:
            params.filter.mode = stream_pb2.FILTER_MODE_ALL_EXCEPT
            params.filter.excluded_types.extend(sorted(wanted.excluded))
        pairs.append((keys.CONNECT_PARAMS, params.SerializeToString()))
        return pairs

    def _resume_since(self) -> int | None:
        if self._last_processed is not None:
            return self._last_processed
        if self._initial_since is not None:
            return self._initial_since
        if self._first_received is not None:
            # Nothing processed yet: ask again for all from the first one received, so
            # that what was in flight when the connection broke is not lost.
            return self._first_received - 1
        return None

    async def _read(
        self, call: ConnectCall, timeout: float | None, on_timeout: DisconnectReason
    ) -> stream_pb2.ConnectResponse:
        try:
            async with asyncio.timeout(timeout):
                message = await call.read()
        except TimeoutError:
            raise _Ended(on_timeout, f"no message for {timeout:.2f} s") from None
        except grpc.aio.AioRpcError as exc:
            raise self._ended_by(exc) from None
        if message is grpc.aio.EOF:
            code = await call.code()
            if code == grpc.StatusCode.OK:
                raise _Ended(DisconnectReason.STREAM_ENDED, "the server ended the stream")
            raise _Ended(DisconnectReason.ERROR, await call.details(), code)
        assert isinstance(message, stream_pb2.ConnectResponse)
        return message

    def _ended_by(self, exc: grpc.aio.AioRpcError) -> _Ended:
        code, detail = exc.code(), exc.details() or ""
        if (
            code == grpc.StatusCode.UNAUTHENTICATED
            and self._token_provider is not None
            and error_from_rpc(exc).error_code == "token_expired"
        ):  # missed the refresh: a new connection gets a new token
            return _Ended(DisconnectReason.TOKEN_EXPIRED, detail, code)
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return _Ended(DisconnectReason.AUTH_FAILED, detail, code, fatal=error_from_rpc(exc))
        if code in _FATAL:
            return _Ended(DisconnectReason.ERROR, detail, code, fatal=error_from_rpc(exc))
        if code == grpc.StatusCode.ABORTED:
            return _Ended(DisconnectReason.ABORTED, detail, code)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return _Ended(DisconnectReason.SLOW, detail, code)
        if code == grpc.StatusCode.UNAVAILABLE:
            reason = (
                DisconnectReason.UNAVAILABLE if self._greeted else DisconnectReason.CONNECT_FAILED
            )
            return _Ended(reason, detail, code)
        return _Ended(DisconnectReason.ERROR, detail, code)

    def _dispatch(self, message: stream_pb2.ConnectResponse) -> None:
        kind = message.WhichOneof("kind")
        if kind == "notification":
            self._receive(convert.notification(message.notification.notification))
            return
        event = convert.inbox_event(message)
        if event is not None:
            self._answer("event", event)
            if isinstance(event, NotificationMarkedRead) and self._on_marked_read is not None:
                self._call_back(self._on_marked_read, event.notification_id)
            if self._on_event is not None:
                self._call_back(self._on_event, event)
        elif kind == "subscription_updated":
            self._answer("subscription_updated", convert.subscription(message.subscription_updated))
        elif kind == "counts":
            self._answer("counts", convert.counts(message.counts))
        elif kind == "error":
            self._answer("error", (message.error.code, message.error.message))
        elif kind == "token_expiring":
            self._refresh_soon()
        elif kind == "token_refreshed":
            self._answer("token_refreshed", None)
        # heartbeat and pong only prove the connection is alive: the read timer restarts.

    def _receive(self, notification: Notification) -> None:
        if notification.id in self._seen or not self._subscription.admits(notification.type):
            return
        self._seen.add(notification.id)
        if self._first_received is None:
            self._first_received = notification.id
        self._buffer.put(notification)
        if len(self._buffer) >= self._buffer_size:
            raise _Ended(
                DisconnectReason.BUFFER_FULL,
                f"{len(self._buffer)} notifications wait for the application; resuming later",
            )

    # --- callbacks ---------------------------------------------------------------------

    def _emit(self, event: StateEvent) -> None:
        if self._on_state is not None:
            self._call_back(self._on_state, event)

    def _call_back(self, callback: Callable[[Any], None], value: object) -> None:
        try:
            callback(value)
        except Exception:
            log.exception("a Subscriber callback raised")


def _matches(head: _Command, kind: str, value: Any) -> bool:
    """Whether the message ``kind`` (carrying ``value``) answers the command ``head``.

    Events name what they did, so the echo of another session's mark, archive or
    preference change, arriving while ``head`` waits, is told apart by its ids; a
    ``mark_seen`` or ``mark_all_read`` "up to the newest" takes any mark of its kind.
    """
    if kind != "event":
        return (kind, head.kind) in _PLAIN_ANSWERS
    match value:
        case NotificationMarkedRead(notification_id=n):
            return head.kind == "mark_read" and n == head.notification_id
        case NotificationArchived(notification_id=n):
            return head.kind == "archive" and n == head.notification_id
        case NotificationUnarchived(notification_id=n):
            return head.kind == "unarchive" and n == head.notification_id
        case NotificationDeleted(notification_id=n):
            return head.kind == "delete" and n == head.notification_id
        case NotificationsSeen(up_to_id=n):
            return head.kind == "mark_seen" and head.expect in (0, n)
        case NotificationsMarkedRead(up_to_id=n, notification_type=t):
            return head.kind == "mark_all_read" and head.expect[0] == t and head.expect[1] in (0, n)
        case PreferencesUpdated(muted_types=muted):
            return head.kind == "update_preferences" and muted == head.expect
    return False


_PLAIN_ANSWERS = {
    ("token_refreshed", "refresh"),
    ("subscription_updated", "subscribe"),
    ("subscription_updated", "unsubscribe"),
    ("counts", "get_counts"),
}


def _result_of(value: Any) -> Any:
    """What the command's call returns, from its answer."""
    if isinstance(value, NotificationsSeen | NotificationsMarkedRead):
        return value.up_to_id
    if isinstance(value, PreferencesUpdated):
        return value.muted_types
    if isinstance(value, InboxEvent):
        return None
    return value
