"""The client commands of ``tidings``: ``send``, ``listen``, ``stats``, ``status``.

They are thin shells over the Python SDK (``tidings.client``). Every command takes
``--server HOST:PORT`` (env ``TIDINGS_SERVER``, default 127.0.0.1:50051), ``--token JWT``
(env ``TIDINGS_TOKEN``) and ``--json``. Against a server in insecure mode, ``--user``
picks the caller of ``listen``, ``stats`` and ``status``; for ``send`` it names the
recipient (every caller is an admin there anyway).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from tidings.client import (
    DEFAULT_TARGET,
    Connected,
    Disconnected,
    DisconnectReason,
    Notification,
    Priority,
    Publisher,
    Reconnecting,
    StateEvent,
    StateListener,
    Subscriber,
    TidingsError,
)
from tidings.client.models import iso

SERVER_ENV = "TIDINGS_SERVER"
TOKEN_ENV = "TIDINGS_TOKEN"


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Where to connect and as whom, after flags and environment are merged."""

    server: str
    token: str | None
    user: str | None


def client_options(args: argparse.Namespace, environ: Mapping[str, str]) -> ClientOptions:
    """Flags win over ``TIDINGS_SERVER`` / ``TIDINGS_TOKEN``, which win over defaults."""
    return ClientOptions(
        server=args.server or environ.get(SERVER_ENV) or DEFAULT_TARGET,
        token=args.token or environ.get(TOKEN_ENV) or None,
        user=getattr(args, "user", None),
    )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        metavar="HOST:PORT",
        help=f"the gRPC address (default: ${SERVER_ENV} or {DEFAULT_TARGET})",
    )
    parser.add_argument("--token", metavar="JWT", help=f"bearer token (default: ${TOKEN_ENV})")
    parser.add_argument("--json", action="store_true", help="print JSON, one object per line")


def add_client_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``send``, ``listen``, ``stats`` and ``status`` on the ``tidings`` parser."""
    send = subparsers.add_parser("send", help="create a notification (admin)")
    _common(send)
    send.add_argument(
        "--user",
        dest="recipients",
        action="append",
        metavar="USER_ID",
        help="the recipient; repeat it to broadcast to several",
    )
    send.add_argument("--all", action="store_true", help="broadcast to every known user")
    send.add_argument("--type", required=True, help="notification type (1-64 characters)")
    send.add_argument("--title", required=True, help="title (1-200 characters)")
    send.add_argument("--message", default="", help="body text")
    send.add_argument("--data", metavar="JSON", help="a JSON object for the data field")
    send.add_argument(
        "--priority", choices=[p.value for p in Priority], default=Priority.NORMAL.value
    )
    send.add_argument("--idempotency-key", metavar="KEY", help="makes a re-run of send safe")

    listen = subparsers.add_parser("listen", help="print notifications as they arrive")
    _common(listen)
    listen.add_argument("--user", metavar="USER_ID", help="who to listen as (insecure mode)")
    listen.add_argument("--since", type=int, metavar="ID", help="also replay everything after ID")
    listen.add_argument("--types", metavar="A,B", help="only these notification types")
    listen.add_argument("--count", type=int, metavar="N", help="exit after N notifications")
    listen.add_argument("--mark-read", action="store_true", help="mark each one read")

    stats = subparsers.add_parser("stats", help="connection and delivery figures (admin)")
    _common(stats)
    stats.add_argument("--user", metavar="USER_ID", help="caller in insecure mode")

    status = subparsers.add_parser("status", help="whether a user is connected")
    _common(status)
    status.add_argument("--user", metavar="USER_ID", help="caller in insecure mode")
    status.add_argument("user_id", nargs="?", help="whose status (default: the caller)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the SDK's own ``tidings-client`` console script (the same commands
    as ``tidings send|listen|stats|status``, for machines that have only the SDK)."""
    parser = argparse.ArgumentParser(prog="tidings-client", description="Tidings client commands.")
    add_client_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return run_client_command(parser.parse_args(argv))


