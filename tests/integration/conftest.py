"""Integration fixtures: real chat servers and PostgreSQL on loopback, from `tests/servers/`.

Each server module exports session-scoped fixtures; importing them here makes them
available to every integration test. A missing server binary fails the run.
"""

from tests.servers.ircd import *  # noqa: F403
from tests.servers.postgres import *  # noqa: F403
from tests.servers.prosody import *  # noqa: F403
from tests.servers.synapse import *  # noqa: F403
