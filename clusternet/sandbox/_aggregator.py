# ruff: noqa: E501  (long human-readable messages, kept verbatim)
"""
The aggregation layer: C{APIService} objects (and C{--aggregate} overrides)
route C{/apis/<group>/<version>/...} to a backend server, as kube-aggregator
does.

A request for an aggregated group/version is authenticated (and its
impersonation applied).  Resource requests of authenticated users are not
authorized here: the backend does that, with SubjectAccessReviews.  What the
real server's RBAC decides for anyone is decided here as there: discovery of
the group/version (C{GET /apis/<group>/<version>}, a non-resource path that
C{system:discovery} grants to C{system:authenticated} only) and every request
of an unauthenticated (anonymous) user; a refusal is answered by the API with
the real 403.  It is forwarded by L{clusternet.proxy} over TLS that
presents the front-proxy client certificate, with C{X-Remote-User},
C{X-Remote-Group} and C{X-Remote-Extra-<key>} naming the user, after the
client's own C{Authorization}, C{X-Remote-*} and C{Impersonate-*} headers are
removed.  Bodies stream both ways and HTTP/1.1 Upgrade is spliced.

Discovery merges the backends' groups (legacy C{/apis} from the APIServices,
aggregated v2 documents fetched from the backends every few seconds and on
APIService changes) and the APIServices' C{Available} condition follows a
periodic C{GET /apis/<group>/<version>} on each backend.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit
from weakref import WeakKeyDictionary

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IStreamClientEndpoint,
)
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface import implementer

from clusternet.pki import KeyPair
from clusternet.proxy import ProxyError, ProxyResource, ReverseProxy, Route
from clusternet.sandbox._auth_api import Attributes, Decision, UserInfo
from clusternet.sandbox._store import Store
from clusternet.sandbox._store_api import JSONObject, StoreError, StoreEvent

__all__ = [
    "AGGREGATOR_USER",
    "AggregationRoot",
    "Aggregator",
    "Backend",
    "parse_aggregate_flag",
    "remote_user_headers",
]

APISERVICES = "apiregistration.k8s.io/apiservices"
SERVICES = "/services"
AGGREGATOR_USER = "system:kube-aggregator"
AGGREGATOR_GROUPS = ("system:masters",)
AUTHENTICATED = "system:authenticated"
DISCOVERY_ACCEPT = b"application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
LOOPBACK_NAMES = {"localhost": "127.0.0.1", "localhost.": "127.0.0.1"}
STRIP = (b"authorization", b"x-remote-*", b"impersonate-*")
# Backends whose TLS endpoints are kept (a sandbox has a handful).
MAX_ENDPOINTS = 64


@frozen
class Backend:
    """
    Where one aggregated group/version is served.

    @ivar server_name: the name the backend's certificate is verified against
        (C{<service>.<namespace>.svc}, as the real aggregator does, or the
        host of an explicit URL).
    """

    group: str
    version: str
    host: str
    port: int
    server_name: str
    ca_bundle: bytes | None = None
    insecure: bool = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"


def parse_aggregate_flag(text: str) -> tuple[str, str, str]:
    """
    C{GROUP/VERSION=https://127.0.0.1:PORT} -> (group, version, url).

    @raise ValueError: for anything else.
    """
    target, sep, url = text.partition("=")
    group, slash, version = target.partition("/")
    parts = urlsplit(url)
    if not sep or not slash or not group or not version:
        raise ValueError(
            f"--aggregate {text!r}: expected GROUP/VERSION=https://HOST:PORT"
        )
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"--aggregate {text!r}: the backend must be an https:// URL")
    return group, version, url


def remote_user_headers(user: UserInfo) -> dict[bytes, bytes | list[bytes]]:
    """
    The request headers naming C{user} to a backend (C{X-Remote-Extra-} keys
    percent-encoded as the real server does).
    """
    headers: dict[bytes, bytes | list[bytes]] = {
        b"X-Remote-User": user.name.encode("utf-8"),
    }
    if user.groups:
        headers[b"X-Remote-Group"] = [g.encode("utf-8") for g in user.groups]
    for key, values in user.extra.items():
        name = b"X-Remote-Extra-" + quote(key, safe="").encode("ascii")
        headers[name] = [v.encode("utf-8") for v in values]
    return headers


@implementer(IOpenSSLClientConnectionCreator)
class _InsecureClientTLS:
    """
    TLS that presents a client certificate and does not verify the server
    (C{spec.insecureSkipTLSVerify}).
    """

    def __init__(self, client: KeyPair, server_name: str) -> None:
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.use_certificate(client.certificate)
        context.use_privatekey(client.private_key)  # type: ignore[arg-type]
        context.set_verify(SSL.VERIFY_NONE, lambda *a: True)
        self._context = context
        self._name = server_name.encode("idna") if not _is_ip(server_name) else None

    def clientConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        if self._name:
            connection.set_tlsext_host_name(self._name)
        connection.set_connect_state()
        return connection


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@implementer(IAgentEndpointFactory)
class _FixedEndpoint:
    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self._endpoint = endpoint

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:
        return self._endpoint


class _AggregatedResource(ProxyResource):
    def __init__(self, aggregator: Aggregator, proxy: ReverseProxy) -> None:
        super().__init__(proxy)
        self._aggregator = aggregator

    def route(self, request: Request) -> Route:
        return self._aggregator.route(request)


class AggregationRoot(Resource):
    """
    The root of the sandbox's site: aggregated group/versions go to the
    (streaming) proxy, everything else to the API.
    """

    def __init__(self, api: Resource, aggregator: Aggregator) -> None:
        super().__init__()
        self._api = api
        self._aggregator = aggregator

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        if self._aggregator.handles(request.path or b"/") and self._aggregator.admit(
            request
        ):
            return self._aggregator.resource
        # Everything else, and aggregated requests refused before the backend
        # (401, 403), are answered by the API with the real Status bodies.
        return self._api

    def render(self, request: Request) -> bytes | int:
        return self._api.render(request)


class Aggregator:
    """
    Routes aggregated group/versions for one sandbox.

    @param identify: who a request acts as (raises to refuse it with a Status).
    @param authorize: the sandbox's authorizer, for what is authorized before
        the backend (see L{admit}); without it nothing is.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        store: Store,
        front_proxy_client: KeyPair,
        identify: Callable[[Request], UserInfo],
        *,
        overrides: Mapping[tuple[str, str], str] | None = None,
        refresh_interval: float = 10.0,
        check_timeout: float = 5.0,
        authorize: Callable[[Attributes], Decision] | None = None,
    ) -> None:
        self._reactor = reactor
        self._store = store
        self._client = front_proxy_client
        self._identify = identify
        self._authorize = authorize
        # Users identified by L{admit}, for L{route} (the same request).
        self._admitted: WeakKeyDictionary[Request, UserInfo] = WeakKeyDictionary()
        self._overrides = dict(overrides or {})
        self._interval = refresh_interval
        self._timeout = check_timeout
        self.proxy = ReverseProxy(reactor, connect_timeout=10.0, forwarded_headers=True)
        self.resource = _AggregatedResource(self, self.proxy)
        self._discovery: dict[tuple[str, str], JSONObject] = {}
        self._loop: LoopingCall | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._pending: Any = None
        self._endpoints: dict[Backend, IStreamClientEndpoint] = {}

    # --- routing ------------------------------------------------------------------

    def _apiservice(self, group: str, version: str) -> JSONObject | None:
        return self._store.peek(APISERVICES, None, f"{version}.{group}")

    def backend_for(self, group: str, version: str) -> Backend | None:
        """
        The backend of C{group/version}, or C{None} when the sandbox serves it
        (or nothing does).

        @raise ProxyError: 503 when an APIService names a Service that cannot
            be used.
        """
        override = self._overrides.get((group, version))
        if override is not None:
            parts = urlsplit(override)
            host = parts.hostname or "127.0.0.1"
            return Backend(
                group,
                version,
                LOOPBACK_NAMES.get(host, host),
                parts.port or 443,
                host,
                insecure=True,
            )
        apiservice = self._apiservice(group, version)
        if apiservice is None:
            return None
        spec = apiservice.get("spec") or {}
        service = spec.get("service")
        if not isinstance(service, dict) or not service.get("name"):
            return None
        name, namespace = str(service["name"]), str(service.get("namespace") or "")
        port = int(service.get("port") or 443)
        found = self._store.peek(SERVICES, namespace, name)
        if found is None:
            raise ProxyError(503, f'service "{name}" not found', "ServiceUnavailable")
        svc_spec = found.get("spec") or {}
        if svc_spec.get("type") != "ExternalName":
            raise ProxyError(
                503,
                f'service "{namespace}/{name}" is not of type ExternalName: the sandbox reaches aggregated servers only through ExternalName services (localhost)',
                "ServiceUnavailable",
            )
        external = str(svc_spec.get("externalName") or "")
        host = LOOPBACK_NAMES.get(external, external)
        if not _is_ip(host) or not ipaddress.ip_address(host).is_loopback:
            raise ProxyError(
                503,
                f'service "{namespace}/{name}" names {external!r}: the sandbox only reaches loopback backends (localhost, 127.0.0.1, ::1)',
                "ServiceUnavailable",
            )
        ports = [
            p.get("port") for p in svc_spec.get("ports") or [] if isinstance(p, dict)
        ]
        if ports and port not in ports:
            raise ProxyError(
                503,
                f'service "{namespace}/{name}" has no port {port}',
                "ServiceUnavailable",
            )
        bundle = spec.get("caBundle")
        ca: bytes | None = None
        if bundle:
            import base64

            try:
                ca = base64.b64decode(bundle)
            except ValueError:
                ca = None
        return Backend(
            group,
            version,
            host,
            port,
            f"{name}.{namespace}.svc",
            ca_bundle=ca,
            insecure=bool(spec.get("insecureSkipTLSVerify")),
        )

    def handles(self, path: bytes) -> bool:
        """
        Whether C{path} belongs to an aggregated group/version.
        """
        parts = path.split(b"/", 4)
        if len(parts) < 4 or parts[0] != b"" or parts[1] != b"apis" or not parts[3]:
            return False
        group = parts[2].decode("utf-8", "replace")
        version = parts[3].decode("utf-8", "replace")
        if (group, version) in self._overrides:
            return True
        apiservice = self._apiservice(group, version)
        return apiservice is not None and isinstance(
            (apiservice.get("spec") or {}).get("service"), dict
        )

    def endpoint(self, backend: Backend) -> IStreamClientEndpoint:
        """
        The TLS endpoint of C{backend}, built once per backend: making the TLS
        context (loading the client key, the trust roots) costs more than
        forwarding a small request.
        """
        endpoint = self._endpoints.get(backend)
        if endpoint is None:
            if len(self._endpoints) >= MAX_ENDPOINTS:
                self._endpoints.clear()
            endpoint = self._endpoints[backend] = self._make_endpoint(backend)
        return endpoint

    def _make_endpoint(self, backend: Backend) -> IStreamClientEndpoint:
        creator: IOpenSSLClientConnectionCreator
        if backend.insecure:
            creator = _InsecureClientTLS(self._client, backend.server_name)
        else:
            client = ssl.PrivateCertificate.loadPEM(
                self._client.certificate_pem + self._client.key_pem
            )
            trust: Any = None
            if backend.ca_bundle:
                certificates = [
                    ssl.Certificate.loadPEM(c.public_bytes(Encoding.PEM))
                    for c in x509.load_pem_x509_certificates(backend.ca_bundle)
                ]
                trust = ssl.trustRootFromCertificates(certificates)
            creator = ssl.optionsForClientTLS(
                backend.server_name, trustRoot=trust, clientCertificate=client
            )
        tcp: IStreamClientEndpoint
        if ":" in backend.host:
            tcp = TCP6ClientEndpoint(self._reactor, backend.host, backend.port, 10)
        else:
            tcp = TCP4ClientEndpoint(self._reactor, backend.host, backend.port, 10)
        return wrapClientTLS(creator, tcp)

    def admit(self, request: Request) -> bool:
        """
        Whether C{request} (for an aggregated group/version) goes to the
        backend.  It does not when its credentials are refused, nor when the
        sandbox's authorizer denies what the real server authorizes before
        any backend sees it and the backend cannot: discovery of the
        group/version (a non-resource request) and anything an
        unauthenticated user asks.  The API then answers (401, 403).
        """
        from clusternet.sandbox._http import (
            Refused,
            request_attributes,
            request_target,
        )

        try:
            user = self._identify(request)
        except Refused:
            return False
        if self._authorize is not None:
            info, attributes = request_attributes(user, *request_target(request))
            if not info.resource_request or AUTHENTICATED not in user.groups:
                if not self._authorize(attributes).allowed:
                    return False
        self._admitted[request] = user
        return True

    def route(self, request: Request) -> Route:
        from clusternet.sandbox._http import Refused

        user = self._admitted.pop(request, None)
        if user is None:
            try:
                user = self._identify(request)
            except Refused as e:
                raise ProxyError(
                    int(e.status.get("code", 401)),
                    str(e.status.get("message", "")),
                    e.status.get("reason"),
                ) from None
        parts = (request.path or b"/").split(b"/", 4)
        group = parts[2].decode("utf-8", "replace")
        version = parts[3].decode("utf-8", "replace")
        backend = self.backend_for(group, version)
        if backend is None:
            raise ProxyError(404, "the server could not find the requested resource")
        return Route(
            endpoint=self.endpoint(backend),
            path=request.uri,
            host=f"{backend.server_name}:{backend.port}".encode(),
            set_headers=remote_user_headers(user),
            strip_headers=STRIP,
            pool_key=(backend, "front-proxy-client"),
        )

    # --- discovery and availability --------------------------------------------

    def aggregated(self) -> list[tuple[str, str]]:
        """
        Every (group, version) routed to a backend.
        """
        found = set(self._overrides)
        for obj in self._store.snapshot(APISERVICES):
            spec = obj.get("spec") or {}
            if isinstance(spec.get("service"), dict) and spec.get("group"):
                found.add((str(spec["group"]), str(spec.get("version") or "")))
        return sorted(found)

    def legacy_groups(self) -> list[JSONObject]:
        """
        C{APIGroup} entries for the aggregated groups (legacy C{/apis}).
        """
        versions: dict[str, list[str]] = {}
        for group, version in self.aggregated():
            versions.setdefault(group, []).append(version)
        groups = []
        for group, vs in sorted(versions.items()):
            entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in vs]
            groups.append(
                {"name": group, "versions": entries, "preferredVersion": entries[0]}
            )
        return groups

    def api_group(self, name: str) -> JSONObject | None:
        for group in self.legacy_groups():
            if group["name"] == name:
                return {"kind": "APIGroup", "apiVersion": "v1", **group}
        return None

    def aggregated_items(self) -> list[JSONObject]:
        """
        The backends' C{APIGroupDiscovery} items, as last fetched.
        """
        by_group: dict[str, JSONObject] = {}
        for (group, _version), entry in sorted(
            self._discovery.items(), key=lambda item: item[0]
        ):
            item = by_group.setdefault(
                group,
                {
                    "metadata": {"name": group, "creationTimestamp": None},
                    "versions": [],
                },
            )
            item["versions"].append(entry)
        return list(by_group.values())

    def start(self) -> None:
        self._unsubscribe = self._store.subscribe(self._on_event)
        self._loop = LoopingCall(self.refresh)
        self._loop.clock = self._reactor
        self._loop.start(self._interval, now=True)

    def stop(self) -> Deferred[None]:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        return self.proxy.close()

    def _on_event(self, event: StoreEvent) -> None:
        if event.resource not in (APISERVICES, SERVICES):
            return
        if event.resource == APISERVICES and event.type == "MODIFIED":
            old_spec = (event.old_object or {}).get("spec")
            if old_spec == event.object.get("spec"):
                return  # a status write
        # Coalesce bursts (kubectl apply of many objects) into one refresh.
        if self._pending is None or not self._pending.active():
            self._pending = self._reactor.callLater(0, self.refresh)

    def refresh(self) -> Deferred[None]:
        """
        Check every aggregated group/version: availability and discovery.
        """
        return Deferred.fromCoroutine(self._refresh())

    async def _refresh(self) -> None:
        wanted = set()
        for obj in list(self._store.snapshot(APISERVICES)):
            spec = obj.get("spec") or {}
            group, version = (
                str(spec.get("group") or ""),
                str(spec.get("version") or ""),
            )
            wanted.add((group, version))
            await self._check(obj, group, version)
        for key in list(self._overrides):
            if key not in wanted:
                await self._check(None, *key)
                wanted.add(key)
        for key in list(self._discovery):
            if key not in wanted:
                del self._discovery[key]

    async def _check(
        self, apiservice: JSONObject | None, group: str, version: str
    ) -> None:
        try:
            backend = self.backend_for(group, version)
        except ProxyError as e:
            self._discovery.pop((group, version), None)
            reason = (
                "ServiceNotFound" if "not found" in e.message else "ServiceAccessError"
            )
            self._set_available(apiservice, False, reason, e.message)
            return
        if backend is None:
            self._set_available(
                apiservice, True, "Local", "Local APIServices are always available"
            )
            return
        url = f"{backend.url}/apis/{group}/{version}"
        try:
            code, body, _ = await self._get(backend, f"/apis/{group}/{version}")
            if code != 200:
                raise ValueError(f"bad status from {url}: {code}")
            resources = json.loads(body)
        except Exception as e:
            self._discovery.pop((group, version), None)
            self._set_available(
                apiservice,
                False,
                "FailedDiscoveryCheck",
                f"failing or missing response from {url}: {_describe(e)}",
            )
            return
        entry = await self._discovery_entry(backend, group, version, resources)
        self._discovery[(group, version)] = entry
        self._set_available(apiservice, True, "Passed", "all checks passed")

    async def _discovery_entry(
        self, backend: Backend, group: str, version: str, legacy: Any
    ) -> JSONObject:
        try:
            code, body, content_type = await self._get(
                backend, "/apis", accept=DISCOVERY_ACCEPT
            )
            if code == 200 and b"as=APIGroupDiscoveryList" in content_type:
                document = json.loads(body)
                for item in document.get("items") or []:
                    if (item.get("metadata") or {}).get("name") != group:
                        continue
                    for entry in item.get("versions") or []:
                        if entry.get("version") == version:
                            return dict(entry)
        except Exception as e:
            self._log.debug(
                "aggregated discovery of {url} failed: {error}",
                url=backend.url,
                error=_describe(e),
            )
        return _from_legacy(version, legacy)

    async def _get(
        self, backend: Backend, path: str, accept: bytes = b"application/json"
    ) -> tuple[int, bytes, bytes]:
        agent = Agent.usingEndpointFactory(
            self._reactor, _FixedEndpoint(self.endpoint(backend))
        )
        headers = Headers(
            {
                b"Accept": [accept],
                b"X-Remote-User": [AGGREGATOR_USER.encode()],
                b"X-Remote-Group": [g.encode() for g in AGGREGATOR_GROUPS],
            }
        )
        requested = agent.request(b"GET", (backend.url + path).encode(), headers)
        requested.addTimeout(self._timeout, self._reactor)
        response = await requested
        reading = readBody(response)
        reading.addTimeout(self._timeout, self._reactor)
        body = await reading
        content_type = (response.headers.getRawHeaders(b"content-type") or [b""])[0]
        return response.code, body, content_type

    def _set_available(
        self, apiservice: JSONObject | None, available: bool, reason: str, message: str
    ) -> None:
        if apiservice is None:
            return
        name = apiservice["metadata"]["name"]
        current = self._store.peek(APISERVICES, None, name)
        if current is None:
            return
        status = dict(current.get("status") or {})
        conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
        value = "True" if available else "False"
        old = next((c for c in conditions if c.get("type") == "Available"), None)
        if (
            old is not None
            and old.get("status") == value
            and old.get("reason") == reason
            and old.get("message") == message
        ):
            return
        transition = (
            old["lastTransitionTime"]
            if old is not None
            and old.get("status") == value
            and old.get("lastTransitionTime")
            else self._store.now()
        )
        condition = {
            "type": "Available",
            "status": value,
            "lastTransitionTime": transition,
            "reason": reason,
            "message": message,
        }
        status["conditions"] = [
            c for c in conditions if c.get("type") != "Available"
        ] + [condition]
        try:
            self._store.update(
                APISERVICES, None, {**current, "status": status}, subresource="status"
            )
        except StoreError as e:
            self._log.debug(
                "APIService {name} status not written: {error}",
                name=name,
                error=e.message,
            )


