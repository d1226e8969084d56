"""A real PostgreSQL on 127.0.0.1 for the tests and benchmarks of the PostgreSQL engine.

Debian's `postgresql` package (15 on Debian 12) provides the binaries; the distribution's
own cluster is never used or started (`scripts/install` keeps it down). Each server gets
a fresh cluster made by `initdb` in a temporary folder under /tmp, and `postgres` runs in
the foreground as a direct child, listening on a free loopback TCP port only, with its
Unix socket in that folder so it never meets the system's /run/postgresql.

PostgreSQL refuses to run as root: run as root, `initdb` and `postgres` run as the
`postgres` user, so the folder is made outside pytest's 0700 tree and handed to that
user; run as anyone else, they run as that user. Authentication is scram-sha-256 on
every connection, and the bridge connects as `imbridge`, an ordinary role (no superuser,
no CREATEDB) that owns each test's database, so a test's URL
`postgresql://imbridge:PASSWORD@127.0.0.1:PORT/DB` works exactly as an operator's would.

The server keeps PostgreSQL's durable defaults (fsync, synchronous_commit,
full_page_writes): what a benchmark measures is what an operator gets. Turning them off
bought the tests nothing worth having: a fresh database (CREATE and DROP) cost 64-75 ms
durable against 58-59 ms without fsync, and the start 0.5-0.6 s either way.

Without the package the run fails with how to install it; it never skips.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
from psycopg import sql

from tests.servers.process import ServerError, ServerProcess, free_port

__all__ = ["postgres_server", "postgres_url"]

HOST = "127.0.0.1"
MIN_VERSION = 15
ROLE = "imbridge"
"""The role the bridge connects as: owns its database, nothing more."""
ADMIN = "postgres"
"""The cluster's superuser, which only the fixture uses (to create and drop databases)."""
SYSTEM_USER = "postgres"
"""The account that runs the server when the tests run as root (Debian's package makes it)."""
DEBIAN_ROOT = Path("/usr/lib/postgresql")
INSTALL_HINT = "apt-get install postgresql, or run scripts/install"


def find_bindir(root: Path = DEBIAN_ROOT) -> Path:
    """The newest `<root>/<major>/bin` holding `initdb` and `postgres` (Debian installs
    each major version side by side, none of them on PATH), else the folder of a
    `pg_ctl` on PATH; `IMBRIDGE_POSTGRES_BIN` overrides both."""
    override = os.environ.get("IMBRIDGE_POSTGRES_BIN")
    if override:
        candidates = [Path(override)]
    else:
        majors = [p for p in root.glob("*") if re.fullmatch(r"\d+", p.name)]
        candidates = [p / "bin" for p in sorted(majors, key=lambda p: -int(p.name))]
        on_path = shutil.which("pg_ctl")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    looked = ", ".join(str(c) for c in candidates) or f"{root}/*/bin and PATH"
    raise ServerError(
        f"PostgreSQL {MIN_VERSION}+ is not installed (looked in {looked}): {INSTALL_HINT}. "
        "The PostgreSQL tests and benchmarks need a real server."
    )


