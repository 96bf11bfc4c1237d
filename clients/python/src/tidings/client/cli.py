"""The client commands of ``tidings``: ``send``, ``listen``, ``stats``, ``status``, ``inbox``.

They are thin shells over the Python SDK (``tidings.client``). ``inbox`` acts on the
caller's own inbox: ``list`` (with filters), ``counts``, ``seen``, ``read``,
``read-all``, ``archive``, ``unarchive``, ``delete`` and ``prefs``. Every command takes
``--server HOST:PORT`` (env ``TIDINGS_SERVER``, default 127.0.0.1:50051), ``--token JWT``
(env ``TIDINGS_TOKEN``) and ``--json``. Against a server in insecure mode, ``--user``
picks the caller of ``listen``, ``stats``, ``status`` and ``inbox``; for ``send`` it names the
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
from datetime import datetime
from typing import Any, TextIO

from tidings.client import (
    DEFAULT_TARGET,
    Connected,
    Counts,
    Disconnected,
    DisconnectReason,
    Inbox,
    InboxEvent,
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
    send.add_argument(
        "--expires-at",
        type=_timestamp("--expires-at"),
        metavar="ISO-8601",
        help="never delivered, listed or counted after this instant (with a zone)",
    )
    send.add_argument(
        "--ignore-mutes", action="store_true", help="deliver even to users who muted the type"
    )

    listen = subparsers.add_parser("listen", help="print notifications as they arrive")
    _common(listen)
    listen.add_argument("--user", metavar="USER_ID", help="who to listen as (insecure mode)")
    listen.add_argument("--since", type=int, metavar="ID", help="also replay everything after ID")
    listen.add_argument("--types", metavar="A,B", help="only these notification types")
    listen.add_argument("--count", type=int, metavar="N", help="exit after N notifications")
    listen.add_argument("--mark-read", action="store_true", help="mark each one read")
    listen.add_argument(
        "--events",
        action="store_true",
        help="also print inbox events (seen, read, archived, deleted, preferences)",
    )

    stats = subparsers.add_parser("stats", help="connection and delivery figures (admin)")
    _common(stats)
    stats.add_argument("--user", metavar="USER_ID", help="caller in insecure mode")

    status = subparsers.add_parser("status", help="whether a user is connected")
    _common(status)
    status.add_argument("--user", metavar="USER_ID", help="caller in insecure mode")
    status.add_argument("user_id", nargs="?", help="whose status (default: the caller)")

    inbox = subparsers.add_parser("inbox", help="the caller's own inbox")
    actions = inbox.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help)
        _common(parser)
        parser.add_argument("--user", metavar="USER_ID", help="caller in insecure mode")
        return parser

    listing = action("list", help="one page of notifications, newest first")
    listing.add_argument(
        "--type", dest="types", action="append", default=[], metavar="TYPE", help="repeatable"
    )
    listing.add_argument(
        "--priority",
        dest="priorities",
        action="append",
        default=[],
        choices=[p.value for p in Priority],
        help="repeatable",
    )
    read = listing.add_mutually_exclusive_group()
    read.add_argument("--read", dest="read", action="store_const", const=True)
    read.add_argument("--unread", dest="read", action="store_const", const=False)
    seen = listing.add_mutually_exclusive_group()
    seen.add_argument("--seen", dest="seen", action="store_const", const=True)
    seen.add_argument("--unseen", dest="seen", action="store_const", const=False)
    listing.add_argument("--archived", action="store_true", help="only the archived ones")
    listing.add_argument("--created-after", type=_timestamp("--created-after"), metavar="ISO-8601")
    listing.add_argument(
        "--created-before", type=_timestamp("--created-before"), metavar="ISO-8601"
    )
    listing.add_argument("--limit", type=int, default=0, metavar="N", help="1-200 (default 50)")
    listing.add_argument("--before-id", type=int, metavar="ID", help="the next page's cursor")

    action("counts", help="unread and unseen, in total and per type")
    mark_seen = action("seen", help="mark the list seen (clears the badge)")
    mark_seen.add_argument("--up-to", type=int, metavar="ID", help="default: the newest")
    mark_read = action("read", help="mark one notification read")
    mark_read.add_argument("notification_id", type=int, metavar="ID")
    read_all = action("read-all", help="mark every unread notification read")
    read_all.add_argument("--type", metavar="TYPE", help="only this type")
    read_all.add_argument("--up-to", type=int, metavar="ID", help="default: the newest")
    for name, text in (
        ("archive", "move one out of the default list and the counts"),
        ("unarchive", "bring an archived one back"),
        ("delete", "delete one for good"),
    ):
        action(name, help=text).add_argument("notification_id", type=int, metavar="ID")
    prefs = action("prefs", help="show or change the muted types")
    prefs.add_argument("--mute", action="append", default=[], metavar="TYPE", help="repeatable")
    prefs.add_argument("--unmute", action="append", default=[], metavar="TYPE", help="repeatable")
    prefs.add_argument(
        "--set", dest="muted", metavar="A,B", help="replace the muted types ('' for none)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the SDK's own ``tidings-client`` console script (the same commands
    as ``tidings send|listen|stats|status``, for machines that have only the SDK)."""
    parser = argparse.ArgumentParser(prog="tidings-client", description="Tidings client commands.")
    add_client_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return run_client_command(parser.parse_args(argv))


