"""The shipped systemd unit: hardened (exposure at most 1.5) and valid for systemd."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

UNIT = Path(__file__).parents[2] / "systemd" / "imbridge.service"


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("systemd-analyze")
    assert binary, "systemd-analyze is missing: scripts/install installs the systemd package"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False)


def test_unit_exposure_is_at_most_1_5() -> None:
    proc = analyze("security", "--offline=yes", str(UNIT))
    found = re.search(r"Overall exposure level for imbridge\.service: ([0-9.]+)", proc.stdout)
    assert found, proc.stdout + proc.stderr
    assert float(found.group(1)) <= 1.5


def test_unit_verifies_with_the_installed_command(tmp_path: Path) -> None:
    command = Path(sys.executable).parent / "imbridge"
    assert command.exists()
    unit = tmp_path / "imbridge.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/imbridge", str(command)))
    proc = analyze("verify", str(unit))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Type=notify" in unit.read_text()
    assert "RestartPreventExitStatus=2" in unit.read_text()


def _settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_bounds_resources_and_keeps_metadata_services_out_of_reach() -> None:
    settings = _settings()
    denied = " ".join(settings["IPAddressDeny"]).split()
    for network in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254", "100.100.100.200"):
        assert network in denied
    assert settings["PrivateMounts"] == ["yes"]
    assert int(settings["LimitNOFILE"][0]) >= 1024
    assert settings["MemoryMax"][0].endswith(("M", "G"))
    assert int(settings["TasksMax"][0]) >= 32
    proc = analyze("security", "--offline=yes", str(UNIT))
    assert "IPAddressDeny" not in proc.stderr, proc.stderr
