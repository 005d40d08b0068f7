"""
Tests of how the dialing side connects to a stream's target.
"""

from __future__ import annotations

import pytest

from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
)
from twisted.internet.task import Clock

from clusternet.tunnel import tcp_endpoint


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", TCP4ClientEndpoint),
        ("10.96.0.1", TCP4ClientEndpoint),
        ("::1", TCP6ClientEndpoint),
        ("fd00::10", TCP6ClientEndpoint),
        ("kubernetes.default.svc", HostnameEndpoint),
        ("localhost", HostnameEndpoint),
    ],
)
def test_addresses_are_dialled_as_they_are_and_names_resolved(
    host: str, kind: type
) -> None:
    """
    An IP address needs no resolution (HostnameEndpoint would resolve it in a
    thread on every dial); a name goes through HostnameEndpoint.
    """
    endpoint = tcp_endpoint(Clock(), host, 443)
    assert type(endpoint) is kind
