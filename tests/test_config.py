"""Settings from flags and their TIDINGS_* twins (docs/PROTOCOL.md §8)."""

from __future__ import annotations

import pytest

from server.config import ConfigError, Role, parse_serve
from tidingsd.runtime import engine_config


def test_defaults() -> None:
    s = parse_serve(["--insecure"], {})
    assert (s.role, s.grpc_addr, s.http_addr) == (Role.ALL, "127.0.0.1:50051", "127.0.0.1:8000")
    assert s.upstream_addr == s.grpc_addr
    assert s.database_url == "sqlite+aiosqlite:///tidings.db"
    assert (s.heartbeat_interval, s.max_offline_queue, s.max_message_bytes) == (30.0, 100, 65536)
    assert (s.max_session_buffer, s.max_client_rate, s.broadcast_slice) == (1000, 50.0, 5000)
    assert (s.broker_url, s.jwt_secret, s.allowed_origins) == (None, None, ())
    assert (s.log_level, s.log_format, s.migrate) == ("info", "text", True)


def test_every_flag_has_an_environment_twin_and_flags_win() -> None:
    env = {
        "TIDINGS_ROLE": "bridge",
        "TIDINGS_GRPC_ADDR": "0.0.0.0:1",
        "TIDINGS_HTTP_ADDR": "0.0.0.0:2",
        "TIDINGS_UPSTREAM": "engine:50051",
        "TIDINGS_DATABASE_URL": "postgresql+asyncpg://db/t",
        "TIDINGS_BROKER_URL": "redis://cache",
        "TIDINGS_JWT_SECRET": "s" * 32,
        "TIDINGS_HEARTBEAT_INTERVAL": "0.5",
        "TIDINGS_MAX_OFFLINE_QUEUE": "7",
        "TIDINGS_MAX_MESSAGE_BYTES": "1024",
        "TIDINGS_ALLOWED_ORIGINS": "https://a.example, https://b.example",
        "TIDINGS_MAX_SESSION_BUFFER": "9",
        "TIDINGS_MAX_CLIENT_RATE": "3",
        "TIDINGS_BROADCAST_SLICE": "250",
        "TIDINGS_LOG_LEVEL": "DEBUG",
        "TIDINGS_LOG_FORMAT": "json",
        "TIDINGS_NO_MIGRATE": "1",
    }
    s = parse_serve([], env)
    assert s.role is Role.BRIDGE
    assert s.upstream_addr == "engine:50051"
    assert s.heartbeat_interval == 0.5
    assert (s.max_offline_queue, s.max_message_bytes, s.max_session_buffer) == (7, 1024, 9)
    assert s.broadcast_slice == 250
    assert s.allowed_origins == ("https://a.example", "https://b.example")
    assert (s.log_level, s.log_format, s.migrate) == ("debug", "json", False)
    flagged = parse_serve(["--max-offline-queue", "12", "--role", "grpc"], env)
    assert (flagged.max_offline_queue, flagged.role) == (12, Role.GRPC)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "--jwt-secret"),
        (["--insecure", "--grpc-addr", "nowhere"], "HOST:PORT"),
        (["--insecure", "--heartbeat-interval", "soon"], "--heartbeat-interval"),
        (["--insecure", "--max-offline-queue", "0"], "--max-offline-queue"),
        (["--insecure", "--broadcast-slice", "0"], "--broadcast-slice"),
        (["--insecure", "--log-level", "chatty"], "--log-level"),
    ],
)
def test_bad_settings_say_what_is_wrong(argv: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_serve(argv, {})


def test_a_bridge_needs_no_key() -> None:
    assert parse_serve(["--role", "bridge", "--upstream", "e:1"], {}).role is Role.BRIDGE


# --- JWT keys (docs/PROTOCOL.md §2.2, §8) -------------------------------------------------


@pytest.fixture(scope="module")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from tests.auth_tokens import ec_key, public_pem, rsa_key

    folder = tmp_path_factory.mktemp("keys")
    paths = {}
    for name, text in {
        "rsa": public_pem(rsa_key()),
        "ec": public_pem(ec_key()),
        "garbage": "not a key\n",
    }.items():
        path = folder / f"{name}.pem"
        path.write_text(text)
        paths[name] = str(path)
    paths["missing"] = str(folder / "nowhere.pem")
    return paths


def test_a_key_picks_its_own_algorithm(key_files: dict[str, str]) -> None:
    assert parse_serve(["--jwt-secret", "s" * 32], {}).jwt_algorithms == ("HS256",)
    rsa = parse_serve(["--jwt-public-key", key_files["rsa"]], {})
    assert rsa.jwt_algorithms == ("RS256",)
    assert rsa.jwt_public_key_pem is not None and "BEGIN PUBLIC KEY" in rsa.jwt_public_key_pem
    assert rsa.secure and not rsa.insecure
    assert parse_serve(["--jwt-public-key", key_files["ec"]], {}).jwt_algorithms == ("ES256",)
    jwks = parse_serve(["--jwt-jwks-url", "https://idp.example/.well-known/jwks.json"], {})
    assert jwks.jwt_algorithms == ("RS256", "ES256")
    assert parse_serve(["--insecure"], {}).jwt_algorithms == ()


def test_key_flags_have_environment_twins(key_files: dict[str, str]) -> None:
    s = parse_serve(
        [],
        {
            "TIDINGS_JWT_PUBLIC_KEY": key_files["rsa"],
            "TIDINGS_JWT_ALGORITHMS": "RS256, PS256",
            "TIDINGS_JWT_ISSUER": "https://idp.example/",
            "TIDINGS_JWT_AUDIENCE": "tidings",
        },
    )
    assert s.jwt_public_key == key_files["rsa"]
    assert s.jwt_algorithms == ("RS256", "PS256")
    assert (s.jwt_issuer, s.jwt_audience) == ("https://idp.example/", "tidings")
    url = "http://127.0.0.1:9/jwks.json"
    assert parse_serve([], {"TIDINGS_JWT_JWKS_URL": url}).jwt_jwks_url == url


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--jwt-public-key", "{missing}"], "--jwt-public-key: cannot read"),
        (["--jwt-public-key", "{garbage}"], "not a PEM public key"),
        (["--jwt-secret", "s" * 32, "--jwt-public-key", "{rsa}"], "given together"),
        (["--jwt-secret", "s" * 32, "--jwt-jwks-url", "https://idp/j"], "given together"),
        (["--jwt-public-key", "{rsa}", "--jwt-jwks-url", "https://idp/j"], "given together"),
        (["--jwt-public-key", "{rsa}", "--jwt-algorithms", "ES256"], "ES256 does not fit"),
        (["--jwt-public-key", "{ec}", "--jwt-algorithms", "RS256"], "RS256 does not fit"),
        (["--jwt-public-key", "{rsa}", "--jwt-algorithms", "HS256"], "must never be used"),
        (["--jwt-jwks-url", "https://idp/j", "--jwt-algorithms", "HS256"], "needs a secret"),
        (["--jwt-secret", "s" * 32, "--jwt-algorithms", "RS256"], "not a secret"),
        (["--jwt-secret", "s" * 32, "--jwt-algorithms", "none"], "unknown algorithm"),
        (["--jwt-jwks-url", "file:///etc/keys.json"], "http:// or https://"),
        (["--insecure", "--jwt-audience", "tidings"], "--jwt-audience needs a key"),
        (["--insecure", "--jwt-algorithms", "RS256"], "--jwt-algorithms needs a key"),
        ([], "--jwt-public-key"),
    ],
)
def test_bad_key_settings_say_what_is_wrong(
    key_files: dict[str, str], argv: list[str], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_serve([arg.format(**key_files) for arg in argv], {})


def test_the_engine_gets_the_broadcast_slice() -> None:
    settings = parse_serve(["--insecure", "--broadcast-slice", "250"], {})
    assert engine_config(settings).broadcast_slice == 250
