"""One live connection of one user, on any transport.

A session is a bounded outbox of events plus the rules for what goes in it:

* It starts *replaying*: live notifications that arrive while the backlog is read
  from the store are held back, then ``begin`` writes ``ConnectionEstablished``, the
  backlog, and the held notifications the backlog did not contain, in id order.
  Nothing is lost in between and nothing is sent twice.
* The type filter decides which notifications enter the outbox; so do the user's
  muted types (unless the notification ignores mutes) and expiry (an expired one never
  does). The muted types are read at connect and replaced at once on every change.
* The outbox holds at most ``max_buffer`` events and ``max_buffer_bytes`` bytes (an
  estimate of their encoded size) beyond the replay. A client that falls further
  behind is closed as slow rather than growing memory; what it had not taken stays
  queued in the store, because a notification counts as delivered only once the
  transport has written it and asks for the next event.
* Client messages are rate limited (a token bucket); over the limit, each gets a
  ``rate_limited`` error and is otherwise ignored. Messages the transport could not
  decode count too (``reject``): garbage is no way around the limit.
* A session opened with a token's ``Expiry`` (secure mode) ends at the token's
  expiry (``CloseReason.TOKEN_EXPIRED``). ``TokenExpiring`` warns first: the smaller
  of ``TOKEN_WARNING`` seconds and a tenth of the token's lifetime (``exp − iat``, or
  from the moment the expiry was set without ``iat``) before it. A ``Refresh`` for
  the same user moves the expiry to the new token's (answered ``TokenRefreshed``);
  one that did not verify is answered ``error unauthorized`` and changes nothing;
  one for another user closes the session (``CloseReason.UNAUTHORIZED``). The
  deadline is wall time (a token's ``exp``), the timer runs on the host's clock.

A transport drives a session in one of two ways. Pulling: ``async for event in
session`` to write (asking for the next event confirms the previous one was written).
Pushing, for transports that serve many sessions from one task: ``watch(callback)``
to hear when events are waiting, ``drain()`` to take them, ``confirm()`` once they
are written. Either way ``await session.handle(command)`` takes what the client
sends (``reject(code, message)`` what it sent that the transport could not decode),
and ``close(CloseReason.CLIENT_GONE)`` says the connection ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol, cast

from server.engine.clock import Cancellable, Clock, utc_ms
from server.engine.errors import ClientError, InvalidArgument, TidingsError, Unauthenticated
from server.engine.events import (
    Archive,
    Closed,
    CloseReason,
    Command,
    ConnectionEstablished,
    CountsEvent,
    Delete,
    Delivery,
    Envelope,
    ErrorEvent,
    Event,
    Expiry,
    GetCounts,
    Heartbeat,
    MarkAllRead,
    MarkRead,
    MarkSeen,
    Ping,
    Pong,
    Refresh,
    Subscribe,
    SubscriptionUpdated,
    TokenExpiring,
    TokenRefreshed,
    Unarchive,
    UnknownCommand,
    Unsubscribe,
    UpdatePreferences,
)
from server.engine.fifo import Fifo
from server.engine.filters import TypeFilter
from server.engine.heartbeat import HeartbeatTimer
from server.engine.models import (
    TYPE_MAX,
    Counts,
    Notification,
    Preferences,
    ReadAllMark,
    SeenMark,
    check_text,
    check_types,
)
from server.engine.ratelimit import TokenBucket

#: The default bound on the bytes waiting in a session's outbox (beyond the replay).
MAX_BUFFER_BYTES: Final = 8 << 20
#: No muted types (one shared empty set rather than one per session).
NO_TYPES: Final[frozenset[str]] = frozenset()
#: The longest warning (seconds) before a session's token expires (docs/PROTOCOL.md §2.7).
TOKEN_WARNING: Final = 30.0


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Per-session limits (docs/PROTOCOL.md §4)."""

    heartbeat_interval: float = 30.0
    max_buffer: int = 1000
    max_rate: float = 50.0
    max_buffer_bytes: int = MAX_BUFFER_BYTES


#: What an event costs in the outbox beyond its variable parts (an encoded message's
#: framing and fixed fields).
EVENT_OVERHEAD: Final = 160


def notification_size(n: Notification) -> int:
    """About how many bytes a delivery of ``n`` takes once encoded (in characters)."""
    return (
        EVENT_OVERHEAD
        + len(n.user_id)
        + len(n.type)
        + len(n.title)
        + len(n.message)
        + len(n.data_json)
    )