def run_client_command(args: argparse.Namespace) -> int:
    """Run a client command parsed by ``add_client_commands``; returns the exit code."""
    commands = {
        "send": _send,
        "listen": _listen,
        "stats": _stats,
        "status": _status,
        "inbox": _inbox,
    }
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


def _timestamp(flag: str) -> Any:
    """An argparse type: an ISO-8601 instant with a zone (``Z`` or ``+02:00``)."""

    def parse(text: str) -> datetime:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag}: not an ISO-8601 timestamp") from None
        if moment.tzinfo is None:
            raise argparse.ArgumentTypeError(f"{flag}: give a zone, e.g. Z or +02:00")
        return moment

    return parse


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
                expires_at=args.expires_at,
                ignore_mutes=args.ignore_mutes,
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
            expires_at=args.expires_at,
            ignore_mutes=args.ignore_mutes,
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


def event_json(event: InboxEvent) -> dict[str, Any]:
    """An inbox event as the WebSocket protocol's JSON (``type`` names it)."""
    name = {
        "NotificationMarkedRead": "notification_marked_read",
        "NotificationsSeen": "notifications_seen",
        "NotificationsMarkedRead": "notifications_marked_read",
        "NotificationArchived": "notification_archived",
        "NotificationUnarchived": "notification_unarchived",
        "NotificationDeleted": "notification_deleted",
        "PreferencesUpdated": "preferences_updated",
    }[type(event).__name__]
    fields = dataclasses.asdict(event)
    if "muted_types" in fields:
        fields["muted_types"] = list(fields["muted_types"])
    return {"type": name, **fields}


def _event_printer(as_json: bool) -> Any:
    def show(event: InboxEvent) -> None:
        fields = event_json(event)
        if as_json:
            _print_json(fields)
        else:
            name = fields.pop("type")
            text = " ".join(f"{k}={v}" for k, v in fields.items())
            print(f"* {name} {text}", flush=True)

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
        on_event=_event_printer(args.json) if args.events else None,
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


def format_counts(counts: Counts) -> str:
    """``unread 3, unseen 1 (comment: 2 unread, 1 unseen; digest: 1 unread, 0 unseen)``."""
    line = f"unread {counts.unread}, unseen {counts.unseen}"
    if counts.by_type:
        parts = [f"{t}: {c.unread} unread, {c.unseen} unseen" for t, c in counts.by_type.items()]
        line += " (" + "; ".join(parts) + ")"
    return line


def counts_json(counts: Counts) -> dict[str, Any]:
    """The JSON of ``GET /api/v1/notifications/counts``."""
    return {
        "unread": counts.unread,
        "unseen": counts.unseen,
        "by_type": {t: {"unread": c.unread, "unseen": c.unseen} for t, c in counts.by_type.items()},
    }


async def _inbox(args: argparse.Namespace, options: ClientOptions) -> int:
    async with Inbox(options.server, token=options.token, user=options.user) as inbox:
        match args.action:
            case "list":
                page = await inbox.list(
                    types=args.types,
                    priorities=args.priorities,
                    read=args.read,
                    seen=args.seen,
                    archived=args.archived,
                    created_after=args.created_after,
                    created_before=args.created_before,
                    limit=args.limit,
                    before_id=args.before_id,
                )
                for n in page.notifications:
                    if args.json:
                        _print_json(n.to_json())
                    else:
                        flags = "".join(
                            mark
                            for mark, on in (("R", n.read), ("S", n.seen), ("A", n.archived))
                            if on
                        )
                        print(f"{format_notification(n)} [{flags or '-'}]", flush=True)
                if not args.json and page.next_before_id is not None:
                    print(f"more: --before-id {page.next_before_id}", file=sys.stderr)
            case "counts":
                counts = await inbox.counts()
                if args.json:
                    _print_json(counts_json(counts))
                else:
                    print(format_counts(counts), flush=True)
            case "seen" | "read-all":
                if args.action == "seen":
                    result = await inbox.mark_seen(args.up_to)
                    key = "seen"
                else:
                    result = await inbox.mark_all_read(args.type, up_to_id=args.up_to)
                    key = "read"
                if args.json:
                    _print_json({"up_to_id": result.up_to_id, key: result.changed})
                else:
                    print(f"marked {result.changed} {key} (up to #{result.up_to_id})", flush=True)
            case "read" | "archive" | "unarchive":
                act = {"read": inbox.mark_read, "archive": inbox.archive}.get(
                    args.action, inbox.unarchive
                )
                notification = await act(args.notification_id)
                if args.json:
                    _print_json(notification.to_json())
                else:
                    print(f"{args.action}: {format_notification(notification)}", flush=True)
            case "delete":
                await inbox.delete(args.notification_id)
                if args.json:
                    _print_json({"deleted": args.notification_id})
                else:
                    print(f"deleted notification {args.notification_id}", flush=True)
            case "prefs":
                if args.muted is not None or args.mute or args.unmute:
                    if args.muted is not None:
                        muted = {t.strip() for t in args.muted.split(",") if t.strip()}
                    else:
                        muted = set((await inbox.preferences()).muted_types)
                    muted = (muted | set(args.mute)) - set(args.unmute)
                    preferences = await inbox.update_preferences(muted_types=sorted(muted))
                else:
                    preferences = await inbox.preferences()
                if args.json:
                    _print_json({"muted_types": list(preferences.muted_types)})
                else:
                    shown = ", ".join(preferences.muted_types) or "(none)"
                    print(f"muted types: {shown}", flush=True)
    return 0
