"""The one retry policy: exponential ceilings, jitter inside them, the cap, a server's ask."""

from __future__ import annotations

import pytest

from worker.backoff import Backoff


def test_ceiling_doubles_per_retry_up_to_the_cap() -> None:
    policy = Backoff(base=0.5, cap=5.0)

    assert [policy.delay(n, rand=lambda: 1.0) for n in range(6)] == [0.5, 1, 2, 4, 5, 5]


def test_full_jitter_draws_below_the_ceiling_and_equal_jitter_keeps_half() -> None:
    assert Backoff(base=10, cap=100).delay(1, rand=lambda: 0.0) == 0.0
    assert Backoff(base=10, cap=100, floor=0.5).delay(1, rand=lambda: 0.0) == 10.0
    assert Backoff(base=10, cap=100, floor=0.5).delay(1, rand=lambda: 1.0) == 20.0


def test_a_servers_retry_after_raises_the_wait_but_never_past_the_cap() -> None:
    policy = Backoff(base=15, cap=600)

    assert policy.delay(0, at_least=120, rand=lambda: 0.5) == 120
    assert policy.delay(0, at_least=10_000, rand=lambda: 0.5) == 600


@pytest.mark.parametrize("retry", [64, 10_000, 10**9])
def test_retries_counted_forever_stay_finite_and_capped(retry: int) -> None:
    assert Backoff(base=30, cap=21_600).delay(retry, rand=lambda: 1.0) == 21_600
