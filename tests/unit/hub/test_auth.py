"""
The hub's authentication chain and its caching SubjectAccessReview authorizer.
"""

import pytest
from cryptography import x509

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from clusternet import pki
from clusternet.hub._auth import (
    AuthConfig,
    Authenticator,
    CachingAuthorizer,
    Forbidden,
    IAccessReviewer,
    ITokenReviewer,
    RequestAttributes,
    Unauthorized,
    User,
)
from clusternet.hub._tls import CertificateAuthorities

FRONT_CA = pki.make_ca("front-proxy-ca")
CLIENT_CA = pki.make_ca("kubernetes")
OTHER_CA = pki.make_ca("someone-else")
FRONT = pki.issue_certificate(FRONT_CA, "front-proxy-client", client=True)
ADMIN = pki.issue_certificate(
    CLIENT_CA, "admin", organizations=["system:masters"], client=True
)
FORGED = pki.issue_certificate(OTHER_CA, "front-proxy-client", client=True)
SERVER_ONLY = pki.issue_certificate(CLIENT_CA, "server", server=True)


def chain(pair: pki.KeyPair) -> tuple[x509.Certificate, ...]:
    return (pair.certificate,)


def config(**overrides: object) -> AuthConfig:
    values: dict[str, object] = {
        "requestheader_ca": CertificateAuthorities(FRONT_CA.certificate_pem),
        "client_ca": CertificateAuthorities(CLIENT_CA.certificate_pem),
    }
    values.update(overrides)
    return AuthConfig(**values)  # type: ignore[arg-type]


def headers_of(raw: dict[str, list[str]]) -> tuple[object, list[str]]:
    lowered = {k.lower(): v for k, v in raw.items()}
    return (lambda name: lowered.get(name.lower(), [])), list(raw)


@implementer(ITokenReviewer)
class Tokens:
    def __init__(self, known: dict[str, User]) -> None:
        self.known = known
        self.calls = 0

    def review(self, token: str) -> Deferred[User | None]:
        self.calls += 1
        return succeed(self.known.get(token))


def authenticate(
    auth: Authenticator, certs: tuple[x509.Certificate, ...], raw: dict[str, list[str]]
) -> Deferred[User]:
    lookup, names = headers_of(raw)
    return auth.authenticate(certs, lookup, names)  # type: ignore[arg-type]


