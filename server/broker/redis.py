"""Redis pub/sub as the broker.

A subscriber connection reads the channel; publishes go through the client's pool.
Pub/sub is fire-and-forget: what is published while a node is disconnected never
reaches it, which is why the cluster catches up from the store on reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as redis
from redis.exceptions import RedisError
from tidings.client.backoff import Backoff

from server.broker.base import BrokerListener, BrokerUnavailable
from server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

CHANNEL = "tidings"


class RedisBroker:
    """PUBLISH/SUBSCRIBE on one channel."""

    max_payload = 1 << 20

    def __init__(
        self, url: str, *, channel: str = CHANNEL, retry_max: float = 2.0, timeout: float = 5.0
    ) -> None:
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._channel = channel
        self._backoff = Backoff(base=0.05, cap=retry_max)
        self._task: asyncio.Task[None] | None = None
        self._listener: BrokerListener | None = None
        self._connected = False

    async def start(self, listener: BrokerListener) -> None:
        self._listener = listener
        self._task = asyncio.create_task(self._run(), name="tidings-broker-redis")

    async def publish(self, payload: bytes) -> None:
        if not self._connected:
            raise BrokerUnavailable("not connected to Redis")
        try:
            await self._client.publish(self._channel, payload)
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(str(exc)) from exc

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        await self._client.aclose()

    async def _run(self) -> None:
        attempt = 0
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            delay = self._backoff.delay(attempt)
            try:
                await pubsub.subscribe(self._channel)
                self._connected = True
                attempt, delay = 0, self._backoff.delay(0)
                log.info("broker: subscribed to Redis channel %r", self._channel)
                assert self._listener is not None
                self._listener.on_connected()
                await self._read(pubsub)
            except (RedisError, OSError) as exc:
                if self._connected:
                    log.warning("broker: lost Redis (%s); reconnecting", exc)
                else:
                    log.warning("broker: cannot reach Redis (%s); retrying in %.2fs", exc, delay)
            finally:
                self._connected = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            attempt += 1

    async def _read(self, pubsub: redis.client.PubSub) -> None:
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is None:
                await pubsub.ping()  # notices a dead connection even when the channel is quiet
                continue
            if message.get("type") == "message" and self._listener is not None:
                data = message["data"]
                self._listener.on_message(data if isinstance(data, bytes) else str(data).encode())
