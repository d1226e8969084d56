"""Which networks this instance runs.

With SQLite, one process owns the state file, so it runs every network (`SoleOwner`).
With PostgreSQL, several instances may share one config and one database: each network
connection is then owned by exactly one instance at a time, through a session-level
advisory lock held on a connection of its own (`SharedLeases`). A lock is the lease: the
server releases it the moment the holder's session ends, so when an instance dies
(SIGKILL, a crash, a lost host), another takes its networks at its next round, a couple
of seconds later, and resumes from the shared cursors and outbox. No clock is compared
across hosts, and no lease row can outlive its holder.

An instance that loses its lease connection (the database restarted, a partition) drops
the networks it ran at once, before another can take them, so no network ever has two
live connections for long. It takes at most its fair share of the networks (the networks
divided among the live instances, rounded up), so instances started together share the
work; when one dies, the fair share of the others grows and they take up its networks.

Every live instance also publishes a digest of the config sections that must agree
(networks, gateways, policy, archive, console; `bridge` may differ, e.g. each instance's
listener): a mismatch (an instance reloaded with another file) is reported, never
merged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import structlog

if TYPE_CHECKING:
    from imbridge.config.schema import Config

log = structlog.get_logger("imbridge.leases")

NETWORK_LOCKS = 0x696D62  # advisory lock class of network leases ("imb")
INSTANCE_LOCKS = 0x696D63  # advisory lock class of live instances
ROUND_SECONDS = 2.0
"""How often an instance looks for networks to take and checks its lease connection."""
RETRY_SECONDS = 5.0
FORGET_AFTER = 7 * 86400.0
"""Seconds after which an instance not seen is dropped from `instances`."""
SINKS_LEASE = "@sinks"
"""The record sinks run in one instance at a time, like a network (network names may
not start with @: `RawConfig`)."""
"""Wait before reconnecting a lost lease connection."""

OnChange = Callable[[str], Awaitable[None]]
# Advisory locks are per database, but `pg_locks` lists the whole server's.
LIVE_SQL = (
    "SELECT i.instance, i.config_sha256 FROM instances i"
    " JOIN pg_stat_activity a ON a.application_name = 'imbridge ' || i.instance"
    " JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory' AND l.classid = %s"
    " AND l.granted AND l.database = (SELECT oid FROM pg_database"
    " WHERE datname = current_database())"
)
OWNERS_SQL = (
    "SELECT l.objid::bigint, a.application_name FROM pg_locks l"
    " JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.classid = %s AND l.granted"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def lock_key(name: str) -> int:
    """A network's (or an instance's) 32-bit key within its lock class; the same on every
    host and every Python (not `hash`, which is salted per process)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:4], "big", signed=True)


def instance_name() -> str:
    """This instance's name: host and process, unique among live instances."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Leases(Protocol):
    instance: str

    def owns(self, network: str) -> bool: ...

    def owner(self, network: str) -> str | None:
        """The instance running `network` as last seen, None if none does."""

    @property
    def shared(self) -> bool:
        """Whether other instances may run some of the networks."""

    @property
    def mismatch(self) -> list[str]:
        """Live instances whose config differs from this one's."""

    async def run(self) -> None: ...


@dataclass
class SoleOwner:
    """SQLite: this process runs every network."""

    instance: str = field(default_factory=instance_name)
    shared = False
    mismatch: list[str] = field(default_factory=list)

    def owns(self, network: str) -> bool:
        return True

    def owner(self, network: str) -> str | None:
        return self.instance

    async def run(self) -> None:
        return


