"""What the overview page counts: messages per day by network and room, decisions that
held something back or flagged it, and how long flagged messages have waited. Counted
from indexed columns only (time, kind, network, room, action), never from bodies, so it
works on an encrypted archive without the key and stays cheap."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from imbridge.console.review import QueueItem
from imbridge.db import Conn

DAY_US = 86_400 * 1_000_000
TOP_ROOMS = 6
AGE_BUCKETS = (("< 1 day", 1), ("1-7 days", 7), ("7-30 days", 30), ("> 30 days", 10**6))


@dataclass(frozen=True, slots=True)
class Series:
    columns: list[str]
    series: dict[str, list[int]]


def _days(now: datetime, days: int) -> list[str]:
    start = now.date() - timedelta(days=days - 1)
    return [(start + timedelta(days=i)).isoformat() for i in range(days)]


def _fold(rows: list[tuple[str, str, int]], columns: list[str], top: int) -> Series:
    totals: dict[str, int] = defaultdict(int)
    for _, name, n in rows:
        totals[name] += n
    keep = sorted(totals, key=lambda k: -totals[k])[:top]
    index = {c: i for i, c in enumerate(columns)}
    series: dict[str, list[int]] = {k: [0] * len(columns) for k in keep}
    if len(totals) > top:
        series["other"] = [0] * len(columns)
    for day, name, n in rows:
        if day in index:
            series[name if name in keep else "other"][index[day]] += n
    return Series(columns, series)


def _day_sql(column: str) -> str:
    return f"date({column} / 1000000, 'unixepoch')"


def per_day(conn: Conn, now: datetime, days: int, by: str, kinds: tuple[str, ...]) -> Series:
    """Events per day for `days`, one series per value of `by` (network, room, action)."""
    columns = _days(now, days)
    since_us = int(datetime.fromisoformat(columns[0]).replace(tzinfo=UTC).timestamp() * 1e6)
    label = {"network": "network", "room": "network || ' ' || room", "action": "action"}[by]
    marks = ", ".join("?" * len(kinds))
    rows = conn.execute(
        f"SELECT {_day_sql('ts_us')} AS d, {label}, count(*) FROM archive_records "  # noqa: S608 - fixed names
        f"WHERE ts_us >= ? AND kind IN ({marks}) GROUP BY d, {label}",
        (since_us, *kinds),
    ).fetchall()
    return _fold([(str(d), str(k), int(n)) for d, k, n in rows], columns, TOP_ROOMS)


def decisions_per_day(conn: Conn, now: datetime, days: int) -> Series:
    """Denied and redacted decisions, and flags, per day."""
    columns = _days(now, days)
    since_us = int(datetime.fromisoformat(columns[0]).replace(tzinfo=UTC).timestamp() * 1e6)
    rows = conn.execute(
        f"SELECT {_day_sql('ts_us')} AS d, CASE kind WHEN 'flag' THEN 'flagged' "  # noqa: S608 - fixed names
        "ELSE action END AS a, count(*) FROM archive_records "
        "WHERE ts_us >= ? AND ((kind = 'decision' AND action IN ('deny', 'redact')) "
        "OR kind = 'flag') GROUP BY d, a",
        (since_us,),
    ).fetchall()
    named = {"deny": "denied", "redact": "redacted", "flagged": "flagged"}
    return _fold([(str(d), named.get(a, a), int(n)) for d, a, n in rows], columns, 3)


def queue_ages(items: list[QueueItem], now: datetime) -> Series:
    """Open flagged messages by how long they have waited."""
    counts = [0] * len(AGE_BUCKETS)
    for item in items:
        if not item.open:
            continue
        age = (now - item.flagged).total_seconds() / 86_400
        for i, (_, limit) in enumerate(AGE_BUCKETS):
            if age < limit:
                counts[i] += 1
                break
    return Series([label for label, _ in AGE_BUCKETS], {"open": counts})
