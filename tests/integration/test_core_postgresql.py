"""The core and daemon tests again, on PostgreSQL: the same test functions as
`tests/unit` (imported, not copied), with the `state_database` fixture giving each test a
fresh database on the loopback server instead of a SQLite file. Whatever the relay,
outbox, archive and database queue promise on SQLite, they promise here too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.postgres import PostgresServer
from tests.unit.conftest import StateDatabase, db_location, start_daemon
from tests.unit.test_archive_group_commit import *  # noqa: F403
from tests.unit.test_capture import *  # noqa: F403
from tests.unit.test_daemon_tasks import *  # noqa: F403
from tests.unit.test_db_order import *  # noqa: F403
from tests.unit.test_edit_authorship import *  # noqa: F403
from tests.unit.test_flood import *  # noqa: F403
from tests.unit.test_hook_batches import *  # noqa: F403
from tests.unit.test_membership import *  # noqa: F403
from tests.unit.test_outbox import *  # noqa: F403
from tests.unit.test_policy_hooks import *  # noqa: F403
from tests.unit.test_relay import *  # noqa: F403
from tests.unit.test_relay_quotes import *  # noqa: F403
from tests.unit.test_sink_reads import *  # noqa: F403
from tests.unit.test_sinks import *  # noqa: F403
from tests.unit.test_textlinks import *  # type: ignore[assignment]  # noqa: F403

# Reads the SQLite file's bytes for purged words: on PostgreSQL the server's own files
# hold dead rows until its vacuum (docs/scale.md says what to configure), not ours to scan.
del test_purge_takes_the_relay_copies_and_leaves_no_word_behind  # noqa: F821

__all__ = ["db_location", "start_daemon"]


@pytest.fixture
def state_database(postgres_server: PostgresServer) -> Iterator[StateDatabase]:
    """A fresh database for each state folder a test uses (two bridges, two databases;
    a restart on the same folder, the same database)."""
    made: dict[Path, str] = {}

    def per_folder(folder: Path) -> str:
        if folder not in made:
            made[folder] = postgres_server.create_database()
        return made[folder]

    yield per_folder
    for url in made.values():
        postgres_server.drop_database(url.rsplit("/", 1)[1])
