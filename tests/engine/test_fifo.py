"""The list-backed FIFO behind session outboxes."""

import pytest

from server.engine.fifo import Fifo


def test_first_in_first_out_and_reuse() -> None:
    q: Fifo[int] = Fifo()
    assert not q
    for i in range(5):
        q.append(i)
    assert [q.popleft(), q.popleft()] == [0, 1]
    q.append(5)
    assert len(q) == 4
    assert list(q) == [2, 3, 4, 5]
    assert [q.popleft() for _ in range(4)] == [2, 3, 4, 5]
    assert not q
    q.append(6)
    assert q.popleft() == 6
    with pytest.raises(IndexError):
        q.popleft()


def test_clear() -> None:
    q: Fifo[str] = Fifo()
    q.append("a")
    q.append("b")
    q.popleft()
    q.clear()
    assert len(q) == 0
    assert list(q) == []


def test_take_hands_over_the_oldest_items_up_to_a_limit_in_order() -> None:
    q: Fifo[int] = Fifo()
    assert q.take(3) == []
    for i in range(6):
        q.append(i)
    q.popleft()
    assert q.take(2) == [1, 2]  # from the middle of the list
    assert len(q) == 3 and list(q) == [3, 4, 5]
    q.append(6)
    assert q.take(10) == [3, 4, 5, 6]  # the rest: the queue is empty again
    assert not q and len(q) == 0
    q.append(7)
    assert q.take(1) == [7]
    assert not q
