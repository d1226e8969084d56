"""`imbridge db migrate`: moves a SQLite state to PostgreSQL (docs/scale.md); the
copying itself is `imbridge.dbcopy`.

The target URL may come from a file (`--to-file`, read like the config's `*_file`
secrets: this user's or root's, not readable by others), since a URL given on the
command line, password included, shows in `ps` to every user of the machine.

A running daemon is refused twice over: if the config has an HTTP listener, its /readyz
must not answer; and the copy holds SQLite's write lock on the source throughout, so a
daemon cannot write to the source meanwhile (one started then fails to open it).

Exit codes: 0 copied and the archive verified on the target; 1 a runtime failure (the
server unreachable, the source locked, the copy interrupted, the archive not intact);
2 bad input (config, arguments, no source, a target that is not empty).
"""

from __future__ import annotations

import sqlite3
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import TextIO

import psycopg

from imbridge import dbcopy
from imbridge.archive.crypto import ArchiveKeyError
from imbridge.archive.store import ArchiveStore
from imbridge.commands.progress import progress
from imbridge.config.load import load_config
from imbridge.config.report import print_config_error
from imbridge.config.schema import Config
from imbridge.config.secretfile import SecretFileError, read_secret
from imbridge.db import DB_NAME
from imbridge.engines import is_url
from imbridge.engines.postgres import PgConn, PostgresEngine
from imbridge.errors import ConfigError, ImbridgeError, StateError
from imbridge.exitcodes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

NAME = "imbridge db migrate"


def target_url(to: str | None, to_file: Path | None) -> str:
    """The URL given, or read from its file; ValueError says what is wrong with it."""
    if to_file is not None:
        try:
            to = read_secret(to_file).decode("utf-8").strip()
        except SecretFileError as exc:
            raise ValueError(f"--to-file: {exc}") from None
        except UnicodeDecodeError:
            raise ValueError(f"--to-file: {to_file} is not UTF-8 text") from None
    if not to or not is_url(to):
        raise ValueError("the target must be a postgresql:// URL")
    return to


def one_line(exc: BaseException) -> str:
    """A server's message, whose hints come on lines of their own, as one line."""
    return " ".join(str(exc).split())


def daemon_answers(config: Config) -> str | None:
    """The /readyz address if a daemon answers there (it runs on this state)."""
    listen = config.bridge.http.listen
    if not listen:
        return None
    url = f"http://{listen}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2):
            return url
    except urllib.error.HTTPError:  # 503, not ready: running all the same
        return url
    except OSError:
        return None


def db_migrate(  # noqa: PLR0911 - one exit per kind of bad input
    config_path: Path,
    *,
    to: str | None = None,
    to_file: Path | None = None,
    batch: int | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Copies the config's SQLite state into the target, verifies the archive there and
    prints the config line that moves the daemon to it."""
    out, err = out or sys.stdout, err or sys.stderr
    batch = dbcopy.BATCH if batch is None else batch
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print_config_error(config_path, exc, err)
        return EXIT_USAGE
    if config.bridge.database is not None:
        print(f"{NAME}: the config's state is on PostgreSQL already (bridge.database)", file=err)
        return EXIT_USAGE
    if batch < 1:
        print(f"{NAME}: --batch-size must be at least 1", file=err)
        return EXIT_USAGE
    try:
        url = target_url(to, to_file)
    except ValueError as exc:
        print(f"{NAME}: {exc}", file=err)
        return EXIT_USAGE
    running = daemon_answers(config)
    if running is not None:
        print(f"{NAME}: the daemon is running ({running} answers): stop it first", file=err)
        return EXIT_FAILURE
    source = config.bridge.state_dir / DB_NAME
    try:
        return _migrate(config, source, url, batch=batch, out=out, err=err, to_file=to_file)
    except (dbcopy.SourceMissing, dbcopy.TargetNotEmpty) as exc:
        print(f"{NAME}: {exc}", file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{NAME}: interrupted; run the same command again to go on", file=err)
        return EXIT_FAILURE
    except (ImbridgeError, ArchiveKeyError, sqlite3.Error, psycopg.Error, OSError) as exc:
        print(f"{NAME}: {one_line(exc)}", file=err)
        return EXIT_FAILURE


def _migrate(
    config: Config,
    source: Path,
    url: str,
    *,
    batch: int,
    out: TextIO,
    err: TextIO,
    to_file: Path | None,
) -> int:
    engine = PostgresEngine(url)
    try:  # the pool would retry an unreachable server for 30 s: fail at once instead
        psycopg.connect(url, connect_timeout=10).close()
    except psycopg.Error as exc:
        raise StateError(f"cannot connect to {engine.label}: {one_line(exc)}") from None
    src = dbcopy.open_source(source)
    try:
        digest = dbcopy.fingerprint(src)
        engine.open(dbcopy.migrations())
        dst = engine.connection()
        state = dbcopy.prepare_target(dst, str(source), digest)
        total = sum(dbcopy.counts(src).values())
        print(f"copying {source} to {engine.label}", file=out)
        if state.copied:
            print(f"resuming: {state.copied} rows were copied before", file=out)
        with progress("copying", total, stream=err, unit="rows") as advance:
            advance(state.copied)
            copied = dbcopy.copy_all(src, dst, state, batch=batch, advance=advance)
        dbcopy.finish(src, dst)
        print(f"copied {sum(copied.values())} rows ({dbcopy.summary(copied) or 'none'})", file=out)
        ok = _verify(config, dst, out, err)
    finally:
        src.close()
        engine.close()
    if not ok:
        return EXIT_FAILURE
    where = to_file.resolve() if to_file is not None else "FILE  # mode 0600, holding the URL"
    print(
        "done. To run on PostgreSQL, set in the config:\n"
        "  bridge:\n"
        f"    database_url_file: {where}\n"
        f"Keep {source} as a backup, but do not run the daemon on it again: both states\n"
        "would extend the one head file of the archive.",
        file=out,
    )
    return EXIT_OK


def _verify(config: Config, target: PgConn, out: TextIO, err: TextIO) -> bool:
    """`imbridge archive verify`'s check of the chain, on the target, without its
    access record (which would extend the head file the SQLite state shares)."""
    store = ArchiveStore(config.archive, state_dir=config.bridge.state_dir)
    with target.streamed() as dst:
        total = int(dst.execute("SELECT count(*) FROM archive_records").fetchone()[0])
        with progress("verify", total, stream=err) as advance:
            problem, count = store.verify(dst, advance=advance)
        tail = store.tail(dst)
    if problem is not None:
        print(
            f"archive on the target TAMPERED: {problem} ({count} records verified before)", file=out
        )
        return False
    print(
        f"archive intact on the target: {count} records verified, chain head {tail.seq} "
        f"{tail.hash.hex()[:16]}…",
        file=out,
    )
    return True