class TestAuthenticator:
    def setup_method(self) -> None:
        self.clock = Clock()
        self.tokens = Tokens({"good-token": User("system:serviceaccount:ns:sa")})
        self.auth = Authenticator(config(), self.tokens, self.clock)

    def user(
        self, certs: tuple[x509.Certificate, ...], raw: dict[str, list[str]]
    ) -> User:
        results: list[object] = []
        authenticate(self.auth, certs, raw).addBoth(results.append)
        assert len(results) == 1
        result = results[0]
        if isinstance(result, User):
            return result
        result.raiseException()  # type: ignore[attr-defined]
        raise AssertionError("unreachable")

    def test_verifier_interfaces(self) -> None:
        assert verifyObject(ITokenReviewer, self.tokens)

    def test_front_proxy_headers_are_the_user(self) -> None:
        user = self.user(
            chain(FRONT),
            {
                "X-Remote-User": ["alice"],
                "X-Remote-Group": ["devs", "system:authenticated"],
                "X-Remote-Extra-Clusternet-Token": ["abc"],
                "X-Remote-Extra-Scopes%2fread": ["x"],
            },
        )
        assert user.name == "alice"
        assert user.groups == ("devs", "system:authenticated")
        assert user.extra == {"clusternet-token": ("abc",), "scopes/read": ("x",)}

    def test_forged_remote_user_without_front_proxy_certificate_is_ignored(
        self,
    ) -> None:
        with pytest.raises(Unauthorized):
            self.user(
                (),
                {
                    "X-Remote-User": ["system:admin"],
                    "X-Remote-Group": ["system:masters"],
                },
            )

    def test_forged_front_proxy_certificate_from_another_ca_is_refused(self) -> None:
        with pytest.raises(Unauthorized):
            self.user(chain(FORGED), {"X-Remote-User": ["system:admin"]})

    def test_allowed_names_restrict_the_front_proxy(self) -> None:
        self.auth.config = config(allowed_names=("aggregator",))
        with pytest.raises(Unauthorized):
            self.user(chain(FRONT), {"X-Remote-User": ["alice"]})

    def test_front_proxy_without_user_header_is_not_a_user(self) -> None:
        with pytest.raises(Unauthorized):
            self.user(chain(FRONT), {})

    def test_client_certificate_names_user_and_groups(self) -> None:
        user = self.user(chain(ADMIN), {"X-Remote-User": ["ignored"]})
        assert user.name == "admin"
        assert user.groups == ("system:masters", "system:authenticated")
        assert user.is_master

    def test_certificate_without_client_usage_is_refused(self) -> None:
        with pytest.raises(Unauthorized):
            self.user(chain(SERVER_ONLY), {})

    def test_bearer_token_reviewed_and_cached(self) -> None:
        for _ in range(3):
            user = self.user((), {"Authorization": ["Bearer good-token"]})
            assert user.name == "system:serviceaccount:ns:sa"
        assert self.tokens.calls == 1
        self.clock.advance(11)
        self.user((), {"Authorization": ["Bearer good-token"]})
        assert self.tokens.calls == 2

    def test_bad_bearer_token_is_unauthorized_and_not_echoed(self) -> None:
        with pytest.raises(Unauthorized) as caught:
            self.user((), {"Authorization": ["Bearer s3cret-value"]})
        assert "s3cret-value" not in str(caught.value)

    def test_reload_of_requestheader_ca_takes_effect(self) -> None:
        self.auth.config = config(
            requestheader_ca=CertificateAuthorities(OTHER_CA.certificate_pem)
        )
        assert self.user(chain(FORGED), {"X-Remote-User": ["bob"]}).name == "bob"
        with pytest.raises(Unauthorized):
            self.user(chain(FRONT), {"X-Remote-User": ["bob"]})

    def test_configmap_is_read(self) -> None:
        import json

        loaded = AuthConfig.from_configmap(
            {
                "requestheader-client-ca-file": FRONT_CA.certificate_pem.decode(),
                "requestheader-allowed-names": json.dumps(["front-proxy-client"]),
                "requestheader-username-headers": json.dumps(["X-Remote-User"]),
                "requestheader-group-headers": json.dumps(["X-Remote-Group"]),
                "requestheader-extra-headers-prefix": json.dumps(["X-Remote-Extra-"]),
                "client-ca-file": CLIENT_CA.certificate_pem.decode(),
            }
        )
        assert loaded.allowed_names == ("front-proxy-client",)
        assert loaded.requestheader_ca.verify(chain(FRONT))
        assert loaded.client_ca.verify(chain(ADMIN))


@implementer(IAccessReviewer)
class Reviews:
    def __init__(self, allowed: set[str]) -> None:
        self.allowed = allowed
        self.calls = 0

    def review(
        self, user: User, attributes: RequestAttributes
    ) -> Deferred[tuple[bool, str]]:
        self.calls += 1
        return succeed(
            (user.name in self.allowed, "" if user.name in self.allowed else "no RBAC")
        )


class TestCachingAuthorizer:
    def setup_method(self) -> None:
        self.clock = Clock()
        self.reviews = Reviews({"alice"})
        self.authz = CachingAuthorizer(self.reviews, self.clock)
        self.attrs = RequestAttributes("get", "sockets", "abc", subresource="proxy")

    def outcome(self, user: User) -> object:
        results: list[object] = []
        self.authz.require(user, self.attrs).addBoth(results.append)
        return results[0]

    def test_interface(self) -> None:
        assert verifyObject(IAccessReviewer, self.authz)

    def test_allowed_then_cached(self) -> None:
        assert self.outcome(User("alice")) is None
        assert self.outcome(User("alice")) is None
        assert self.reviews.calls == 1
        self.clock.advance(10.5)
        self.outcome(User("alice"))
        assert self.reviews.calls == 2

    def test_denied_names_what_was_denied(self) -> None:
        failure = self.outcome(User("mallory"))
        assert failure.check(Forbidden)  # type: ignore[attr-defined]
        message = str(failure.value)  # type: ignore[attr-defined]
        assert 'User "mallory" cannot get resource "sockets/proxy"' in message
        assert 'API group "proxies.clusternet.io"' in message

    def test_denied_cache_is_shorter(self) -> None:
        self.outcome(User("mallory"))
        self.clock.advance(5.5)
        self.outcome(User("mallory"))
        assert self.reviews.calls == 2

    def test_masters_skip_the_review(self) -> None:
        assert self.outcome(User("root", groups=("system:masters",))) is None
        assert self.reviews.calls == 0

    def test_different_groups_are_different_cache_entries(self) -> None:
        self.outcome(User("alice", groups=("a",)))
        self.outcome(User("alice", groups=("b",)))
        assert self.reviews.calls == 2
