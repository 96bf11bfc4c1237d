"""The inbox rules across two nodes (one store, one bus): deletes, mutes, seen and read
all, archive, each told once to every session of the user, wherever it is."""

from __future__ import annotations

import pytest

from server.engine import Session
from server.engine.events import (
    ConnectionEstablished,
    Delivery,
    NotificationArchived,
    NotificationDeleted,
    NotificationsMarkedRead,
    NotificationsSeen,
    NotificationUnarchived,
    Ping,
    Pong,
    PreferencesUpdated,
)
from server.engine.models import Content, NewNotification
from tests.cluster.test_cluster_memory import Pair, connected, pair, seen
from tests.engine.fakes import pending, take

pytestmark = pytest.mark.timeout(20)

__all__ = ["pair"]  # the fixture


def note(user: str, type_: str = "t", *, ignore_mutes: bool = False) -> NewNotification:
    return NewNotification(user, Content(type=type_, title="hi"), ignore_mutes=ignore_mutes)


async def only_pong(session: Session) -> None:
    await session.handle(Ping())
    (event,) = await take(session, 1)
    assert isinstance(event, Pong)


async def test_a_notification_deleted_on_a_is_not_replayed_by_b(pair: Pair) -> None:
    a, b = pair.engine("a"), pair.engine("b")
    kept, gone = [(await a.create(note("u"))).notification.id for _ in range(2)]
    await a.delete("u", gone)
    for since in (None, 0):
        session = await b.connect("u", since=since)
        hello, replayed = await take(session, 2)
        assert isinstance(hello, ConnectionEstablished) and hello.queued == 1
        assert isinstance(replayed, Delivery) and replayed.notification.id == kept
        await only_pong(session)


async def test_a_mute_set_on_a_applies_to_a_session_opened_later_on_b(pair: Pair) -> None:
    a, b = pair.engine("a"), pair.engine("b")
    await a.update_preferences("u", ["m"])
    queued = (await a.create(note("u", "m"))).notification.id
    session = await connected(b, "u")  # nothing replayed: the muted one is not owed
    assert queued > 0 and pending(session) == 0
    await seen(b, "u", 1)
    await a.create(note("u", "m"))
    loud = (await a.create(note("u", "m", ignore_mutes=True))).notification.id
    (event,) = await take(session, 1)
    assert isinstance(event, Delivery) and event.notification.id == loud
    await only_pong(session)


async def test_a_mute_changed_on_a_reaches_a_live_session_on_b_at_once(pair: Pair) -> None:
    a, b = pair.engine("a"), pair.engine("b")
    session = await connected(b, "u")
    await seen(a, "u", 1)
    await a.update_preferences("u", ["m", "k"])
    assert await take(session, 1) == [PreferencesUpdated(("k", "m"))]
    await a.create(note("u", "m"))
    plain = (await a.create(note("u"))).notification.id
    (event,) = await take(session, 1)
    assert isinstance(event, Delivery) and event.notification.id == plain
    await only_pong(session)


async def test_seen_read_all_archive_and_delete_reach_b_once(pair: Pair) -> None:
    a, b = pair.engine("a"), pair.engine("b")
    ids = [(await a.create(note("u", t))).notification.id for t in ("x", "y")]
    here, there = await connected(a, "u"), await connected(b, "u")
    await take(here, 2)
    await take(there, 2)
    await seen(a, "u", 2)
    await seen(b, "u", 2)
    await a.mark_seen("u", None)
    await a.mark_all_read("u", "x", None)
    await b.archive("u", ids[0])
    await b.unarchive("u", ids[0])
    await a.delete("u", ids[1])
    expected = [
        NotificationsSeen(ids[1]),
        NotificationsMarkedRead(ids[1], "x"),
        NotificationArchived(ids[0]),
        NotificationUnarchived(ids[0]),
        NotificationDeleted(ids[1]),
    ]
    for session in (here, there):
        assert set(await take(session, 5)) == set(expected)
        await only_pong(session)


async def test_counts_agree_on_both_nodes(pair: Pair) -> None:
    a, b = pair.engine("a"), pair.engine("b")
    for t in ("x", "x", "y"):
        await a.create(note("u", t))
    await b.update_preferences("u", ["y"])
    await b.mark_seen("u", None)
    assert await a.counts("u") == await b.counts("u")
    counts = await a.counts("u")
    assert (counts.unread, counts.unseen) == (2, 0)
    assert counts.by_type["y"].unread == 1
