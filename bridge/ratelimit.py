"""A token bucket as plain arithmetic: the caller passes the clock, so tests and the
outbox share one implementation and nothing here sleeps."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    """`burst` tokens at most, refilled at `rate` per second; one token per send."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        return cls(rate=rate, burst=burst, tokens=burst, stamp=now)

    def take(self, now: float, cost: float = 1.0) -> float:
        """Takes `cost` tokens and returns 0.0, or returns how many seconds to wait
        before they are there (taking nothing)."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate
