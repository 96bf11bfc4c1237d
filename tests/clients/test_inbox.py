"""The Python SDK's inbox calls (``Inbox``) and create options against a real server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from tidings.client import (
    Counts,
    Inbox,
    InvalidArgumentError,
    MarkResult,
    NewNotification,
    NotFoundError,
    Preferences,
    Priority,
    Publisher,
    TypeCounts,
)

from tests.harness import ServerProcess


async def _create(publisher: Publisher, user: str, *specs: tuple[str, str]) -> list[int]:
    """One notification per (type, title), in order; their ids."""
    return [(await publisher.create(user, t, title)).notification.id for t, title in specs]


async def test_create_carries_expires_at_and_ignore_mutes(server: ServerProcess) -> None:
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    async with Publisher(server.grpc_addr) as publisher:
        result = await publisher.create(
            "u1", "alert", "Sign-in", expires_at=later, ignore_mutes=True
        )
        n = result.notification
        assert (n.expires_at, n.ignore_mutes) == (later, True)
        assert (n.seen, n.seen_at, n.archived, n.archived_at) == (False, None, False, None)
        assert n.to_json()["expires_at"] == later.strftime("%Y-%m-%dT%H:%M:%S.000Z")

        plain = (await publisher.create("u1", "alert", "Plain")).notification
        assert (plain.expires_at, plain.ignore_mutes) == (None, False)

        [made] = await publisher.create_many(
            [NewNotification("u1", "alert", "Batch", expires_at=later, ignore_mutes=True)]
        )
        assert (made.notification.expires_at, made.notification.ignore_mutes) == (later, True)

        # (the server's clock counts whole milliseconds: "now" may still be ahead of it)
        just_past = datetime.now(UTC) - timedelta(milliseconds=5)
        with pytest.raises(InvalidArgumentError) as refused:
            await publisher.create("u1", "alert", "Too late", expires_at=just_past)
        assert refused.value.field == "expires_at"
        with pytest.raises(ValueError, match="timezone-aware"):
            await publisher.create("u1", "alert", "Naive", expires_at=datetime.now())

        assert await publisher.broadcast(
            "alert", "To both", user_ids=["u1", "u2"], expires_at=later, ignore_mutes=True
        ) == 2  # fmt: skip
    async with Inbox(server.grpc_addr, user="u2") as inbox:
        [got] = (await inbox.list()).notifications
        assert (got.title, got.expires_at, got.ignore_mutes) == ("To both", later, True)
        async with Inbox(server.grpc_addr, user="u1") as mine:
            titles = [n.title for n in (await mine.list()).notifications]
        assert titles == ["To both", "Batch", "Plain", "Sign-in"]  # nothing of the refused


async def test_mark_seen_clears_the_badge_up_to_an_id(server: ServerProcess) -> None:
    async with Publisher(server.grpc_addr) as publisher, Inbox(server.grpc_addr, user="u") as inbox:
        a, b, c = await _create(publisher, "u", ("comment", "a"), ("comment", "b"), ("digest", "c"))
        assert await inbox.counts() == Counts(
            unread=3,
            unseen=3,
            by_type={"comment": TypeCounts(2, 2), "digest": TypeCounts(1, 1)},
        )
        assert await inbox.mark_seen(b) == MarkResult(up_to_id=b, changed=2)
        counts = await inbox.counts()
        assert (counts.unread, counts.unseen) == (3, 1)
        assert [n.id for n in (await inbox.list(seen=False)).notifications] == [c]
        first_seen = {n.id: n.seen_at for n in (await inbox.list(seen=True)).notifications}
        assert set(first_seen) == {a, b} and all(first_seen.values())

        # absent: up to the newest; the ones already seen keep their seen_at
        assert await inbox.mark_seen() == MarkResult(up_to_id=c, changed=1)
        again = {n.id: n.seen_at for n in (await inbox.list()).notifications}
        assert again[a] == first_seen[a] and again[c] is not None
        assert (await inbox.counts()).unseen == 0
        assert await inbox.mark_seen() == MarkResult(up_to_id=c, changed=0)


async def test_mark_all_read_of_one_type_and_up_to_an_id(server: ServerProcess) -> None:
    async with Publisher(server.grpc_addr) as publisher, Inbox(server.grpc_addr, user="u") as inbox:
        a, b, c, d = await _create(
            publisher, "u", ("comment", "a"), ("digest", "b"), ("comment", "c"), ("comment", "d")
        )
        await inbox.archive(a)  # archived ones are marked too
        assert await inbox.mark_all_read("comment", up_to_id=c) == MarkResult(c, 2)
        unread = [n.id for n in (await inbox.list(read=False)).notifications]
        assert unread == [d, b]
        assert (await inbox.list(archived=True)).notifications[0].read

        result = await inbox.mark_all_read()
        assert result == MarkResult(up_to_id=d, changed=2)
        assert await inbox.unread_count() == 0 == (await inbox.counts()).unread


async def test_archive_unarchive_and_delete(server: ServerProcess) -> None:
    async with Publisher(server.grpc_addr) as publisher, Inbox(server.grpc_addr, user="u") as inbox:
        a, b = await _create(publisher, "u", ("comment", "a"), ("comment", "b"))
        archived = await inbox.archive(a)
        assert archived.archived and archived.archived_at is not None
        assert (await inbox.archive(a)).archived_at == archived.archived_at  # idempotent
        assert [n.id for n in (await inbox.list()).notifications] == [b]
        assert [n.id for n in (await inbox.list(archived=True)).notifications] == [a]
        assert (await inbox.counts()).unread == 1

        back = await inbox.unarchive(a)
        assert (back.archived, back.archived_at) == (False, None)
        assert [n.id for n in (await inbox.list()).notifications] == [b, a]

        await inbox.delete(a)
        assert [n.id for n in (await inbox.list()).notifications] == [b]
        assert (await inbox.counts()).unread == 1
        for act in (inbox.delete, inbox.archive, inbox.unarchive, inbox.mark_read):
            with pytest.raises(NotFoundError):
                await act(a)

    async with Inbox(server.grpc_addr, user="someone-else") as other:
        with pytest.raises(NotFoundError):
            await other.archive(b)
        with pytest.raises(NotFoundError):
            await other.delete(b)


async def test_list_filters_and_a_cursor_that_holds_while_new_ones_arrive(
    server: ServerProcess,
) -> None:
    async with Publisher(server.grpc_addr) as publisher, Inbox(server.grpc_addr, user="u") as inbox:
        ids = []
        for i, (kind, priority) in enumerate(
            [("a", "low"), ("b", "high"), ("a", "urgent"), ("c", "normal"), ("b", "low")]
        ):
            made = await publisher.create("u", kind, f"n{i}", priority=priority)
            ids.append(made.notification.id)
        await inbox.mark_read(ids[1])

        async def ids_of(**filters: object) -> list[int]:
            page = await inbox.list(**filters)  # type: ignore[arg-type]
            return [n.id for n in page.notifications]

        assert await ids_of(types=["a", "c"]) == [ids[3], ids[2], ids[0]]
        assert await ids_of(priorities=[Priority.LOW, "urgent"]) == [ids[4], ids[2], ids[0]]
        assert await ids_of(read=True) == [ids[1]]
        assert await ids_of(read=False, types=["b"]) == [ids[4]]
        everything = (await inbox.list()).notifications
        middle = everything[2].created_at
        assert middle is not None
        after = await ids_of(created_after=middle)
        before = await ids_of(created_before=middle)
        assert ids[2] not in after and ids[2] not in before  # strict on both ends
        assert set(after) <= set(ids[3:]) and set(before) <= set(ids[:2])

        first = await inbox.list(limit=2)
        assert [n.id for n in first.notifications] == [ids[4], ids[3]] and first.has_more
        await publisher.create("u", "a", "newer")  # must not shift the next page
        second = await inbox.list(limit=2, before_id=first.next_before_id)
        assert [n.id for n in second.notifications] == [ids[2], ids[1]]
        third = await inbox.list(limit=2, before_id=second.next_before_id)
        assert [n.id for n in third.notifications] == [ids[0]]
        assert not third.has_more and third.next_before_id is None


async def test_preferences_are_stored_and_mute_the_totals(server: ServerProcess) -> None:
    async with Publisher(server.grpc_addr) as publisher, Inbox(server.grpc_addr, user="u") as inbox:
        assert await inbox.preferences() == Preferences(muted_types=())
        stored = await inbox.update_preferences(muted_types=["digest", "build", "digest"])
        assert stored == Preferences(muted_types=("build", "digest"))
        assert await inbox.preferences() == stored

        await _create(publisher, "u", ("digest", "weekly"), ("comment", "hi"))
        await publisher.create("u", "digest", "security", ignore_mutes=True)
        counts = await inbox.counts()
        assert (counts.unread, counts.unseen) == (2, 2)  # the muted digest is left out
        assert counts.by_type == {"digest": TypeCounts(2, 2), "comment": TypeCounts(1, 1)}
        assert len((await inbox.list()).notifications) == 3  # muted ones are still listed

        for bad in (["x" * 65], [""], [f"t{i}" for i in range(257)]):
            with pytest.raises(InvalidArgumentError) as refused:
                await inbox.update_preferences(muted_types=bad)
            assert refused.value.field == "muted_types"
        assert await inbox.preferences() == stored  # a refused update changes nothing
        assert await inbox.update_preferences(muted_types=[]) == Preferences(())
