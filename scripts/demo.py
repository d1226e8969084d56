"""Quick start: real IRC, XMPP and Matrix servers on loopback, bridged by imbridge in one
gateway. Started by `scripts/quickstart`; Ctrl-C stops everything.

The servers are started by the same fixtures the integration tests use (tests/servers/),
so what you try here is what the tests check.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers.ircd import launch  # noqa: E402
from tests.servers.process import free_port  # noqa: E402
from tests.servers.prosody import MUC_DOMAIN, Prosody  # noqa: E402
from tests.servers.synapse import RELAXED_LIMITS, SynapseServer  # noqa: E402


def main() -> int:
    demo = ROOT / "demo"
    shutil.rmtree(demo, ignore_errors=True)
    demo.mkdir()
    print("starting ngircd, Prosody and Synapse on 127.0.0.1 ...", flush=True)
    irc = launch("ngircd", "relaxed", demo / "irc")
    xmpp = Prosody(state=demo / "xmpp")
    xmpp.write_config()
    xmpp.start()
    matrix = SynapseServer(demo / "matrix", dict(RELAXED_LIMITS))
    matrix.start()
    stoppers = [irc.stop, xmpp.stop, matrix.stop]
    daemon: subprocess.Popen[bytes] | None = None
    try:
        relay_jid, relay_pw = xmpp.register("relay")
        alice_jid, alice_pw = xmpp.register("alice")
        mx_relay = matrix.register("relay")
        mx_alice = matrix.register("alice")
        room_id = matrix.api(
            "POST",
            "/_matrix/client/v3/createRoom",
            {"preset": "public_chat", "room_alias_name": "demo", "name": "imbridge demo"},
            token=mx_relay.access_token,
        )["room_id"]
        muc = f"demo@{MUC_DOMAIN}"
        http = f"127.0.0.1:{free_port()}"
        config = {
            "bridge": {
                "state_dir": str(demo / "state"),
                # Synapse keeps media behind a token: attachments posted on Matrix reach
                # the other rooms as links to the bridge, which serves them.
                "http": {"listen": http, "public_url": f"http://{http}/"},
                "log": {"level": "info", "format": "console"},
            },
            "networks": {
                "irc": {
                    "type": "irc",
                    "host": irc.host,
                    "port": irc.port,
                    "tls": False,
                    "nick": "relay",
                },
                "xmpp": {
                    "type": "xmpp",
                    "jid": relay_jid,
                    "password": relay_pw,
                    "host": xmpp.host,
                    "port": xmpp.port,
                    "tls": "plain",
                    "nick": "relay",
                },
                "matrix": {
                    "type": "matrix",
                    "homeserver": matrix.url,
                    "user_id": mx_relay.user_id,
                    "access_token": mx_relay.access_token,
                },
            },
            "gateways": {
                "demo": {
                    "rooms": [
                        {"network": "irc", "room": "#demo"},
                        {"network": "xmpp", "room": muc},
                        {"network": "matrix", "room": room_id},
                    ]
                }
            },
            "archive": {
                "enabled": True,
                "notice": "This room is bridged by imbridge and archived.",
            },
            "policy": {
                "lexicons": {"demo": {"words": ["inside information", "confidential"]}},
                "rules": [{"name": "demo-words", "action": "flag", "lexicons": ["demo"]}],
            },
            "console": {"enabled": True},
        }
        path = demo / "bridge.yaml"
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        reviewer_pw = secrets.token_urlsafe(12)
        subprocess.run(  # the demo reviewer account; the password goes in on stdin
            [str(ROOT / ".venv" / "bin" / "imbridge"), "console", "user", "add", "reviewer",
             "--role", "reviewer", "-c", str(path)],
            input=reviewer_pw + "\n", text=True, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        daemon = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "imbridge"), "run", "-c", str(path)]
        )
        time.sleep(1)
        print(
            f"""
imbridge is running with {path}; one gateway joins three rooms:

  IRC     any client, e.g.:  irssi -c 127.0.0.1 -p {irc.port} -n you   then  /join #demo
  XMPP    account {alice_jid} password {alice_pw}
          (server 127.0.0.1 port {xmpp.port}, plain connection allowed on loopback),
          then join the group chat {muc}
  Matrix  homeserver {matrix.url}, user {mx_alice.user_id} password {mx_alice.password},
          then join #demo:localhost ({room_id})

Review console: http://{http}/console/   user reviewer  password {reviewer_pw}
          (say "inside information" in a room: it lands in the review queue; for holds,
          export and the audit log: imbridge console user add NAME --role admin -c {path})
Health and metrics: http://{http}/readyz  http://{http}/metrics
Try:  .venv/bin/imbridge status -c {path}
      .venv/bin/imbridge archive search -c {path} hello
Ctrl-C stops the bridge and the servers.
""",
            flush=True,
        )
        try:
            daemon.wait()
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(20)
        for stop in stoppers:
            stop()


if __name__ == "__main__":
    sys.exit(main())