def event_size(event: Event) -> int:
    """About how many bytes ``event`` takes once encoded (in characters)."""
    if type(event) is Delivery:
        return event.size or notification_size(event.envelope.notification)
    if isinstance(event, SubscriptionUpdated):
        f = event.type_filter
        return EVENT_OVERHEAD + sum(len(t) + 3 for t in (f.only or f.excluded))
    if isinstance(event, ErrorEvent):
        return EVENT_OVERHEAD + len(event.message)
    return EVENT_OVERHEAD


class SessionHost(Protocol):
    """What a session needs from the engine that owns it."""

    clock: Clock
    heartbeats: HeartbeatTimer

    async def mark_read(self, user_id: str, notification_id: int) -> Notification: ...

    async def mark_seen(self, user_id: str, up_to_id: int | None) -> SeenMark: ...

    async def mark_all_read(
        self, user_id: str, notification_type: str | None, up_to_id: int | None
    ) -> ReadAllMark: ...

    async def archive(self, user_id: str, notification_id: int) -> Notification: ...

    async def unarchive(self, user_id: str, notification_id: int) -> Notification: ...

    async def delete(self, user_id: str, notification_id: int) -> None: ...

    async def counts(self, user_id: str) -> Counts: ...

    async def update_preferences(self, user_id: str, muted_types: Sequence[str]) -> Preferences: ...

    def on_written(self, session: Session, envelope: Envelope) -> None:
        """The transport wrote ``envelope``'s notification to the client."""
        ...

    def on_closed(self, session: Session, undelivered: list[Envelope]) -> None:
        """The session ended; ``undelivered`` were queued for it but never written."""
        ...


