"""The rule engine's table, continued: rows about attachments (names, types, sizes), in
the vocabulary of `policy_cases`."""

from __future__ import annotations

from imbridge.events import (
    Attachment,
)
from imbridge.policy import (
    Action,
)
from tests.unit.policy_cases import Case, msg, policy

ATT_EXE = Attachment(
    url="mxc://x/1", name="Setup.EXE", mimetype="application/x-msdownload", size=10
)
ATT_BIG = Attachment(url="mxc://x/2", name="film.mp4", mimetype="video/mp4", size=50_000_000)
ATT_SMALL = Attachment(url="mxc://x/3", name="cat.png", mimetype="image/png", size=1000)
ATT_UNKNOWN = Attachment(url="mxc://x/4", name="blob", mimetype="image/png")
DENY_EXE = {"name": "no-exe", "action": "deny", "attachments": {"names": ["*.exe"]}}
DENY_VIDEO = {"name": "no-video", "action": "deny", "attachments": {"types": ["video/*"]}}
DENY_BIG = {"name": "no-big", "action": "deny", "attachments": {"max_bytes": 1_000_000}}
STRIP_EXE = {
    "name": "strip-exe",
    "action": "redact",
    "attachments": {"types": ["application/x-msdownload"]},
}

ATTACHMENT_CASES = [
    # -- attachments ------------------------------------------------------------------
    Case(
        "attachment-name-glob",
        policy(DENY_EXE),
        msg("tool", attachments=(ATT_EXE,)),
        "corp-xmpp",
        Action.DENY,
        "no-exe",
    ),
    Case(
        "attachment-type-glob",
        policy(DENY_VIDEO),
        msg("clip", attachments=(ATT_BIG,)),
        "corp-xmpp",
        Action.DENY,
        "no-video",
    ),
    Case(
        "attachment-size",
        policy(DENY_BIG),
        msg("clip", attachments=(ATT_BIG,)),
        "corp-xmpp",
        Action.DENY,
        "no-big",
    ),
    Case(
        "attachment-small-passes",
        policy(DENY_BIG),
        msg("cat", attachments=(ATT_SMALL,)),
        "corp-xmpp",
        Action.ALLOW,
        "default",
    ),
    Case(
        "attachment-unknown-size-fails-closed",
        policy(DENY_BIG),
        msg("?", attachments=(ATT_UNKNOWN,)),
        "corp-xmpp",
        Action.DENY,
        "no-big",
    ),
    Case(
        "attachment-rule-skips-plain-text",
        policy(DENY_EXE),
        msg("no files"),
        "corp-xmpp",
        Action.ALLOW,
        "default",
    ),
    Case(
        "attachment-stripped",
        policy(STRIP_EXE),
        msg("two files", attachments=(ATT_EXE, ATT_SMALL)),
        "corp-xmpp",
        Action.REDACT,
        "strip-exe",
        text="two files",
        extra={"attachments": (ATT_SMALL,)},
    ),
    Case(
        "attachment-stripped-nothing-left",
        policy(STRIP_EXE),
        msg("", attachments=(ATT_EXE,)),
        "corp-xmpp",
        Action.DENY,
        "strip-exe",
    ),
]
