# ruff: noqa: E501  (long human-readable messages and descriptions, kept verbatim)
"""
The sandbox's own authentication and authorization until the full ones
(C{clusternet.sandbox.auth}) are wired: client certificates signed by the
sandbox CA, and only C{system:masters} allowed.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.x509.oid import NameOID

from zope.interface import implementer

from clusternet.sandbox._auth_api import (
    Attributes,
    Decision,
    IAuthenticator,
    IAuthorizer,
    RequestCredentials,
    UserInfo,
)

__all__ = ["CertificateAuthenticator", "MastersAuthorizer", "forbidden_message"]


@implementer(IAuthenticator)
class CertificateAuthenticator:
    """
    User = CN, groups = O values (+ C{system:authenticated}) of a client
    certificate issued by C{ca}.
    """

    def __init__(self, ca: x509.Certificate) -> None:
        self._ca = ca

    def authenticate(self, credentials: RequestCredentials) -> UserInfo | None:
        if not credentials.peer_chain:
            return None
        leaf = credentials.peer_chain[0]
        try:
            leaf.verify_directly_issued_by(self._ca)
        except (ValueError, TypeError, Exception):
            return None
        now = datetime.datetime.now(datetime.UTC)
        if not (leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc):
            return None
        names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not names:
            return None
        groups = [
            str(a.value)
            for a in leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        ]
        groups.append("system:authenticated")
        return UserInfo(name=str(names[0].value), groups=tuple(groups))


@implementer(IAuthorizer)
class MastersAuthorizer:
    def authorize(self, attributes: Attributes) -> Decision:
        if "system:masters" in attributes.user.groups:
            return Decision(True)
        return Decision(False)


def forbidden_message(attributes: Attributes, reason: str = "") -> str:
    """
    The 403 message the real server writes for C{attributes}.
    """
    user = attributes.user.name
    if not attributes.resource_request:
        message = f'forbidden: User "{user}" cannot {attributes.verb} path "{attributes.path}"'
    else:
        resource = attributes.resource
        if attributes.subresource:
            resource = f"{resource}/{attributes.subresource}"
        prefix = resource
        if attributes.name:
            prefix = f'{resource} "{attributes.name}"'
        message = (
            f'{prefix} is forbidden: User "{user}" cannot {attributes.verb} resource '
            f'"{resource}" in API group "{attributes.api_group}"'
        )
        if attributes.namespace:
            message += f' in the namespace "{attributes.namespace}"'
        else:
            message += " at the cluster scope"
    if reason:
        message += f": {reason}"
    return message
