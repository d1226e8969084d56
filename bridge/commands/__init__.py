"""The implementations behind `imbridge` subcommands: plain functions that print and
return an exit code (0 ok, 1 negative answer or runtime failure, 2 bad input), so tests
call them directly and `cli.py` only parses arguments."""

from __future__ import annotations

import argparse
from pathlib import Path

from imbridge.exitcodes import EXIT_USAGE


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `policy test|explain` and `archive search|verify|export|purge|checkpoint|
    audit|key|heads` on the `imbridge` command's subparsers; `dispatch` runs them."""

    def with_config(
        parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
    ) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, help=help_text, description=help_text)
        sp.add_argument(
            "-c", "--config", type=Path, required=True, metavar="FILE", help="the YAML config file"
        )
        return sp

    policy = sub.add_parser("policy", help="test and explain the gateway policy")
    psub = policy.add_subparsers(dest="action", required=True, metavar="ACTION")
    test = with_config(
        psub,
        "test",
        "decide a hypothetical message: exit 0 relayed "
        "(allowed or redacted), 1 denied, 2 bad input",
    )
    test.add_argument("--from", dest="source", required=True, metavar="NET:ROOM:USER")
    test.add_argument(
        "--to",
        required=True,
        metavar="NET[:ROOM]",
        help="without ROOM, every room of NET in the gateways",
    )
    test.add_argument("--text", default="", help="the message text")
    test.add_argument("--attachment", action="append", default=[], metavar="NAME[,MIMETYPE[,SIZE]]")
    test.add_argument("--quoted", help="the original a reply quotes")
    test.add_argument("--edit", action="store_true", help="test it as an edit")
    test.add_argument("--name", help="the sender's display name (default: USER)")
    with_config(psub, "explain", "list barriers and rules in evaluation order")

    archive = sub.add_parser("archive", help="search, verify, export and purge the archive")
    asub = archive.add_subparsers(dest="action", required=True, metavar="ACTION")

    def filters(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--network", help="network name or glob")
        sp.add_argument("--room", help="room or glob")
        sp.add_argument("--user", help="sender id or glob")
        sp.add_argument("--since", metavar="DATE", help="2024-05-01 or ISO 8601 time (UTC)")
        sp.add_argument("--until", metavar="DATE", help="exclusive")

    search = with_config(asub, "search", "keyword search over archived messages")
    search.add_argument("query", metavar="QUERY", help="words that must all occur")
    filters(search)
    search.add_argument("--format", dest="fmt", choices=["table", "json"], default="table")
    search.add_argument("--limit", type=int, default=100)
    verify = with_config(asub, "verify", "check the hash chain: exit 0 intact, 1 tampered")
    verify.add_argument(
        "--heads",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="an external copy of the signed heads (`archive heads` output) to check against",
    )
    verify.add_argument(
        "--public-key",
        metavar="KEY",
        help="check signatures with this key (`archive key` output); default: the configured one",
    )
    export = with_config(
        asub, "export", "export as JSON Lines, one .eml per message, or one zip with the files"
    )
    export.add_argument("--format", dest="fmt", choices=["jsonl", "eml", "zip"], required=True)
    export.add_argument(
        "--output",
        type=Path,
        metavar="PATH",
        help="jsonl: a file, attachments in files/ beside it (default stdout, no files); "
        "eml: a directory (required); zip: a file (required)",
    )
    filters(export)
    with_config(asub, "purge", "delete records past retention_days now (legal hold kept)")
    with_config(asub, "checkpoint", "append the chain head to the head file now")
    audit = with_config(asub, "audit", "list who accessed the archive, configs and legal holds")
    audit.add_argument("--since", metavar="DATE", help="2024-05-01 or ISO 8601 time (UTC)")
    audit.add_argument("--kind", choices=["access", "config", "hold"], help="one kind only")
    audit.add_argument("--format", dest="fmt", choices=["table", "json"], default="table")
    with_config(asub, "key", "print the public key that checks the signed chain heads")
    heads = with_config(asub, "heads", "print the signed chain heads as JSON lines")
    heads.add_argument("--since", type=int, metavar="SEQ", help="only heads after record SEQ")
    from imbridge.commands import console  # noqa: PLC0415 - the console's own parsers

    console.add_parsers(sub)
    matrix = sub.add_parser("matrix", help="Matrix appservice setup")
    msub = matrix.add_subparsers(dest="action", required=True, metavar="ACTION")
    reg = with_config(
        msub, "registration", "print the appservice registration YAML for the homeserver"
    )
    reg.add_argument("--network", help="the appservice network, when the config has several")


def dispatch(args: argparse.Namespace) -> int:  # noqa: PLR0911 - one per subcommand
    """Runs the `policy` or `archive` subcommand parsed by `add_parsers`."""
    from imbridge.commands import archive, heads, policy  # noqa: PLC0415 - only when asked for

    if args.command == "console":
        from imbridge.commands import console  # noqa: PLC0415 - only when asked for

        return console.dispatch(args)
    match (args.command, args.action):
        case ("policy", "test"):
            return policy.policy_test(
                args.config,
                source=args.source,
                to=args.to,
                text=args.text,
                attachments=args.attachment,
                quoted=args.quoted,
                edit=args.edit,
                name=args.name,
            )
        case ("policy", "explain"):
            return policy.policy_explain(args.config)
        case ("archive", "search"):
            return archive.archive_search(
                args.config,
                args.query,
                network=args.network,
                room=args.room,
                user=args.user,
                since=args.since,
                until=args.until,
                fmt=args.fmt,
                limit=args.limit,
            )
        case ("archive", "verify"):
            return archive.archive_verify(args.config, heads=args.heads, public_key=args.public_key)
        case ("archive", "export"):
            return archive.archive_export(
                args.config,
                fmt=args.fmt,
                output=args.output,
                network=args.network,
                room=args.room,
                user=args.user,
                since=args.since,
                until=args.until,
            )
        case ("archive", "purge"):
            return archive.archive_purge(args.config)
        case ("archive", "checkpoint"):
            return archive.archive_checkpoint(args.config)
        case ("archive", "audit"):
            from imbridge.commands.audit import archive_audit  # noqa: PLC0415 - when asked

            return archive_audit(args.config, since=args.since, kind=args.kind, fmt=args.fmt)
        case ("archive", "key"):
            return heads.archive_key(args.config)
        case ("archive", "heads"):
            return heads.archive_heads(args.config, since=args.since)
        case _:
            return EXIT_USAGE
