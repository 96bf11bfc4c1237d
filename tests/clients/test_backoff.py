"""Backoff arithmetic and the Subscriber's small pure parts, without a network."""

from __future__ import annotations

import random

import pytest
from tidings.client import Backoff, Subscription, full_jitter
from tidings.client.dedupe import RecentIds


def test_full_jitter_scales_a_sample_of_the_capped_exponential() -> None:
    assert full_jitter(0, base=0.5, cap=30, sample=1.0) == 0.5
    assert full_jitter(3, base=0.5, cap=30, sample=0.5) == 2.0
    assert full_jitter(10, base=0.5, cap=30, sample=0.5) == 15.0
    assert full_jitter(10_000, base=0.5, cap=30, sample=1.0) == 30.0
    assert full_jitter(4, base=0.5, cap=30, sample=0.0) == 0.0


def test_a_seeded_backoff_is_reproducible_and_within_its_ceiling() -> None:
    one = Backoff(base=0.1, cap=1.0, random=random.Random(5).random).schedule(8)
    two = Backoff(base=0.1, cap=1.0, random=random.Random(5).random).schedule(8)
    assert one == two
    assert all(0 <= d <= min(1.0, 0.1 * 2**n) for n, d in enumerate(one))


def test_after_an_operator_disconnect_the_wait_is_longer() -> None:
    backoff = Backoff(base=1, cap=8, after_abort=20, random=lambda: 0.25)
    assert backoff.delay(2) == 1.0
    assert backoff.delay_after_abort(2) == 21.0


@pytest.mark.parametrize(
    "kwargs", [{"base": 0}, {"base": 2, "cap": 1}, {"max_attempts": 0}, {"after_abort": -1}]
)
def test_nonsense_backoff_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_subscription_rules_match_the_protocol() -> None:
    everything = Subscription()
    only_a = everything.subscribe(["a"])
    assert only_a == Subscription(types=frozenset({"a"}))
    assert only_a.subscribe(["b"]).types == frozenset({"a", "b"})
    assert only_a.unsubscribe(["a"]) == Subscription(types=frozenset())
    assert not only_a.unsubscribe(["a"]).admits("a")
    all_but_x = everything.unsubscribe(["x"])
    assert all_but_x.admits("y") and not all_but_x.admits("x")
    assert all_but_x.subscribe(["z"]) == Subscription(types=frozenset({"z"}))


def test_recent_ids_forget_the_oldest_beyond_capacity() -> None:
    seen = RecentIds(3)
    for i in (1, 2, 3, 2, 4):
        seen.add(i)
    assert 1 not in seen
    assert all(i in seen for i in (2, 3, 4))
    assert len(seen) == 3
