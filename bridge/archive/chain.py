"""The hash chain that makes the archive tamper-evident. Pure: no I/O here.

Each record's hash is SHA-256 over the previous record's hash followed by the record's
canonical encoding (a JSON array of its fields in a fixed order, UTF-8, no whitespace,
integers only), so editing, deleting, inserting or reordering a record breaks every hash
after it. An attacker with write access could recompute the whole chain, which is why the
head (last sequence number and hash) is also written, periodically and on demand, to a
separate append-only file: a rewritten or truncated chain no longer reaches those heads.

Retention deletes old records. A purge is itself a record in the chain, listing each run
of deleted records with the hash of the run's last record (its anchor), so the verifier
resumes the chain after the gap from that anchor, and a gap no purge record explains is
reported as a deletion.

A purge record could be forged too, so each is held to what a genuine one can say.
Record times never decrease (the store stamps each record with the later of the clock and
the newest record's time), so a purge may delete a run only if every record kept before
it is older than the purge's cutoff, and its cutoff lies at least a day before the purge
itself. Signed heads carry the time they were written: a head (S, at T) with T at or
after a purge's cutoff proves that records after S were younger than the cutoff, so no
run of that purge reaches past S; and no record up to S may be dated after T.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

GENESIS = hashlib.sha256(b"imbridge archive chain v1").digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One archive row as hashed. `body` is JSON text (or its ciphertext): the event as
    received, a decision, a delivery outcome, or a purge's ranges."""

    seq: int
    ts_us: int
    kind: str
    event_id: str | None = None
    network: str | None = None
    room: str | None = None
    sender: str | None = None
    dest_network: str | None = None
    dest_room: str | None = None
    action: str | None = None
    rule: str | None = None
    body: str = ""


COLUMNS = tuple(f.name for f in fields(Record))


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def values_of(record: Record) -> tuple[Any, ...]:
    return tuple(getattr(record, c) for c in COLUMNS)


def canonical(values: Sequence[Any]) -> bytes:
    """The bytes hashed for a record, from its column values in `COLUMNS` order."""
    return _ENCODER.encode(list(values)).encode("utf-8")


def link(prev: bytes, record: Record | Sequence[Any]) -> bytes:
    values = values_of(record) if isinstance(record, Record) else record
    return hashlib.sha256(prev + canonical(values)).digest()


DAY_US = 86_400 * 1_000_000
FUTURE_SLACK_US = 3600 * 1_000_000
"""How far a record's time may lie ahead of the verifier's clock (two hosts' clocks)."""


def iso(us: int) -> str:
    """A µs timestamp as UTC text, exactly (no float on the way)."""
    return (EPOCH + timedelta(microseconds=us)).isoformat()


def us_of(when: datetime) -> int:
    return (when - EPOCH) // timedelta(microseconds=1)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MalformedPurge(ValueError):
    """A purge record whose body cannot be what `retention.purge` wrote."""


def _int(value: Any, what: str) -> int:
    if type(value) is not int:  # bool is an int to isinstance, never a sequence number
        raise MalformedPurge(f"{what} {value!r} is not an integer")
    return value


@dataclass(frozen=True, slots=True)
class PurgedRun:
    """Records `first`..`last` were deleted by a purge; `anchor` is the hash of `last`."""

    first: int
    last: int
    anchor: bytes

    def encode(self) -> list[Any]:
        return [self.first, self.last, self.anchor.hex()]

    @classmethod
    def decode(cls, raw: Any) -> PurgedRun:
        try:
            first, last, anchor = raw
            digest = bytes.fromhex(anchor)
        except (TypeError, ValueError):
            raise MalformedPurge(f"run {raw!r} is not [first, last, anchor]") from None
        if len(digest) != 32:
            raise MalformedPurge(f"run {raw!r}: the anchor is not a SHA-256 hash")
        return cls(_int(first, "run start"), _int(last, "run end"), digest)

    def __str__(self) -> str:
        return f"{self.first}..{self.last}"


@dataclass(frozen=True, slots=True)
class Purge:
    """A purge record as the verifier needs it: when it ran, its cutoff (records older
    than it could go) and what it deleted."""

    seq: int
    ts_us: int
    cutoff_us: int
    runs: tuple[PurgedRun, ...]

    @classmethod
    def of(cls, seq: int, ts_us: int, body: Mapping[str, Any]) -> Purge:
        """From a purge record's body; `cutoff_us` is written since signed heads, older
        purges give the cutoff as ISO 8601 text only."""
        if "cutoff_us" in body:
            cutoff = _int(body["cutoff_us"], "cutoff")
        else:
            try:
                cutoff = us_of(datetime.fromisoformat(body["cutoff"]))
            except (KeyError, TypeError, ValueError):
                raise MalformedPurge("it names no cutoff") from None
        runs = body.get("runs", ())
        if not isinstance(runs, list):
            raise MalformedPurge("its runs are not a list")
        return cls(seq, ts_us, cutoff, tuple(PurgedRun.decode(r) for r in runs))


