"""
TokenReview and SubjectAccessReview against the parent's API server, through
L{clusternet.kube.IKubeAPI} (its calls run on the hub's Kubernetes thread pool).
"""

from __future__ import annotations

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
from clusternet.kube._interfaces import IKubeAPI
from clusternet.kube._resources import SUBJECT_ACCESS_REVIEWS, TOKEN_REVIEWS

__all__ = ["KubeAccessReviewer", "KubeTokenReviewer"]


@implementer(ITokenReviewer)
class KubeTokenReviewer:
    """
    Ask the parent who a bearer token belongs to.
    """

    _log = Logger()

    def __init__(self, kube: IKubeAPI, audiences: tuple[str, ...] = ()) -> None:
        self._kube = kube
        self._audiences = audiences

    def review(self, token: str) -> Deferred[User | None]:
        spec: dict[str, Any] = {"token": token}
        if self._audiences:
            spec["audiences"] = list(self._audiences)
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": spec,
        }

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

        return self._kube.create(TOKEN_REVIEWS, body).addCallbacks(parse, failed)


@implementer(IAccessReviewer)
class KubeAccessReviewer:
    """
    Ask the parent whether a user may act on a socket (SubjectAccessReview).
    """

    def __init__(self, kube: IKubeAPI) -> None:
        self._kube = kube

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

    def review(
        self, user: User, attributes: RequestAttributes
    ) -> Deferred[tuple[bool, str]]:
        def parse(review: dict[str, Any]) -> tuple[bool, str]:
            status = review.get("status") or {}
            reason = status.get("reason") or status.get("evaluationError") or ""
            return bool(status.get("allowed")) and not status.get("denied"), reason

        return self._kube.create(
            SUBJECT_ACCESS_REVIEWS, self.body(user, attributes)
        ).addCallback(parse)