class Session:
    """One user's live connection; see the module docstring for the rules."""

    # Slots: an idle session is held for hours by the thousand (docs/BENCHMARKS.md).
    __slots__ = (
        "__weakref__",  # held weakly where a closed session must be seen to be freed
        "_bucket",
        "_closed",
        "_expiry",
        "_expiry_timer",
        "_extra",
        "_extra_bytes",
        "_final_taken",
        "_held",
        "_high",
        "_host",
        "_limits",
        "_loop",
        "_muted_live",
        "_on_ready",
        "_outbox",
        "_outbox_bytes",
        "_taken",
        "_waiter",
        "connection_id",
        "muted",
        "type_filter",
        "user_id",
    )

    def __init__(
        self,
        host: SessionHost,
        *,
        user_id: str,
        connection_id: str,
        type_filter: TypeFilter,
        limits: SessionLimits,
        expiry: Expiry | None = None,
    ) -> None:
        if not (limits.max_rate > 0 and 2 * limits.max_rate >= 1):  # as TokenBucket checks
            raise ValueError("rate must be positive and burst at least 1")
        self.user_id = user_id
        self.connection_id = connection_id
        self.type_filter = type_filter
        self._host = host
        self._limits = limits
        self._outbox: Fifo[Event] = Fifo()
        self._held: list[Envelope] | None = []
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_ready: Callable[[], None] | None = None
        # Handed to the transport, not confirmed: one envelope (a transport that writes one
        # event at a time takes one: no list per delivery), or several in a list.
        self._taken: Envelope | list[Envelope] | None = None
        self._closed: Closed | None = None
        self._final_taken = False
        # The outbox may hold the lag allowance plus these (the replay: see ``begin``);
        # kept apart from the limits so that an idle session holds small ints only.
        self._extra = 0
        self._extra_bytes = 0
        self._outbox_bytes = 0
        self._high = 0  # the largest notification id queued for the client
        # Made at the client's first message (full, as it would be by then anyway).
        self._bucket: TokenBucket | None = None
        self._expiry = expiry
        self._expiry_timer: Cancellable | None = None
        #: The user's muted types (``Preferences.muted_types``).
        self.muted: frozenset[str] = NO_TYPES
        self._muted_live = False  # set by a change since the session opened

    # --- engine side ------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed is not None

    @property
    def lag_allowance(self) -> tuple[int, int]:
        """How far the client may fall behind, the replay not counted: (events, bytes).

        More events waiting than the first, or more bytes than the second while more
        than one waits, and the session is slow. A transport that holds events of its
        own before the client takes them (a relay client) applies the same bounds.
        """
        return self._limits.max_buffer, self._limits.max_buffer_bytes

    @property
    def close_reason(self) -> CloseReason | None:
        return self._closed.reason if self._closed is not None else None

    def admits(self, n: Notification) -> bool:
        """Whether this session takes ``n``: its filter, mutes and expiry allow it."""
        return (
            self.type_filter.admits(n.type)
            and (n.ignore_mutes or n.type not in self.muted)
            and (n.expires_at is None or n.expires_at > self._host.clock.now())
        )

    def load_muted(self, muted_types: Sequence[str]) -> None:
        """The muted types as read at connect, unless a change arrived meanwhile."""
        if not self._muted_live:
            self.muted = _types(muted_types)

    def set_muted(self, muted_types: Sequence[str]) -> None:
        """The user changed the muted types: they apply from now on."""
        self._muted_live = True
        self.muted = _types(muted_types)

    def offer(self, envelope: Envelope) -> bool:
        """A live notification of this user: queue it if the session admits it.

        Returns whether it does (``admits``), queued or not.
        """
        n = envelope.notification
        if not self.admits(n):
            return False
        if self._closed is not None:
            return True
        if self._held is not None:
            self._held.append(envelope)
        elif n.id > self._high:  # offers come in id order: drop repeats
            self._high = n.id
            size = notification_size(n)
            self._push(Delivery(envelope, size), size)
        return True

    def begin(
        self, *, backlog: Sequence[Notification], truncated: bool, heartbeat: bool = True
    ) -> None:
        """End the replay phase: greeting, backlog, then the live notifications held meanwhile."""
        held, self._held = self._held or [], None
        sent = {n.id for n in backlog}
        # The replay is bounded by the queue cap; it does not count against the lag allowance.
        self._extra = len(backlog) + len(held) + 1
        self._extra_bytes = (
            sum(notification_size(n) for n in backlog)
            + sum(notification_size(e.notification) for e in held)
            + EVENT_OVERHEAD
        )
        late = sorted(
            (e for e in held if e.notification.id not in sent and self.admits(e.notification)),
            key=lambda e: e.notification.id,
        )
        self._push(
            ConnectionEstablished(
                user_id=self.user_id,
                connection_id=self.connection_id,
                heartbeat_interval=self._limits.heartbeat_interval,
                queued=len(backlog) + len(late),
                truncated=truncated,
                server_time=self._host.clock.now(),
            )
        )
        for notification in backlog:
            self._push(Delivery(Envelope(notification)))
        for envelope in late:
            self._push(Delivery(envelope))
        self._high = max(
            (n.id for n in (*backlog, *(e.notification for e in late))), default=self._high
        )
        if heartbeat and self._closed is None:
            self._host.heartbeats.add(self)
        self._arm_expiry()

    def push(self, event: Event) -> None:
        """Queue a non-notification event (mark-read echoes, errors)."""
        self._push(event)

    def close(self, reason: CloseReason, message: str = "") -> None:
        """End the session; the transport sees ``Closed`` next and then the end."""
        if self._closed is not None:
            return
        self._closed = Closed(reason, message)
        # Taken but never confirmed, or never taken: either way not written.
        taken = self._taken
        undelivered: list[Envelope] = (
            [] if taken is None else taken if isinstance(taken, list) else [taken]
        ) + [e.envelope for e in self._outbox if type(e) is Delivery]
        self._taken = None
        self._outbox.clear()
        self._outbox_bytes = 0
        self._held = None
        self._host.heartbeats.remove(self)
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        self._wake()
        # The last call: nothing is pushed after ``Closed``. The callback usually refers to
        # this session (a closure of the transport's), a cycle that only a full garbage
        # collection would free, minutes later under load (docs/RELIABILITY.md §5).
        self._on_ready = None
        self._host.on_closed(self, undelivered)

    # --- transport side -----------------------------------------------------------

    def __aiter__(self) -> Session:
        return self

    async def __anext__(self) -> Event:
        """The next event to write. Asking for it confirms the previous one was written."""
        while (event := self.take()) is None:
            if self._closed is not None:  # ``Closed`` was taken already
                raise StopAsyncIteration
            await self.wait()
        return event

    def take(self) -> Event | None:
        """The next event to write, if one is waiting (``Closed`` last, once); None
        otherwise (then ``wait``). Taking confirms the events taken before were written.

        The same as ``async for``, without a coroutine per event: a transport that
        writes one event at a time takes them in a loop and waits only when none is left.
        """
        if self._taken is not None:
            self.confirm()
        if self._outbox:
            return self._pop()
        if self._closed is not None and not self._final_taken:
            self._final_taken = True
            return self._closed
        return None

    def wait(self) -> asyncio.Future[None]:
        """Done once ``take`` has something (at once if it has already)."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            loop = self._loop
            if loop is None:  # looked up once: it checks the process id every call
                loop = self._loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            if self._outbox or self._closed is not None:
                waiter.set_result(None)
        return waiter

    def watch(self, on_ready: Callable[[], None]) -> None:
        """Call ``on_ready`` whenever events start waiting (now, if some already are)."""
        if self._closed is None:  # once closed it is never called again: not kept
            self._on_ready = on_ready
        if self._outbox or self._closed is not None:
            on_ready()

    def drain(self, limit: int) -> list[Event]:
        """Take up to ``limit`` waiting events (ending with ``Closed`` once closed)."""
        outbox = self._outbox
        taken = outbox.take(limit)
        if taken:
            # ``_pop`` for each, in one pass: the bytes they held, the envelopes taken.
            held = 0
            envelopes: list[Envelope] = []
            for event in taken:
                if type(event) is Delivery:
                    held += event.size or notification_size(event.envelope.notification)
                    envelopes.append(event.envelope)
                else:
                    held += event_size(event)
            self._outbox_bytes -= held
            if envelopes:
                before = self._taken
                if before is None:
                    self._taken = envelopes[0] if len(envelopes) == 1 else envelopes
                elif type(before) is list:
                    before += envelopes
                else:
                    self._taken = [cast(Envelope, before), *envelopes]
        if not outbox and self._closed is not None and not self._final_taken:
            self._final_taken = True
            taken.append(self._closed)
        return taken

    def _pop(self) -> Event:
        """The outbox's first event, out of it; a delivery's envelope counts as taken."""
        event = self._outbox.popleft()
        self._outbox_bytes -= event_size(event)
        if type(event) is Delivery:
            taken = self._taken
            if taken is None:
                self._taken = event.envelope
            elif type(taken) is list:
                taken.append(event.envelope)
            else:
                self._taken = [cast(Envelope, taken), event.envelope]
        return event

    @property
    def waiting(self) -> bool:
        """Whether ``drain`` would return something."""
        return bool(self._outbox) or (self._closed is not None and not self._final_taken)

    def confirm(self) -> None:
        """Everything taken so far was written to the client."""
        taken = self._taken
        if taken is None:
            return
        self._taken = None
        if type(taken) is list:
            on_written = self._host.on_written
            for envelope in taken:
                on_written(self, envelope)
        else:
            self._host.on_written(self, cast(Envelope, taken))

    async def handle(self, command: Command) -> None:
        """Act on one client message; answers and errors go to the outbox."""
        if self._closed is not None:
            return
        if not self._allow():
            self._push(ErrorEvent("rate_limited", "too many messages; this one was ignored"))
            return
        try:
            if isinstance(command, MarkRead):
                await self._mark_read(command)
            elif isinstance(command, _STORE_COMMANDS):
                await self._store_command(command)
            else:
                self._apply(command)
        except ClientError as exc:
            self._push(ErrorEvent(exc.code, exc.message))
        except TidingsError as exc:
            self._push(ErrorEvent("internal_error", exc.message))

    def reject(self, code: str, message: str) -> None:
        """A client message the transport could not decode (not JSON, unknown type, bad
        fields): it counts against the rate limit like any other and is answered with
        error ``code``, or ``rate_limited`` over the limit."""
        if self._closed is not None:
            return
        if not self._allow():
            self._push(ErrorEvent("rate_limited", "too many messages; this one was ignored"))
            return
        self._push(ErrorEvent(code, message))

    # --- internals ----------------------------------------------------------------

    def _apply(self, command: Command) -> None:
        match command:
            case Ping():
                self._push(Pong(self._host.clock.now()))
            case Subscribe(types):
                self.type_filter = self.type_filter.subscribe(
                    check_types("notification_types", list(types))
                )
                self._push(SubscriptionUpdated(self.type_filter))
            case Unsubscribe(types):
                self.type_filter = self.type_filter.unsubscribe(
                    check_types("notification_types", list(types))
                )
                self._push(SubscriptionUpdated(self.type_filter))
            case Refresh():
                self._refresh(command)
            case UnknownCommand(kind):
                self._push(ErrorEvent("unknown_message_type", f"unknown message type {kind!r}"))
            case _:  # pragma: no cover - MarkRead is handled by the caller
                raise AssertionError(command)

    def _refresh(self, command: Refresh) -> None:
        if command.error:
            raise Unauthenticated(command.error)
        if command.user_id != self.user_id:
            self.close(CloseReason.UNAUTHORIZED, "the refreshed token is for another user")
            return
        self._expiry = command.expiry
        expires_at = command.expiry.expires_at if command.expiry is not None else None
        self._push(TokenRefreshed(_utc(expires_at) if expires_at is not None else None))
        self._arm_expiry()

    def _arm_expiry(self) -> None:
        """(Re)start the countdown to the token's expiry: the warning first, then the end."""
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        expiry = self._expiry
        if expiry is None or self._closed is not None:
            return
        now = self._host.clock.now().timestamp()
        issued = expiry.issued_at
        start = issued if issued is not None and issued < expiry.expires_at else now
        lead = min(TOKEN_WARNING, (expiry.expires_at - start) / 10)
        remaining = expiry.expires_at - now
        if remaining > lead:
            self._expiry_timer = self._host.clock.call_later(remaining - lead, self._warn)
        else:
            self._warn()

    def _warn(self) -> None:
        expiry = self._expiry
        if expiry is None or self._closed is not None:  # pragma: no cover - timer cancelled
            return
        remaining = expiry.expires_at - self._host.clock.now().timestamp()
        if remaining <= 0:
            self._expire()
            return
        self._push(TokenExpiring(_utc(expiry.expires_at)))
        self._expiry_timer = self._host.clock.call_later(remaining, self._expire)

    def _expire(self) -> None:
        self._expiry_timer = None
        self.close(CloseReason.TOKEN_EXPIRED, "the token has expired")

    async def _mark_read(self, command: MarkRead) -> None:
        nid = command.notification_id
        if isinstance(nid, bool) or not isinstance(nid, int) or nid <= 0:
            raise InvalidArgument("notification_id", "must be a positive integer")
        # The engine tells every session of the user, this one included: that is the answer.
        await self._host.mark_read(self.user_id, nid)

    async def _store_command(self, command: StoreCommand) -> None:
        # The engine tells every session of the user, this one included: that is the answer
        # (except for counts, which are this session's alone).
        host, user = self._host, self.user_id
        match command:
            case MarkSeen(up_to_id):
                await host.mark_seen(user, _cursor("up_to_id", up_to_id))
            case MarkAllRead(notification_type, up_to_id):
                if notification_type is not None:
                    check_text("notification_type", notification_type, TYPE_MAX, required=True)
                await host.mark_all_read(user, notification_type, _cursor("up_to_id", up_to_id))
            case Archive(nid):
                await host.archive(user, _positive("notification_id", nid))
            case Unarchive(nid):
                await host.unarchive(user, _positive("notification_id", nid))
            case Delete(nid):
                await host.delete(user, _positive("notification_id", nid))
            case GetCounts():
                self._push(CountsEvent(await host.counts(user)))
            case UpdatePreferences(muted_types):
                await host.update_preferences(user, muted_types)

    def _allow(self) -> bool:
        """Whether the client's message fits the rate limit (taking a token if so)."""
        now = self._host.clock.monotonic()
        bucket = self._bucket
        if bucket is None:
            rate = self._limits.max_rate
            bucket = self._bucket = TokenBucket(rate, 2 * rate, now)
        return bucket.allow(now)

    def _push(self, event: Event, size: int = -1) -> None:
        """Queue ``event`` (``size``: its ``event_size``, when the caller knows it)."""
        if self._closed is not None:
            return
        waiting = len(self._outbox)
        if size < 0:
            size = event_size(event)
        limits = self._limits
        if waiting >= limits.max_buffer + self._extra or (
            waiting and self._outbox_bytes + size > limits.max_buffer_bytes + self._extra_bytes
        ):
            self.close(CloseReason.SLOW, "the client did not keep up")
            return
        self._outbox_bytes += size
        self._outbox.append(event)
        if not waiting:  # the transport only waits on an empty outbox
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None  # the waiting transport holds it; nothing else needs it
            if not waiter.done():
                waiter.set_result(None)
                return
        if self._on_ready is not None:
            self._on_ready()

    def beat(self) -> None:
        """Send a heartbeat (called by the engine's ``HeartbeatTimer``)."""
        if self._closed is None:
            self._push(Heartbeat(self._host.clock.now()))


StoreCommand = MarkSeen | MarkAllRead | Archive | Unarchive | Delete | GetCounts | UpdatePreferences
_STORE_COMMANDS = (MarkSeen, MarkAllRead, Archive, Unarchive, Delete, GetCounts, UpdatePreferences)


def _positive(field_name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidArgument(field_name, "must be a positive integer")
    return value


def _cursor(field_name: str, value: object) -> int | None:
    """An optional id: None or 0 (the newest) or positive."""
    if value is None or (value == 0 and not isinstance(value, bool)):
        return None
    return _positive(field_name, value)


def _types(types: Sequence[str]) -> frozenset[str]:
    return frozenset(types) if types else NO_TYPES


def _utc(posix: float) -> datetime:
    return utc_ms(datetime.fromtimestamp(posix, UTC))
