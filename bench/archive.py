"""Archive write throughput and search latency.

    .venv/bin/python bench/archive.py [--events 20000] [--records 1000000] [--queries 300]
        [--database postgresql://USER:PASS@HOST/DB | --postgres]

1. Write: events (each with two decisions: three chained records, one indexed) recorded
   through the state database exactly as the relay path does it (`Database.transact`,
   WAL, synchronous=NORMAL, group commit) by 64 concurrent producers. Baseline: the same
   transactions inserting one plain row per event, no archive.
2. Search: an archive of `--records` records is generated (chained, indexed, one
   transaction of executemany batches), then keyword searches as `imbridge archive search`
   runs them (20 newest hits, with their decisions): p50/p99 for a rare word, a common
   word, two words, and a word within one room. Baseline: the bare FTS5 MATCH (rowids
   only) for the same words.
3. Verify: the whole chain walked as `imbridge archive verify` does it, against a head
   file signed (Ed25519) after every generated batch, records/s. Baseline: the same rows
   only read from SQLite.
5. Export: the whole archive as `imbridge archive export --format jsonl` writes it (each
   event with its decisions), to /dev/null: time and peak memory growth. Baseline: the
   event records only read and their bodies decoded.
4. Capture (`capture_bench`): relay-path cost per event carrying an attachment, with
   `archive.attachments` off and on, and the worker's cost to store one file.
With `--database URL` (a PostgreSQL database the URL's role owns; emptied first) or
`--postgres` (a loopback server of its own for the run): 1 and 2 on PostgreSQL instead,
the search baseline being the bare tsquery on the GIN index; then 3 on PostgreSQL, its
time and peak memory through server-side cursors against psycopg's default cursor, and 5
through server-side cursors, as the command walks it.
Targets (issue 8): >= 5 000 records/s written, search p50 < 50 ms at 1 000 000 records;
(issue 15) verify of 1 000 000 records with signed heads under 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, nullcontext
from pathlib import Path
from typing import Any

from imbridge.archive import fulltext
from imbridge.archive.export import items, write_jsonl
from imbridge.archive.files import FileStore
from imbridge.archive.search import Query, match_terms, search
from imbridge.archive.store import ARCHIVE_MIGRATIONS, ArchiveStore
from imbridge.config.schema import Archive
from imbridge.db import Conn, Database
from imbridge.dialect import POSTGRESQL, SQLITE, dialect_of, placeholders, streamed
from imbridge.engines.postgres import PgConn, connect
from imbridge.events import Attachment, EventId, Message, Origin, Sender
from imbridge.migrate import apply_migrations
from imbridge.policy import Action, Decision, Destination
from imbridge.testing import sqlite_schema

VOCAB = [f"w{i}" for i in range(20_000)]
RARE = "zanzibar"
COMMON = "w1"
DESTS = (Destination("corp-xmpp", "ops@conf"), Destination("public-matrix", "!ops:example"))


def sentence(rng: random.Random) -> str:
    # Zipf-like: low-numbered words are frequent, as in real chat.
    words = [VOCAB[min(int(rng.paretovariate(1.1)) - 1, len(VOCAB) - 1)] for _ in range(8)]
    return " ".join(words)


def event(i: int, rng: random.Random) -> Message:
    return Message(
        id=EventId(f"{i:032x}"),
        origin=Origin(
            network="corp-irc",
            room=f"#room{i % 50}",
            sender=Sender(id=f"user{i % 300}", name=f"user{i % 300}"),
        ),
        text=sentence(rng),
    )


def decisions(e: Message) -> list[tuple[Destination, Decision]]:
    return [
        (DESTS[0], Decision(action=Action.ALLOW, rule="default", event=e)),
        (DESTS[1], Decision(action=Action.DENY, rule="nothing-leaves", reason="matched")),
    ]


async def write_bench(state: Path, events: int, database: str | None = None) -> tuple[float, float]:
    """`database`: a PostgreSQL URL for both runs, instead of two SQLite files."""
    rng = random.Random(1)
    items = [event(i, rng) for i in range(events)]
    store = ArchiveStore(Archive(), state_dir=state)

    async def run(db: Database, fn: Any) -> float:
        queue = list(items)

        async def producer() -> None:
            while queue:
                e = queue.pop()

                def txn(conn: Conn, e: Message = e) -> None:
                    fn(conn, e)

                await db.transact(txn)

        start = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(64):
                tg.create_task(producer())
        return time.perf_counter() - start

    async with Database(database or state / "base.db") as db:
        base = await run(
            db,
            lambda conn, e: conn.execute(
                "INSERT INTO messages VALUES (?, ?, ?)", (e.id, e.text, 0.0)
            ),
        )
    async with Database(database or state / "archive.db", {"archive": ARCHIVE_MIGRATIONS}) as db:
        arch = await run(db, lambda conn, e: store.record_event(conn, e, decisions(e)))
        began = time.perf_counter()  # the full-text indexing the daemon does each second
        await db.transact(store.index_pending)
        arch += time.perf_counter() - began
    return events / base, events * 3 / arch


async def capture_bench(state: Path, events: int) -> None:
    """Capture cost per event on the relay path, each event carrying one attachment,
    with `archive.attachments` off and on (on: the attachment is queued in the same
    commit), 64 producers as in the write phase; then what the capture worker spends
    to store one 256 KiB file, plain and encrypted (fetch excluded: that is the network)."""
    rng = random.Random(2)
    att = (Attachment(url="https://files.example.org/a.png", name="a.png", size=262_144),)
    items = [dataclasses.replace(event(i, rng), attachments=att) for i in range(events)]
    per_event: dict[bool, float] = {}
    for run, enabled in enumerate((False, True) * 3):  # interleaved, best of 3: shared host
        settings = Archive.model_validate({"attachments": {"enabled": enabled}})
        store = ArchiveStore(settings, state_dir=state)
        queue = list(items)
        async with Database(state / f"capture-{run}.db", {"archive": ARCHIVE_MIGRATIONS}) as db:

            async def producer(
                db: Database = db, store: ArchiveStore = store, queue: list[Message] = queue
            ) -> None:
                while queue:
                    e = queue.pop()

                    def txn(conn: Conn, e: Message = e) -> None:
                        store.record_event(conn, e, decisions(e))

                    await db.transact(txn)

            start = time.perf_counter()
            async with asyncio.TaskGroup() as tg:
                for _ in range(64):
                    tg.create_task(producer())
            took = (time.perf_counter() - start) / events
            per_event[enabled] = min(took, per_event.get(enabled, took))
    off, on = per_event[False], per_event[True]
    print(
        f"capture, relay path: {off * 1e6:,.0f} us/event with attachments off, "
        f"{on * 1e6:,.0f} us/event on (queued in the commit); ratio {on / off:.2f}"
    )
    blob = rng.randbytes(262_144)
    for key in (None, "k" * 44):
        files = FileStore(state / f"files-{key is not None}", key)
        n = 50
        start = time.perf_counter()
        for i in range(n):
            files.put(blob + i.to_bytes(4, "big"))  # distinct contents: no dedup
        took = (time.perf_counter() - start) / n
        what = "encrypted" if key else "plain"
        print(f"capture worker, store one 256 KiB file ({what}): {took * 1e3:.2f} ms")


def record_batches(records: int) -> Iterator[list[dict[str, Any]]]:
    """The generated archive, in batches of about 30 000 records: each event (a Zipf-like
    sentence, one in 10 000 with the rare word) and its two decisions."""
    rng = random.Random(2)
    i = 0
    batch: list[dict[str, Any]] = []
    written = 0
    while written < records:
        room = f"#room{i % 50}"
        text = sentence(rng)
        if i % 10_000 == 0:
            text += f" {RARE}"
        common = {
            "event_id": f"{i:032x}",
            "network": "corp-irc",
            "room": room,
            "sender": f"user{i % 300}",
        }
        batch.append(
            {
                **common,
                "kind": "event",
                "terms": text,
                "body": {"type": "message", "text": text, "origin": {"name": common["sender"]}},
            }
        )
        for dest in DESTS:
            batch.append(
                {
                    **common,
                    "kind": "decision",
                    "dest_network": dest.network,
                    "dest_room": dest.room,
                    "action": "allow",
                    "rule": "default",
                    "body": {"reason": "no rule matched"},
                }
            )
        i += 1
        if len(batch) >= 30_000:
            yield batch[: records - written]
            written += min(len(batch), records - written)
            batch = []


def generate(path: Path, records: int) -> ArchiveStore:
    conn = sqlite3.connect(path, isolation_level=None)
    sqlite_schema(conn, ARCHIVE_MIGRATIONS)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    store = ArchiveStore(Archive(log_checkpoints=False), state_dir=path.parent)
    conn.execute("BEGIN")
    for batch in record_batches(records):
        store.append(conn, batch)
        store.checkpoint(conn)  # a signed head, as the daemon writes periodically
    store.index_pending(conn)
    conn.execute("COMMIT")
    conn.close()
    return store


def generate_pg(url: str, state: Path, records: int) -> ArchiveStore:
    """The same archive on PostgreSQL, through the same `append` (same chain, same
    terms), each batch indexed as it goes; then analysed, as autovacuum would after such
    a load, so the planner knows the table's size."""
    conn = connect(url)
    apply_migrations(
        conn, {"archive": ARCHIVE_MIGRATIONS}, dialect=POSTGRESQL, label="bench", begin="BEGIN"
    )
    store = ArchiveStore(Archive(log_checkpoints=False), state_dir=state)
    conn.execute("BEGIN")
    for batch in record_batches(records):
        store.append(conn, batch)
        store.index_pending(conn)
        store.checkpoint(conn)
    conn.execute("COMMIT")
    conn.execute("VACUUM (ANALYZE) archive_records")
    conn.execute("VACUUM (ANALYZE) archive_fts")
    conn.raw.close()
    return store