def run_client_command(args: argparse.Namespace) -> int:
    """Run a client command parsed by ``add_client_commands``; returns the exit code."""
    commands = {"send": _send, "listen": _listen, "stats": _stats, "status": _status}
    command = commands.get(args.command)
    if command is None:
        return 2
    options = client_options(args, os.environ)
    try:
        return asyncio.run(command(args, options))
    except TidingsError as exc:
        print(f"tidings {args.command}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"tidings {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _print_json(value: Any, out: TextIO = sys.stdout) -> None:
    print(json.dumps(value, ensure_ascii=False, separators=(",", ":")), file=out, flush=True)


def format_notification(n: Notification) -> str:
    """One readable line: ``#17 2026-11-25T22:52:07.123Z welcome [normal] Hello: body {…}``."""
    line = f"#{n.id} {iso(n.created_at) or '-'} {n.type} [{n.priority.value}] {n.title}"
    if n.message:
        line += f": {n.message}"
    if n.data:
        line += " " + json.dumps(n.data, ensure_ascii=False, separators=(",", ":"))
    return line


def _parse_data(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"--data is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("--data must be a JSON object")
    return value


async def _send(args: argparse.Namespace, options: ClientOptions) -> int:
    recipients: list[str] = args.recipients or []
    if not recipients and not args.all:
        raise ValueError("give --user USER_ID (repeat for several) or --all")
    data = _parse_data(args.data)
    async with Publisher(options.server, token=options.token) as publisher:
        if len(recipients) == 1 and not args.all:
            result = await publisher.create(
                recipients[0],
                args.type,
                args.title,
                message=args.message,
                data=data,
                priority=args.priority,
                idempotency_key=args.idempotency_key,
            )
            if args.json:
                _print_json({**result.notification.to_json(), "created": result.created})
            else:
                verb = "created" if result.created else "already existed:"
                print(
                    f"{verb} notification {result.notification.id} for user {recipients[0]}",
                    flush=True,
                )
            return 0
        created = await publisher.broadcast(
            args.type,
            args.title,
            user_ids=recipients or None,
            all_users=args.all,
            message=args.message,
            data=data,
            priority=args.priority,
        )
        if args.json:
            _print_json({"created": created})
        else:
            print(f"created {created} notifications", flush=True)
        return 0


def _state_printer() -> StateListener:
    def show(event: StateEvent) -> None:
        match event:
            case Connected(info=info, target=target):
                print(
                    f"connected to {target} as user {info.user_id} ({info.queued} queued"
                    f"{', older ones skipped' if info.truncated else ''})",
                    file=sys.stderr,
                    flush=True,
                )
            case Disconnected(reason=reason, detail=detail) if (
                reason is not DisconnectReason.CLOSED
            ):
                text = f"disconnected: {reason.value}" + (f" ({detail})" if detail else "")
                print(text, file=sys.stderr, flush=True)
            case Reconnecting(delay=delay):
                print(f"reconnecting in {delay:.1f} s", file=sys.stderr, flush=True)
            case _:
                pass

    return show


async def _listen(args: argparse.Namespace, options: ClientOptions) -> int:
    if args.count is not None and args.count < 1:
        raise ValueError("--count must be at least 1")
    types = [t.strip() for t in args.types.split(",") if t.strip()] if args.types else None
    received = 0
    async with Subscriber(
        options.server,
        token=options.token,
        user=options.user,
        since=args.since,
        types=types,
        on_state=_state_printer(),
    ) as subscriber:
        async for notification in subscriber:
            if args.json:
                _print_json(notification.to_json())
            else:
                print(format_notification(notification), flush=True)
            if args.mark_read:
                await subscriber.mark_read(notification.id)
            received += 1
            if args.count is not None and received >= args.count:
                break
    return 0


async def _stats(args: argparse.Namespace, options: ClientOptions) -> int:
    async with Publisher(options.server, token=options.token, user=options.user) as publisher:
        stats = await publisher.stats()
    if args.json:
        _print_json(dataclasses.asdict(stats))  # the same fields as the REST answer
        return 0
    print(
        f"connections {stats.total_connections}, users {stats.unique_users}, "
        f"sent {stats.messages_sent}, queued {stats.queued}, dropped {stats.dropped}, "
        f"uptime {stats.uptime_s:.0f} s (node {stats.node_id}, {len(stats.nodes)} reporting)",
        flush=True,
    )
    return 0


async def _status(args: argparse.Namespace, options: ClientOptions) -> int:
    async with Publisher(options.server, token=options.token, user=options.user) as publisher:
        status = await publisher.status(args.user_id)
    if args.json:
        _print_json(
            {
                "user_id": status.user_id,
                "connected": status.connected,
                "connection_count": status.connection_count,
            }
        )
    elif status.connected:
        print(f"user {status.user_id}: connected ({status.connection_count} sessions)")
    else:
        print(f"user {status.user_id}: not connected")
    return 0
