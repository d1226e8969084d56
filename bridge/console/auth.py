"""Login throttling: a temporary lockout per account, kept in the state database so every
console process shares it, and a token bucket per client address, so guessing is slow
both against one account and across many.

A locked account answers like a wrong password (the attacker learns nothing), and the
lockout ends by itself after `console.lockout_minutes`: a permanent one would let anyone
lock the compliance team out.
"""

from __future__ import annotations

from collections import OrderedDict

from imbridge.db import Conn
from imbridge.ratelimit import TokenBucket

ADDRESS_RATE = 10 / 60.0
"""Login attempts per second an address earns back (10 a minute)."""
ADDRESS_BURST = 10.0
MAX_ADDRESSES = 4096


def locked(conn: Conn, username: str, now_us: int) -> bool:
    row = conn.execute(
        "SELECT locked_until_us FROM console_logins WHERE username = ?", (username,)
    ).fetchone()
    return row is not None and int(row[0]) > now_us


def failed(conn: Conn, username: str, now_us: int, *, attempts: int, lockout_us: int) -> bool:
    """Counts a failure; True when it locks the account (the count starts again after)."""
    row = conn.execute(
        "SELECT failures FROM console_logins WHERE username = ?", (username,)
    ).fetchone()
    failures = (int(row[0]) if row else 0) + 1
    lock = failures >= attempts
    conn.execute(
        "INSERT INTO console_logins VALUES (?, ?, ?) ON CONFLICT (username) DO UPDATE"
        " SET failures = excluded.failures, locked_until_us = excluded.locked_until_us",
        (username, 0 if lock else failures, now_us + lockout_us if lock else 0),
    )
    return lock


def succeeded(conn: Conn, username: str) -> None:
    conn.execute("DELETE FROM console_logins WHERE username = ?", (username,))


class AddressLimiter:
    """Per-address token buckets, the oldest forgotten past `MAX_ADDRESSES` so a flood
    of addresses cannot grow memory without bound."""

    def __init__(self) -> None:
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, address: str, now: float) -> bool:
        bucket = self._buckets.pop(address, None) or TokenBucket.full(
            ADDRESS_RATE, ADDRESS_BURST, now
        )
        self._buckets[address] = bucket
        while len(self._buckets) > MAX_ADDRESSES:
            self._buckets.popitem(last=False)
        return bucket.take(now) == 0.0
