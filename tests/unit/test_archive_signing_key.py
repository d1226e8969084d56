"""The heads' signing key as the daemon uses it (PyNaCl) agrees with `cryptography`, which
the archive commands verify with, and the daemon's signing path leaves `cryptography`
(7-8 MiB resident) unimported."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from imbridge.archive.chain import Head
from imbridge.archive.heads import (
    Signer,
    SigningKeyError,
    key_id,
    parse_private,
    private_pem,
    signed_bytes,
)

HEAD = Head(7, bytes(range(32)))
AT_US = 1_700_000_000_000_000


def _sig(line: str) -> bytes:
    return base64.b64decode(json.loads(line)["sig"])


def test_a_key_the_daemon_creates_is_the_same_key_to_cryptography(tmp_path: Path) -> None:
    signer = Signer.load(tmp_path / "k.pem", create=True)
    assert signer is not None
    pem = (tmp_path / "k.pem").read_bytes()
    theirs = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(theirs, Ed25519PrivateKey)
    assert key_id(theirs.public_key()) == signer.key_id
    message = signed_bytes(HEAD.seq, HEAD.hash.hex(), AT_US, signer.key_id)
    sig = _sig(signer.line(HEAD, AT_US))
    theirs.public_key().verify(sig, message)  # raises InvalidSignature if not
    assert sig == theirs.sign(message)  # Ed25519 is deterministic


def test_pem_written_byte_for_byte_as_cryptography_writes_it() -> None:
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert private_pem(seed) == pem
    assert parse_private(pem, "k") == seed
    assert parse_private(base64.b64encode(seed), "k") == seed


def test_a_pem_key_of_another_type_is_refused_with_its_place() -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(SigningKeyError, match=r"^archive.signing_key_file: .*not an Ed25519"):
        parse_private(pem, "archive.signing_key_file")


def test_signing_heads_does_not_import_cryptography(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from imbridge.archive.chain import Head\n"
        "from imbridge.archive.heads import Signer\n"
        "s = Signer.load(Path(sys.argv[1]), create=True)\n"
        "s.line(Head(1, bytes(32)), 1)\n"
        "s = Signer.load(Path(sys.argv[1]), create=False)\n"
        "s.line(Head(2, bytes(32)), 2)\n"
        "print(sorted({m.partition('.')[0] for m in sys.modules} & {'cryptography'}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "k.pem")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"
