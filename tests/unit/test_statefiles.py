"""State files at rest: whatever the umask of whoever starts the bridge, the state
directory is 0700 and every file in it 0600, and a symlink planted where a state file
belongs is refused."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from imbridge import statefiles
from imbridge.medialinks import load_key
from tests.unit.conftest import TWO_ROOMS, StartDaemon, settle, until


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)  # a login shell's default: world-readable files
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.mark.usefixtures("umask_022")
async def test_state_files_are_private_after_a_daemon_run(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    state = tmp_path / "var" / "imbridge"
    daemon, hub = await start_daemon(TWO_ROOMS, state=state)
    hub.post("#x", "alice", "quarterly figures")
    await until(lambda: any(p.room == "#y" for p in hub.posts))
    await settle(daemon)
    load_key(state)  # the media-link key, made when `public_url` is set
    await daemon.stop(drain=0)
    files = sorted(p.name for p in state.iterdir())
    assert {"imbridge.db", "archive-heads.jsonl", "archive-signing.key", "media-links.key"} <= set(
        files
    )
    assert mode(state) == 0o700
    assert mode(state.parent) == 0o700  # created on the way, so private too
    assert {name: mode(state / name) for name in files} == dict.fromkeys(files, 0o600)


@pytest.mark.usefixtures("umask_022")
async def test_wal_files_are_private_while_the_daemon_runs(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    daemon, hub = await start_daemon(TWO_ROOMS, state=state)
    hub.post("#x", "alice", "hello")
    await settle(daemon)
    wal = [p for p in state.iterdir() if p.name.endswith(("-wal", "-shm"))]
    assert wal
    assert all(mode(p) == 0o600 for p in wal)


def test_existing_state_dir_keeps_its_mode(tmp_path: Path) -> None:
    """`state_dir: .` must not lock the operator out of the working directory."""
    os.chmod(tmp_path, 0o755)  # noqa: S103 - the shared directory this test is about
    statefiles.private_dir(tmp_path)
    assert mode(tmp_path) == 0o755


def test_symlink_in_place_of_the_head_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / "archive-heads.jsonl").symlink_to(target)
    with pytest.raises(OSError, match=r"symbolic links"):
        statefiles.open_private(tmp_path / "archive-heads.jsonl", os.O_WRONLY | os.O_APPEND)
    assert target.read_text() == ""
