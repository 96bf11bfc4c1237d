"""Unary calls with a deadline and bounded retries of UNAVAILABLE (Publisher and Inbox)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from tidings.client.backoff import BackoffPolicy
from tidings.client.errors import error_from_rpc

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
