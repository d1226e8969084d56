"""How the daemon builds an adapter class from the registry: with `media_links` only
when the class declares that it links media."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, cast

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
