"""The PostgreSQL the tests and benchmarks start: what the PostgreSQL engine's tests stand
on, so each promise here is one they rely on."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.servers.postgres import MIN_VERSION, ROLE, find_bindir, postgres_database
from tests.servers.process import ServerError

pytestmark = pytest.mark.integration


async def test_url_reaches_postgresql_15_or_later_as_an_ordinary_role(postgres_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        assert conn.info.server_version >= MIN_VERSION * 10_000
        await conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, text text NOT NULL)")
        await conn.execute("INSERT INTO notes (text) VALUES (%s), (%s)", ("héllo", "wörld"))
        await conn.commit()
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        cur = await conn.execute("SELECT text FROM notes ORDER BY id")
        assert [row[0] for row in await cur.fetchall()] == ["héllo", "wörld"]
        cur = await conn.execute(
            "SELECT current_user, rolsuper, rolcreatedb, pg_encoding_to_char(encoding)"
            " FROM pg_roles, pg_database"
            " WHERE rolname = current_user AND datname = current_database()"
        )
        # The bridge's own role, as an operator would grant it: no superuser powers.
        assert await cur.fetchone() == (ROLE, False, False, "UTF8")


def test_a_wrong_password_is_refused(postgres_url: str) -> None:
    wrong = postgres_url.replace(f"{ROLE}:", f"{ROLE}:not-", 1)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong).close()


@pytest.mark.parametrize("turn", ["one", "other"])
def test_each_test_gets_an_empty_database_of_its_own(postgres_url: str, turn: str) -> None:
    """Whichever of the two runs second would find the first one's table if they shared."""
    with psycopg.connect(postgres_url) as conn:
        cur = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        assert cur.fetchall() == []
        conn.execute(f"CREATE TABLE left_by_{turn} (x int)")


def test_a_benchmark_gets_a_server_and_database_of_its_own_for_the_block() -> None:
    with postgres_database() as url, psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("imbridge",)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2).close()


def test_a_missing_postgresql_is_a_failure_that_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IMBRIDGE_POSTGRES_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServerError, match="apt-get install postgresql"):
        find_bindir(tmp_path)
