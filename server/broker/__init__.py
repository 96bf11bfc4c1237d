"""Brokers for several nodes, chosen by URL scheme."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from server.broker.base import Broker, BrokerListener, BrokerUnavailable

__all__ = ["Broker", "BrokerListener", "BrokerUnavailable", "open_broker"]


def open_broker(url: str, *, node_id: str = "") -> Broker:
    """``postgresql://…`` (LISTEN/NOTIFY), ``redis://…`` (pub/sub) or ``memory://bus`` (tests).

    A ``channel`` query parameter names the channel (default ``tidings``): clusters
    that share a Redis server or a PostgreSQL database need one each.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = parse_qs(parts.query)
    channel = query.pop("channel", ["tidings"])[-1]
    rest = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
    if scheme in {"postgresql", "postgres", "postgresql+asyncpg"}:
        from server.broker.postgres import PostgresBroker

        return PostgresBroker(rest, channel=channel, name=f"tidings-broker-{node_id}")
    if scheme in {"redis", "rediss", "unix"}:
        from server.broker.redis import RedisBroker

        return RedisBroker(rest, channel=channel)
    if scheme == "memory":
        from server.broker.memory import MemoryBroker

        return MemoryBroker(urlsplit(url).netloc or "default")
    raise ValueError(f"unsupported broker URL {url!r}: use postgresql://… or redis://…")