def timed(fn: Any, n: int) -> tuple[float, float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


BARE = {
    SQLITE: "SELECT rowid FROM archive_fts WHERE archive_fts MATCH ? ORDER BY rowid DESC LIMIT 20",
    POSTGRESQL: "SELECT seq FROM archive_fts WHERE terms @@ ?::tsquery ORDER BY seq DESC LIMIT 20",
}
"""The baseline: the full-text index alone, ids of the 20 newest matches."""


def bare(conn: Conn, expression: str) -> list[Any]:
    """The baseline query, planned for its words each time on PostgreSQL: a statement
    psycopg prepares may get a generic plan after five runs, which for a rare word walks
    the whole index backwards (85 ms at 1 000 000 records instead of 0.1)."""
    if isinstance(conn, PgConn):
        return conn.raw.execute(
            placeholders(BARE[POSTGRESQL]), (expression,), prepare=False
        ).fetchall()
    return conn.execute(BARE[SQLITE], (expression,)).fetchall()


def search_bench(conn: Conn, store: ArchiveStore, queries: int) -> None:
    dialect = dialect_of(conn)
    cases = {
        "rare word": Query(text=RARE, limit=20),
        "common word": Query(text=COMMON, limit=20),
        "two words": Query(text=f"{COMMON} w3", limit=20),
        "word in one room": Query(text="w7", room="#room7", limit=20),
    }
    label = "bare FTS p50" if dialect == SQLITE else "bare tsquery p50"
    print(f"{'search (20 hits)':<22}{'p50 ms':>10}{'p99 ms':>10}{label:>18}{'ratio':>8}")
    for name, q in cases.items():
        p50, p99 = timed(lambda q=q: search(conn, store, q), queries)
        terms = match_terms(conn, q.text, store)
        assert terms is not None
        _, _, expr = fulltext.match(dialect, terms)
        b50, _ = timed(lambda expr=expr: bare(conn, expr), queries)
        print(f"{name:<22}{p50:>10.2f}{p99:>10.2f}{b50:>18.2f}{p50 / b50:>8.1f}x")


def verify_bench(path: Path, store: ArchiveStore) -> None:
    conn = sqlite3.connect(path)
    start = time.perf_counter()
    cur = conn.execute("SELECT * FROM archive_records ORDER BY seq")
    while cur.fetchmany(4096):
        pass
    base = time.perf_counter() - start
    start = time.perf_counter()
    problem, count = store.verify(conn)
    took = time.perf_counter() - start
    heads = len(store.head_file.read_text().splitlines())
    print(
        f"verify: {count:,} records against {heads} signed heads in {took:.1f} s "
        f"({count / took:,.0f} records/s; target < 60 s), "
        f"{'intact' if problem is None else problem}; baseline reading the rows "
        f"{base:.1f} s, ratio {took / base:.1f}x"
    )
    conn.close()


def export_bench(conn: Conn, store: ArchiveStore, engine: str) -> None:
    """The export's time and peak resident growth against the event records only read
    and decoded (what no export can skip), through the connection the command uses."""
    results = {}
    with open(os.devnull, "w", encoding="utf-8") as sink:

        def read(c: Conn) -> int:
            return sum(1 for r in store.rows(c, "WHERE kind = 'event'") if store.body(r.record))

        def export(c: Conn) -> int:
            return write_jsonl(items(c, store, Query()), sink)

        for name, run in (("rows read", read), ("export", export)):
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM starts again from here
            before = memory_kib("VmRSS")
            start = time.perf_counter()
            with streamed(conn) as walk:
                count = run(walk)
            results[name] = (count, time.perf_counter() - start)
            grown = (memory_kib("VmHWM") - before) / 1024
            print(
                f"{name} ({engine}): {count:,} events in {results[name][1]:.1f} s "
                f"({count / results[name][1]:,.0f} events/s); peak memory +{grown:,.0f} MiB"
            )
    print(f"export / rows read ({engine}): {results['export'][1] / results['rows read'][1]:.1f}x")


def on_postgres(url: str, state: Path, args: argparse.Namespace) -> None:
    """Write and search on PostgreSQL: the same events, archive and queries."""
    empty_tables = postgres_helpers().empty_tables
    empty_tables(url)
    base, arch = asyncio.run(write_bench(state, args.events, url))
    print(
        f"write (PostgreSQL): {arch:,.0f} archive records/s ({arch / 3:,.0f} events/s with 2 "
        f"decisions each); baseline plain insert {base:,.0f} events/s; "
        f"ratio {arch / 3 / base:.2f}"
    )
    empty_tables(url)
    start = time.perf_counter()
    store = generate_pg(url, state, args.records)
    took = time.perf_counter() - start
    conn = connect(url)
    try:
        size = conn.execute(
            "SELECT pg_total_relation_size('archive_records')"
            " + pg_total_relation_size('archive_fts')"
        ).fetchone()[0]
        print(
            f"generated {args.records:,} records on PostgreSQL in {took:.1f} s "
            f"({args.records / took:,.0f} records/s bulk), {size / 1e6:,.0f} MB with indexes"
        )
        search_bench(conn, store, args.queries)
        verify_pg_bench(conn, store)
        export_bench(conn, store, "PostgreSQL")
    finally:
        conn.raw.close()


def memory_kib(field: str) -> int:
    """A line of /proc/self/status (VmRSS now, VmHWM the peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def verify_pg_bench(conn: PgConn, store: ArchiveStore) -> None:
    """`imbridge archive verify` on PostgreSQL through server-side cursors in one
    snapshot (`dialect.streamed`), against the baseline of psycopg's default cursor,
    which takes the whole result into memory: time and peak resident growth of each."""
    for name, walk in (("default cursor", nullcontext(conn)), ("streamed", streamed(conn))):
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM starts again from here
        before = memory_kib("VmRSS")
        start = time.perf_counter()
        with walk as rows:
            problem, count = store.verify(rows)
        took = time.perf_counter() - start
        grown = (memory_kib("VmHWM") - before) / 1024
        print(
            f"verify on PostgreSQL ({name}): {count:,} records in {took:.1f} s, "
            f"{'intact' if problem is None else problem}; peak memory +{grown:,.0f} MiB"
        )


def postgres_helpers() -> Any:
    """tests.servers.postgres, which a script's sys.path (bench/) lacks."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import tests.servers.postgres  # noqa: PLC0415 - only for the PostgreSQL runs

    return tests.servers.postgres


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=300)
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--database", metavar="URL", help="on this PostgreSQL database (emptied)")
    where.add_argument("--postgres", action="store_true", help="on a loopback server of its own")
    args = ap.parse_args()
    if args.database or args.postgres:
        with (
            (
                nullcontext(args.database)
                if args.database
                else postgres_helpers().postgres_database()
            ) as url,
            tempfile.TemporaryDirectory(dir=Path.home()) as tmp,
        ):
            on_postgres(url, Path(tmp), args)
        return
    with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
        state = Path(tmp)
        base, arch = asyncio.run(write_bench(state, args.events))
        print(
            f"write: {arch:,.0f} archive records/s ({arch / 3:,.0f} events/s with 2 "
            f"decisions each); baseline plain insert {base:,.0f} events/s; "
            f"ratio {arch / 3 / base:.2f}"
        )
        asyncio.run(capture_bench(state, args.events))
        start = time.perf_counter()
        store = generate(state / "big.db", args.records)
        took = time.perf_counter() - start
        size = (state / "big.db").stat().st_size / 1e6
        print(
            f"generated {args.records:,} records in {took:.1f} s "
            f"({args.records / took:,.0f} records/s bulk), {size:,.0f} MB"
        )
        store.checkpoint(sqlite3.connect(state / "big.db"))
        with closing(sqlite3.connect(state / "big.db")) as conn:
            search_bench(conn, store, args.queries)
        verify_bench(state / "big.db", store)
        with closing(sqlite3.connect(state / "big.db")) as conn:
            export_bench(conn, store, "SQLite")


if __name__ == "__main__":
    main()