class SharedLeases:
    """Advisory-lock leases on a PostgreSQL database; see the module docstring."""

    shared = True

    def __init__(
        self,
        url: str,
        networks: Iterable[str],
        *,
        config_digest: str,
        gained: OnChange,
        lost: OnChange,
        instance: str | None = None,
    ) -> None:
        self.url = url
        self.networks = list(networks)
        self.instance = instance or instance_name()
        self.config_digest = config_digest
        self._gained = gained
        self._lost = lost
        self.held: set[str] = set()
        self.owners: dict[str, str] = {}
        self.mismatch: list[str] = []
        self._conn: Any = None  # psycopg.AsyncConnection, imported only for PostgreSQL
        self.first_round = asyncio.Event()
        """Set after the first round, won or not: the daemon waits for it before it
        reports what it runs."""

    def owns(self, network: str) -> bool:
        return network in self.held

    def owner(self, network: str) -> str | None:
        if network in self.held:
            return self.instance
        seen = self.owners.get(network)
        return None if seen == self.instance else seen  # given up since it last looked

    def set_networks(self, networks: Iterable[str]) -> None:
        """A reload's networks; those removed are given up at the next round."""
        self.networks = list(networks)

    async def run(self) -> None:
        """Rounds until cancelled; a lost connection drops every network at once and is
        reconnected after `RETRY_SECONDS`."""
        import psycopg  # noqa: PLC0415 - only with a PostgreSQL state

        while True:
            try:
                if self._conn is None:
                    self._conn = await psycopg.AsyncConnection.connect(
                        self.url, autocommit=True, application_name=f"imbridge {self.instance}"
                    )
                    await self._conn.execute(
                        "SELECT pg_advisory_lock(%s, %s)",
                        (INSTANCE_LOCKS, lock_key(self.instance)),
                    )
                await self._round()
                self.first_round.set()
                await asyncio.sleep(ROUND_SECONDS)
            except psycopg.Error as exc:
                log.error("lease_connection_lost", error=str(exc), held=sorted(self.held))
                await self._drop_all()
                self.first_round.set()
                await asyncio.sleep(RETRY_SECONDS)

    async def _drop_all(self) -> None:
        conn, self._conn = self._conn, None
        for network in sorted(self.held):
            self.held.discard(network)
            await self._lost(network)
        if conn is not None:
            try:
                await conn.close()
            except Exception:  # noqa: BLE001, S110 - it is gone either way
                pass

    async def _round(self) -> None:
        conn = self._conn
        await conn.execute(
            "INSERT INTO instances (instance, config_sha256, seen)"
            " VALUES (%s, %s, %s) ON CONFLICT (instance) DO UPDATE"
            " SET config_sha256 = excluded.config_sha256, seen = excluded.seen",
            (self.instance, self.config_digest, time.time()),
        )
        # Instances named by host and process leave a row each run: forget old ones.
        await conn.execute("DELETE FROM instances WHERE seen < %s", (time.time() - FORGET_AFTER,))
        live = await self._live(conn)
        self._check_configs(live)
        await self._observe(conn)
        for network in sorted(self.held - set(self.networks)):  # removed by a reload
            await self._release(network)
        share = math.ceil(len(self.networks) / max(1, len(live)))
        # Start with a different network on each instance, so instances started
        # together do not all reach for the same one first.
        order = sorted(self.networks, key=lambda n: lock_key(f"{self.instance}/{n}"))
        for network in [n for n in order if n in self.held][share:]:
            # More than a fair share (an instance joined): one for the newcomer to take.
            await self._release(network)
        for network in order:
            if len(self.held) >= share:
                break
            if network in self.held or network in self.owners:
                continue
            cur = await conn.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", (NETWORK_LOCKS, lock_key(network))
            )
            row = await cur.fetchone()
            if row is not None and row[0]:
                self.held.add(network)
                log.info("lease_taken", network=network, instance=self.instance)
                await self._gained(network)

    async def _release(self, network: str) -> None:
        """Stops running `network`, then gives its lease up, in that order."""
        self.held.discard(network)
        self.owners.pop(network, None)
        await self._lost(network)
        await self._conn.execute(
            "SELECT pg_advisory_unlock(%s, %s)", (NETWORK_LOCKS, lock_key(network))
        )
        log.info("lease_released", network=network, instance=self.instance)

    async def _live(self, conn: Any) -> dict[str, str]:
        """Live instances (those holding their instance lock) and their config digests."""
        cur = await conn.execute(
            LIVE_SQL,
            (INSTANCE_LOCKS,),
        )
        return {str(i): str(d) for i, d in await cur.fetchall()}

    async def _observe(self, conn: Any) -> None:
        """Who holds each network's lease now, from the server's lock table."""
        keys = {lock_key(n) & 0xFFFFFFFF: n for n in self.networks}
        cur = await conn.execute(
            OWNERS_SQL,
            (NETWORK_LOCKS,),
        )
        owners: dict[str, str] = {}
        for objid, app in await cur.fetchall():
            network = keys.get(int(objid))
            if network is not None:
                owners[network] = str(app).removeprefix("imbridge ")
        self.owners = owners

    def _check_configs(self, live: dict[str, str]) -> None:
        differ = sorted(i for i, d in live.items() if d != self.config_digest)
        if differ != self.mismatch and differ:
            log.warning(
                "config_mismatch",
                instance=self.instance,
                others=differ,
                hint="instances sharing a database must run the same config: reload each "
                "with the same file",
            )
        self.mismatch = differ

    async def aclose(self) -> None:
        """Gives every lease up at once by closing the lease connection; called after
        the daemon closed its networks and outbox, so a successor never overlaps."""
        conn, self._conn = self._conn, None
        self.held.clear()
        if conn is not None:
            try:
                await conn.close()
            except Exception:  # noqa: BLE001, S110 - the server ends the session anyway
                pass


def shared_digest(config: Config) -> str:
    """The digest instances compare: every section but `bridge`, which may differ per
    instance (its listener, its state folder), secrets masked."""
    from imbridge.archive.configs import fingerprint  # noqa: PLC0415 - the archive's own digests

    parts = {k: v for k, v in fingerprint(config).items() if k != "bridge"}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()
