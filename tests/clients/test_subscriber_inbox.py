"""The Subscriber's inbox commands and typed inbox events, on two live sessions of one user."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from tidings.client import (
    Backoff,
    CommandError,
    Counts,
    Inbox,
    InboxEvent,
    NotificationArchived,
    NotificationDeleted,
    NotificationMarkedRead,
    NotificationsMarkedRead,
    NotificationsSeen,
    NotificationUnarchived,
    PreferencesUpdated,
    Publisher,
    Subscriber,
    TypeCounts,
)

from tests.harness import ServerProcess

FAST = Backoff(base=0.05, cap=0.2, after_abort=0.3)


class EventLog:
    """An ``on_event`` listener that records the events and lets a test await one."""

    def __init__(self) -> None:
        self.events: list[InboxEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: InboxEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(
        self, predicate: Callable[[InboxEvent], bool], *, timeout: float = 10.0
    ) -> InboxEvent:
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                self._changed.clear()
                await self._changed.wait()

    async def wait_for_event(self, expected: InboxEvent) -> None:
        await self.wait_for(lambda e: e == expected)


async def test_commands_are_answered_and_every_session_hears_the_events(
    server: ServerProcess,
) -> None:
    mine, other = EventLog(), EventLog()
    async with (
        Publisher(server.grpc_addr) as publisher,
        Subscriber(server.grpc_addr, user="u", backoff=FAST, on_event=mine) as sub,
        Subscriber(server.grpc_addr, user="u", backoff=FAST, on_event=other) as device,
    ):
        await sub.wait_connected()
        await device.wait_connected()
        a = (await publisher.create("u", "comment", "a")).notification.id
        b = (await publisher.create("u", "digest", "b")).notification.id
        assert [(await anext(sub)).id for _ in range(2)] == [a, b]

        assert await sub.get_counts() == Counts(
            unread=2, unseen=2, by_type={"comment": TypeCounts(1, 1), "digest": TypeCounts(1, 1)}
        )
        assert await sub.mark_seen(a) == a
        await other.wait_for_event(NotificationsSeen(up_to_id=a))
        assert await sub.mark_seen() == b  # absent: the newest
        await other.wait_for_event(NotificationsSeen(up_to_id=b))
        assert (await sub.get_counts()).unseen == 0

        assert await sub.mark_all_read("digest") == b
        await other.wait_for_event(NotificationsMarkedRead(up_to_id=b, notification_type="digest"))
        assert (await sub.get_counts()).unread == 1

        await sub.archive(a)
        await other.wait_for_event(NotificationArchived(a))
        assert await sub.get_counts() == Counts(0, 0, {})
        await sub.unarchive(a)
        await other.wait_for_event(NotificationUnarchived(a))
        await sub.mark_read(a)
        await other.wait_for_event(NotificationMarkedRead(a))
        await sub.delete(b)
        await other.wait_for_event(NotificationDeleted(b))

        assert await sub.update_preferences(["news", "build", "news"]) == ("build", "news")
        await other.wait_for_event(PreferencesUpdated(("build", "news")))

        # the session that sent them heard them as events too, in order
        assert mine.events == [
            NotificationsSeen(a),
            NotificationsSeen(b),
            NotificationsMarkedRead(b, "digest"),
            NotificationArchived(a),
            NotificationUnarchived(a),
            NotificationMarkedRead(a),
            NotificationDeleted(b),
            PreferencesUpdated(("build", "news")),
        ]

    async with Inbox(server.grpc_addr, user="u") as inbox:
        assert [n.id for n in (await inbox.list()).notifications] == [a]
        assert (await inbox.preferences()).muted_types == ("build", "news")


async def test_refused_commands_raise_and_the_session_goes_on(server: ServerProcess) -> None:
    async with Subscriber(server.grpc_addr, user="u", backoff=FAST) as sub:
        await sub.wait_connected()
        for command in (sub.archive, sub.unarchive, sub.delete):
            with pytest.raises(CommandError) as refused:
                await command(999_999)
            assert refused.value.code == "not_found"
        with pytest.raises(CommandError) as bad:
            await sub.update_preferences(["x" * 65])
        assert bad.value.code == "invalid_message"
        assert await sub.get_counts() == Counts(0, 0, {})


async def test_an_other_sessions_event_does_not_answer_a_different_command(
    server: ServerProcess,
) -> None:
    """Another device's archive of a different id arrives while ours waits: ours still
    resolves with its own answer, and both events reach ``on_event``."""
    log = EventLog()
    async with (
        Publisher(server.grpc_addr) as publisher,
        Subscriber(server.grpc_addr, user="u", backoff=FAST, on_event=log) as sub,
        Inbox(server.grpc_addr, user="u") as inbox,
    ):
        await sub.wait_connected()
        a = (await publisher.create("u", "t", "a")).notification.id
        b = (await publisher.create("u", "t", "b")).notification.id
        await asyncio.gather(inbox.archive(a), sub.archive(b))
        await log.wait_for_event(NotificationArchived(a))
        assert NotificationArchived(b) in log.events


async def test_muted_types_are_not_pushed_unless_sent_with_ignore_mutes(
    server: ServerProcess,
) -> None:
    async with (
        Publisher(server.grpc_addr) as publisher,
        Subscriber(server.grpc_addr, user="u", backoff=FAST) as sub,
    ):
        await sub.wait_connected()
        await sub.update_preferences(["digest"])
        await publisher.create("u", "digest", "muted")
        alert = await publisher.create("u", "digest", "security", ignore_mutes=True)
        gone = await publisher.create(
            "u", "news", "expires", expires_at=datetime.now(UTC) + timedelta(seconds=30)
        )
        got = [await anext(sub), await anext(sub)]
        assert [n.id for n in got] == [alert.notification.id, gone.notification.id]
        assert got[0].ignore_mutes and got[1].expires_at is not None
