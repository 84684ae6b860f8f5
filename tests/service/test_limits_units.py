"""The in-memory pieces behind the HTTP limits: token buckets refill at their rate, their
tables stay bounded whatever keys clients invent, and open-wait slots are released."""

from __future__ import annotations

import pytest

from creditgate.api.limits import RecentKeys, TokenBuckets, _bucket_of, rate_limited
from creditgate.api.waiter import GenerationNotifier


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_burst_then_refill() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # one token comes in 1/rate seconds
    assert buckets.take("b") == 0.0  # another key has its own bucket
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    clock.now += 60  # never more than the burst
    assert [buckets.take("a") for _ in range(4)][-1] > 0


def test_bucket_table_is_bounded() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1, max_keys=100, clock=Clock())
    for n in range(10_000):
        buckets.take(f"10.0.{n // 256}.{n % 256}")
    assert len(buckets) == 100


def test_recent_keys_are_bounded_and_forget_the_oldest() -> None:
    keys = RecentKeys(max_keys=3)
    a, b, c, d = (("user", k) for k in "abcd")
    for key in (a, b, c):
        keys.add(key)
    keys.add(a)  # seen again: now the most recent
    keys.add(d)
    assert a in keys and c in keys and d in keys
    assert b not in keys
    assert ("other-user", "a") not in keys
    keys.add(("u", "x" * 255))
    assert len(keys) == 3


def test_ipv6_clients_share_a_bucket_per_64() -> None:
    assert _bucket_of("2001:db8:1:2:aaaa::1") == _bucket_of("2001:db8:1:2:ffff::9")
    assert _bucket_of("2001:db8:1:2::1") != _bucket_of("2001:db8:1:3::1")
    assert _bucket_of("198.51.100.1") != _bucket_of("198.51.100.2")
    assert _bucket_of(None) == "unknown"


def test_rate_limited_rounds_up_to_whole_seconds() -> None:
    assert rate_limited("ip", 0.2) == (
        {"scope": "ip", "retry_after_seconds": 1},
        {"Retry-After": "1"},
    )
    assert rate_limited("replays", 12.1)[0]["retry_after_seconds"] == 13


def test_wait_slots_per_user_and_in_all_are_released() -> None:
    notifier = GenerationNotifier("")
    caps = {"per_user": 2, "max_open": 3}
    with notifier.wait_slot("u1", **caps) as a, notifier.wait_slot("u1", **caps) as b:
        with notifier.wait_slot("u1", **caps) as c:
            assert (a, b, c) == (True, True, False)
        with notifier.wait_slot("u2", **caps) as d, notifier.wait_slot("u3", **caps) as e:
            assert (d, e) == (True, False)  # three open in all
    # Everything was released: three users can each open one again.
    with (
        notifier.wait_slot("u1", **caps) as f,
        notifier.wait_slot("u2", **caps) as g,
        notifier.wait_slot("u3", **caps) as h,
    ):
        assert (f, g, h) == (True, True, True)
