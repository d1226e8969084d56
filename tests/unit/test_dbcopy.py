"""What `imbridge db migrate` copies, checked against the schema itself: a table added
to any component later must be copied or named as rebuilt, or this fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from imbridge import cli, dbcopy
from imbridge.daemon import Daemon
from imbridge.dialect import tables
from imbridge.engines.sqlite import SqliteEngine
from tests.unit.conftest import TWO_ROOMS, config_for


def test_every_table_of_a_state_is_copied_or_rebuilt(tmp_path: Path) -> None:
    engine = SqliteEngine(tmp_path / "s.db")
    engine.open(dbcopy.migrations())
    try:
        names = tables(engine.connection())
    finally:
        engine.close()
    forgotten = {n for n in names if not dbcopy.is_copied(n) and not dbcopy.is_derived(n)}
    assert forgotten == set()
    assert {t.name for t in dbcopy.TABLES} <= names


def test_the_target_gets_every_schema_component_the_daemon_has(tmp_path: Path) -> None:
    daemon = Daemon(config_for(tmp_path, TWO_ROOMS))
    assert set(daemon.db._migrations) <= set(dbcopy.migrations())
    for name, steps in daemon.db._migrations.items():
        assert tuple(dbcopy.migrations()[name]) == tuple(steps)


def test_migrate_takes_the_url_or_a_file_never_both(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli.parser().parse_args(["db", "migrate", "-c", "b.yaml", "--to-file", "url"])
    assert (args.command, args.action, args.to_file, args.to) == (
        "db",
        "migrate",
        Path("url"),
        None,
    )
    with pytest.raises(SystemExit) as exc:
        cli.parser().parse_args(
            ["db", "migrate", "-c", "b.yaml", "--to", "postgresql://x", "--to-file", "url"]
        )
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
