"""Settings: built once at start-up from the command line and the environment, then frozen.

Every ``tidings serve`` flag has a ``TIDINGS_*`` environment twin (flag name
upper-cased, dashes to underscores); a flag given on the command line wins. Nothing
outside this module reads the environment.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from urllib.parse import urlsplit

from server.keys import load_public_key, resolve_algorithms

DEFAULT_GRPC_ADDR = "127.0.0.1:50051"
DEFAULT_HTTP_ADDR = "127.0.0.1:8000"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///tidings.db"


class Role(StrEnum):
    """Which parts a process runs."""

    ALL = "all"
    GRPC = "grpc"
    BRIDGE = "bridge"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything ``tidings serve`` needs, validated."""

    role: Role = Role.ALL
    grpc_addr: str = DEFAULT_GRPC_ADDR
    http_addr: str = DEFAULT_HTTP_ADDR
    upstream: str | None = None
    database_url: str = DEFAULT_DATABASE_URL
    broker_url: str | None = None
    jwt_secret: str | None = None
    jwt_public_key: str | None = None  # the path, as given
    jwt_public_key_pem: str | None = None  # what the file held
    jwt_jwks_url: str | None = None
    jwt_algorithms: tuple[str, ...] = ()  # resolved: what tokens may use with the key
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    insecure: bool = False
    heartbeat_interval: float = 30.0
    max_offline_queue: int = 100
    max_message_bytes: int = 65536
    allowed_origins: tuple[str, ...] = ()
    max_session_buffer: int = 1000
    max_client_rate: float = 50.0
    broadcast_slice: int = 5000
    log_level: str = "info"
    log_format: str = "text"
    migrate: bool = True
    node_id: str = ""

    @property
    def secure(self) -> bool:
        """Whether a key is configured (tokens are verified)."""
        return bool(self.jwt_secret or self.jwt_public_key_pem or self.jwt_jwks_url)

    @property
    def upstream_addr(self) -> str:
        """Where the bridge finds the engine."""
        return self.upstream or self.grpc_addr


