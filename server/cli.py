"""The ``tidings`` command: ``serve``, ``db upgrade`` (and the client commands)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence

from tidings.client.cli import add_client_commands, run_client_command

from server import logs
from server.config import DEFAULT_DATABASE_URL, ConfigError, add_serve_arguments, settings_from

log = logging.getLogger("tidings")


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop where it is installed (faster I/O, fewer allocations), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; be tolerant anyway
        return None
    return uvloop.new_event_loop


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tidings", description="Tidings: real-time notifications over gRPC and WebSocket."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the engine and/or the bridge")
    add_serve_arguments(serve)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_commands.add_parser("upgrade", help="bring the schema up to date")
    upgrade.add_argument("--database-url", help=f"store URL (default: {DEFAULT_DATABASE_URL})")

    add_client_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tidings`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "db":
        return _db_upgrade(args)
    return run_client_command(args)


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args, os.environ)
    except ConfigError as exc:
        print(f"tidings serve: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    from server.runtime import serve

    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(serve(settings))
    except OSError as exc:
        log.error("could not start: %s", exc)
        return 1
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    logs.configure("info")
    url = args.database_url or os.environ.get("TIDINGS_DATABASE_URL") or DEFAULT_DATABASE_URL
    from server.store.migrate import upgrade

    asyncio.run(upgrade(url))
    log.info("schema is up to date")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
