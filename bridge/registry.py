"""Adapter classes by the `type:` written in YAML, found through entry points.

Built-in adapters register in the same `imbridge.adapters` group as third-party ones, so
the core has no list of protocols. An entry point is only imported when a config uses its
type: a bridge without Matrix never imports matrix-nio.

Validating a config needs only each type's config model, not the adapter: an adapter may
name its model in the `imbridge.adapter_configs` group (same key as its type), and then
`imbridge check` and config loading import that model alone, never the protocol library.
An adapter that does not is asked for its `config_model`, which imports it whole.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, cast

from imbridge.adapter import Adapter, AdapterFactory, Cursors, NetworkConfig
from imbridge.medialinks import MediaLinks

GROUP = "imbridge.adapters"
CONFIG_GROUP = "imbridge.adapter_configs"


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


def config_model(type_name: str) -> type[NetworkConfig]:
    """The model of a `networks.<name>` section of type `type_name`, importing as little
    as its adapter allows; KeyError for an unknown type."""
    if type_name not in _entry_points():
        raise KeyError(type_name)
    configs = {ep.name: ep for ep in entry_points(group=CONFIG_GROUP)}
    if type_name in configs:
        return cast(type[NetworkConfig], configs[type_name].load())
    return adapter_class(type_name).config_model


def build(
    cls: AdapterFactory,
    name: str,
    config: NetworkConfig,
    cursors: Cursors,
    *,
    media_links: MediaLinks | None = None,
    state_dir: Path | None = None,
) -> Adapter:
    """An adapter, given `media_links` only if its class declares `links_media = True`
    (`MediaAdapterFactory`), and `state_dir` only if it declares `uses_state_dir = True`
    (files it keeps beside the database, e.g. tokens shared with a homeserver): declared
    switches, not guesses from its signature, so an adapter that needs neither is built
    as `cls(name, config, cursors)`."""
    extra: dict[str, Any] = {}
    if media_links is not None and getattr(cls, "links_media", False):
        extra["media_links"] = media_links
    if state_dir is not None and getattr(cls, "uses_state_dir", False):
        extra["state_dir"] = state_dir
    if extra:
        return cast(Callable[..., Adapter], cls)(name, config, cursors, **extra)
    return cls(name, config, cursors)
