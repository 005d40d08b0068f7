"""
The identity the child sees for a request from the parent, per mode.
"""

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusternet.agent._identity import (
    IdentityError,
    IdentityPolicy,
    ParentIdentity,
    parent_identity,
)

CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
ALICE = ParentIdentity(
    "alice",
    ("devs", "system:authenticated", "system:masters"),
    {
        "scopes": ("read",),
        "clusternet-token": ("child-secret",),
        CREDENTIAL_ID: ("X509SHA256=ab12",),
    },
)


def test_headers_are_read_from_the_tunnelled_request() -> None:
    identity = parent_identity(
        {
            "x-remote-user": ["alice"],
            "x-remote-group": ["devs", "system:authenticated"],
            "x-remote-extra-clusternet-token": ["t"],
            "x-remote-extra-scopes%2fread": ["x"],
        }
    )
    assert identity == ParentIdentity(
        "alice",
        ("devs", "system:authenticated"),
        {"clusternet-token": ("t",), "scopes/read": ("x",)},
    )
    assert parent_identity({}) is None


def test_impersonate_drops_masters_and_implicit_groups_and_credentials() -> None:
    creds = IdentityPolicy().credentials(ALICE)
    assert creds.use_agent_credentials
    assert creds.headers == (
        ("Impersonate-User", "alice"),
        ("Impersonate-Group", "devs"),
        (
            "Impersonate-Extra-authentication.kubernetes.io%2Fcredential-id",
            "X509SHA256=ab12",
        ),
    )


def test_impersonate_forwards_only_the_configured_extras() -> None:
    """
    By default only the extras Kubernetes sets itself (the agent's RBAC names
    each); a configured list, or every extra with C{None}.
    """
    headers = IdentityPolicy(extras=["Scopes"]).credentials(ALICE).headers
    assert [h for h in headers if h[0].startswith("Impersonate-Extra-")] == [
        ("Impersonate-Extra-scopes", "read")
    ]
    headers = IdentityPolicy(extras=None).credentials(ALICE).headers
    assert sorted(k for k, _ in headers if k.startswith("Impersonate-Extra-")) == [
        "Impersonate-Extra-authentication.kubernetes.io%2Fcredential-id",
        "Impersonate-Extra-scopes",
    ]
    headers = IdentityPolicy(extras=()).credentials(ALICE).headers
    assert not [h for h in headers if h[0].startswith("Impersonate-Extra-")]


def test_impersonate_masters_only_when_told() -> None:
    creds = IdentityPolicy(allow_masters=True).credentials(ALICE)
    assert ("Impersonate-Group", "system:masters") in creds.headers


def test_impersonate_group_map() -> None:
    creds = IdentityPolicy(
        group_map={"devs": "child-devs", "system:masters": "child-admins"}
    ).credentials(ALICE)
    groups = [v for k, v in creds.headers if k == "Impersonate-Group"]
    assert groups == ["child-devs", "child-admins"]


def test_token_mode_uses_the_callers_token_only() -> None:
    creds = IdentityPolicy(mode="token").credentials(ALICE)
    assert not creds.use_agent_credentials
    assert creds.headers == (("Authorization", "Bearer child-secret"),)


def test_token_mode_certificate_form() -> None:
    identity = ParentIdentity(
        "clusternet",
        extra={
            "clusternet-certificate": (base64.b64encode(b"CERT").decode(),),
            "clusternet-privatekey": (base64.b64encode(b"KEY").decode(),),
        },
    )
    creds = IdentityPolicy(mode="token").credentials(identity)
    assert creds.client_pem == b"CERT\nKEY"
    assert "KEY" not in repr(creds)


def test_token_mode_without_credentials_says_what_to_set() -> None:
    with pytest.raises(IdentityError, match="clusternet-token") as caught:
        IdentityPolicy(mode="token").credentials(ParentIdentity("bob"))
    assert caught.value.code == 401


def test_none_mode_sends_nothing() -> None:
    creds = IdentityPolicy(mode="none").credentials(ALICE)
    assert creds.headers == () and not creds.use_agent_credentials


def test_no_identity_is_refused_outside_none_mode() -> None:
    with pytest.raises(IdentityError):
        IdentityPolicy().credentials(None)


@given(st.lists(st.text(min_size=1, max_size=20), max_size=8))
def test_masters_never_leak_by_default(groups: list[str]) -> None:
    creds = IdentityPolicy().credentials(
        ParentIdentity("u", (*groups, "system:masters"))
    )
    assert ("Impersonate-Group", "system:masters") not in creds.headers
    assert all(k != "Authorization" for k, _ in creds.headers)
