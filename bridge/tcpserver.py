"""hypercorn's ``TCPServer`` (one per connection), without the reference cycle it leaves.

hypercorn 0.18's ``TCPServer`` keeps its ``ProtocolWrapper`` in ``self.protocol`` and
hands the protocol its own bound method ``self.protocol_send``: server → protocol →
method → server. Every closed connection (each WebSocket, each REST call) thus leaves
that cycle and everything hanging from it — the h11 state, the asyncio streams and
transport, the connection's task group and tasks, some 40 objects — for the
interpreter's full collection, which under churn runs minutes apart: the resident
memory grew by megabytes a minute until it did (docs/RELIABILITY.md §5).

``run`` returns once the connection is over: its task group has waited for every task
of the connection (the app's included) and the socket is closed, so nothing calls the
protocol any more. Dropping ``self.protocol`` then breaks the cycle, and reference
counting frees the connection at once.

At shutdown hypercorn cancels the connections still open after its grace period (a
browser that stopped reading keeps its socket full). On Python 3.11 the task that
``asyncio.start_server`` runs per connection must not end cancelled: its done callback
asks the task for its exception, which raises, and asyncio logs an "Exception in
callback … CancelledError" traceback. ``run`` therefore ends such a connection quietly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable
from typing import Any

import hypercorn.asyncio.run
from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext

log = logging.getLogger("tidings.http")


class _IdleConnections:
    """The idle timers of one server (worker context): fired when it terminates."""

    def __init__(self, context: WorkerContext) -> None:
        self.timers: set[IdleTimer] = set()
        self._watch = asyncio.get_running_loop().create_task(self._fire_on_termination(context))

    async def _fire_on_termination(self, context: WorkerContext) -> None:
        await context.terminated.wait()
        for timer in list(self.timers):
            timer.fire()


_IDLE: weakref.WeakKeyDictionary[WorkerContext, _IdleConnections] = weakref.WeakKeyDictionary()


class IdleTimer:
    """``AsyncioSingleTask`` for a connection's idle timeout, as a timer.

    ``restart`` arms it (the connection is idle), ``stop`` disarms it (a request came,
    or the connection closes). Once it fires — ``keep_alive_timeout`` later, or when
    the server terminates — the connection is closed as hypercorn's ``_idle_timeout``
    closes it; ``stop`` cancels that closing as it cancels the task.
    """

    __slots__ = ("__weakref__", "_closing", "_context", "_handle", "_server", "_task_group")

    def __init__(self, server: TCPServer) -> None:
        # Weak: the server holds this timer, and must not be held back by it (a cycle).
        self._server = weakref.ref(server)
        self._context = server.context
        self._handle: asyncio.TimerHandle | None = None
        self._task_group: TaskGroup | None = None
        self._closing: asyncio.Task[None] | None = None

    async def restart(self, task_group: TaskGroup, action: Callable[[], Any]) -> None:
        await self.stop()
        server = self._server()
        if server is None:
            return
        self._task_group = task_group
        context = self._context
        if context.terminated.is_set():
            self.fire()
            return
        idle = _IDLE.get(context)
        if idle is None:
            idle = _IDLE[context] = _IdleConnections(context)
        idle.timers.add(self)
        self._handle = server.loop.call_later(server.config.keep_alive_timeout, self.fire)

    async def stop(self) -> None:
        self._disarm()
        closing, self._closing = self._closing, None
        if closing is not None and not closing.done():
            closing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await closing

    def fire(self) -> None:
        """Close the connection now (its idle time is up, or the server terminates)."""
        self._disarm()
        if self._closing is None and self._task_group is not None:
            self._closing = self._task_group._task_group.create_task(self._close())

    def _disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
            idle = _IDLE.get(self._context)
            if idle is not None:
                idle.timers.discard(self)

    def release(self) -> None:
        """The connection is over: disarm, and hold nothing of it any more."""
        self._disarm()
        self._task_group = None

    async def _close(self) -> None:
        server = self._server()
        if server is not None:
            await asyncio.shield(server._initiate_server_close())


class CycleFreeTCPServer(TCPServer):
    """hypercorn's ``TCPServer`` that lets go of its protocol once the connection is over,
    with an ``IdleTimer`` for its idle timeout."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._idle = IdleTimer(self)
        self.idle_task = self._idle  # type: ignore[assignment]

    async def run(self) -> None:
        try:
            await super().run()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self.context.terminated.is_set() or task is None:
                raise
            task.uncancel()  # the server's end, past its grace: this connection is over
            self.writer.transport.abort()  # not close: nothing more is flushed to this peer
            log.debug("a connection still open at the end of the shutdown grace was cut")
        finally:
            self.__dict__.pop("protocol", None)
            self._idle.release()


def install() -> None:
    """Make hypercorn serve every connection with ``CycleFreeTCPServer`` (it has no
    setting for it; one class per process, as ``bridge.wsguard``)."""
    hypercorn.asyncio.run.TCPServer = CycleFreeTCPServer  # type: ignore[attr-defined]
