"""A TCP proxy a test controls: put it between a server and its database, then freeze it.

Frozen, it keeps every connection open and accepts new ones, but forwards nothing in
either direction: the database seems to hang, as behind a dead network path.
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port`` until frozen."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._holding = 0
        self.port = 0

    @property
    def holding(self) -> int:
        """How many directions of connections hold bytes back (frozen) right now."""
        return self._holding

    async def start(self) -> int:
        """Listen on a free port; returns it."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def freeze(self) -> None:
        """Stop forwarding (connections stay open; what arrives is held back)."""
        self._flowing.clear()

    def thaw(self) -> None:
        """Forward again, held-back bytes first."""
        self._flowing.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                if not self._flowing.is_set():
                    self._holding += 1
                    try:
                        await self._flowing.wait()
                    finally:
                        self._holding -= 1
                sink.write(data)
                await sink.drain()
        with contextlib.suppress(OSError):
            sink.close()
