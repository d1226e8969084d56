"""Adapter classes by the `type:` written in YAML, found through entry points.

Built-in adapters register in the same `imbridge.adapters` group as third-party ones, so
the core has no list of protocols. An entry point is only imported when a config uses its
type: a bridge without Matrix never imports matrix-nio.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import cast

from imbridge.adapter import Adapter, AdapterFactory, Cursors, MediaAdapterFactory, NetworkConfig
from imbridge.medialinks import MediaLinks

GROUP = "imbridge.adapters"


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def known_types() -> list[str]:
    return sorted(_entry_points())


def adapter_class(type_name: str) -> AdapterFactory:
    """The adapter registered for `type_name`; KeyError names the known types."""
    eps = _entry_points()
    if type_name not in eps:
        raise KeyError(type_name)
    return cast(AdapterFactory, eps[type_name].load())


def build(
    cls: AdapterFactory,
    name: str,
    config: NetworkConfig,
    cursors: Cursors,
    *,
    media_links: MediaLinks | None = None,
) -> Adapter:
    """An adapter, given `media_links` only if its class declares `links_media = True`
    (`MediaAdapterFactory`): one declared switch, not a guess from its signature, so an
    adapter that never links media is built as `cls(name, config, cursors)`."""
    if media_links is not None and getattr(cls, "links_media", False):
        return cast(MediaAdapterFactory, cls)(name, config, cursors, media_links=media_links)
    return cls(name, config, cursors)
