"""What one bridge app holds while it serves: kept on the app, created in ``before_serving``."""

from __future__ import annotations

import asyncio
from typing import Final, cast

from prometheus_client import CollectorRegistry
from quart import Quart, current_app

from bridge.jsonwire import FrameCache
from bridge.metrics import BridgeMetrics
from bridge.origin import OriginPolicy
from bridge.relayframes import DeliveryFrames
from bridge.upstream import Upstream
from bridge.wswrite import DirectDeliveries
from server.rpc.inprocess import InProcessStubs

EXTENSION_KEY: Final = "tidings_bridge"


class BridgeState:
    """The bridge's runtime resources. ``start`` and ``stop`` run inside the event loop."""

    def __init__(
        self,
        upstream_addr: str,
        *,
        origins: OriginPolicy,
        max_message_bytes: int,
        max_session_buffer: int = 1000,
        local: InProcessStubs | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.upstream_addr = upstream_addr
        self.local = local
        self.max_session_buffer = max_session_buffer
        self.origins = origins
        self.max_message_bytes = max_message_bytes
        #: Notification frames shared by every socket (one encode per notification).
        self.frames = FrameCache()
        #: Relayed notifications → frame texts, one parse per content (``bridge.relayframes``).
        self.deliveries = DeliveryFrames()
        #: The bridge's metrics, in ``registry`` (default: a registry of this app's own).
        self.metrics = BridgeMetrics(registry if registry is not None else CollectorRegistry())
        #: Relayed notifications written straight to idle sockets (``bridge.wswrite``).
        self.direct = DirectDeliveries(self.deliveries, self.metrics)
        self._upstream: Upstream | None = None
        self._draining: asyncio.Future[None] | None = None

    async def start(self) -> None:
        self._upstream = Upstream(
            self.upstream_addr, max_session_buffer=self.max_session_buffer, local=self.local
        )
        self._draining = asyncio.get_running_loop().create_future()

    async def stop(self) -> None:
        self.drain()
        if self._upstream is not None:
            await self._upstream.close()

    @property
    def upstream(self) -> Upstream:
        if self._upstream is None:
            raise RuntimeError("the bridge is not serving")
        return self._upstream

    @property
    def upstream_or_none(self) -> Upstream | None:
        """The upstream, or None while the bridge is not serving."""
        return self._upstream

    @property
    def draining(self) -> asyncio.Future[None]:
        """Done once the bridge shuts down; every WebSocket handler waits on it too."""
        if self._draining is None:
            raise RuntimeError("the bridge is not serving")
        return self._draining

    def drain(self) -> None:
        """Tell every WebSocket to close with 1001 now."""
        if self._draining is not None and not self._draining.done():
            self._draining.set_result(None)


def bridge_state(app: Quart | None = None) -> BridgeState:
    """The state of ``app`` (default: the app handling the current request)."""
    return cast(BridgeState, (app or current_app).extensions[EXTENSION_KEY])
