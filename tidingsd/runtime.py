"""Running a node: wiring settings to the engine, the gRPC server and the bridge, and
shutting all of it down in order on SIGTERM/SIGINT. The composition root: nothing in
``server`` or ``bridge`` imports this."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time

from prometheus_client import Histogram

from server.auth import Authenticator
from server.broker import open_broker
from server.cluster import Cluster
from server.config import Role, Settings, join_addr, split_addr
from server.engine import Engine, EngineConfig, SessionLimits
from server.engine.events import CloseReason
from server.metrics import PrometheusObserver
from server.rpc.server import GrpcServer
from server.store import open_store

log = logging.getLogger("tidings")

GC_PAUSES = Histogram(
    "tidings_gc_pause_seconds",
    "Garbage collections, by generation.",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)

#: Allocations between young-generation collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 20_000

#: How long in-flight calls get to finish at shutdown.
SHUTDOWN_GRACE = 3.0
#: The whole shutdown from the signal, whatever the store and the broker do (the bridge
#: takes its own grace out of it first); the engine gets what the calls left of it, and
#: at least ``ENGINE_STOP_MIN``.
SHUTDOWN_TIMEOUT = 4.0
ENGINE_STOP_MIN = 1.0
#: Saying goodbye to the cluster.
CLUSTER_STOP_TIMEOUT = 1.0


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        node_id=settings.node_id,
        max_offline_queue=settings.max_offline_queue,
        broadcast_slice=settings.broadcast_slice,
        session=SessionLimits(
            heartbeat_interval=settings.heartbeat_interval,
            max_buffer=settings.max_session_buffer,
            max_rate=settings.max_client_rate,
        ),
    )


def settle_memory() -> None:
    """Move what start-up allocated out of the collector's way, and collect less often.

    Start-up objects (modules, descriptors, the app) never die: frozen, full collections
    stop walking them. A larger first-generation threshold trades a little memory for
    far fewer collections under heavy traffic, where most objects die young anyway.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 3, 10)
    watch_gc_pauses()


def watch_gc_pauses(threshold: float = 0.05) -> None:
    """Time every collection into a metric; collections longer than ``threshold`` s also
    get a debug line."""
    started: list[float] = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        took = time.perf_counter() - started[0]
        GC_PAUSES.labels(str(info["generation"])).observe(took)
        if took > threshold:
            log.debug(
                "gc: generation %d took %.0f ms (%d collected)",
                info["generation"],
                took * 1000,
                info["collected"],
            )

    gc.callbacks.append(callback)


def _scheme(settings: Settings) -> str:
    return (settings.broker_url or "").split(":", 1)[0]


async def serve(settings: Settings) -> None:
    """Run the roles ``settings`` asks for until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    log.debug("event loop: %s", type(loop).__module__)
    signalled: list[float] = []  # when the first signal came: the shutdown budget starts

    def on_signal() -> None:
        if not signalled:
            signalled.append(loop.time())
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)

    engine: Engine | None = None
    cluster: Cluster | None = None
    grpc_server: GrpcServer | None = None
    authenticator: Authenticator | None = None
    upstream = settings.upstream_addr
    try:
        if settings.role in (Role.ALL, Role.GRPC):
            if settings.insecure and not settings.secure:
                log.warning(
                    "INSECURE MODE: no tokens are checked and every caller is an admin. "
                    "Never expose this server; configure a JWT key for real use."
                )
            if settings.migrate:
                from server.store.migrate import upgrade

                await upgrade(settings.database_url)
            authenticator = Authenticator(
                secret=settings.jwt_secret,
                insecure=settings.insecure,
                public_key=settings.jwt_public_key_pem,
                jwks=settings.jwt_jwks_url,
                algorithms=settings.jwt_algorithms,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
            )
            config = engine_config(settings)
            if settings.broker_url:
                broker = open_broker(settings.broker_url, node_id=config.node_id)
                cluster = Cluster(broker, config.node_id)
            engine = Engine(
                open_store(settings.database_url),
                config,
                observer=PrometheusObserver(),
                peers=cluster,
            )
            await engine.start()
            if cluster is not None:
                cluster.attach(engine)
                await cluster.start()
                log.info("node %s joined the cluster via %s", config.node_id, _scheme(settings))
            grpc_server = GrpcServer(engine, authenticator)
            host, _ = split_addr(settings.grpc_addr)
            port = await grpc_server.start(settings.grpc_addr)
            upstream = join_addr(host, port)
            log.info("grpc listening on %s", upstream)
        settle_memory()
        if settings.role in (Role.ALL, Role.BRIDGE):
            from bridge.runner import run_bridge  # not imported at all in role grpc

            local = grpc_server.in_process() if grpc_server is not None else None
            await run_bridge(settings, upstream, stop, local)
        else:
            await stop.wait()
        log.info("shutting down")
    finally:
        deadline = (signalled[0] if signalled else loop.time()) + SHUTDOWN_TIMEOUT
        if engine is not None:
            engine.close_sessions(CloseReason.SHUTDOWN)
        if grpc_server is not None:
            left = deadline - loop.time() - ENGINE_STOP_MIN
            await grpc_server.stop(max(0.0, min(SHUTDOWN_GRACE, left)))
        if cluster is not None:
            try:
                async with asyncio.timeout(CLUSTER_STOP_TIMEOUT):
                    await cluster.stop()
            except TimeoutError:
                log.warning("shutdown: the broker did not answer; left the cluster unannounced")
        if engine is not None:
            await engine.stop(timeout=max(deadline - loop.time(), ENGINE_STOP_MIN))
        if authenticator is not None:
            await authenticator.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
