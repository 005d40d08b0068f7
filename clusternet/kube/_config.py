"""
Client configuration: kubeconfig, in-cluster, or (server, CA, token).

Kubeconfig files are read by the C{kubernetes} package's own loaders, never by hand.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from attrs import field, frozen
from kubernetes.client import ApiClient, Configuration
from kubernetes.config import (
    ConfigException,
    load_incluster_config,
    new_client_from_config,
)

__all__ = [
    "ConnectionInfo",
    "KubeConfigError",
    "api_client_for_token",
    "connection_info",
    "load_api_client",
]


class KubeConfigError(Exception):
    """
    No usable client configuration (unreadable kubeconfig, not in a cluster).
    """


def _finish(client: ApiClient, threads: int) -> ApiClient:
    # One connection per pool thread: watches hold theirs for minutes.
    client.configuration.connection_pool_maxsize = max(threads, 1)
    client.rest_client.close()
    client.rest_client = type(client.rest_client)(client.configuration)
    client.user_agent = "clusternet"
    return client


def load_api_client(
    kubeconfig: str | None = None, context: str | None = None, threads: int = 10
) -> ApiClient:
    """
    An C{ApiClient} from the kubeconfig file C{kubeconfig} (its current context,
    or C{context}), or from the pod's service account when C{kubeconfig} is
    C{None}.

    @raise KubeConfigError: the configuration cannot be loaded.
    """
    try:
        if kubeconfig is not None:
            client = new_client_from_config(
                config_file=kubeconfig, context=context, persist_config=False
            )
        else:
            configuration = Configuration()
            load_incluster_config(client_configuration=configuration)
            client = ApiClient(configuration=configuration)
    except (
        ConfigException,
        OSError,
        ValueError,
        TypeError,
        KeyError,
        yaml.YAMLError,
    ) as e:
        where = kubeconfig if kubeconfig is not None else "in-cluster configuration"
        raise KubeConfigError(f"cannot load {where}: {e}") from None
    return _finish(client, threads)


def api_client_for_token(
    server: str,
    token: str,
    ca_pem: bytes | None = None,
    insecure_skip_tls_verify: bool = False,
    tls_server_name: str | None = None,
    threads: int = 10,
) -> ApiClient:
    """
    An C{ApiClient} for C{server} authenticating with the bearer C{token}, verifying
    the server against C{ca_pem} (the system trust store when C{None}), as the
    agent talks to its parent.
    """
    configuration = Configuration(host=server.rstrip("/"))
    configuration.api_key["BearerToken"] = token
    configuration.api_key_prefix["BearerToken"] = "Bearer"
    if ca_pem:
        configuration.ca_cert_data = ca_pem.decode("ascii")
    configuration.verify_ssl = not insecure_skip_tls_verify
    if tls_server_name:
        configuration.tls_server_name = tls_server_name
    return _finish(ApiClient(configuration=configuration), threads)


@frozen
class ConnectionInfo:
    """
    Where a client connects and how it authenticates: what the agent's proxy and
    the hub's TLS need from a loaded configuration.
    """

    server: str
    ca_pem: bytes | None = field(default=None, repr=False)
    client_cert_pem: bytes | None = field(default=None, repr=False)
    client_key_pem: bytes | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise KubeConfigError(f"cannot read {path}: {e.strerror}") from None


def connection_info(client: ApiClient) -> ConnectionInfo:
    """
    The server URL, CA, client certificate and bearer token of C{client}.
    """
    conf = client.configuration
    ca = _read(conf.ssl_ca_cert)
    if ca is None and conf.ca_cert_data:
        data = conf.ca_cert_data
        ca = data.encode("ascii") if isinstance(data, str) else bytes(data)
    header = conf.get_api_key_with_prefix("BearerToken", alias="authorization")
    token = None
    if header:
        scheme, _, value = header.partition(" ")
        token = value.strip() if scheme.lower() == "bearer" and value else header
    return ConnectionInfo(
        server=conf.host,
        ca_pem=ca,
        client_cert_pem=_read(conf.cert_file),
        client_key_pem=_read(conf.key_file),
        token=token,
        insecure_skip_tls_verify=not conf.verify_ssl,
        tls_server_name=conf.tls_server_name or None,
    )
