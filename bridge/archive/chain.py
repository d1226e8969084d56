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
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
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
        first, last, anchor = raw
        return cls(int(first), int(last), bytes.fromhex(anchor))


@dataclass(frozen=True, slots=True)
class Head:
    seq: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing found wrong: where, and what it means."""

    seq: int
    reason: str

    def __str__(self) -> str:
        return f"record {self.seq}: {self.reason}"


class Verifier:
    """Walks the records in sequence order (streamed: a million rows need no memory)
    and reports the first problem. `runs` are every purge's deleted runs and `heads` the
    checkpoints from the head file; both are read before the walk."""

    def __init__(self, runs: Iterable[PurgedRun], heads: Iterable[Head]) -> None:
        self._runs: dict[int, PurgedRun] = {r.last: r for r in runs}
        self._heads: dict[int, bytes] = {}
        self.problem: Problem | None = None
        for h in heads:
            if self._heads.get(h.seq, h.hash) != h.hash:
                self.problem = Problem(h.seq, "the head file holds two different hashes")
            self._heads[h.seq] = h.hash
        self._prev = GENESIS
        self._last = 0
        self.count = 0

    def feed(self, values: Sequence[Any], stored: bytes) -> bool:
        """Checks one record, given as its column values in `COLUMNS` order; False once a
        problem is found (stop feeding)."""
        if self.problem is not None:
            return False
        seq = values[0]
        if not isinstance(seq, int) or seq <= self._last:
            self.problem = Problem(self._last + 1, "out of order or duplicated")
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
        head = self._heads.get(seq)
        if head is not None and head != computed:
            self.problem = Problem(
                seq,
                "differs from the head file (or the chain table): the chain was rewritten "
                "from here or earlier",
            )
            return False
        self._prev, self._last = computed, seq
        self.count += 1
        return True

    def _gap(self, first: int, last: int) -> bytes | None:
        """The anchor to resume from after missing records `first`..`last`, if purges
        deleted exactly those; else records a problem."""
        end = last
        anchor: bytes | None = None
        while end >= first:
            run = self._runs.get(end)
            if run is None or run.first < first:
                what = f"records {first}..{last} are" if first != last else "it is"
                self.problem = Problem(
                    first, f"missing: {what} deleted but no purge record covers it"
                )
                return None
            head = self._heads.get(run.last)
            if head is not None and head != run.anchor:
                self.problem = Problem(run.last, "a purge's anchor differs from the head file")
                return None
            if anchor is None:
                anchor = run.anchor
            end = run.first - 1
        if anchor is None:  # pragma: no cover - first <= last by construction
            raise AssertionError((first, last))
        return anchor

    def finish(self) -> Problem | None:
        """After the last record: a head beyond it means the tail was cut off."""
        if self.problem is None and self._heads:
            newest = max(self._heads)
            if newest > self._last:
                self.problem = Problem(
                    self._last + 1,
                    f"missing: the archive ends at record {self._last} but the head file "
                    f"recorded record {newest} (tail truncated)",
                )
        return self.problem


def runs_of(bodies: Iterable[Mapping[str, Any]]) -> list[PurgedRun]:
    """The deleted runs listed by purge records' bodies."""
    return [PurgedRun.decode(r) for body in bodies for r in body.get("runs", ())]
