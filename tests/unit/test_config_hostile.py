"""A hostile or broken config file gets a clear error naming its line and exit code 2,
never a traceback, a hang or a burst of memory: alias bombs, recursive aliases, tags for
Python objects, deep nesting and huge files."""

from __future__ import annotations

from pathlib import Path

import pytest

from imbridge.cli import main
from imbridge.config import load_config
from imbridge.config.load import MAX_BYTES, MAX_NODES
from imbridge.errors import ConfigError

NETWORKS = "networks: {a: {type: memory}}\n"

# Ten copies a level, nine levels: 10**9 values once expanded, in a few hundred bytes.
LAUGHS = "lol: &l0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 9)
)

CASES = [
    ("alias-bomb", LAUGHS + NETWORKS, f"more than {MAX_NODES} values"),
    ("recursive-alias", "bridge: &a [*a]\n" + NETWORKS, "bridge[0] (line 1): recursive alias"),
    (
        "recursive-alias-in-map",
        "bridge: &b {state_dir: *b}\n" + NETWORKS,
        "bridge.state_dir (line 1): recursive alias",
    ),
    (
        "python-object-tag",
        "bridge: !!python/object/apply:os.system [echo]\n" + NETWORKS,
        "bridge (line 1): unsupported YAML tag",
    ),
    ("unknown-scalar-tag", "archive: {notice: !secret x}\n" + NETWORKS, "archive.notice (line 1)"),
    ("tagged-key", "? !!python/name:os.system\n: 1\n" + NETWORKS, "(line 1): unsupported YAML tag"),
    ("deep-nesting", "bridge: " + "[" * 3000 + "]" * 3000 + "\n" + NETWORKS, "nested too deeply"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_config_is_a_clear_error_with_exit_2(
    text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(text)
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_config_file_larger_than_the_cap_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(NETWORKS + "#" * MAX_BYTES + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        load_config(path)


def test_aliases_within_the_cap_still_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Aliases are legitimate YAML: a shared network section may be reused."""
    path = tmp_path / "bridge.yaml"
    path.write_text(
        "networks: {a: &net {type: memory}, b: *net}\n"
        "gateways: {g: {rooms: [{network: a, room: '#x'}, {network: b, room: '#y'}]}}\n"
    )
    assert main(["check", "-c", str(path)]) == 0, capsys.readouterr().err
