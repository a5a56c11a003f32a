"""A token bucket per connection; the caller passes the clock in (stdlib only)."""

from __future__ import annotations


class TokenBucket:
    """Allows ``burst`` messages at once and ``rate`` per second sustained.

    Args:
        rate: tokens added per second.
        burst: the bucket's size, and its content at start.
        now: the current time in seconds, from the caller's monotonic clock.
    """

    __slots__ = ("burst", "rate", "stamp", "strikes", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now
        self.strikes = 0  # refusals since the last allowed message

    def take(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens if the bucket holds them.

        Returns:
            0.0 when allowed; otherwise the seconds to wait until it would be.
        """
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            self.strikes = 0
            return 0.0
        self.strikes += 1
        return (cost - self.tokens) / self.rate
