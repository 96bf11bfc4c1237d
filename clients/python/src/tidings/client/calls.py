"""Unary calls with a deadline and bounded retries of UNAVAILABLE (Publisher and Inbox)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc

from tidings.client.backoff import Backoff, BackoffPolicy
from tidings.client.channel import DEFAULT_TARGET, Identity, TokenSource, open_channel
from tidings.client.errors import ClosedError, error_from_rpc

T = TypeVar("T")


async def call_with_retries(
    attempt: Callable[[float], Awaitable[T]],
    *,
    timeout: float,
    retries: int,
    backoff: BackoffPolicy,
    retry: bool,
) -> T:
    """Run ``attempt(remaining seconds)`` until it succeeds, ``timeout`` seconds pass, or
    it fails with anything but UNAVAILABLE (or ``retries`` are used up, or ``retry`` is
    false); failures raise the SDK's ``RpcError`` subclasses."""
    deadline = time.monotonic() + timeout
    failures = 0
    while True:
        remaining = deadline - time.monotonic()
        try:
            return await attempt(max(remaining, 0.001))
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or not retry:
                raise error_from_rpc(exc) from exc
            if failures >= retries:
                raise error_from_rpc(exc) from exc
            delay = backoff.delay(failures)
            if time.monotonic() + delay >= deadline:
                raise error_from_rpc(exc) from exc
            failures += 1
            await asyncio.sleep(delay)


class UnaryClient:
    """What ``Publisher`` and ``Inbox`` share: one channel, an identity, and unary calls
    with a deadline and bounded retries. Use it as an async context manager."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        token: TokenSource | None = None,
        user: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: BackoffPolicy | None = None,
        channel_credentials: grpc.ChannelCredentials | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    ) -> None:
        if retries < 0:
            raise ValueError("retries must not be negative")
        self._identity = Identity(token=token, user=user)
        self._timeout = timeout
        self._retries = retries
        self._backoff: BackoffPolicy = backoff or Backoff(base=0.1, cap=2.0)
        self._channel = open_channel(
            target,
            credentials=channel_credentials,
            options=channel_options,
            interceptors=interceptors,
        )
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel; calls still running are cancelled."""
        if not self._closed:
            self._closed = True
            await self._channel.close()

    async def _call(
        self,
        attempt: Callable[[float], Awaitable[T]],
        timeout: float | None,
        *,
        retry: bool = True,
    ) -> T:
        if self._closed:
            raise ClosedError(f"this {type(self).__name__} is closed")
        return await call_with_retries(
            attempt,
            timeout=self._timeout if timeout is None else timeout,
            retries=self._retries,
            backoff=self._backoff,
            retry=retry,
        )