def split_addr(addr: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:PORT``) → (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"address {addr!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def join_addr(host: str, port: int) -> str:
    """(host, port) → ``HOST:PORT``, IPv6 hosts in brackets: ``split_addr`` reversed."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def database_url_from(given: str | None, environ: Mapping[str, str]) -> str:
    """The store URL of ``tidings db upgrade``: the flag, else ``TIDINGS_DATABASE_URL``,
    else the default."""
    return given or environ.get("TIDINGS_DATABASE_URL") or DEFAULT_DATABASE_URL


def _truthy(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of docs/PROTOCOL.md §8 (defaults are applied by ``settings_from``)."""
    a = parser.add_argument
    a("--role", choices=[r.value for r in Role], help="what to run (default: all)")
    a(
        "--grpc-addr",
        metavar="HOST:PORT",
        help=f"gRPC listen address (default: {DEFAULT_GRPC_ADDR})",
    )
    a(
        "--http-addr",
        metavar="HOST:PORT",
        help=f"HTTP listen address (default: {DEFAULT_HTTP_ADDR})",
    )
    a("--upstream", metavar="HOST:PORT", help="the engine's gRPC address (bridge role)")
    a("--database-url", help=f"store URL (default: {DEFAULT_DATABASE_URL})")
    a("--broker-url", help="fan-out broker for several nodes: postgresql://… or redis://…")
    a("--jwt-secret", help="HS256 secret for verifying tokens (secure mode)")
    a("--jwt-public-key", metavar="PATH", help="PEM public key (RSA or EC) for RS256/ES256 tokens")
    a("--jwt-jwks-url", metavar="URL", help="the identity provider's JWKS (RS256/ES256 tokens)")
    a(
        "--jwt-algorithms",
        metavar="LIST",
        help="accepted token algorithms, comma-separated (default: the key's own)",
    )
    a("--jwt-issuer", metavar="ISS", help="required iss claim of every token")
    a("--jwt-audience", metavar="AUD", help="required aud claim of every token")
    a("--insecure", action="store_true", default=None, help="development mode: no tokens")
    a("--heartbeat-interval", metavar="SECONDS", help="seconds between heartbeats (default: 30)")
    a("--max-offline-queue", metavar="N", help="queued notifications kept per user (default: 100)")
    a("--max-message-bytes", metavar="N", help="largest WebSocket frame (default: 65536)")
    a("--allowed-origins", metavar="LIST", help="comma-separated WebSocket origins")
    a("--max-session-buffer", metavar="N", help="messages a session may lag (default: 1000)")
    a("--max-client-rate", metavar="N", help="client messages per second (default: 50)")
    a(
        "--broadcast-slice",
        metavar="N",
        help="recipients per transaction of a broadcast (default: 5000)",
    )
    a("--log-level", help="debug, info, warning, error (default: info)")
    a("--log-format", choices=["text", "json"], help="text, or one JSON object a line")
    a(
        "--no-migrate",
        dest="migrate",
        action="store_false",
        default=None,
        help="do not upgrade the schema on start (use `tidings db upgrade`)",
    )
    a("--node-id", help="this node's name in a cluster (default: random)")


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Merge parsed flags over ``TIDINGS_*`` variables over defaults, and validate."""

    def raw(name: str) -> object:
        value = getattr(args, name, None)
        if value is not None:
            return value
        env = environ.get("TIDINGS_" + name.upper())
        return env if env not in (None, "") else None

    def text(name: str, default: str | None) -> str | None:
        value = raw(name)
        return default if value is None else str(value)

    def number(name: str, default: float, kind: type[int] | type[float], minimum: float) -> float:
        value = raw(name)
        if value is None:
            return default
        try:
            parsed = kind(str(value))
        except ValueError:
            raise ConfigError(
                f"--{name.replace('_', '-')} must be a number, got {value!r}"
            ) from None
        if parsed < minimum:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least {minimum}, got {value}")
        return parsed

    def flag(name: str, default: bool) -> bool:
        value = raw(name)
        if value is None:
            return default
        return value if isinstance(value, bool) else _truthy(str(value))

    role_text = text("role", Role.ALL.value) or Role.ALL.value
    try:
        role = Role(role_text)
    except ValueError:
        raise ConfigError(f"--role must be all, grpc or bridge, got {role_text!r}") from None
    origins = text("allowed_origins", "") or ""
    public_key = text("jwt_public_key", None)
    algorithms = text("jwt_algorithms", "") or ""
    settings = Settings(
        role=role,
        grpc_addr=text("grpc_addr", DEFAULT_GRPC_ADDR) or DEFAULT_GRPC_ADDR,
        http_addr=text("http_addr", DEFAULT_HTTP_ADDR) or DEFAULT_HTTP_ADDR,
        upstream=text("upstream", None),
        database_url=text("database_url", DEFAULT_DATABASE_URL) or DEFAULT_DATABASE_URL,
        broker_url=text("broker_url", None),
        jwt_secret=text("jwt_secret", None),
        jwt_public_key=public_key,
        jwt_public_key_pem=_read_key(public_key) if public_key else None,
        jwt_jwks_url=text("jwt_jwks_url", None),
        jwt_algorithms=tuple(a.strip() for a in algorithms.split(",") if a.strip()),
        jwt_issuer=text("jwt_issuer", None),
        jwt_audience=text("jwt_audience", None),
        insecure=flag("insecure", False),
        heartbeat_interval=number("heartbeat_interval", 30.0, float, 0.01),
        max_offline_queue=int(number("max_offline_queue", 100, int, 1)),
        max_message_bytes=int(number("max_message_bytes", 65536, int, 128)),
        allowed_origins=tuple(o.strip() for o in origins.split(",") if o.strip()),
        max_session_buffer=int(number("max_session_buffer", 1000, int, 1)),
        max_client_rate=number("max_client_rate", 50.0, float, 0.1),
        broadcast_slice=int(number("broadcast_slice", 5000, int, 1)),
        log_level=(text("log_level", "info") or "info").lower(),
        log_format=(text("log_format", "text") or "text").lower(),
        migrate=flag("migrate", True) and not _truthy(environ.get("TIDINGS_NO_MIGRATE", "")),
        node_id=text("node_id", "") or "",
    )
    settings = replace(settings, jwt_algorithms=_jwt_algorithms(settings))
    validate(settings)
    return settings


def _read_key(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"--jwt-public-key: cannot read {path!r}: {reason}") from None


def _jwt_algorithms(settings: Settings) -> tuple[str, ...]:
    """The algorithms tokens may use: the requested ones if they fit the key, else the
    key's own (docs/PROTOCOL.md §2.2)."""
    given = [
        flag
        for flag, value in (
            ("--jwt-secret", settings.jwt_secret),
            ("--jwt-public-key", settings.jwt_public_key_pem),
            ("--jwt-jwks-url", settings.jwt_jwks_url),
        )
        if value
    ]
    if len(given) > 1:
        raise ConfigError(f"{' and '.join(given)} were given together: configure one key")
    if not given:
        for name in ("jwt_algorithms", "jwt_issuer", "jwt_audience"):
            if getattr(settings, name):
                flag = "--" + name.replace("_", "-")
                raise ConfigError(
                    f"{flag} needs a key: --jwt-secret, --jwt-public-key or --jwt-jwks-url"
                )
        return ()
    url = settings.jwt_jwks_url
    if url is not None and urlsplit(url).scheme not in ("http", "https"):
        raise ConfigError(f"--jwt-jwks-url must be an http:// or https:// URL, got {url!r}")
    public_key = None
    if settings.jwt_public_key_pem is not None:
        try:
            public_key = load_public_key(settings.jwt_public_key_pem)
        except ValueError as exc:
            raise ConfigError(f"--jwt-public-key {settings.jwt_public_key}: {exc}") from None
    try:
        return resolve_algorithms(
            settings.jwt_algorithms,
            secret=bool(settings.jwt_secret),
            public_key=public_key,
            jwks=url is not None,
        )
    except ValueError as exc:
        flag = "--jwt-algorithms" if settings.jwt_algorithms else "--jwt-public-key"
        raise ConfigError(f"{flag}: {exc}") from None


def validate(settings: Settings) -> None:
    """Raise ``ConfigError`` for settings that cannot work together."""
    for addr in (settings.grpc_addr, settings.http_addr, settings.upstream_addr):
        split_addr(addr)
    if settings.log_level not in {"debug", "info", "warning", "error", "critical"}:
        raise ConfigError(
            f"--log-level must be debug, info, warning or error, got {settings.log_level!r}"
        )
    if settings.log_format not in {"text", "json"}:
        raise ConfigError(f"--log-format must be text or json, got {settings.log_format!r}")
    if settings.role is not Role.BRIDGE and not settings.secure and not settings.insecure:
        raise ConfigError(
            "no JWT key configured: set --jwt-secret (TIDINGS_JWT_SECRET), --jwt-public-key "
            "(TIDINGS_JWT_PUBLIC_KEY) or --jwt-jwks-url (TIDINGS_JWT_JWKS_URL) for secure "
            "mode, or pass --insecure (TIDINGS_INSECURE=1) for local development without tokens"
        )


def parse_serve(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Settings from a ``serve`` command line (for tests and embedding)."""
    parser = argparse.ArgumentParser(prog="tidings serve")
    add_serve_arguments(parser)
    return settings_from(parser.parse_args(list(argv)), environ)