@dataclass(frozen=True, slots=True)
class Head:
    seq: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A head as some witness recorded it: the head file, an external copy of it, or the
    chain table. `at_us` (when it was signed; None when unsigned) bounds in time the
    records around it: record `seq` existed then, and later ones did not yet."""

    seq: int
    hash: bytes
    where: str
    at_us: int | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing found wrong: where, and what it means (seq 0: not one record)."""

    seq: int
    reason: str

    def __str__(self) -> str:
        return f"record {self.seq}: {self.reason}" if self.seq else self.reason


@dataclass(frozen=True, slots=True)
class _Run:
    run: PurgedRun
    purge: Purge
    limit: Checkpoint | None
    """The earliest-seq head signed at or after the purge's cutoff: no run may pass it."""


def _check_purges(
    purges: Iterable[Purge], timed: Sequence[Checkpoint]
) -> tuple[dict[int, _Run], Problem | None]:
    """Every purge's runs by their last record, checked for what no genuine purge can
    write: a cutoff less than a day old or in the future, runs reversed, overlapping,
    or reaching past the purge itself."""
    by_time = sorted(timed, key=lambda c: c.at_us or 0)
    times = [c.at_us or 0 for c in by_time]
    suffix: list[Checkpoint | None] = [None] * (len(by_time) + 1)
    for i in range(len(by_time) - 1, -1, -1):
        best = suffix[i + 1]
        suffix[i] = by_time[i] if best is None or by_time[i].seq < best.seq else best
    runs: dict[int, _Run] = {}
    spans: list[tuple[int, int, int]] = []
    for p in purges:
        if p.cutoff_us > p.ts_us:
            return runs, Problem(
                p.seq,
                f"purge with its cutoff {iso(p.cutoff_us)} in the future of the purge "
                f"itself ({iso(p.ts_us)}): it could delete any record",
            )
        if p.cutoff_us > p.ts_us - DAY_US:
            return runs, Problem(
                p.seq,
                f"purge with a cutoff {iso(p.cutoff_us)} less than a day before the purge "
                f"({iso(p.ts_us)}): retention_days is at least 1",
            )
        limit = suffix[bisect_left(times, p.cutoff_us)]
        for run in p.runs:
            if run.first < 1 or run.first > run.last:
                return runs, Problem(p.seq, f"purge run {run} is malformed (first > last)")
            if run.last >= p.seq:
                return runs, Problem(p.seq, f"purge run {run} reaches past the purge itself")
            spans.append((run.first, run.last, p.seq))
            runs[run.last] = _Run(run, p, limit)
    spans.sort()
    for (a_first, a_last, a_seq), (b_first, b_last, b_seq) in itertools.pairwise(spans):
        if b_first <= a_last:
            return runs, Problem(
                max(a_seq, b_seq),
                f"purge runs {a_first}..{a_last} (record {a_seq}) and {b_first}..{b_last} "
                f"(record {b_seq}) overlap",
            )
    return runs, None


