"""The token bucket, driven by a clock the test controls."""

from chat.ratelimit import TokenBucket


def test_burst_then_rate() -> None:
    """A full bucket allows the burst at once, then refills at the rate."""
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == 0.5  # half a second until one token
    assert bucket.take(0.5) == 0.0


def test_strikes_count_refusals_in_a_row() -> None:
    """Refusals count as strikes until a message is allowed again."""
    bucket = TokenBucket(rate=1.0, burst=1, now=0.0)
    bucket.take(0.0)
    for _ in range(4):
        bucket.take(0.0)
    assert bucket.strikes == 4
    bucket.take(10.0)
    assert bucket.strikes == 0


def test_bucket_never_exceeds_burst() -> None:
    """A long quiet spell refills to the burst, not beyond."""
    bucket = TokenBucket(rate=10.0, burst=2, now=0.0)
    assert [bucket.take(1000.0) == 0.0 for _ in range(3)] == [True, True, False]
