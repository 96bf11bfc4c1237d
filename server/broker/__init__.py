"""Brokers for several nodes, chosen by URL scheme."""

from __future__ import annotations

from urllib.parse import urlsplit

from server.broker.base import Broker, BrokerListener, BrokerUnavailable

__all__ = ["Broker", "BrokerListener", "BrokerUnavailable", "open_broker"]


def open_broker(url: str) -> Broker:
    """``postgresql://…`` (LISTEN/NOTIFY), ``redis://…`` (pub/sub) or ``memory://bus`` (tests)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in {"postgresql", "postgres", "postgresql+asyncpg"}:
        from server.broker.postgres import PostgresBroker

        return PostgresBroker(url)
    if scheme in {"redis", "rediss", "unix"}:
        from server.broker.redis import RedisBroker

        return RedisBroker(url)
    if scheme == "memory":
        from server.broker.memory import MemoryBroker

        return MemoryBroker(urlsplit(url).netloc or "default")
    raise ValueError(f"unsupported broker URL {url!r}: use postgresql://… or redis://…")
