"""
TokenReview and SubjectAccessReview against the parent's API server.

Calls of the C{kubernetes} client block, so they run through C{run}: a callable
that runs a function on the hub's dedicated Kubernetes thread pool and returns a
Deferred (L{clusternet.kube} provides it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from clusternet.hub._auth import (
    IAccessReviewer,
    ITokenReviewer,
    RequestAttributes,
    User,
)

__all__ = ["KubeAccessReviewer", "KubeTokenReviewer"]

RunInPool = Callable[..., Deferred[Any]]


@implementer(ITokenReviewer)
class KubeTokenReviewer:
    """
    Ask the parent who a bearer token belongs to.
    """

    _log = Logger()

    def __init__(
        self, run: RunInPool, api_client: Any, audiences: tuple[str, ...] = ()
    ) -> None:
        self._run = run
        self._api_client = api_client
        self._audiences = audiences

    def _call(self, token: str) -> dict[str, Any]:
        from kubernetes import client

        body: dict[str, Any] = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        }
        if self._audiences:
            body["spec"]["audiences"] = list(self._audiences)
        api: Any = client.AuthenticationV1Api(self._api_client)
        response = api.create_token_review(body, _preload_content=False)
        result: dict[str, Any] = json.loads(response.data)
        return result

    def review(self, token: str) -> Deferred[User | None]:
        def parse(review: dict[str, Any]) -> User | None:
            status = review.get("status") or {}
            if not status.get("authenticated"):
                return None
            user = status.get("user") or {}
            extra = {k: tuple(v) for k, v in (user.get("extra") or {}).items()}
            return User(
                name=user.get("username", ""),
                uid=user.get("uid", ""),
                groups=tuple(user.get("groups") or ()),
                extra=extra,
            )

        def failed(failure: Any) -> None:
            # The token is never logged; only that the review could not be made.
            self._log.failure("TokenReview against the parent failed", failure)
            return None

        return self._run(self._call, token).addCallbacks(parse, failed)


@implementer(IAccessReviewer)
class KubeAccessReviewer:
    """
    Ask the parent whether a user may act on a socket (SubjectAccessReview).
    """

    _log = Logger()

    def __init__(self, run: RunInPool, api_client: Any) -> None:
        self._run = run
        self._api_client = api_client

    @staticmethod
    def body(user: User, attributes: RequestAttributes) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "user": user.name,
            "groups": list(user.groups),
            "resourceAttributes": {
                "verb": attributes.verb,
                "group": attributes.group,
                "version": attributes.version,
                "resource": attributes.resource,
                "subresource": attributes.subresource,
                "name": attributes.name,
            },
        }
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = {k: list(v) for k, v in user.extra.items()}
        return {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": spec,
        }

    def _call(self, body: dict[str, Any]) -> dict[str, Any]:
        from kubernetes import client

        api: Any = client.AuthorizationV1Api(self._api_client)
        response = api.create_subject_access_review(body, _preload_content=False)
        result: dict[str, Any] = json.loads(response.data)
        return result

    def review(
        self, user: User, attributes: RequestAttributes
    ) -> Deferred[tuple[bool, str]]:
        def parse(review: dict[str, Any]) -> tuple[bool, str]:
            status = review.get("status") or {}
            reason = status.get("reason") or status.get("evaluationError") or ""
            return bool(status.get("allowed")) and not status.get("denied"), reason

        return self._run(self._call, self.body(user, attributes)).addCallback(parse)
