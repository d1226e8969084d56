"""How the daemon builds an adapter class from the registry: with `media_links` only
when the class declares that it links media."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar, cast

import pytest

from imbridge import registry
from imbridge.adapter import Adapter, AdapterFactory, Cursors, NetworkConfig
from imbridge.adapters.memory import MemoryAdapter, MemoryConfig
from imbridge.medialinks import MediaLinks
from tests.servers.synapse import DictCursors


class Linking(MemoryAdapter):
    links_media: ClassVar[bool] = True

    def __init__(
        self, name: str, config: NetworkConfig, cursors: Cursors, *, media_links: MediaLinks
    ) -> None:
        super().__init__(name, config, cursors)
        self.links = media_links


class KeywordButSilent(MemoryAdapter):
    """Takes `media_links` but does not declare it: built the plain way."""

    def __init__(
        self,
        name: str,
        config: NetworkConfig,
        cursors: Cursors,
        media_links: MediaLinks | None = None,
    ) -> None:
        super().__init__(name, config, cursors)
        self.links = media_links


def build(cls: type[MemoryAdapter], links: MediaLinks) -> Adapter:
    factory = cast(AdapterFactory, cls)  # as `registry.adapter_class` hands it over
    return registry.build(factory, "n", MemoryConfig(), DictCursors(), media_links=links)


def test_media_links_go_to_adapters_that_declare_them(tmp_path: Path) -> None:
    links = MediaLinks.from_state(tmp_path, "https://bridge.example/")
    linking = build(Linking, links)
    assert isinstance(linking, Linking)
    assert linking.links is links
    silent = build(KeywordButSilent, links)
    assert isinstance(silent, KeywordButSilent)
    assert silent.links is None


LIGHT = """\
bridge:
  state_dir: ./state
networks:
  chat:
    type: irc
    host: 127.0.0.1
    tls: false
    allow_cleartext: true
    nick: relay
  rooms:
    type: matrix
    homeserver: http://127.0.0.1:8008
    user_id: "@relay:localhost"
    access_token: not-a-real-token
  muc:
    type: xmpp
    jid: relay@localhost
    password: not-a-real-password
    host: 127.0.0.1
gateways:
  ops:
    rooms:
      - {network: chat, room: "#x"}
      - {network: rooms, room: "!y:localhost"}
      - {network: muc, room: "ops@conference.localhost"}
"""
PROBE = """
import sys
from imbridge.cli import main
code = main(["check", "-c", sys.argv[1]])
libraries = ("irc", "nio", "slixmpp", "jaraco.stream", "psycopg", "psycopg_pool")
print("exit", code, "loaded:", *sorted(m for m in libraries if m in sys.modules))
"""


def test_check_imports_no_protocol_library_to_validate_a_config(tmp_path: Path) -> None:
    """`imbridge check` needs each network's config model, not its client library: an
    operator validating a config (or a CI job) does not pay for irc, nio, slixmpp or psycopg."""
    path = tmp_path / "bridge.yaml"
    path.write_text(LIGHT)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert "ok (3 networks" in proc.stdout, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "exit 0 loaded:"


def test_an_adapter_without_a_config_entry_point_is_asked_for_its_model() -> None:
    assert registry.config_model("memory") is MemoryConfig
    with pytest.raises(KeyError):
        registry.config_model("telex")