def _describe(error: BaseException) -> str:
    from twisted.python.failure import Failure

    if isinstance(error, Failure):
        return error.getErrorMessage()
    text = str(error) or type(error).__name__
    return text


def _from_legacy(version: str, legacy: Any) -> JSONObject:
    """
    An aggregated v2 version entry made from a legacy C{APIResourceList}.
    """
    resources: dict[str, JSONObject] = {}
    subresources: list[tuple[str, str, JSONObject]] = []
    for resource in (legacy or {}).get("resources") or []:
        if not isinstance(resource, dict) or not resource.get("name"):
            continue
        name = str(resource["name"])
        if "/" in name:
            parent, _, sub = name.partition("/")
            subresources.append((parent, sub, resource))
            continue
        entry: JSONObject = {
            "resource": name,
            "responseKind": {
                "group": "",
                "version": "",
                "kind": resource.get("kind", ""),
            },
            "scope": "Namespaced" if resource.get("namespaced") else "Cluster",
            "singularResource": resource.get("singularName") or "",
            "verbs": list(resource.get("verbs") or []),
        }
        for key in ("shortNames", "categories"):
            if resource.get(key):
                entry[key] = list(resource[key])
        resources[name] = entry
    for parent, sub, resource in subresources:
        if parent in resources:
            resources[parent].setdefault("subresources", []).append(
                {
                    "subresource": sub,
                    "responseKind": {
                        "group": resource.get("group", ""),
                        "version": resource.get("version", ""),
                        "kind": resource.get("kind", ""),
                    },
                    "verbs": list(resource.get("verbs") or []),
                }
            )
    return {
        "version": version,
        "resources": list(resources.values()),
        "freshness": "Current",
    }
