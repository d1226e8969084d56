"""`imbridge matrix registration`: the application-service registration a homeserver
needs before a `mode: appservice` Matrix network can run.

The core knows no protocol: the registration comes from the network's adapter class
(its `registration` classmethod, found through the registry like any adapter), so this
command only picks the network and prints YAML.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

import yaml

from imbridge import registry
from imbridge.config.load import load_config
from imbridge.config.report import print_config_error
from imbridge.errors import ConfigError
from imbridge.exitcodes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE


def matrix_registration(
    config_path: Path,
    *,
    network: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Prints the registration YAML of the config's appservice network (or `network`):
    exit 0, or 2 when the config has no such network or is invalid."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print_config_error(config_path, exc, err)
        return EXIT_USAGE
    candidates = [
        name
        for name, net in config.networks.items()
        if getattr(net, "mode", None) == "appservice" and (network is None or name == network)
    ]
    if len(candidates) != 1:
        which = f"network {network!r} with" if network else "exactly one network with"
        print(f"{config_path}: needs {which} type: matrix and mode: appservice", file=err)
        return EXIT_USAGE
    name = candidates[0]
    net = config.networks[name]
    make = getattr(registry.adapter_class(net.type), "registration", None)
    if make is None:
        print(f"{config_path}: networks.{name}: type {net.type} has no registration", file=err)
        return EXIT_USAGE
    try:
        body: dict[str, Any] = make(
            name, net, state_dir=config.bridge.state_dir, listen=config.bridge.http.listen
        )
    except ValueError as exc:
        print(f"{config_path}: {exc}", file=err)
        return EXIT_USAGE
    except OSError as exc:
        print(f"{config_path}: cannot keep the tokens in state_dir: {exc}", file=err)
        return EXIT_FAILURE
    out.write(yaml.safe_dump(body, sort_keys=False))
    return EXIT_OK