def _system_user() -> pwd.struct_passwd | None:
    """Whom to run initdb and postgres as: `postgres` when we are root (PostgreSQL
    refuses root), else nobody else (None: ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise ServerError(
            f"no '{SYSTEM_USER}' user to run PostgreSQL as (it refuses root): {INSTALL_HINT}"
        ) from None


def _as_user(account: pwd.struct_passwd | None) -> dict[str, Any]:
    """Popen arguments that run the child as `account`, with its own groups only (root's
    supplementary groups would otherwise stay), and its home (what `runuser -u` does,
    without a watching parent that would turn our fast-shutdown signal into SIGKILL)."""
    if account is None:
        return {}
    name = account.pw_name
    return {
        "user": account.pw_uid,
        "group": account.pw_gid,
        "extra_groups": os.getgrouplist(name, account.pw_gid),
        "env": {**os.environ, "HOME": account.pw_dir, "USER": name, "LOGNAME": name},
    }


@dataclass
class PostgresServer(ServerProcess):
    """One PostgreSQL cluster and what a client needs to reach it."""

    log_names: ClassVar[tuple[str, ...]] = ("postgres.log",)

    state: Path
    bindir: Path
    account: pwd.struct_passwd | None
    port: int = field(default_factory=free_port)
    host: str = HOST
    password: str = field(default_factory=lambda: secrets.token_hex(16))
    admin_password: str = field(default_factory=lambda: secrets.token_hex(16))
    proc: subprocess.Popen[bytes] | None = None
    _databases: int = 0

    @property
    def label(self) -> str:
        return "postgresql"

    @property
    def data(self) -> Path:
        return self.state / "data"

    def url(self, database: str, *, role: str = ROLE) -> str:
        """A libpq URL as an operator writes it in `bridge.database`."""
        password = self.admin_password if role == ADMIN else self.password
        return f"postgresql://{role}:{password}@{self.host}:{self.port}/{database}"

    def _run(self, argv: Sequence[str]) -> None:
        proc = subprocess.run(
            list(argv), cwd=self.state, capture_output=True, text=True, check=False,
            **_as_user(self.account),
        )  # fmt: skip
        if proc.returncode != 0:
            raise ServerError(f"{argv[0]} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")

    def initdb(self) -> None:
        """A new cluster in `state/data`: UTF-8 whatever the caller's locale (a C locale
        would make it SQL_ASCII), password authentication for every connection."""
        pwfile = self.state / "admin-password"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.admin_password + "\n")
        if self.account is not None:
            os.chown(pwfile, self.account.pw_uid, self.account.pw_gid)
        try:
            self._run([
                str(self.bindir / "initdb"), "-D", str(self.data), "-U", ADMIN,
                f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8",
                "--locale=C.UTF-8",
                # initdb's own closing fsync of the files it wrote, not the server's:
                # a crash would lose this throw-away cluster either way.
                "--no-sync",
            ])  # fmt: skip
        finally:
            pwfile.unlink()

    def start(self, timeout: float = 60.0) -> None:
        argv = [
            str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
            "-c", f"listen_addresses={self.host}",
            "-c", f"unix_socket_directories={self.state}",
        ]  # fmt: skip
        with (self.state / self.log_names[0]).open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.state, start_new_session=True, **_as_user(self.account),
            )  # fmt: skip
        self.await_ready(self._answers, timeout, poll=0.05)

    def _answers(self) -> bool:
        try:
            with psycopg.connect(self.url("postgres", role=ADMIN), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self, sig: signal.Signals = signal.SIGINT) -> None:
        """SIGINT is PostgreSQL's fast shutdown: it ends open sessions (a test that left a
        connection open) instead of waiting for them, as SIGTERM's smart shutdown would."""
        super().stop(sig)

    def admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url("postgres", role=ADMIN), autocommit=True)

    def create_role(self) -> None:
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(ROLE), sql.Literal(self.password)))  # fmt: skip

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database owned by the bridge's role; returns its URL."""
        self._databases += 1
        name = name or f"test{self._databases}_{secrets.token_hex(3)}"
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(ROLE)))  # fmt: skip
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drops it even if a client is still connected (FORCE ends its sessions)."""
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))  # fmt: skip

    def version(self) -> int:
        """The server's version number, e.g. 150018 for 15.18."""
        with self.admin() as conn:
            return conn.info.server_version


def launch() -> PostgresServer:
    """A running server on a new cluster in a new folder under /tmp (pytest's tmp_path
    is 0700 root's, which the `postgres` user cannot enter); `close()` removes it."""
    bindir = find_bindir()
    account = _system_user()
    state = Path(tempfile.mkdtemp(prefix="imbridge-postgres-", dir="/tmp" if account else None))
    server: PostgresServer | None = None
    try:
        if account is not None:
            os.chown(state, account.pw_uid, account.pw_gid)
        server = PostgresServer(state, bindir, account)
        server.initdb()
        server.start()
        if (version := server.version()) < MIN_VERSION * 10_000:
            raise ServerError(f"PostgreSQL {version} in {bindir} is older than {MIN_VERSION}")
        server.create_role()
    except BaseException:
        if server is not None:
            server.stop()
        shutil.rmtree(state, ignore_errors=True)
        raise
    return server


def close(server: PostgresServer) -> None:
    server.stop()
    shutil.rmtree(server.state, ignore_errors=True)


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the length of the block, then stopped and removed."""
    server = launch()
    try:
        yield server
    finally:
        close(server)


@contextmanager
def postgres_database() -> Iterator[str]:
    """For benchmarks: `with postgres_database() as url:` gives the URL of an empty
    database on a server of its own, which is gone after the block."""
    with running_postgres() as server:
        yield server.create_database("imbridge")


def empty_tables(url: str, *, keep: Sequence[str] = ("schema_version",)) -> None:
    """Empties every table of the database but `keep`, identities restarted: a benchmark
    given one database by URL starts each round as on a new one (the archive's chain at
    1), without the right to create databases."""
    with psycopg.connect(url, autocommit=True) as conn:
        names = [
            name
            for (name,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
            if name not in keep
        ]
        if names:
            conn.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY").format(
                    sql.SQL(", ").join(map(sql.Identifier, names))
                )
            )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = launch()
    except ServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        close(server)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database of this test's own, dropped afterwards."""
    url = postgres_server.create_database()
    try:
        yield url
    finally:
        postgres_server.drop_database(url.rsplit("/", 1)[1])
