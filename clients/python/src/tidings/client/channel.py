"""Where to connect and who to be: targets, caller identity, and channel construction."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from tidings import metadata as keys

#: ``"host:port"``; a list of them, tried in turn; or a callable asked before every
#: connection attempt (for a server that may come back somewhere else).
Target = str | Sequence[str] | Callable[[], str]

#: A JWT, or a callable returning a fresh one before every connection attempt or call.
TokenSource = str | Callable[[], str]

DEFAULT_TARGET = "127.0.0.1:50051"

AUTHORIZATION_KEY = keys.AUTHORIZATION
USER_KEY = keys.USER

#: Client keepalive pings every 30 s would be refused by the server below 10 s; 30 s is
#: plenty for an idle channel, and the heartbeat watches live sessions anyway.
DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the caller is: a bearer token (secure mode) or a user id (insecure mode only)."""

    token: TokenSource | None = None
    user: str | None = None
    #: The metadata, built once when the token is a fixed string (or none): every call
    #: sends the same.
    _fixed: tuple[tuple[str, str], ...] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not callable(self.token):
            object.__setattr__(self, "_fixed", self._pairs(self.token))

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The gRPC metadata that carries this identity (docs/PROTOCOL.md §2); a token
        callable is asked anew each time."""
        if self._fixed is not None:
            return self._fixed
        return self._pairs(self.token() if callable(self.token) else self.token)

    def _pairs(self, token: str | None) -> tuple[tuple[str, str], ...]:
        pairs: list[tuple[str, str]] = []
        if token:
            pairs.append((AUTHORIZATION_KEY, f"Bearer {token}"))
        if self.user:
            pairs.append((USER_KEY, self.user))
        return tuple(pairs)


class Targets:
    """Hands out the address for each connection attempt."""

    def __init__(self, target: Target) -> None:
        self._call: Callable[[], str] | None = None
        self._cycle: Iterator[str] | None = None
        if isinstance(target, str):
            self._cycle = itertools.repeat(target)
        elif callable(target):
            self._call = target
        else:
            addresses = list(target)
            if not addresses:
                raise ValueError("give at least one target address")
            self._cycle = itertools.cycle(addresses)

    def next(self) -> str:
        if self._call is not None:
            return self._call()
        assert self._cycle is not None
        return next(self._cycle)


def open_channel(
    address: str,
    *,
    credentials: grpc.ChannelCredentials | None = None,
    options: Sequence[tuple[str, Any]] = (),
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    """A new ``grpc.aio`` channel: TLS when ``credentials`` are given, plaintext otherwise."""
    merged = dict(DEFAULT_CHANNEL_OPTIONS)
    merged.update(dict(options))
    opts = list(merged.items())
    if credentials is not None:
        return grpc.aio.secure_channel(
            address, credentials, options=opts, interceptors=list(interceptors) or None
        )
    return grpc.aio.insecure_channel(address, options=opts, interceptors=list(interceptors) or None)
