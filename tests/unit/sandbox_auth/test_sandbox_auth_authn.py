"""
Request authentication: client certificates, front-proxy headers, tokens,
the union's order and the anonymous policy.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st

from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from clusternet.pki import issue_certificate, make_ca
from clusternet.sandbox._auth_api import (
    AuthenticationError,
    IAuthenticator,
    RequestCredentials,
    UserInfo,
)
from clusternet.sandbox.auth import (
    ITokenAuthenticator,
    RequestHeaderAuthenticator,
    StaticTokenAuthenticator,
    UnionAuthenticator,
    X509Authenticator,
    parse_token_file,
)

CLIENT_CA = make_ca("client-ca")
FRONT_CA = make_ca("front-proxy-ca")
ADMIN = issue_certificate(
    CLIENT_CA, "kubernetes-admin", organizations=["system:masters"], client=True
)
PROXY = issue_certificate(FRONT_CA, "front-proxy-client", client=True)
SERVER_ONLY = issue_certificate(CLIENT_CA, "server", server=True)


def _clock() -> Clock:
    clock = Clock()
    clock.advance(ADMIN.certificate.not_valid_before_utc.timestamp() + 3600)
    return clock


def _creds(chain=(), **headers: tuple[str, ...] | str) -> RequestCredentials:
    normalized = {
        k.lower().replace("_", "-"): (v,) if isinstance(v, str) else v
        for k, v in headers.items()
    }
    return RequestCredentials(headers=normalized, peer_chain=tuple(chain))


def _union(**kwargs) -> UnionAuthenticator:
    clock = _clock()
    return UnionAuthenticator(
        front_proxy=RequestHeaderAuthenticator(
            [FRONT_CA.certificate], clock, allowed_names=["front-proxy-client"]
        ),
        client_certificates=X509Authenticator([CLIENT_CA.certificate], clock),
        tokens=[
            StaticTokenAuthenticator(
                {"s3cret": UserInfo(name="alice", uid="1", groups=("devs",))}
            )
        ],
        **kwargs,
    )


def test_authenticators_provide_their_interfaces() -> None:
    clock = _clock()
    assert verifyObject(IAuthenticator, X509Authenticator([], clock))
    assert verifyObject(IAuthenticator, RequestHeaderAuthenticator([], clock))
    assert verifyObject(ITokenAuthenticator, StaticTokenAuthenticator({}))
    assert verifyObject(IAuthenticator, _union())
    assert verifyObject(ITokenAuthenticator, _union())


def test_client_certificate_user_is_cn_with_o_groups_and_credential_id() -> None:
    user = _union().authenticate(_creds([ADMIN.certificate]))
    fingerprint = hashlib.sha256(ADMIN.certificate.public_bytes(Encoding.DER))
    assert user == UserInfo(
        name="kubernetes-admin",
        groups=("system:masters", "system:authenticated"),
        extra={
            "authentication.kubernetes.io/credential-id": (
                "X509SHA256=" + fingerprint.hexdigest(),
            )
        },
    )


def test_certificate_from_another_ca_is_refused() -> None:
    stranger = issue_certificate(make_ca("other"), "mallory", client=True)
    with pytest.raises(AuthenticationError, match="unknown authority"):
        _union().authenticate(_creds([stranger.certificate]))


def test_expired_certificate_is_refused() -> None:
    clock = _clock()
    clock.advance(400 * 86400)
    with pytest.raises(AuthenticationError, match="expired"):
        X509Authenticator([CLIENT_CA.certificate], clock).authenticate(
            _creds([ADMIN.certificate])
        )


def test_server_only_certificate_is_refused_for_client_auth() -> None:
    with pytest.raises(AuthenticationError, match="incompatible key usage"):
        _union().authenticate(_creds([SERVER_ONLY.certificate]))


def test_front_proxy_headers_name_the_user_groups_and_extras() -> None:
    user = _union().authenticate(
        _creds(
            [PROXY.certificate],
            x_remote_user="bob",
            x_remote_group=("g1", "g2", ""),
            **{
                "X-Remote-Extra-Clusternet-Token": "abc",
                "X-Remote-Extra-Example.com%2Fscope": ("a", "b"),
            },
        )
    )
    assert user == UserInfo(
        name="bob",
        groups=("g1", "g2", "system:authenticated"),
        extra={"clusternet-token": ("abc",), "example.com/scope": ("a", "b")},
    )


def test_malformed_extra_key_escape_is_kept_raw() -> None:
    user = _union().authenticate(
        _creds([PROXY.certificate], x_remote_user="bob", **{"X-Remote-Extra-a%zz": "1"})
    )
    assert user is not None and user.extra == {"a%zz": ("1",)}


def test_forged_remote_headers_with_a_client_certificate_are_ignored() -> None:
    user = _union().authenticate(
        _creds([ADMIN.certificate], x_remote_user="root", x_remote_group="hackers")
    )
    assert user is not None and user.name == "kubernetes-admin"


def test_forged_remote_headers_without_any_certificate_are_ignored() -> None:
    assert _union().authenticate(_creds(x_remote_user="root")) is None
    anonymous = _union(anonymous=True).authenticate(_creds(x_remote_user="root"))
    assert anonymous == UserInfo(
        name="system:anonymous", groups=("system:unauthenticated",)
    )


def test_front_proxy_certificate_with_a_name_not_allowed_is_refused() -> None:
    other = issue_certificate(FRONT_CA, "someone-else", client=True)
    with pytest.raises(AuthenticationError, match="not in the allowed list"):
        _union().authenticate(_creds([other.certificate], x_remote_user="bob"))


def test_bearer_token_and_unknown_token() -> None:
    union = _union(anonymous=True)
    user = union.authenticate(_creds(authorization="Bearer s3cret"))
    assert user == UserInfo(
        name="alice", uid="1", groups=("devs", "system:authenticated")
    )
    with pytest.raises(AuthenticationError, match="invalid bearer token"):
        union.authenticate(_creds(authorization="Bearer nope"))


def test_non_bearer_authorization_is_not_a_credential() -> None:
    assert _union().authenticate(_creds(authorization="Basic YTpi")) is None


def test_token_in_websocket_protocol() -> None:
    encoded = base64.urlsafe_b64encode(b"s3cret").rstrip(b"=").decode()
    creds = _creds(
        connection="Upgrade",
        upgrade="websocket",
        sec_websocket_protocol=(
            f"base64url.bearer.authorization.k8s.io.{encoded}, v4.channel.k8s.io"
        ),
    )
    user = _union().authenticate(creds)
    assert user is not None and user.name == "alice"
    alone = _creds(
        connection="Upgrade",
        upgrade="websocket",
        sec_websocket_protocol=f"base64url.bearer.authorization.k8s.io.{encoded}",
    )
    with pytest.raises(AuthenticationError, match="missing additional subprotocol"):
        _union().authenticate(alone)


def test_no_credentials_is_401_unless_anonymous_is_enabled() -> None:
    assert _union().authenticate(_creds()) is None
    assert _union(anonymous=True).authenticate(_creds()) == UserInfo(
        name="system:anonymous", groups=("system:unauthenticated",)
    )


def test_certificate_still_wins_when_a_bad_token_comes_with_it() -> None:
    user = _union().authenticate(
        _creds([ADMIN.certificate], authorization="Bearer nope")
    )
    assert user is not None and user.name == "kubernetes-admin"


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "authorization",
                "x-remote-user",
                "x-remote-group",
                "connection",
                "upgrade",
                "sec-websocket-protocol",
                "x-remote-extra-a",
            ]
        ),
        st.lists(st.text(max_size=40), max_size=3).map(tuple),
    )
)
def test_arbitrary_headers_give_a_user_none_or_authentication_error(headers) -> None:
    try:
        result = _union(anonymous=True).authenticate(
            RequestCredentials(headers=headers)
        )
    except AuthenticationError:
        return
    assert result is None or isinstance(result, UserInfo)


def test_token_file_parses_groups_and_rejects_short_lines() -> None:
    tokens = parse_token_file('# comment\ntok1,alice,1,"a,b"\ntok2,bob,2\n')
    assert tokens == {
        "tok1": UserInfo(name="alice", uid="1", groups=("a", "b")),
        "tok2": UserInfo(name="bob", uid="2"),
    }
    with pytest.raises(ValueError):
        parse_token_file("tok,alice\n")
