"""The ``tidings`` command: ``serve``, ``db upgrade`` (and the client commands)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from tidings.client.cli import add_client_commands, run_client_command

from server import logs
from server.config import (
    DEFAULT_DATABASE_URL,
    ConfigError,
    add_serve_arguments,
    database_url_from,
    settings_from,
)
from server.engine.errors import StoreUnavailable

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
    from tidingsd.runtime import serve

    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(serve(settings))
    except StoreUnavailable as exc:
        log.error("could not start: %s", _database_problem(settings.database_url, exc))
        return 1
    except OSError as exc:
        log.error("could not start: %s", exc)
        return 1
    return 0


def _database_problem(url: str, exc: StoreUnavailable) -> str:
    """One line for an operator: which database (password hidden), and what is wrong."""
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        shown = "(unparsable URL)"
    return f"cannot use the database {shown}: {exc.reason}"


def _db_upgrade(args: argparse.Namespace) -> int:
    logs.configure("info")
    url = database_url_from(args.database_url, os.environ)
    from server.store.migrate import upgrade

    try:
        asyncio.run(upgrade(url))
    except StoreUnavailable as exc:
        log.error("could not upgrade: %s", _database_problem(url, exc))
        return 1
    log.info("schema is up to date")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
