"""
Error mapping, resource paths, and configuration loading.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from clusternet.kube import (
    CLUSTER_REGISTRATION_REQUESTS,
    LEASES,
    MANAGED_CLUSTERS,
    NAMESPACES,
    AlreadyExists,
    Conflict,
    Gone,
    Invalid,
    KubeConfigError,
    KubeError,
    ServerError,
    api_client_for_token,
    connection_info,
    error_for,
    load_api_client,
)

CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_error_for_uses_the_status_reason_and_message() -> None:
    body = json.dumps(
        {
            "kind": "Status",
            "reason": "AlreadyExists",
            "message": "x exists",
            "code": 409,
        }
    ).encode()
    error = error_for(409, body, "Conflict")
    assert isinstance(error, AlreadyExists) and isinstance(error, Conflict)
    assert str(error) == "409 AlreadyExists: x exists"
    assert isinstance(error_for(410, None), Gone)
    assert isinstance(error_for(422, None), Invalid)
    assert isinstance(error_for(503, b"<html>"), ServerError)


@given(st.integers(min_value=0, max_value=999), st.binary(max_size=200))
def test_error_for_never_fails_on_any_answer(status: int, body: bytes) -> None:
    error = error_for(status, body, "Reason")
    assert isinstance(error, KubeError)
    assert isinstance(str(error), str)


def test_paths() -> None:
    assert LEASES.path("edge-system", "self-cluster") == (
        "/apis/coordination.k8s.io/v1/namespaces/edge-system/leases/self-cluster"
    )
    assert NAMESPACES.path(name="kube-system") == "/api/v1/namespaces/kube-system"
    assert CLUSTER_REGISTRATION_REQUESTS.path(name="c", subresource="status") == (
        "/apis/clusters.clusternet.io/v1beta1/clusterregistrationrequests/c/status"
    )
    assert (
        MANAGED_CLUSTERS.path()
        == "/apis/clusters.clusternet.io/v1beta1/managedclusters"
    )


@pytest.mark.parametrize("name", ["", "..", "a/b", "."])
def test_paths_refuse_names_that_would_change_the_url(name: str) -> None:
    with pytest.raises(ValueError):
        LEASES.path("ns", name)


def test_namespaced_objects_need_a_namespace() -> None:
    with pytest.raises(ValueError):
        LEASES.path(None, "x")
    with pytest.raises(ValueError):
        NAMESPACES.path("ns", "x")


def write_kubeconfig(tmp_path: Path) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "parent",
                "cluster": {
                    "server": "https://127.0.0.1:6443",
                    "certificate-authority-data": base64.b64encode(CA).decode(),
                },
            }
        ],
        "users": [{"name": "admin", "user": {"token": "s3cret"}}],
        "contexts": [{"name": "p", "context": {"cluster": "parent", "user": "admin"}}],
        "current-context": "p",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def test_kubeconfig_loads_server_ca_and_token(tmp_path: Path) -> None:
    client = load_api_client(str(write_kubeconfig(tmp_path)), threads=3)
    info = connection_info(client)
    assert info.server == "https://127.0.0.1:6443"
    assert info.ca_pem == CA
    assert info.token is not None and info.token.current() == "s3cret"
    assert "s3cret" not in repr(info)
    assert client.configuration.connection_pool_maxsize == 3


def test_unreadable_kubeconfig_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError):
        load_api_client(str(tmp_path / "missing"))
    (tmp_path / "bad").write_text("clusters: [")
    with pytest.raises(KubeConfigError):
        load_api_client(str(tmp_path / "bad"))


def test_in_cluster_outside_a_cluster_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeConfigError):
        load_api_client(None)


def test_token_client_carries_server_ca_and_token() -> None:
    client = api_client_for_token("https://parent:6443/", "abc.def", CA)
    info = connection_info(client)
    assert info.token is not None
    assert (info.server, info.ca_pem, info.token.current()) == (
        "https://parent:6443",
        CA,
        "abc.def",
    )
    assert not info.insecure_skip_tls_verify
