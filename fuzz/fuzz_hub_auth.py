"""
Fuzz target: the hub's authenticator (L{clusternet.hub._auth.Authenticator}):
the front-proxy headers (C{X-Remote-User}, C{X-Remote-Group},
C{X-Remote-Extra-*}) and the bearer token.

Feeds: the first byte chooses the client certificate (none, the front
proxy's, a client certificate, one from an unknown CA); the rest is header
lines C{name: value}, separated by C{\\n}, decoded as the hub decodes them
(latin-1) after twisted.web's L{Headers} has seen them.

A crash is: any exception, or a result other than a L{User} or an
L{Unauthorized} failure; a front-proxy user that is not the first non-empty
C{X-Remote-User}; a user with no name.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import atheris  # type: ignore[import-untyped]
from cryptography import x509

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers, InvalidHeaderName
from zope.interface import implementer

with atheris.instrument_imports(include=["clusternet"]):
    from clusternet import pki
    from clusternet.hub._auth import (
        AuthConfig,
        Authenticator,
        ITokenReviewer,
        Unauthorized,
        User,
    )
    from clusternet.hub._tls import CertificateAuthorities

FRONT_CA = pki.make_ca("front-proxy-ca")
CLIENT_CA = pki.make_ca("kubernetes")
OTHER_CA = pki.make_ca("someone-else")
CHAINS: tuple[tuple[x509.Certificate, ...], ...] = (
    (),
    (pki.issue_certificate(FRONT_CA, "front-proxy-client", client=True).certificate,),
    (
        pki.issue_certificate(
            CLIENT_CA, "admin", organizations=["system:masters"], client=True
        ).certificate,
    ),
    (pki.issue_certificate(OTHER_CA, "front-proxy-client", client=True).certificate,),
)


@implementer(ITokenReviewer)
class _Tokens:
    def review(self, token: str) -> Deferred[User | None]:
        known = token == "good"  # noqa: S105
        return succeed(User(name="token-user") if known else None)


AUTHENTICATOR = Authenticator(
    AuthConfig(
        requestheader_ca=CertificateAuthorities(FRONT_CA.certificate_pem),
        client_ca=CertificateAuthorities(CLIENT_CA.certificate_pem),
        allowed_names=("front-proxy-client",),
    ),
    _Tokens(),
    Clock(),
)


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    chain = CHAINS[data[0] % len(CHAINS)]
    raw = Headers()
    for line in data[1:].split(b"\n"):
        name, _, value = line.partition(b":")
        try:
            raw.addRawHeader(name, value.strip())
        except InvalidHeaderName:
            continue  # twisted.web's parser refuses it before the hub sees it

    def lookup(name: str) -> Sequence[str]:
        return [
            v.decode("latin-1") for v in raw.getRawHeaders(name.encode("latin-1"), [])
        ]

    names = [name.decode("latin-1") for name, _ in raw.getAllRawHeaders()]
    outcomes: list[object] = []
    AUTHENTICATOR.authenticate(chain, lookup, names).addBoth(outcomes.append)
    if len(outcomes) != 1:
        raise AssertionError(f"the result fired {len(outcomes)} times")
    outcome = outcomes[0]
    if isinstance(outcome, Failure):
        if not outcome.check(Unauthorized):
            outcome.raiseException()
        return
    if not isinstance(outcome, User) or not outcome.name:
        raise AssertionError(f"not a user: {outcome!r}")
    if chain is CHAINS[1]:
        users = [v for v in lookup("X-Remote-User") if v]
        if users and outcome.name != users[0]:
            raise AssertionError(f"{outcome.name!r} is not {users[0]!r}")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
