"""`imbridge console` (the review console as its own process) and `imbridge console user
add|del|list|passwd` (its accounts). A password is read from standard input, never from
the command line (which other users see in `ps`): typed twice at a terminal, or the
first line of a pipe."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path
from typing import TextIO

from imbridge.config.load import load_config
from imbridge.errors import ConfigError, ImbridgeError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    console = sub.add_parser(
        "console",
        help="serve the review console, or manage its accounts",
        description="Serve the review console on console.listen (without ACTION), or "
        "manage its accounts (`user add|del|list|passwd`).",
    )
    # Not `required`: `-c FILE` may also come last, after `user add NAME` (checked below).
    console.add_argument("-c", "--config", type=Path, metavar="FILE", help="the YAML config file")
    csub = console.add_subparsers(dest="action", metavar="ACTION")
    user = csub.add_parser("user", help="add, delete, list accounts or change a password")
    usub = user.add_subparsers(dest="user_action", required=True, metavar="ACTION")
    add = usub.add_parser("add", help="add an account; the password is read from stdin")
    add.add_argument("name")
    add.add_argument("--role", choices=["reviewer", "auditor", "admin"], required=True)
    delete = usub.add_parser("del", help="delete an account (its sessions end)")
    delete.add_argument("name")
    usub.add_parser("list", help="list accounts and roles")
    passwd = usub.add_parser("passwd", help="set a new password (read from stdin)")
    passwd.add_argument("name")
    for sp in (add, delete, passwd, user):
        sp.add_argument("-c", "--config", type=Path, metavar="FILE", default=argparse.SUPPRESS)


def read_password(stdin: TextIO, err: TextIO) -> str:
    if stdin.isatty():
        first = getpass.getpass("Password: ", stream=err)
        if getpass.getpass("Again: ", stream=err) != first:
            raise ValueError("the passwords differ")
        return first
    return stdin.readline().rstrip("\r\n")


def dispatch(args: argparse.Namespace) -> int:
    if args.config is None:
        print("imbridge console: -c FILE (the config file) is required", file=sys.stderr)
        return EXIT_USAGE
    if args.action is None:
        return console_serve(args.config)
    return console_user(
        args.config,
        args.user_action,
        name=getattr(args, "name", None),
        role=getattr(args, "role", None),
    )


def console_serve(config_path: Path, *, err: TextIO | None = None) -> int:
    err = err or sys.stderr
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"{config_path}: {issue}", file=err)
        return EXIT_USAGE
    from imbridge import logs  # noqa: PLC0415 - only when serving
    from imbridge.console.server import serve  # noqa: PLC0415

    logs.setup(config.bridge.log.level, config.bridge.log.format)
    try:
        return asyncio.run(serve(config))
    except (ImbridgeError, OSError) as exc:
        print(f"imbridge console: {exc}", file=err)
        return EXIT_FAILURE


def console_user(
    config_path: Path,
    action: str,
    *,
    name: str | None = None,
    role: str | None = None,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Adds, deletes or lists console accounts, or sets a password."""
    stdin, out, err = stdin or sys.stdin, out or sys.stdout, err or sys.stderr
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"{config_path}: {issue}", file=err)
        return EXIT_USAGE
    from imbridge.console.users import Role, UserError, UserStore  # noqa: PLC0415 - argon2

    store = UserStore(config.bridge.state_dir)
    try:
        match action:
            case "add":
                password = read_password(stdin, err)
                user = store.add(str(name), Role.parse(str(role)), password)
                print(f"added {user.name} ({user.role.label})", file=out)
            case "passwd":
                store.passwd(str(name), read_password(stdin, err))
                print(f"password of {name} changed; its sessions have ended", file=out)
            case "del":
                store.delete(str(name))
                print(f"deleted {name}", file=out)
            case "list":
                users = store.users()
                for u in sorted(users.values(), key=lambda u: u.name):
                    print(f"{u.name:<24} {u.role.label:<9} created {u.created}", file=out)
                if not users:
                    print("no console accounts yet", file=out)
            case _:
                return EXIT_USAGE
    except (UserError, ValueError) as exc:
        print(f"imbridge console user: {exc}", file=err)
        return EXIT_USAGE
    except OSError as exc:
        print(f"imbridge console user: {exc}", file=err)
        return EXIT_FAILURE
    return EXIT_OK
