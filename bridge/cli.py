"""The `imbridge` command: parses arguments and calls plain functions, which tests call
directly. Exit codes are `imbridge.exitcodes`' table, config errors are printed by
`config.report.print_config_error`, for every subcommand alike."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from imbridge import __version__, slim  # noqa: F401 - slim first, before structlog
from imbridge.config.load import load_config
from imbridge.config.report import print_config_error
from imbridge.config.schema import Config
from imbridge.errors import ConfigError, ImbridgeError
from imbridge.exitcodes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE


def check(path: Path) -> int:
    """`imbridge check`: prints every problem of the config file, or a summary."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        print_config_error(path, exc, sys.stderr)
        print(f"{path}: {len(exc.issues)} error(s)", file=sys.stderr)
        return EXIT_USAGE
    rooms = sum(len(g.rooms) for g in config.gateways.values())
    print(
        f"{path}: ok ({len(config.networks)} networks, {len(config.gateways)} gateways, "
        f"{rooms} rooms, {len(config.policy.rules)} policy rules)"
    )
    return EXIT_OK


def load_or_report(path: Path) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print_config_error(path, exc, sys.stderr)
        return None


def run(path: Path) -> int:
    """`imbridge run`: the daemon, until SIGTERM or SIGINT."""
    config = load_or_report(path)
    if config is None:
        return EXIT_USAGE
    from imbridge import allocator, logs
    from imbridge.daemon import serve

    allocator.hold_thresholds()
    logs.setup(config.bridge.log.level, config.bridge.log.format)
    try:
        return asyncio.run(serve(config))
    except ImbridgeError as exc:
        print(f"imbridge: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def status(path: Path) -> int:
    """`imbridge status`: asks the running daemon's /readyz and prints each network."""
    import json
    import urllib.error
    import urllib.request

    config = load_or_report(path)
    if config is None:
        return EXIT_USAGE
    listen = config.bridge.http.listen
    if not listen:
        print(
            "imbridge: bridge.http.listen is not set; the daemon has no status endpoint",
            file=sys.stderr,
        )
        return EXIT_USAGE
    url = f"http://{listen}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as exc:  # 503: not ready, with the same body
        body = json.load(exc)
    except OSError as exc:
        print(f"imbridge: cannot reach {url}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    instance = body.get("instance")
    if body.get("shared"):
        print(f"instance {instance}; others on the same state run the networks marked so")
    for name, state in sorted(body["networks"].items()):
        extra = "" if state["required"] else " (optional)"
        if not state.get("here", True):
            where = f"on {state['owner']}" if state.get("owner") else "NOT RUN BY ANY INSTANCE"
            print(f"{name:<20} {where:<25} outbox {state['outbox']}{extra}")
            continue
        word = "connected" if state["connected"] else "DISCONNECTED"
        joined = "joined" if state["joined"] else "not joined"
        print(f"{name:<20} {word:<13} {joined:<11} outbox {state['outbox']}{extra}")
    for other in body.get("config_mismatch", []):
        print(f"CONFIG MISMATCH: instance {other} runs another config")
    for name, sink in sorted(body.get("sinks", {}).items()):
        word = "up" if sink["up"] else "DOWN"
        error = f" ({sink['error']})" if sink["error"] and not sink["up"] else ""
        print(
            f"sink {name:<15} {word:<13} lag {sink['lag']} records, "
            f"{sink['lag_seconds']:.1f} s{error}"
        )
    print("ready" if body["ready"] else "NOT READY")
    return EXIT_OK if body["ready"] else EXIT_FAILURE


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="imbridge",
        description="Relay rooms between IRC, XMPP and Matrix under policy, and archive "
        "what crossed.",
    )
    p.add_argument("--version", action="version", version=f"imbridge {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(name: str, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.add_argument(
            "-c", "--config", type=Path, required=True, metavar="FILE", help="the YAML config file"
        )
        return sp

    with_config("run", "run the bridge daemon until SIGTERM/SIGINT (SIGHUP reloads)")
    with_config("check", "validate a config file: exit 0 if valid, 2 printing every error")
    with_config("status", "print each network's state from the running daemon (/readyz)")
    from imbridge import commands

    commands.add_parsers(sub)
    from imbridge.commands import db

    db.add_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911 - one per command
    args = parser().parse_args(argv)
    match args.command:
        case "run":
            return run(args.config)
        case "check":
            return check(args.config)
        case "status":
            return status(args.config)
        case "matrix":
            from imbridge.commands import matrix

            return matrix.matrix_registration(args.config, network=args.network)
        case "db":
            from imbridge.commands import db

            return db.dispatch(args)
        case "policy" | "archive" | "console":
            from imbridge import commands

            return commands.dispatch(args)
        case _:  # pragma: no cover - argparse rejects unknown commands
            return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
