"""CreateNotifications: a batch of creates, all committed in one transaction or none.

Runs on SQLite and PostgreSQL (the ``database_url`` fixture behind ``node``).
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from tidings.v1 import admin_pb2, notification_pb2, stream_pb2

from server.rpc.errors import ERROR_FIELD_KEY
from tests.auth_tokens import token
from tests.grpc.conftest import ADMIN, Node, auth


def item(user: str, **fields: Any) -> admin_pb2.CreateNotificationRequest:
    fields.setdefault("type", "t")
    fields.setdefault("title", "hello")
    return admin_pb2.CreateNotificationRequest(user_id=user, **fields)


async def batch(
    node: Node, items: list[admin_pb2.CreateNotificationRequest], tok: str = ADMIN
) -> admin_pb2.CreateNotificationsResponse:
    return await node.admin.CreateNotifications(
        admin_pb2.CreateNotificationsRequest(notifications=items), metadata=auth(tok)
    )


async def refused(node: Node, items: list[admin_pb2.CreateNotificationRequest]) -> str:
    """The field a refused batch blames (INVALID_ARGUMENT is asserted)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await batch(node, items)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
    fields = [v for k, v in caught.value.trailing_metadata() or () if k == ERROR_FIELD_KEY]
    assert len(fields) == 1, caught.value.trailing_metadata()
    return str(fields[0])


async def inbox(node: Node, user: str) -> list[int]:
    page = await node.users.ListNotifications(
        stream_pb2.ListNotificationsRequest(limit=200), metadata=auth(token(user))
    )
    return [n.id for n in page.notifications]


async def test_a_batch_is_created_in_order_and_delivered_live_in_id_order(node: Node) -> None:
    alice, bob = await node.connect("alice"), await node.connect("bob")
    await alice.hello()
    await bob.hello()
    users = ["alice", "bob", "carol"] * 4
    answer = await batch(node, [item(u, title=f"n{i}") for i, u in enumerate(users)])

    assert list(answer.created) == [True] * len(users)
    ids = [n.id for n in answer.notifications]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [n.user_id for n in answer.notifications] == users
    assert [n.title for n in answer.notifications] == [f"n{i}" for i in range(len(users))]
    assert await alice.notifications(4) == ids[0::3]
    assert await bob.notifications(4) == ids[1::3]
    # carol was offline: hers are queued and replayed on connect, oldest first.
    carol = await node.connect("carol")
    assert (await carol.hello()).queued == 4
    assert await carol.notifications(4) == ids[2::3]


async def test_one_bad_item_refuses_the_whole_batch_and_writes_nothing(node: Node) -> None:
    items = [item("dora"), item("dora"), item("erin"), item("erin", title=""), item("dora")]
    assert await refused(node, items) == "notifications[3].title"
    assert await inbox(node, "dora") == [] and await inbox(node, "erin") == []
    assert await node.engine._store.last_id() == 0
    # The same batch, fixed, goes through whole.
    items[3] = item("erin")
    answer = await batch(node, items)
    assert len(answer.notifications) == 5 and all(answer.created)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (item("u", title="x" * 201), "notifications[1].title"),
        (item("u", type="x" * 65), "notifications[1].type"),
        (item("u", message="x" * 4001), "notifications[1].message"),
        (item("x" * 129), "notifications[1].user_id"),
        (item(""), "notifications[1].user_id"),
        (item("u", data_json="[1]"), "notifications[1].data_json"),
        (item("u", priority=9), "notifications[1].priority"),
        (item("u", idempotency_key="k" * 256), "notifications[1].idempotency_key"),
    ],
)
async def test_oversized_or_malformed_fields_name_the_item(
    node: Node, bad: admin_pb2.CreateNotificationRequest, field: str
) -> None:
    assert await refused(node, [item("u"), bad, item("u")]) == field
    assert await node.engine._store.last_id() == 0


@pytest.mark.parametrize("count", [0, 1001])
async def test_a_batch_holds_1_to_1000_items(node: Node, count: int) -> None:
    assert await refused(node, [item(f"u{i}") for i in range(count)]) == "notifications"
    assert await node.engine._store.last_id() == 0


async def test_a_batch_of_1000_is_accepted(node: Node) -> None:
    answer = await batch(node, [item(f"u{i % 37}") for i in range(1000)])
    assert len(answer.notifications) == 1000 and all(answer.created)


async def test_idempotency_is_per_item_and_a_retried_batch_returns_the_same_ids(
    node: Node,
) -> None:
    first = await node.create("fay", idempotency_key="earlier")
    items = [
        item("fay", idempotency_key="a"),
        item("gus", idempotency_key="a"),  # keys are per user: a different notification
        item("fay"),  # no key: always new
        item("fay", idempotency_key="earlier"),  # an earlier create's key
        item("fay", idempotency_key="a"),  # repeats item 0 of this batch: deduplicated
    ]
    answer = await batch(node, items)
    ids = [n.id for n in answer.notifications]
    assert list(answer.created) == [True, True, True, False, False]
    assert ids[3] == first.id and ids[4] == ids[0]
    assert len({ids[0], ids[1], ids[2], first.id}) == 4

    retry = await batch(node, [items[0], items[1], items[3], items[4]])
    assert [n.id for n in retry.notifications] == [ids[0], ids[1], ids[3], ids[4]]
    assert list(retry.created) == [False] * 4
    assert sorted(await inbox(node, "fay")) == sorted({first.id, ids[0], ids[2]})


async def test_batch_needs_the_admin_role(node: Node) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await batch(node, [item("hal")], tok=token("hal"))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await inbox(node, "hal") == []


async def test_batch_fields_and_defaults(node: Node) -> None:
    high = notification_pb2.PRIORITY_HIGH
    answer = await batch(
        node, [item("ivy", message="m", data_json='{"a": [1, 2]}', priority=high), item("ivy")]
    )
    full, bare = answer.notifications
    assert (full.message, full.data_json) == ("m", '{"a":[1,2]}')
    assert full.priority == notification_pb2.PRIORITY_HIGH
    assert (bare.message, bare.data_json) == ("", "{}")
    assert bare.priority == notification_pb2.PRIORITY_NORMAL