class Verifier:
    """Walks the records in sequence order (streamed: a million rows need no memory)
    and reports the first problem. `purges` are every purge record (read before the
    walk, checked at once) and `checkpoints` every head any witness recorded.

    `now_us`: records dated later than this (plus an hour for clock skew) are forged.
    `sealed`: the kinds that are encrypted in this archive (a key is configured); after
    the first encrypted one, such a record in clear was written by someone else.
    `opens`: with the key, why an encrypted body does not open for its record (None:
    it does), so content moved or metadata changed is caught even with the chain and
    the heads rewritten.
    """

    def __init__(
        self,
        purges: Iterable[Purge],
        checkpoints: Iterable[Checkpoint],
        *,
        now_us: int | None = None,
        sealed: frozenset[str] = frozenset(),
        is_sealed: Callable[[str], bool] = lambda body: False,
        opens: Callable[[str, int, Sequence[Any]], str | None] | None = None,
    ) -> None:
        self._heads: dict[int, list[Checkpoint]] = {}
        self._signed_at: dict[int, int] = {}
        timed: list[Checkpoint] = []
        for c in checkpoints:
            self._heads.setdefault(c.seq, []).append(c)
            if c.at_us is not None:
                timed.append(c)
                self._signed_at[c.seq] = min(c.at_us, self._signed_at.get(c.seq, c.at_us))
        self._runs, self.problem = _check_purges(purges, timed)
        self._future = None if now_us is None else now_us + FUTURE_SLACK_US
        self._sealed, self._is_sealed, self._seen_sealed = sealed, is_sealed, False
        self._opens = opens
        self._prev = GENESIS
        self._last = 0
        self._max_ts = -1
        self._max_seq = 0
        self.count = 0

    def feed(self, values: Sequence[Any], stored: bytes) -> bool:  # noqa: PLR0911 - a return per check keeps the hot path flat
        """Checks one record, given as its column values in `COLUMNS` order; False once a
        problem is found (stop feeding)."""
        if self.problem is not None:
            return False
        seq, ts = values[0], values[1]
        if type(seq) is not int or seq <= self._last:
            self.problem = Problem(self._last + 1, "out of order or duplicated")
            return False
        if type(ts) is not int:
            self.problem = Problem(seq, "its time is not an integer")
            return False
        if seq != self._last + 1:
            anchor = self._gap(self._last + 1, seq - 1)
            if anchor is None:
                return False
            self._prev = anchor
        computed = link(self._prev, values)
        if computed != stored:
            self.problem = Problem(
                seq,
                "does not match the chain: it, or the record before it, was edited, "
                "inserted or moved",
            )
            return False
        if ts > self._max_ts:
            self._max_ts, self._max_seq = ts, seq
        if self._sealed and values[2] in self._sealed and not self._sealed_ok(values):
            return False
        heads = self._heads.get(seq)
        if heads is not None and not self._at_head(seq, heads, computed):
            return False
        self._prev, self._last = computed, seq
        self.count += 1
        return True

    def _sealed_ok(self, values: Sequence[Any]) -> bool:
        seq, body = values[0], values[11]
        if self._is_sealed(body):
            self._seen_sealed = True
            why = None if self._opens is None else self._opens(body, seq, values[2:11])
            if why is not None:
                self.problem = Problem(seq, f"its encrypted content does not open: {why}")
            return why is None
        if self._seen_sealed:
            self.problem = Problem(
                seq,
                "its content is in clear in an encrypted archive, after encrypted records: "
                "written without the key",
            )
            return False
        return True  # before the first encrypted record: written before the key was set

    def _at_head(self, seq: int, heads: list[Checkpoint], computed: bytes) -> bool:
        for head in heads:
            if head.hash != computed:
                self.problem = Problem(
                    seq,
                    f"differs from {head.where}: the chain was rewritten from here or earlier",
                )
                return False
        head = heads[0]
        at = self._signed_at.get(seq)
        if at is not None and self._max_ts > at:
            self.problem = Problem(
                self._max_seq,
                f"dated {iso(self._max_ts)}, after a head signed at {iso(at)} for record "
                f"{seq} ({head.where}): its time was forged",
            )
            return False
        return True

    def _gap(self, first: int, last: int) -> bytes | None:
        """The anchor to resume from after missing records `first`..`last`, if purges
        deleted exactly those, and could have; else records a problem."""
        end = last
        anchor: bytes | None = None
        while end >= first:
            entry = self._runs.get(end)
            if entry is None or entry.run.first < first:
                what = f"records {first}..{last} are" if first != last else "it is"
                self.problem = Problem(
                    first, f"missing: {what} deleted but no purge record covers it"
                )
                return None
            run, purge = entry.run, entry.purge
            if self._max_ts >= purge.cutoff_us:
                self.problem = Problem(
                    run.first,
                    f"records {run} were deleted by purge record {purge.seq} with cutoff "
                    f"{iso(purge.cutoff_us)}, but record {self._max_seq} before them is "
                    f"dated {iso(self._max_ts)}: they were younger than the cutoff",
                )
                return None
            if entry.limit is not None and run.last > entry.limit.seq:
                lim = entry.limit
                self.problem = Problem(
                    lim.seq + 1,
                    f"records {run} were deleted by purge record {purge.seq} with cutoff "
                    f"{iso(purge.cutoff_us)}, but {lim.where} shows record {lim.seq} was the "
                    f"newest at {iso(lim.at_us or 0)}: those after it were younger than the "
                    "cutoff",
                )
                return None
            for head in self._heads.get(run.last, ()):
                if head.hash != run.anchor:
                    self.problem = Problem(run.last, f"a purge's anchor differs from {head.where}")
                    return None
            if anchor is None:
                anchor = run.anchor
            end = run.first - 1
        if anchor is None:  # pragma: no cover - first <= last by construction
            raise AssertionError((first, last))
        return anchor

    def finish(self) -> Problem | None:
        """After the last record: a head beyond it means the tail was cut off; a record
        dated in the future was forged."""
        if self.problem is None and self._heads:
            newest = max(self._heads)
            if newest > self._last:
                self.problem = Problem(
                    self._last + 1,
                    f"missing: the archive ends at record {self._last} but "
                    f"{self._heads[newest][0].where} recorded record {newest} (tail truncated)",
                )
        if self.problem is None and self._future is not None and self._max_ts > self._future:
            self.problem = Problem(
                self._max_seq, f"dated {iso(self._max_ts)}, in the future: its time was forged"
            )
        return self.problem


def purges_of(rows: Iterable[tuple[int, int, str]]) -> tuple[list[Purge], Problem | None]:
    """The purge records, given as (seq, ts_us, body JSON); a malformed one is a problem."""
    out: list[Purge] = []
    for seq, ts_us, body in rows:
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise MalformedPurge("its body is not an object")
            out.append(Purge.of(seq, ts_us, data))
        except ValueError as exc:  # MalformedPurge and JSONDecodeError alike
            return out, Problem(seq, f"purge record is malformed: {exc}")
    return out, None
