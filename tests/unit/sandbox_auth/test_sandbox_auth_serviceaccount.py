"""
Service-account tokens: the token controller, legacy and bound tokens, the
TokenRequest subresource and TokenReview of both (kube-wire 062-067, 073).
"""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sandbox_auth_helpers import MemoryStore, b64, service_account

from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from clusternet.sandbox._auth_api import AuthenticationError
from clusternet.sandbox.auth import (
    APIError,
    ITokenAuthenticator,
    ServiceAccountTokenAuthenticator,
    ServiceAccountTokenSigner,
    TokenController,
    UnionAuthenticator,
    create_token_request,
    handle_self_subject_review,
    handle_token_review,
)
from clusternet.sandbox.auth._jose import b64url_decode

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CA_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
NOW = 1_795_721_433


class World:
    def __init__(self, key=KEY) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = MemoryStore()
        self.signer = ServiceAccountTokenSigner(
            key, self.clock, new_id=lambda: "910c9522-1224-40a4-ab42-a7649d528c9e"
        )
        self.authn = ServiceAccountTokenAuthenticator(
            self.store, self.clock, [key.public_key()]
        )
        self.union = UnionAuthenticator(tokens=[self.authn])
        self.controller = TokenController(self.store, self.signer, CA_PEM)
        self.controller.start()
        self.sa = self.store.create(
            "/serviceaccounts", "wire", service_account("wire", "agent")
        )

    def token_secret(self, name: str = "agent-token", sa: str = "agent") -> dict:
        self.store.create(
            "/secrets",
            "wire",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/service-account-token",
                "metadata": {
                    "name": name,
                    "annotations": {"kubernetes.io/service-account.name": sa},
                },
            },
        )
        return self.store.get("/secrets", "wire", name) or {}

    def review(self, token: str, audiences=None) -> dict:
        spec = {"token": token}
        if audiences is not None:
            spec["audiences"] = audiences
        return handle_token_review(
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": spec,
            },
            self.union,
        )


def _claims(token: str) -> dict:
    return json.loads(b64url_decode(token.split(".")[1]))


def test_authenticator_provides_its_interface() -> None:
    assert verifyObject(ITokenAuthenticator, World().authn)


def test_token_controller_fills_the_secret_as_the_real_one() -> None:
    world = World()
    secret = world.token_secret()
    uid = world.sa["metadata"]["uid"]
    assert secret["metadata"]["annotations"] == {
        "kubernetes.io/service-account.name": "agent",
        "kubernetes.io/service-account.uid": uid,
    }
    assert set(secret["data"]) == {"ca.crt", "namespace", "token"}
    assert base64.b64decode(secret["data"]["ca.crt"]) == CA_PEM
    assert secret["data"]["namespace"] == b64("wire")
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert _claims(token) == {
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": "wire",
        "kubernetes.io/serviceaccount/secret.name": "agent-token",
        "kubernetes.io/serviceaccount/service-account.name": "agent",
        "kubernetes.io/serviceaccount/service-account.uid": uid,
        "sub": "system:serviceaccount:wire:agent",
    }
    writes = world.store.writes
    world.controller.start()
    assert world.store.writes == writes, "an up-to-date secret is not rewritten"


def test_legacy_token_reviews_as_the_service_account() -> None:
    world = World()
    token = base64.b64decode(world.token_secret()["data"]["token"]).decode()
    review = world.review(token)
    assert review["status"] == {
        "authenticated": True,
        "user": {
            "username": "system:serviceaccount:wire:agent",
            "uid": world.sa["metadata"]["uid"],
            "groups": [
                "system:serviceaccounts",
                "system:serviceaccounts:wire",
                "system:authenticated",
            ],
        },
        "audiences": ["https://kubernetes.default.svc"],
    }


def test_legacy_token_dies_with_its_secret_and_its_account() -> None:
    world = World()
    token = base64.b64decode(world.token_secret()["data"]["token"]).decode()
    world.store.delete("/secrets", "wire", "agent-token")
    assert world.review(token)["status"]["error"] == "token has been invalidated"
    world2 = World()
    token2 = base64.b64decode(world2.token_secret()["data"]["token"]).decode()
    world2.store.delete("/serviceaccounts", "wire", "agent")
    assert world2.store.get("/secrets", "wire", "agent-token") is None
    assert "authenticated" not in world2.review(token2)["status"]


def test_secret_for_a_missing_account_is_deleted() -> None:
    world = World()
    world.token_secret(name="orphan", sa="nobody")
    assert world.store.get("/secrets", "wire", "orphan") is None


