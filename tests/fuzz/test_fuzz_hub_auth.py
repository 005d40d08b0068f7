"""
Bounded fuzzing of the hub's authenticator: front-proxy headers and bearer
tokens (the long run is fuzz/fuzz_hub_auth.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from fuzz_support import fuzz_settings, load_target
from hypothesis import given
from hypothesis import strategies as st

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

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
FRONT = (
    pki.issue_certificate(FRONT_CA, "front-proxy-client", client=True).certificate,
)
SECRET = "s3cret-token"


@implementer(ITokenReviewer)
class Tokens:
    def review(self, token: str) -> Deferred[User | None]:
        return succeed(User("token-user") if token == SECRET else None)


AUTH = Authenticator(
    AuthConfig(requestheader_ca=CertificateAuthorities(FRONT_CA.certificate_pem)),
    Tokens(),
    Clock(),
)

latin1 = st.text(st.characters(max_codepoint=255), max_size=20)
names = st.one_of(
    st.sampled_from(
        [
            "X-Remote-User",
            "x-remote-user",
            "X-Remote-Group",
            "Authorization",
            "X-Remote-Extra-Scopes",
            "x-remote-extra-a%2Fb",
            "X-Remote-Extra-",
            "X-Remote-Extra-%zz",
        ]
    ),
    st.builds(lambda a, b: a + b, st.just("X-Remote-Extra-"), latin1),
    latin1,
)
values = st.one_of(
    latin1,
    st.builds(
        lambda s, t: s + t,
        st.sampled_from(["Bearer ", "bearer  ", "Basic ", "Bearer"]),
        st.one_of(st.just(SECRET), latin1),
    ),
)
header_lists = st.lists(st.tuples(names, values), max_size=10)


def run(chain: tuple[Any, ...], pairs: list[tuple[str, str]]) -> object:
    def lookup(name: str) -> Sequence[str]:
        return [v for k, v in pairs if k.lower() == name.lower()]

    outcomes: list[object] = []
    AUTH.authenticate(chain, lookup, [k for k, _ in pairs]).addBoth(outcomes.append)
    assert len(outcomes) == 1
    return outcomes[0]


@fuzz_settings
@given(header_lists)
def test_front_proxy_headers_are_the_user_exactly(pairs: list[tuple[str, str]]) -> None:
    outcome = run(FRONT, pairs)
    users = [v for k, v in pairs if k.lower() == "x-remote-user" and v]
    if not users:
        assert not isinstance(outcome, User) or outcome.name == "token-user"
        return
    assert isinstance(outcome, User)
    assert outcome.name == users[0]
    assert outcome.groups == tuple(
        v for k, v in pairs if k.lower() == "x-remote-group" and v
    )
    for key in outcome.extra:
        assert key == key.lower()
    extra_names = {
        unquote(k[len("X-Remote-Extra-") :]).lower()
        for k, _ in pairs
        if k.lower().startswith("x-remote-extra-") and len(k) > len("X-Remote-Extra-")
    }
    assert set(outcome.extra) == extra_names


@fuzz_settings
@given(header_lists)
def test_without_a_certificate_only_a_valid_bearer_token_is_a_user(
    pairs: list[tuple[str, str]],
) -> None:
    outcome = run((), pairs)
    if isinstance(outcome, User):
        assert outcome.name == "token-user"
        return
    assert isinstance(outcome, Failure) and outcome.check(Unauthorized), outcome
    for _, value in pairs:
        token = value.strip().partition(" ")[2].strip()
        if token and token != "Unauthorized":
            assert token not in outcome.getErrorMessage()


@fuzz_settings
@given(st.binary(max_size=300))
def test_the_fuzz_target_accepts_random_input(data: bytes) -> None:
    TARGET(data)


TARGET = load_target("hub_auth")
