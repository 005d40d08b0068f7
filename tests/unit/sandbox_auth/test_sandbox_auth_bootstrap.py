"""
Bootstrap tokens: authentication (kube-wire 077, 078), the signed
cluster-info (087), removal with the token (086) and the token cleaner.
"""

from __future__ import annotations

import pytest
from sandbox_auth_helpers import MemoryStore, bootstrap_secret

from twisted.internet.task import Clock

from clusternet.sandbox._auth_api import UserInfo
from clusternet.sandbox.auth import (
    BootstrapSigner,
    BootstrapTokenAuthenticator,
    TokenCleaner,
    UnionAuthenticator,
    cluster_info_kubeconfig,
    handle_self_subject_review,
    verify_cluster_info_jws,
)

NOW = 1_795_721_433  # 2026-11-26T19:30:33Z
CA_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _world():
    clock = Clock()
    clock.advance(NOW)
    store = MemoryStore()
    union = UnionAuthenticator(tokens=[BootstrapTokenAuthenticator(store, clock)])
    return clock, store, union


def _auth(union, token):
    return union.authenticate_token(token, ())


def test_bootstrap_token_user_and_groups_match_the_real_server() -> None:
    _, store, union = _world()
    store.create(
        "/secrets",
        "kube-system",
        bootstrap_secret(
            "07401b",
            "f395accd246ae52d",
            extra_groups="system:bootstrappers:clusternet:register-cluster-token",
        ),
    )
    response = _auth(union, "07401b.f395accd246ae52d")
    assert response is not None
    assert handle_self_subject_review(response.user, now=NOW + 5)["status"] == {
        "userInfo": {
            "username": "system:bootstrap:07401b",
            "groups": [
                "system:bootstrappers",
                "system:bootstrappers:clusternet:register-cluster-token",
                "system:authenticated",
            ],
        }
    }


@pytest.mark.parametrize(
    "secret",
    [
        bootstrap_secret("abcdef", "0123456789abcdef", authentication=False),
        bootstrap_secret(
            "abcdef", "0123456789abcdef", expiration="2026-11-26T19:30:33Z"
        ),
        bootstrap_secret("abcdef", "0123456789abcdef", expiration="tomorrow"),
        bootstrap_secret("abcdef", "0123456789abcdef", extra_groups="system:masters"),
        bootstrap_secret("abcdef", "ffffffffffffffff"),
    ],
    ids=["not-for-auth", "expired", "bad-expiry", "bad-group", "wrong-secret"],
)
def test_tokens_the_real_server_refuses(secret) -> None:
    _, store, union = _world()
    store.create("/secrets", "kube-system", secret)
    assert _auth(union, "abcdef.0123456789abcdef") is None


def test_token_valid_until_its_expiration() -> None:
    clock, store, union = _world()
    store.create(
        "/secrets",
        "kube-system",
        bootstrap_secret(
            "abcdef", "0123456789abcdef", expiration="2026-11-26T19:31:33Z"
        ),
    )
    assert _auth(union, "abcdef.0123456789abcdef") is not None
    clock.advance(60)
    assert _auth(union, "abcdef.0123456789abcdef") is None


def test_unknown_bootstrap_token_is_an_invalid_bearer_token() -> None:
    from clusternet.sandbox._auth_api import AuthenticationError, RequestCredentials

    _, _, union = _world()
    with pytest.raises(AuthenticationError):
        union.authenticate(
            RequestCredentials(
                headers={"authorization": ("Bearer abcdef.0123456789abcdef",)}
            )
        )


def _signer(store, clock):
    store.create("/namespaces", None, {"metadata": {"name": "kube-public"}})
    signer = BootstrapSigner(
        store, clock, server_url="https://127.0.0.1:6443", ca_pem=CA_PEM
    )
    signer.start()
    return signer


def _cluster_info(store) -> dict:
    cm = store.get("/configmaps", "kube-public", "cluster-info")
    assert cm is not None
    return cm["data"]


def test_signer_creates_cluster_info_and_signs_for_signing_tokens_only() -> None:
    clock, store, _ = _world()
    signer = _signer(store, clock)
    kubeconfig = cluster_info_kubeconfig("https://127.0.0.1:6443", CA_PEM)
    assert _cluster_info(store) == {"kubeconfig": kubeconfig}
    store.create(
        "/secrets", "kube-system", bootstrap_secret("07401b", "f395accd246ae52d")
    )
    store.create(
        "/secrets",
        "kube-system",
        bootstrap_secret("aaaaaa", "bbbbbbbbbbbbbbbb", signing=False),
    )
    data = _cluster_info(store)
    assert set(data) == {"kubeconfig", "jws-kubeconfig-07401b"}
    assert verify_cluster_info_jws(
        kubeconfig, data["jws-kubeconfig-07401b"], "07401b.f395accd246ae52d"
    )
    store.delete("/secrets", "kube-system", "bootstrap-token-07401b")
    assert _cluster_info(store) == {"kubeconfig": kubeconfig}
    signer.stop()


def test_signer_signs_an_existing_cluster_info_as_recorded() -> None:
    """The recorded kubeconfig and token give the recorded signature."""
    clock, store, _ = _world()
    kubeconfig = "apiVersion: v1\nkind: Config\nclusters: []\n"
    store.create("/namespaces", None, {"metadata": {"name": "kube-public"}})
    store.create(
        "/configmaps",
        "kube-public",
        {"metadata": {"name": "cluster-info"}, "data": {"kubeconfig": kubeconfig}},
    )
    store.create(
        "/secrets", "kube-system", bootstrap_secret("07401b", "f395accd246ae52d")
    )
    BootstrapSigner(store, clock).start()
    data = _cluster_info(store)
    assert data["kubeconfig"] == kubeconfig
    assert verify_cluster_info_jws(
        kubeconfig, data["jws-kubeconfig-07401b"], "07401b.f395accd246ae52d"
    )


def test_signature_goes_when_the_token_expires_even_without_the_cleaner() -> None:
    clock, store, _ = _world()
    _signer(store, clock)
    store.create(
        "/secrets",
        "kube-system",
        bootstrap_secret(
            "abcdef", "0123456789abcdef", expiration="2026-11-26T19:40:33Z"
        ),
    )
    assert "jws-kubeconfig-abcdef" in _cluster_info(store)
    clock.advance(600)
    assert "jws-kubeconfig-abcdef" not in _cluster_info(store)


def test_cleaner_deletes_expired_tokens_at_their_expiry() -> None:
    clock, store, union = _world()
    cleaner = TokenCleaner(store, clock)
    store.create(
        "/secrets",
        "kube-system",
        bootstrap_secret(
            "abcdef", "0123456789abcdef", expiration="2026-11-26T19:40:33Z"
        ),
    )
    store.create(
        "/secrets", "kube-system", bootstrap_secret("ghijkl", "0123456789abcdef")
    )
    cleaner.start()
    clock.advance(599)
    assert store.get("/secrets", "kube-system", "bootstrap-token-abcdef") is not None
    clock.advance(1)
    assert store.get("/secrets", "kube-system", "bootstrap-token-abcdef") is None
    assert store.get("/secrets", "kube-system", "bootstrap-token-ghijkl") is not None
    cleaner.stop()
    assert clock.getDelayedCalls() == []
    response = _auth(union, "ghijkl.0123456789abcdef")
    assert response is not None
    assert response.user == UserInfo(
        name="system:bootstrap:ghijkl",
        groups=("system:bootstrappers", "system:authenticated"),
    )