def test_token_request_answers_like_the_real_server() -> None:
    world = World()
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600},
    }
    answer = create_token_request(world.store, "wire", "agent", body, world.signer)
    token = answer["status"]["token"]
    assert answer == {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {
            "name": "agent",
            "namespace": "wire",
            "creationTimestamp": "2026-11-26T19:30:33Z",
        },
        "spec": {
            "audiences": ["https://kubernetes.default.svc"],
            "expirationSeconds": 3600,
            "boundObjectRef": None,
        },
        "status": {"token": token, "expirationTimestamp": "2026-11-26T20:30:33Z"},
    }
    uid = world.sa["metadata"]["uid"]
    assert _claims(token) == {
        "aud": ["https://kubernetes.default.svc"],
        "exp": NOW + 3600,
        "iat": NOW,
        "iss": "https://kubernetes.default.svc",
        "jti": "910c9522-1224-40a4-ab42-a7649d528c9e",
        "kubernetes.io": {
            "namespace": "wire",
            "serviceaccount": {"name": "agent", "uid": uid},
        },
        "nbf": NOW,
        "sub": "system:serviceaccount:wire:agent",
    }
    assert world.review(token)["status"]["user"]["extra"] == {
        "authentication.kubernetes.io/credential-id": [
            "JTI=910c9522-1224-40a4-ab42-a7649d528c9e"
        ]
    }
    user = world.union.authenticate_token(token, ())
    assert user is not None
    who = handle_self_subject_review(user.user, now=NOW + 4)
    assert who["status"]["userInfo"]["username"] == "system:serviceaccount:wire:agent"
    assert who["metadata"] == {"creationTimestamp": "2026-11-26T19:30:37Z"}


def test_bound_token_expires_after_exp_and_leeway() -> None:
    world = World(ec.generate_private_key(ec.SECP256R1()))
    answer = create_token_request(
        world.store, "wire", "agent", {"spec": {"expirationSeconds": 600}}, world.signer
    )
    token = answer["status"]["token"]
    world.clock.advance(600 + 59)
    assert world.review(token)["status"]["authenticated"] is True
    world.clock.advance(2)
    assert world.review(token)["status"] == {
        "user": {},
        "error": "service account token has expired",
    }


def test_bound_token_dies_with_a_recreated_account() -> None:
    world = World()
    token = create_token_request(world.store, "wire", "agent", {}, world.signer)[
        "status"
    ]["token"]
    world.store.delete("/serviceaccounts", "wire", "agent")
    assert world.review(token)["status"]["error"] == 'serviceaccounts "agent" not found'
    world.store.create("/serviceaccounts", "wire", service_account("wire", "agent"))
    assert "does not match claim" in world.review(token)["status"]["error"]


def test_audiences_are_checked() -> None:
    world = World()
    token = create_token_request(
        world.store, "wire", "agent", {"spec": {"audiences": ["vault"]}}, world.signer
    )["status"]["token"]
    assert world.review(token, ["vault"])["status"]["audiences"] == ["vault"]
    error = world.review(token)["status"]["error"]
    assert error == (
        'token audiences ["vault"] is invalid for the target audiences'
        ' ["https://kubernetes.default.svc"]'
    )


def test_bound_secret_token_dies_with_the_secret() -> None:
    world = World()
    world.store.create(
        "/secrets", "wire", {"metadata": {"name": "anchor"}, "type": "Opaque"}
    )
    ref = {"apiVersion": "v1", "kind": "Secret", "name": "anchor"}
    token = create_token_request(
        world.store, "wire", "agent", {"spec": {"boundObjectRef": ref}}, world.signer
    )["status"]["token"]
    assert world.review(token)["status"]["authenticated"] is True
    world.store.delete("/secrets", "wire", "anchor")
    assert world.review(token)["status"]["error"] == 'secrets "anchor" not found'


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            {"spec": {"expirationSeconds": 599}},
            422,
            'TokenRequest.authentication.k8s.io "agent" is invalid:'
            " spec.expirationSeconds: Invalid value: 599: may not specify a duration"
            " less than 10 minutes",
        ),
        (
            {
                "spec": {
                    "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "p"}
                }
            },
            404,
            'pods "p" not found',
        ),
        (
            {
                "spec": {
                    "boundObjectRef": {"apiVersion": "apps/v1", "kind": "Deployment"}
                }
            },
            400,
            "cannot bind token to object of type apps/v1, Kind=Deployment",
        ),
        ({"metadata": {"name": "other"}}, 422, None),
        ("nonsense", 400, None),
    ],
)
def test_token_request_errors(body, code, message) -> None:
    world = World()
    with pytest.raises(APIError) as caught:
        create_token_request(world.store, "wire", "agent", body, world.signer)
    assert caught.value.code == code
    if message is not None:
        assert caught.value.message == message
    assert caught.value.status()["code"] == code


def test_token_request_for_a_missing_account_is_404() -> None:
    world = World()
    with pytest.raises(APIError) as caught:
        create_token_request(world.store, "wire", "ghost", {}, world.signer)
    assert caught.value.status() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'serviceaccounts "ghost" not found',
        "reason": "NotFound",
        "details": {"name": "ghost", "kind": "serviceaccounts"},
        "code": 404,
    }


def test_garbage_token_review_matches_the_real_answer() -> None:
    review = World().review("garbage")
    assert review == {
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": {"token": "garbage"},
        "status": {"user": {}, "error": "invalid bearer token"},
    }


def test_token_signed_by_another_key_is_refused() -> None:
    world = World()
    other = ServiceAccountTokenSigner(
        rsa.generate_private_key(public_exponent=65537, key_size=2048), world.clock
    )
    token = other.bound_token(world.sa)[0]
    with pytest.raises(AuthenticationError):
        world.authn.authenticate_token(token, ())


def test_empty_token_review_is_400() -> None:
    with pytest.raises(APIError) as caught:
        World().review("")
    assert caught.value.code == 400
