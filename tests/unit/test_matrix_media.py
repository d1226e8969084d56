"""Whether a homeserver's `/versions` answer means plain media links will not open."""

from __future__ import annotations

from typing import Any

import pytest

from imbridge.adapters.matrix.proxy import advertises_auth_media


@pytest.mark.parametrize(
    ("versions", "authenticated"),
    [
        ({"versions": ["v1.10", "v1.11"]}, True),
        ({"versions": ["r0.6.1", "v1.1", "v1.12"]}, True),
        ({"versions": ["v1.1", "v1.9", "v1.10"]}, False),
        ({"versions": ["v1.10"], "unstable_features": {"org.matrix.msc3916.stable": True}}, True),
        ({"versions": ["v1.10"], "unstable_features": {"org.matrix.msc3916.stable": False}}, False),
        ({"versions": "v1.11"}, False),
        ({}, False),
    ],
)
def test_authenticated_media_is_recognised(versions: dict[str, Any], authenticated: bool) -> None:
    assert advertises_auth_media(versions) is authenticated
