# ruff: noqa: E501  (long human-readable messages and descriptions, kept verbatim)
"""
The sandbox's HTTP API: routing, authentication and authorization hooks, the
REST verbs, watch streams, discovery, OpenAPI and Table output.
"""

from __future__ import annotations

import base64
import json
import platform
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import yaml

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from clusternet.apis.status import status_object
from clusternet.health import HealthChecks, ProbeResource
from clusternet.sandbox._auth_api import (
    Attributes,
    AuthenticationError,
    IAuthenticator,
    IAuthorizer,
    RequestCredentials,
    UserInfo,
)
from clusternet.sandbox._discovery import (
    aggregated_discovery,
    api_group,
    api_group_list,
    api_resource_list,
    api_versions,
    document_hash,
    openapi_v3_index,
)
from clusternet.sandbox._impersonate import ImpersonationRefused, impersonate
from clusternet.sandbox._meta import ApiError, bad_request, error_status
from clusternet.sandbox._openapi_v2 import (
    PROTOBUF_CONTENT_TYPE as OPENAPI_V2_PROTOBUF,
)
from clusternet.sandbox._openapi_v2 import encode_document, openapi_v2_document
from clusternet.sandbox._patch import (
    PatchError,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
    server_side_apply,
    update_managed_fields,
)
from clusternet.sandbox._resources import Registry, ResourceType
from clusternet.sandbox._schema import unknown_fields
from clusternet.sandbox._selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    object_fields,
    parse_field_selector,
    parse_label_selector,
)
from clusternet.sandbox._store import Gone, Store
from clusternet.sandbox._store_api import JSONObject, StoreError
from clusternet.sandbox._table import make_table
from clusternet.sandbox.auth._escalation import confirm_no_escalation
from clusternet.sandbox.auth._rbac import forbidden_status

__all__ = ["Refused", "SandboxAPI", "VersionInfo"]

NOT_FOUND = "the server could not find the requested resource"
MAX_BODY = 3 * 1024 * 1024
VERBS_BY_METHOD = {"POST": "create", "PUT": "update", "PATCH": "patch"}
PROTOBUF = "application/vnd.kubernetes.protobuf"
# What /openapi/v2 answers in protobuf (kube-openapi accepts both spellings).
OPENAPI_V2_MEDIA_TYPES = (
    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
)
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "unsupported",
}


def _platform() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )
    return f"{platform.system().lower()}/{arch}"


class Refused(Exception):
    """
    The request is answered with C{status} before it reaches a handler.
    """

    def __init__(self, status: JSONObject) -> None:
        super().__init__(status.get("message", ""))
        self.status = status


class VersionInfo:
    def __init__(
        self, git_version: str = "v1.32.0", platform_: str | None = None
    ) -> None:
        self.git_version = git_version
        self.platform = platform_ or _platform()

    def body(self) -> JSONObject:
        core = self.git_version.lstrip("v").split("-")[0].split("+")[0].split(".")
        major = core[0] if core else "1"
        minor = core[1] if len(core) > 1 else "0"
        return {
            "major": major,
            "minor": minor,
            "gitVersion": self.git_version,
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": f"python{platform.python_version()}",
            "compiler": "cpython",
            "platform": self.platform,
        }


class RequestInfo:
    """
    What a request asks for, as Kubernetes' C{request.RequestInfo}.
    """

    def __init__(self) -> None:
        self.resource_request = False
        self.path = "/"
        self.verb = ""
        self.api_prefix = ""
        self.api_group = ""
        self.api_version = ""
        self.namespace = ""
        self.resource = ""
        self.subresource = ""
        self.name = ""
        self.parts: list[str] = []


def parse_request_info(method: str, path: str, query: dict[str, str]) -> RequestInfo:
    info = RequestInfo()
    info.path = path
    info.verb = method.lower()
    parts = [unquote(p) for p in path.strip("/").split("/") if p != ""]
    info.parts = parts
    if not parts or parts[0] not in ("api", "apis"):
        return info
    info.api_prefix = parts[0]
    rest = parts[1:]
    if info.api_prefix == "apis":
        if len(rest) < 2:
            return info
        info.api_group, info.api_version, rest = rest[0], rest[1], rest[2:]
    else:
        if len(rest) < 1:
            return info
        info.api_version, rest = rest[0], rest[1:]
    if not rest:
        return info
    info.resource_request = True
    if rest[0] == "namespaces" and len(rest) > 1:
        info.namespace = rest[1]
        if len(rest) > 2 and rest[2] not in ("status", "finalize"):
            rest = rest[2:]
    info.resource = rest[0]
    if len(rest) > 1:
        info.name = rest[1]
    if len(rest) > 2:
        info.subresource = rest[2]
    if len(rest) > 3:
        info.subresource = "/".join(rest[2:])
    watch = query.get("watch", "") in ("1", "true", "True")
    # Methods are case-sensitive (RFC 9110): a lower-case "delete" is no
    # DELETE.  The real server gives a resource request of any other method
    # the verb "" (and then 405) rather than lower-casing it.
    if method in ("GET", "HEAD"):
        if info.name:
            info.verb = "get"
        else:
            info.verb = "watch" if watch else "list"
    elif method == "DELETE":
        info.verb = "delete" if info.name else "deletecollection"
    else:
        info.verb = VERBS_BY_METHOD.get(method, "")
    return info


def request_target(request: Request) -> tuple[str, str, dict[str, str]]:
    """
    The method (as sent: methods are case-sensitive), path and query (the
    last value of each name) of C{request}.
    """
    method = (request.method or b"GET").decode("ascii", "replace")
    path = (request.path or b"/").decode("utf-8", "replace")
    args: dict[bytes, list[bytes]] = request.args or {}
    query = {
        k.decode("utf-8", "replace"): v[-1].decode("utf-8", "replace")
        for k, v in args.items()
        if v
    }
    return method, path, query


def request_attributes(
    user: UserInfo, method: str, path: str, query: dict[str, str]
) -> tuple[RequestInfo, Attributes]:
    """
    What C{user} asks for, as the authorizer sees it.
    """
    info = parse_request_info(method, path, query)
    name = info.name
    if not name and info.verb in ("list", "watch"):
        name = _selected_name(query.get("fieldSelector", ""))
    attributes = Attributes(
        user=user,
        verb=info.verb,
        resource_request=info.resource_request,
        api_group=info.api_group,
        api_version=info.api_version,
        resource=info.resource,
        subresource=info.subresource,
        namespace=info.namespace,
        name=name,
        path=path,
    )
    return info, attributes


def _selected_name(selector: str) -> str:
    """
    The name a list or watch selects with C{metadata.name=NAME} (or C{==}):
    the real server authorizes such a request for that name, so that a
    C{resourceNames} rule allows it.
    """
    for term in selector.split(","):
        field, op, value = term.partition("==")
        if not op:
            field, op, value = term.partition("=")
        if op and not field.endswith("!") and field.strip() == "metadata.name":
            value = value.strip()
            if value not in ("", ".", "..") and not any(c in value for c in "/%"):
                return value
    return ""


class SandboxAPI(Resource):
    """
    The root of the sandbox's HTTP API (a leaf: it routes every path itself).
    """

    isLeaf = True
    _log = Logger()

    def __init__(
        self,
        store: Store,
        registry: Registry,
        clock: IReactorTime,
        authenticator: IAuthenticator,
        authorizer: IAuthorizer,
        *,
        version: VersionInfo | None = None,
        health: HealthChecks | None = None,
        server_address: Callable[[], str] = lambda: "127.0.0.1:6443",
        bookmark_interval: float = 60.0,
        default_watch_timeout: float = 1800.0,
    ) -> None:
        super().__init__()
        self.store = store
        self.registry = registry
        self.clock = clock
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.version = version or VersionInfo()
        self.health = health or HealthChecks()
        self._server_address = server_address
        self._bookmark_interval = bookmark_interval
        self._default_watch_timeout = default_watch_timeout
        self._watches: set[_WatchStream] = set()
        self._openapi_cache: tuple[JSONObject, dict[str, JSONObject]] | None = None
        # /openapi/v2 as (JSON, protobuf, ETag), encoded once per schema change.
        self._openapi_v2_cache: tuple[bytes, bytes, bytes] | None = None
        self.sub_handlers: dict[tuple[str, str, str], Callable[..., Any]] = {}
        # The aggregation layer (C{clusternet.sandbox._aggregator.Aggregator}),
        # whose groups discovery merges.
        self.aggregator: Any = None
        registry.on_change(self._invalidate)

    def _invalidate(self) -> None:
        self._openapi_cache = None
        self._openapi_v2_cache = None

    # --- entry ----------------------------------------------------------------

    def render(self, request: Request) -> bytes | int:
        try:
            return self._render(request)
        except StoreError as e:
            return self._status(request, error_status(e))
        except Exception:
            self._log.failure(
                "sandbox request {method} {path} failed",
                method=request.method,
                path=request.path,
            )
            return self._status(
                request,
                status_object(500, "Internal error occurred: unexpected failure"),
            )

    def stop_watches(self) -> None:
        for stream in list(self._watches):
            stream.close()

    def _render(self, request: Request) -> bytes | int:
        method, path, query = request_target(request)
        try:
            user = self.identify(request)
        except Refused as e:
            return self._status(request, e.status)
        info, attributes = request_attributes(user, method, path, query)
        decision = self.authorizer.authorize(attributes)
        if not decision.allowed:
            request.setHeader(b"x-content-type-options", b"nosniff")
            return self._status(request, forbidden_status(attributes, decision.reason))
        if info.resource_request:
            return self._resource(request, method, info, query, user)
        return self._non_resource(request, method, info, query)

    def identify(self, request: Request) -> UserInfo:
        """
        Who C{request} acts as: the authenticated user, or the user it
        impersonates once that is authorized.

        @raise Refused: 401 without valid credentials, 400/403 for a refused
            impersonation.
        """
        credentials = self._credentials(request)
        try:
            user = self.authenticator.authenticate(credentials)
        except AuthenticationError as e:
            self._log.info("authentication failed: {reason}", reason=str(e))
            user = None
        if user is None:
            raise Refused(status_object(401, "Unauthorized"))
        try:
            return impersonate(user, credentials.headers, self.authorizer)
        except ImpersonationRefused as e:
            self._log.info(
                "impersonation refused for {user}: {reason}",
                user=user.name,
                reason=str(e),
            )
            raise Refused(e.status) from None

    def _credentials(self, request: Request) -> RequestCredentials:
        headers: dict[str, tuple[str, ...]] = {}
        for name, values in request.requestHeaders.getAllRawHeaders():
            key = name.decode("latin-1").lower()
            headers[key] = headers.get(key, ()) + tuple(
                v.decode("latin-1") for v in values
            )
        chain: tuple[Any, ...] = ()
        transport = getattr(request.channel, "transport", None)
        connection = getattr(transport, "_tlsConnection", None)
        if connection is not None:
            try:
                leaf = connection.get_peer_certificate()
                verified = connection.get_verified_chain() if leaf is not None else None
                peer_chain = (
                    list(verified) if verified else ([leaf] if leaf is not None else [])
                )
                chain = tuple(c.to_cryptography() for c in peer_chain)
            except Exception:
                chain = ()
        peer = request.getClientAddress()
        address = getattr(peer, "host", "") or ""
        return RequestCredentials(
            headers=headers, peer_chain=chain, remote_address=str(address)
        )

    # --- responses --------------------------------------------------------------

    def _json(
        self,
        request: Request,
        code: int,
        body: Any,
        content_type: bytes = b"application/json",
    ) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", content_type)
        request.setHeader(b"cache-control", b"no-cache, private")
        return json.dumps(body, separators=(",", ":")).encode("utf-8")

    def _status(self, request: Request, body: JSONObject) -> bytes:
        return self._json(request, int(body.get("code", 500)), body)

    # --- non-resource paths -------------------------------------------------------

    def _non_resource(
        self, request: Request, method: str, info: RequestInfo, query: dict[str, str]
    ) -> bytes | int:
        parts = info.parts
        if method not in ("GET", "HEAD"):
            if parts and parts[0] in (
                "api",
                "apis",
                "version",
                "healthz",
                "livez",
                "readyz",
                "openapi",
            ):
                return self._status(
                    request,
                    status_object(
                        405,
                        "the server does not allow this method on the requested resource",
                        details={},
                    ),
                )
            return self._status(request, status_object(404, NOT_FOUND))
        aggregated = _accepts(
            request, "APIGroupDiscoveryList", "apidiscovery.k8s.io", ("v2",)
        )
        if parts == ["api"]:
            if aggregated:
                return self._aggregated(request, core=True)
            return self._json(request, 200, api_versions(self._server_address()))
        if parts == ["apis"]:
            if aggregated:
                return self._aggregated(request, core=False)
            groups = api_group_list(self.registry)
            if self.aggregator is not None:
                served = {g["name"] for g in groups["groups"]}
                groups["groups"] += [
                    g
                    for g in self.aggregator.legacy_groups()
                    if g["name"] not in served
                ]
            return self._json(request, 200, groups)
        if parts == ["api", "v1"]:
            body = api_resource_list(self.registry, "", "v1")
            return self._json(request, 200, body)
        if len(parts) == 2 and parts[0] == "apis":
            group = api_group(self.registry, parts[1])
            if group is None and self.aggregator is not None:
                group = self.aggregator.api_group(parts[1])
            if group is None:
                return self._status(request, status_object(404, NOT_FOUND))
            return self._json(request, 200, group)
        if len(parts) == 3 and parts[0] == "apis":
            body = api_resource_list(self.registry, parts[1], parts[2])
            if body is None:
                return self._status(request, status_object(404, NOT_FOUND))
            return self._json(request, 200, body)
        if parts == ["version"]:
            return self._json(request, 200, self.version.body())
        if len(parts) == 1 and parts[0] in ("healthz", "livez", "readyz"):
            return ProbeResource(parts[0], self.health).render_GET(request)
        if len(parts) >= 2 and parts[0] in ("healthz", "livez", "readyz"):
            name = "/".join(parts[1:])
            for check, reason in self.health.run():
                if check == name:
                    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
                    if reason is not None:
                        request.setResponseCode(500)
                        return f"[-]{check} failed: {reason}\n".encode()
                    return b"ok"
            return self._status(request, status_object(404, NOT_FOUND))
        if parts and parts[0] == "openapi":
            return self._openapi(request, parts, query)
        return self._status(request, status_object(404, NOT_FOUND))

    def _aggregated(self, request: Request, core: bool) -> bytes:
        body = aggregated_discovery(self.registry, core)
        if not core and self.aggregator is not None:
            served = {(i.get("metadata") or {}).get("name") for i in body["items"]}
            body["items"] += [
                i
                for i in self.aggregator.aggregated_items()
                if i["metadata"]["name"] not in served
            ]
        encoded = json.dumps(body, separators=(",", ":")).encode()
        request.setHeader(b"vary", b"Accept")
        request.setHeader(b"etag", ('"' + document_hash(body) + '"').encode())
        request.setResponseCode(200)
        request.setHeader(
            b"content-type",
            b"application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        )
        request.setHeader(b"cache-control", b"public")
        return encoded

    def _openapi(
        self, request: Request, parts: list[str], query: dict[str, str]
    ) -> bytes:
        if parts == ["openapi", "v2"]:
            return self._openapi_v2(request)
        if self._openapi_cache is None:
            self._openapi_cache = openapi_v3_index(self.registry)
        index, documents = self._openapi_cache
        if parts == ["openapi", "v3"]:
            return self._json(request, 200, index, b"text/plain; charset=utf-8")
        key = "/".join(parts[2:])
        document = documents.get(key)
        if parts[:2] != ["openapi", "v3"] or document is None:
            return self._status(request, status_object(404, NOT_FOUND))
        digest = document_hash(document)
        request.setHeader(b"etag", f'"{digest}"'.encode())
        request.setHeader(b"vary", b"Accept")
        body = self._json(request, 200, document)
        if query.get("hash") == digest:
            request.setHeader(b"cache-control", b"public, immutable")
        return body

    def _openapi_v2(self, request: Request) -> bytes:
        """
        The Swagger 2.0 document as JSON or, for the media type kubectl asks
        for, as a gnostic protobuf C{Document}; both with the same ETag (the
        SHA-512 of the document), answered 304 when C{If-None-Match} has it.
        """
        if self._openapi_v2_cache is None:
            document = openapi_v2_document(self.registry, self.version.git_version)
            self._openapi_v2_cache = (
                json.dumps(document, separators=(",", ":")).encode("utf-8"),
                encode_document(document),
                f'"{document_hash(document)}"'.encode(),
            )
        as_json, as_protobuf, etag = self._openapi_v2_cache
        chosen: tuple[bytes, bytes] | None = None
        for media_type in [m for m, _ in _media_types(request) if m] or ["*/*"]:
            if media_type in OPENAPI_V2_MEDIA_TYPES:
                chosen = (OPENAPI_V2_PROTOBUF.encode(), as_protobuf)
            elif media_type in ("application/json", "application/*", "*/*"):
                chosen = (b"application/json", as_json)
            if chosen is not None:
                break
        if chosen is None:
            return self._status(
                request,
                status_object(
                    406,
                    "only the following media types are accepted: application/json, "
                    + ", ".join(OPENAPI_V2_MEDIA_TYPES),
                ),
            )
        content_type, body = chosen
        request.setHeader(b"etag", etag)
        request.setHeader(b"vary", b"Accept")
        request.setHeader(b"cache-control", b"no-cache, private")
        if etag in [
            tag.strip().encode() for tag in _header(request, "if-none-match").split(",")
        ]:
            request.setResponseCode(304)
            return b""
        request.setResponseCode(200)
        request.setHeader(b"content-type", content_type)
        return body

    # --- resources ----------------------------------------------------------------

    def _resource(
        self,
        request: Request,
        method: str,
        info: RequestInfo,
        query: dict[str, str],
        user: UserInfo,
    ) -> bytes | int:
        rtype = self.registry.lookup(info.api_group, info.api_version, info.resource)
        if rtype is None:
            return self._status(request, status_object(404, NOT_FOUND))
        if "/" in info.subresource:
            return self._status(request, status_object(404, NOT_FOUND))
        if not rtype.namespaced and info.namespace and info.resource != "namespaces":
            return self._status(request, status_object(404, NOT_FOUND))
        if info.resource == "namespaces":
            namespace = None
        else:
            namespace = info.namespace or None
        if (
            rtype.namespaced
            and namespace is None
            and info.verb not in ("list", "watch")
        ):
            return self._status(request, status_object(404, NOT_FOUND))
        if rtype.handler is not None or (
            info.subresource and self._sub_handler(rtype, info.subresource)
        ):
            return self._handled(request, method, rtype, info, namespace, user)
        if (
            rtype.group == ""
            and rtype.plural == "pods"
            and info.subresource in POD_CONNECT_SUBRESOURCES
        ):
            return self._pod_connect(request, method, rtype, namespace, info, query)
        if info.subresource and info.subresource not in rtype.subresources:
            return self._status(request, status_object(404, NOT_FOUND))
        verb = info.verb
        if info.subresource:
            allowed = {
                "status": ("get", "update", "patch"),
                "finalize": ("update",),
            }.get(info.subresource, ())
            if verb not in allowed:
                return self._method_not_allowed(request)
        elif verb not in rtype.verbs:
            return self._method_not_allowed(request)
        if verb == "get":
            return self._get(request, rtype, namespace, info.name)
        if verb in ("list", "watch"):
            return self._list_or_watch(
                request, rtype, namespace, query, watch=verb == "watch"
            )
        if verb == "create":
            if info.name:
                return self._method_not_allowed(request)
            return self._create(request, rtype, namespace, query, user)
        if verb == "update":
            return self._update(
                request, rtype, namespace, info.name, info.subresource, query, user
            )
        if verb == "patch":
            return self._patch(
                request, rtype, namespace, info.name, info.subresource, query, user
            )
        if verb == "delete":
            return self._delete(request, rtype, namespace, info.name, query)
        if verb == "deletecollection":
            return self._delete_collection(request, rtype, namespace, query)
        return self._method_not_allowed(request)

    def _pod_connect(
        self,
        request: Request,
        method: str,
        rtype: ResourceType,
        namespace: str | None,
        info: RequestInfo,
        query: dict[str, str],
    ) -> bytes:
        """
        C{pods/log}, C{exec}, C{attach}, C{portforward}: the real server reaches
        the pod's kubelet; the sandbox runs none.  Answered as the real server
        answers a pod that no node runs (an empty log; 400 "does not have a
        host assigned"), and with a 503 naming the missing kubelet for a pod
        that names a node.
        """
        allowed = ("GET",) if info.subresource == "log" else ("GET", "POST")
        if method not in allowed:
            return self._method_not_allowed(request)
        pod = self.store.peek(rtype.key, namespace, info.name)
        if pod is None:
            raise _not_found(rtype, info.name)
        check_pod_container(pod, info.subresource, query.get("container", ""))
        node = str((pod.get("spec") or {}).get("nodeName") or "")
        if not node:
            if info.subresource == "log":
                request.setResponseCode(200)
                request.setHeader(b"content-type", b"text/plain")
                request.setHeader(b"cache-control", b"no-cache, private")
                return b""
            raise bad_request(f"pod {info.name} does not have a host assigned")
        raise ApiError(
            503,
            "ServiceUnavailable",
            f"pods/{info.subresource} is not served by the sandbox: pod "
            f"{info.name} is on node {node!r} and the sandbox runs no kubelet",
        )

    def _method_not_allowed(self, request: Request) -> bytes:
        body = status_object(
            405, "the server does not allow this method on the requested resource"
        )
        body["details"] = {}
        body["code"] = body.pop("code")
        return self._status(request, body)

    def _sub_handler(
        self, rtype: ResourceType, subresource: str
    ) -> Callable[..., Any] | None:
        return self.sub_handlers.get((rtype.group, rtype.plural, subresource))

    def _handled(
        self,
        request: Request,
        method: str,
        rtype: ResourceType,
        info: RequestInfo,
        namespace: str | None,
        user: UserInfo,
    ) -> bytes:
        handler = (
            rtype.handler
            if not info.subresource
            else self._sub_handler(rtype, info.subresource)
        )
        if method != "POST" or handler is None:
            return self._method_not_allowed(request)
        target = None
        for sub, group, version, kind, _verbs in rtype.subresource_kinds:
            if info.subresource and sub == info.subresource:
                target = (group, version, kind)
        body = self._decode(request, rtype, target=target)
        result = handler(user, namespace, info.name or None, body)
        return self._json(request, 201, result)

    # --- decoding -------------------------------------------------------------------

    def _decode(
        self,
        request: Request,
        rtype: ResourceType,
        *,
        kind_check: bool = True,
        target: tuple[str, str, str] | None = None,
    ) -> JSONObject:
        content_type = (
            (_header(request, "content-type") or "application/json")
            .split(";")[0]
            .strip()
            .lower()
        )
        raw = request.content.read(MAX_BODY + 1) if request.content is not None else b""
        if len(raw) > MAX_BODY:
            raise ApiError(
                413,
                "RequestEntityTooLarge",
                "Request entity too large: limit is 3145728",
            )
        if content_type in ("application/yaml", "application/x-yaml", "text/yaml"):
            try:
                body = _load_yaml(raw.decode("utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as e:
                raise bad_request(
                    f"the object provided is unrecognized (must be of type {rtype.kind}): couldn't get version/kind; yaml parse error: {e}"
                ) from None
        elif content_type in ("application/json", "*/*", ""):
            try:
                body = json.loads(raw.decode("utf-8"))
            except (ValueError, UnicodeDecodeError, RecursionError) as e:
                text = raw.decode("utf-8", "replace")
                raise bad_request(
                    f"the object provided is unrecognized (must be of type {rtype.kind}): "
                    f"couldn't get version/kind; json parse error: {_json_error(e)} ({text[:64]})"
                ) from None
        elif content_type == PROTOBUF and _protobuf_decoder() is not None:
            decode = _protobuf_decoder()
            assert decode is not None
            pb_group, pb_version, pb_kind = target or (
                rtype.group,
                rtype.version,
                rtype.kind,
            )
            try:
                body = decode(raw, pb_group, pb_version, pb_kind)
            except ValueError as e:
                raise bad_request(
                    f"the object provided is unrecognized (must be of type {pb_kind}): {e}"
                ) from None
        else:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml"
                + (
                    ", application/vnd.kubernetes.protobuf"
                    if _protobuf_decoder()
                    else ""
                ),
            )
        if not isinstance(body, dict):
            raise bad_request(
                f"the object provided is unrecognized (must be of type {rtype.kind}): couldn't get version/kind; json parse error: expected an object"
            )
        if kind_check and (rtype.handler is None or target is not None):
            # A subresource served by code (serviceaccounts/<name>/token) takes
            # its own kind (TokenRequest), not the parent resource's.
            want_group, want_version, want_kind = target or (
                rtype.group,
                rtype.version,
                rtype.kind,
            )
            want_gv = f"{want_group}/{want_version}" if want_group else want_version
            kind = body.get("kind")
            if kind not in (None, "", want_kind):
                raise bad_request(
                    f"the object provided is unrecognized (must be of type {want_kind}): "
                    f'no kind "{kind}" is registered for version "{body.get("apiVersion", "")}" '
                )
            api_version = body.get("apiVersion")
            if api_version not in (None, "", want_gv):
                group = api_version.rpartition("/")[0] if "/" in api_version else ""
                if group != want_group:
                    raise bad_request(
                        f"the API version in the data ({api_version}) does not match the expected API version ({want_gv})"
                    )
        return body

    # --- verbs ----------------------------------------------------------------------

    def _served(self, rtype: ResourceType, obj: JSONObject) -> JSONObject:
        if rtype.crd and obj.get("apiVersion") != rtype.group_version:
            return {**obj, "apiVersion": rtype.group_version}
        return obj

    def _output(
        self, request: Request, rtype: ResourceType, obj: JSONObject, code: int = 200
    ) -> bytes:
        accept = _header(request, "accept")
        obj = self._served(rtype, obj)
        if _wants_table(request):
            table = make_table(
                rtype,
                [obj],
                self.clock.seconds(),
                {"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                self._include(request),
            )
            return self._json(request, code, table)
        if "as=PartialObjectMetadata" in accept:
            return self._json(request, code, _partial(obj))
        return self._json(request, code, obj)

    def _include(self, request: Request) -> str:
        args: dict[bytes, list[bytes]] = request.args or {}
        values = args.get(b"includeObject") or [b"Metadata"]
        return values[-1].decode("ascii", "replace")

    def _get(
        self, request: Request, rtype: ResourceType, namespace: str | None, name: str
    ) -> bytes:
        obj = self.store.peek(rtype.key, namespace, name)
        if obj is None:
            raise _not_found(rtype, name)
        return self._output(request, rtype, obj)

    def _selectors(
        self, rtype: ResourceType, query: dict[str, str]
    ) -> tuple[LabelSelector, FieldSelector]:
        try:
            labels = parse_label_selector(query.get("labelSelector", ""))
        except SelectorError as e:
            raise bad_request(f"unable to parse requirement: {e}") from None
        known = ["metadata.name", "metadata.namespace", *rtype.field_selectors]
        try:
            fields = parse_field_selector(query.get("fieldSelector", ""), known)
        except SelectorError as e:
            raise bad_request(str(e)) from None
        return labels, fields

    def _matches(
        self,
        rtype: ResourceType,
        labels: LabelSelector,
        fields: FieldSelector,
        obj: JSONObject,
    ) -> bool:
        if not labels.empty and not labels.matches(obj["metadata"].get("labels")):
            return False
        if not fields.empty and not fields.matches(
            object_fields(obj, rtype.field_selectors)
        ):
            return False
        return True

    def _list_or_watch(
        self,
        request: Request,
        rtype: ResourceType,
        namespace: str | None,
        query: dict[str, str],
        watch: bool,
    ) -> bytes | int:
        labels, fields = self._selectors(rtype, query)
        if watch:
            return self._watch(request, rtype, namespace, query, labels, fields)
        items = [
            o
            for o in self.store.snapshot(rtype.key, namespace)
            if self._matches(rtype, labels, fields, o)
        ]
        rv = str(self.store.resource_version)
        list_meta: JSONObject = {"resourceVersion": rv}
        start = query.get("continue")
        if start:
            try:
                token = json.loads(
                    base64.urlsafe_b64decode(start + "=" * (-len(start) % 4))
                )
                after = str(token["start"])
            except (ValueError, KeyError, TypeError):
                raise bad_request(
                    "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
                ) from None
            items = [o for o in items if _sort_key(o) >= after]
        limit_text = query.get("limit", "")
        if limit_text:
            try:
                limit = int(limit_text)
            except ValueError:
                raise bad_request(f'invalid limit "{limit_text}"') from None
            if 0 < limit < len(items):
                remaining = len(items) - limit
                items = items[:limit]
                token = {
                    "v": "meta.k8s.io/v1",
                    "rv": int(rv),
                    "start": _sort_key(items[-1]) + "\x00",
                }
                encoded = (
                    base64.urlsafe_b64encode(
                        json.dumps(token, separators=(",", ":")).encode()
                    )
                    .decode()
                    .rstrip("=")
                )
                list_meta["continue"] = encoded
                list_meta["remainingItemCount"] = remaining
        accept = _header(request, "accept")
        items = [self._served(rtype, o) for o in items]
        if _wants_table(request):
            return self._json(
                request,
                200,
                make_table(
                    rtype,
                    items,
                    self.clock.seconds(),
                    list_meta,
                    self._include(request),
                ),
            )
        if "as=PartialObjectMetadataList" in accept:
            return self._json(
                request,
                200,
                {
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": list_meta,
                    "items": [_partial(o) for o in items],
                },
            )
        body = {
            "kind": f"{rtype.kind}List",
            "apiVersion": rtype.group_version,
            "metadata": list_meta,
            "items": items if rtype.crd else [_without_type(o) for o in items],
        }
        return self._json(request, 200, body)

    def _watch(
        self,
        request: Request,
        rtype: ResourceType,
        namespace: str | None,
        query: dict[str, str],
        labels: LabelSelector,
        fields: FieldSelector,
    ) -> int | bytes:
        rv_text = query.get("resourceVersion", "")
        since: int | None
        if rv_text in ("", "0"):
            since = None
        else:
            try:
                since = int(rv_text)
            except ValueError:
                raise bad_request(f'invalid resource version "{rv_text}"') from None
        timeout = self._default_watch_timeout
        if query.get("timeoutSeconds"):
            try:
                timeout = max(0.0, float(query["timeoutSeconds"]))
            except ValueError:
                raise bad_request(
                    f'invalid timeoutSeconds "{query["timeoutSeconds"]}"'
                ) from None
        stream = _WatchStream(
            self,
            request,
            rtype,
            lambda o: self._matches(rtype, labels, fields, o),
            table=_wants_table(request),
            include=self._include(request),
            bookmarks=query.get("allowWatchBookmarks") in ("true", "1"),
        )
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-cache, private")
        request.write(b"")  # the headers go out now, as the real server sends them
        initial = since is None and query.get("sendInitialEvents") != "false"
        if since is None:
            if initial:
                for obj in self.store.snapshot(rtype.key, namespace):
                    stream.send_event("ADDED", obj, None)
            if query.get("sendInitialEvents") == "true":
                stream.bookmark(initial_events_end=True)
            since = self.store.resource_version
        try:
            stream.cancel = self.store.watch(
                rtype.key, namespace, since, stream.on_change
            )
        except Gone as e:
            stream.send_raw(
                {"type": "ERROR", "object": status_object(410, str(e), "Expired")}
            )
            stream.close()
            return NOT_DONE_YET
        self._watches.add(stream)
        stream.start(timeout, self._bookmark_interval if stream.bookmarks else None)
        return NOT_DONE_YET

    def _manager(self, request: Request, query: dict[str, str]) -> str:
        if query.get("fieldManager"):
            return query["fieldManager"]
        agent = _header(request, "user-agent")
        return agent.split("/")[0] if agent else "unknown"

    def _validate_strict(
        self, rtype: ResourceType, body: JSONObject, query: dict[str, str]
    ) -> None:
        if query.get("fieldValidation") != "Strict" or not rtype.crd:
            return
        version = str(body.get("apiVersion", rtype.group_version)).rpartition("/")[2]
        served = self.registry.lookup(rtype.group, version, rtype.plural) or rtype
        if served.schema is None:
            return
        unknown = unknown_fields(body, served.schema)
        if unknown:
            joined = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise bad_request(f"strict decoding error: {joined}")

    def _create(
        self,
        request: Request,
        rtype: ResourceType,
        namespace: str | None,
        query: dict[str, str],
        user: UserInfo,
    ) -> bytes:
        body = self._decode(request, rtype)
        meta = body.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        meta = meta or {}
        _check_namespace(rtype, meta, namespace)
        self._validate_strict(rtype, body, query)
        body.setdefault("apiVersion", rtype.group_version)
        body.setdefault("kind", rtype.kind)
        dry_run = query.get("dryRun") == "All"
        confirm_no_escalation(
            self.authorizer, self.store, user, rtype.key, namespace, "", body, None
        )
        created = self._store_create(
            rtype, namespace, body, self._manager(request, query), dry_run
        )
        if dry_run:
            created["metadata"].pop("resourceVersion", None)
            created["metadata"].pop("managedFields", None)
        return self._output(request, rtype, created, 201)

    def _store_create(
        self,
        rtype: ResourceType,
        namespace: str | None,
        body: JSONObject,
        manager: str,
        dry_run: bool,
    ) -> JSONObject:
        body = _without_reset_fields(rtype, dict(body), "")
        meta = dict(body.get("metadata") or {})
        body["metadata"] = meta
        meta["managedFields"] = update_managed_fields(
            None,
            body,
            manager,
            [],
            api_version=body.get("apiVersion", rtype.group_version),
            now=self.store.now(),
        )
        return self.store.create(rtype.key, namespace, body, dry_run=dry_run)

    def _update(
        self,
        request: Request,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        subresource: str,
        query: dict[str, str],
        user: UserInfo,
    ) -> bytes:
        body = self._decode(request, rtype)
        meta = body.get("metadata")
        if not isinstance(meta, dict):
            meta = body["metadata"] = {}
        if meta.get("name") and meta["name"] != name:
            raise bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        meta["name"] = name
        _check_namespace(rtype, meta, namespace)
        self._validate_strict(rtype, body, query)
        old = self.store.peek(rtype.key, namespace, name)
        if old is None:
            raise _not_found(rtype, name)
        confirm_no_escalation(
            self.authorizer, self.store, user, rtype.key, namespace, name, body, old
        )
        updated = self._store_update(
            rtype,
            namespace,
            old,
            body,
            subresource,
            self._manager(request, query),
            query.get("dryRun") == "All",
        )
        return self._output(request, rtype, updated)

    def _store_update(
        self,
        rtype: ResourceType,
        namespace: str | None,
        old: JSONObject,
        new: JSONObject,
        subresource: str,
        manager: str,
        dry_run: bool,
    ) -> JSONObject:
        new = dict(new)
        meta = dict(new.get("metadata") or {})
        new["metadata"] = meta
        if "managedFields" not in meta:
            managed = list(old["metadata"].get("managedFields") or [])
        else:
            managed = list(meta.get("managedFields") or [])
        # Ownership follows what is stored: the fields that the status
        # subresource (or the main resource) resets are compared as they will
        # be, so that no manager takes them and no other owner loses the rest.
        if subresource == "status":
            stored = {k: v for k, v in old.items() if k != "status"}
            if "status" in new:
                stored["status"] = new["status"]
        elif subresource == "" and rtype.status_subresource:
            stored = {k: v for k, v in new.items() if k != "status"}
            if "status" in old:
                stored["status"] = old["status"]
        else:
            stored = new
        meta["managedFields"] = update_managed_fields(
            old,
            stored,
            manager,
            managed,
            api_version=new.get("apiVersion", rtype.group_version),
            now=self.store.now(),
            subresource="status" if subresource == "status" else "",
        )
        return self.store.update(
            rtype.key, namespace, new, subresource=subresource, dry_run=dry_run
        )

    def _patch(
        self,
        request: Request,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        subresource: str,
        query: dict[str, str],
        user: UserInfo,
    ) -> bytes:
        content_type = (
            (_header(request, "content-type") or "").split(";")[0].strip().lower()
        )
        kind = PATCH_TYPES.get(content_type)
        accepted = ["application/json-patch+json", "application/merge-patch+json"]
        if rtype.strategic and not rtype.crd:
            accepted.append("application/strategic-merge-patch+json")
        accepted.append("application/apply-patch+yaml")
        if (
            kind is None
            or kind == "unsupported"
            or (kind == "strategic" and (rtype.crd or not rtype.strategic))
        ):
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                + ", ".join(accepted),
            )
        raw = request.content.read(MAX_BODY + 1) if request.content is not None else b""
        if len(raw) > MAX_BODY:
            raise ApiError(
                413,
                "RequestEntityTooLarge",
                "Request entity too large: limit is 3145728",
            )
        try:
            if kind == "apply":
                patch = _load_yaml(raw.decode("utf-8"))
            else:
                patch = json.loads(raw.decode("utf-8"))
        except (ValueError, yaml.YAMLError, UnicodeDecodeError, RecursionError) as e:
            raise bad_request(f"error decoding patch: {e}") from None
        dry_run = query.get("dryRun") == "All"
        manager = self._manager(request, query)
        old = self.store.peek(rtype.key, namespace, name)
        if kind == "apply":
            return self._apply(
                request,
                rtype,
                namespace,
                name,
                subresource,
                query,
                patch,
                old,
                dry_run,
                user,
            )
        if old is None:
            raise _not_found(rtype, name)
        current = self._served(rtype, old)
        try:
            if kind == "json":
                patched = apply_json_patch(current, patch)
            elif kind == "merge":
                if not isinstance(patch, dict):
                    raise PatchError("merge patch must be an object")
                patched = apply_merge_patch(current, patch)
            else:
                patched = apply_strategic_merge_patch(current, patch)
        except PatchError as e:
            if e.code == 422:
                raise ApiError(422, "Invalid", str(e)) from None
            raise ApiError(
                e.code, "BadRequest" if e.code == 400 else "Conflict", str(e)
            ) from None
        if not isinstance(patched, dict) or not isinstance(
            patched.get("metadata"), dict
        ):
            raise ApiError(
                422, "Invalid", "patched object is not an object with metadata"
            )
        patched_meta = patched["metadata"]
        if patched_meta.get("name") != name:
            raise bad_request(
                f"the name of the object ({patched_meta.get('name')}) does not match the name on the URL ({name})"
            )
        confirm_no_escalation(
            self.authorizer, self.store, user, rtype.key, namespace, name, patched, old
        )
        patch_rv = _patch_rv(patch)
        if patch_rv is None:
            patched_meta.pop("resourceVersion", None)
        self._validate_strict(rtype, patched, query)
        if "managedFields" in patched_meta and patched_meta["managedFields"] == old[
            "metadata"
        ].get("managedFields"):
            patched_meta.pop("managedFields")
        updated = self._store_update(
            rtype, namespace, old, patched, subresource, manager, dry_run
        )
        return self._output(request, rtype, updated)

    def _apply(
        self,
        request: Request,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        subresource: str,
        query: dict[str, str],
        applied: Any,
        old: JSONObject | None,
        dry_run: bool,
        user: UserInfo,
    ) -> bytes:
        if not isinstance(applied, dict):
            raise bad_request("apply patch must be an object")
        manager = query.get("fieldManager")
        if not manager:
            raise ApiError(
                422,
                "Invalid",
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
            )
        force = query.get("force") in ("true", "1")
        meta: JSONObject = (
            applied["metadata"] if isinstance(applied.get("metadata"), dict) else {}
        )
        if meta.get("name") not in (None, name):
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        _check_namespace(rtype, meta, namespace)
        self._validate_strict(rtype, applied, query)
        now = self.store.now()
        api_version = str(applied.get("apiVersion") or rtype.group_version)
        applied = _without_reset_fields(rtype, applied, subresource)
        if old is None:
            if subresource:
                raise _not_found(rtype, name)
            body = json.loads(json.dumps(applied))
            body.setdefault("metadata", {})["name"] = name
            _, managed = server_side_apply(
                {}, applied, manager, [], force=True, api_version=api_version, now=now
            )
            body["metadata"]["managedFields"] = managed
            confirm_no_escalation(
                self.authorizer,
                self.store,
                user,
                rtype.key,
                namespace,
                name,
                body,
                None,
            )
            created = self.store.create(rtype.key, namespace, body, dry_run=dry_run)
            return self._output(request, rtype, created, 201)
        live = self._served(rtype, old)
        live_body = {k: v for k, v in live.items()}
        managed = list(old["metadata"].get("managedFields") or [])
        try:
            merged, new_managed = server_side_apply(
                live_body,
                applied,
                manager,
                managed,
                force=force,
                api_version=api_version,
                now=now,
                subresource=subresource,
            )
        except PatchError as e:
            raise ApiError(
                e.code,
                "Conflict" if e.code == 409 else "BadRequest",
                str(e),
                {"causes": []} if e.code == 409 else None,
            ) from None
        confirm_no_escalation(
            self.authorizer, self.store, user, rtype.key, namespace, name, merged, old
        )
        merged_meta = dict(merged.get("metadata") or {})
        merged_meta["managedFields"] = new_managed
        merged_meta.pop("resourceVersion", None)
        merged["metadata"] = merged_meta
        updated = self.store.update(
            rtype.key, namespace, merged, subresource=subresource, dry_run=dry_run
        )
        return self._output(request, rtype, updated)

    def _delete_options(self, request: Request, query: dict[str, str]) -> JSONObject:
        raw = request.content.read(MAX_BODY + 1) if request.content is not None else b""
        options: JSONObject = {}
        if raw.strip():
            try:
                parsed = json.loads(raw.decode("utf-8"))
            except (ValueError, UnicodeDecodeError, RecursionError) as e:
                raise bad_request(f"error decoding DeleteOptions: {e}") from None
            if isinstance(parsed, dict):
                options = parsed
        if query.get("dryRun") == "All":
            options["dryRun"] = ["All"]
        if query.get("propagationPolicy"):
            options["propagationPolicy"] = query["propagationPolicy"]
        return options

    def _delete(
        self,
        request: Request,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        query: dict[str, str],
    ) -> bytes:
        options = self._delete_options(request, query)
        preconditions = options.get("preconditions") or {}
        dry_run = "All" in (options.get("dryRun") or [])
        last = self.store.delete(
            rtype.key,
            namespace,
            name,
            dry_run=dry_run,
            uid=preconditions.get("uid"),
            resource_version=preconditions.get("resourceVersion"),
        )
        assert last is not None
        if rtype.return_deleted or (
            last["metadata"].get("deletionTimestamp")
            and self.store.peek(rtype.key, namespace, name) is not None
        ):
            return self._output(request, rtype, last)
        details: JSONObject = {"name": name}
        if rtype.group:
            details["group"] = rtype.group
        details["kind"] = rtype.plural
        details["uid"] = last["metadata"].get("uid", "")
        return self._json(
            request,
            200,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            },
        )

    def _delete_collection(
        self,
        request: Request,
        rtype: ResourceType,
        namespace: str | None,
        query: dict[str, str],
    ) -> bytes:
        labels, fields = self._selectors(rtype, query)
        options = self._delete_options(request, query)
        dry_run = "All" in (options.get("dryRun") or [])
        deleted = []
        for obj in list(self.store.snapshot(rtype.key, namespace)):
            if not self._matches(rtype, labels, fields, obj):
                continue
            try:
                last = self.store.delete(
                    rtype.key,
                    obj["metadata"].get("namespace"),
                    obj["metadata"]["name"],
                    dry_run=dry_run,
                )
            except StoreError:
                continue
            if last is not None:
                deleted.append(self._served(rtype, last))
        return self._json(
            request,
            200,
            {
                "kind": f"{rtype.kind}List",
                "apiVersion": rtype.group_version,
                "metadata": {"resourceVersion": str(self.store.resource_version)},
                "items": deleted,
            },
        )


class _WatchStream:
    """
    One watch response: chunked JSON events, bookmarks, timeout.
    """

    _log = Logger()

    def __init__(
        self,
        api: SandboxAPI,
        request: Request,
        rtype: ResourceType,
        match: Callable[[JSONObject], bool],
        *,
        table: bool,
        include: str,
        bookmarks: bool,
    ) -> None:
        self.api = api
        self.request = request
        self.rtype = rtype
        self.match = match
        self.table = table
        self.include = include
        self.bookmarks = bookmarks
        self.cancel: Callable[[], None] | None = None
        self.closed = False
        self.sent_headers = False
        self.last_rv = ""
        self._timers: list[Any] = []
        request.notifyFinish().addBoth(self._finished)

    def start(self, timeout: float, bookmark_interval: float | None) -> None:
        if self.closed:
            return
        self._timers.append(self.api.clock.callLater(timeout, self.close))
        if bookmark_interval:
            self._schedule_bookmark(bookmark_interval)

    def _schedule_bookmark(self, interval: float) -> None:
        def fire() -> None:
            if self.closed:
                return
            self.bookmark()
            self._schedule_bookmark(interval)

        self._timers.append(self.api.clock.callLater(interval, fire))

    def _finished(self, result: Failure | None) -> None:
        self._teardown()

    def _teardown(self) -> None:
        self.closed = True
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers = []
        if self.cancel is not None:
            self.cancel()
            self.cancel = None
        self.api._watches.discard(self)

    def close(self) -> None:
        if self.closed:
            return
        self._teardown()
        try:
            self.request.finish()
        except RuntimeError:
            pass

    def on_change(self, kind: str, obj: JSONObject, old: JSONObject | None) -> None:
        self.send_event(kind, obj, old)

    def send_event(self, kind: str, obj: JSONObject, old: JSONObject | None) -> None:
        now_matches = self.match(obj)
        if kind == "MODIFIED" and old is not None:
            old_matches = self.match(old)
            if now_matches and not old_matches:
                kind = "ADDED"
            elif old_matches and not now_matches:
                kind = "DELETED"
            elif not now_matches:
                return
        elif not now_matches:
            return
        self.last_rv = obj["metadata"].get("resourceVersion", self.last_rv)
        served = self.api._served(self.rtype, obj)
        if self.table:
            payload: JSONObject = make_table(
                self.rtype,
                [served],
                self.api.clock.seconds(),
                {"resourceVersion": self.last_rv},
                self.include,
                headers=not self.sent_headers,
            )
            self.sent_headers = True
        else:
            payload = served
        self.send_raw({"type": kind, "object": payload})

    def bookmark(self, initial_events_end: bool = False) -> None:
        meta: JSONObject = {
            "resourceVersion": str(self.api.store.resource_version),
            "creationTimestamp": None,
        }
        if initial_events_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        self.send_raw(
            {
                "type": "BOOKMARK",
                "object": {
                    "kind": self.rtype.kind,
                    "apiVersion": self.rtype.group_version,
                    "metadata": meta,
                },
            }
        )

    def send_raw(self, event: JSONObject) -> None:
        if self.closed:
            return
        try:
            self.request.write(
                json.dumps(event, separators=(",", ":")).encode("utf-8") + b"\n"
            )
        except Exception:
            self._log.failure("watch write failed")
            self.close()


class _Yaml12Loader(yaml.SafeLoader):
    """
    YAML as Kubernetes reads it for JSON-compatible documents: only C{true} and
    C{false} are booleans (not C{y}, C{yes}, C{on}, ...).
    """


_Yaml12Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _load_yaml(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506


def _header(request: Request, name: str) -> str:
    value = request.getHeader(name.encode("ascii"))
    if value is None:
        return ""
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def _media_types(request: Request) -> list[tuple[str, dict[str, str]]]:
    accept = _header(request, "accept")
    found = []
    for entry in accept.split(","):
        pieces = [p.strip() for p in entry.split(";")]
        params = {}
        for piece in pieces[1:]:
            key, _, value = piece.partition("=")
            params[key.strip()] = value.strip()
        found.append((pieces[0].lower(), params))
    return found


def _accepts(request: Request, as_: str, group: str, versions: tuple[str, ...]) -> bool:
    for media, params in _media_types(request):
        if (
            media == "application/json"
            and params.get("as") == as_
            and params.get("g") == group
            and params.get("v") in versions
        ):
            return True
    return False


def _wants_table(request: Request) -> bool:
    return _accepts(request, "Table", "meta.k8s.io", ("v1", "v1beta1"))


def _protobuf_decoder() -> Callable[[bytes, str, str, str | None], JSONObject] | None:
    """
    C{clusternet.sandbox._protobuf.decode_body}, when that module is present.
    """
    try:
        from clusternet.sandbox import _protobuf  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    decode: Callable[[bytes, str, str, str | None], JSONObject] | None = getattr(
        _protobuf, "decode_body", None
    )
    return decode


def _json_error(error: Exception) -> str:
    return str(error)


def _sort_key(obj: JSONObject) -> str:
    meta = obj["metadata"]
    namespace = meta.get("namespace", "")
    return f"{namespace}/{meta['name']}" if namespace else meta["name"]


def _partial(obj: JSONObject) -> JSONObject:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def _without_reset_fields(
    rtype: ResourceType, obj: JSONObject, subresource: str
) -> JSONObject:
    """
    C{obj} without what the real strategy of a custom resource with the status
    subresource resets before storing (and leaves out of managedFields): its
    C{status} on create and on the main resource, its C{spec} on C{/status}.
    """
    if not (rtype.crd and rtype.status_subresource):
        return obj
    if subresource == "":
        return {k: v for k, v in obj.items() if k != "status"}
    if subresource == "status":
        return {k: v for k, v in obj.items() if k != "spec"}
    return obj


def _without_type(obj: JSONObject) -> JSONObject:
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


POD_CONNECT_SUBRESOURCES = frozenset({"log", "exec", "attach", "portforward"})


def _container_names(spec: JSONObject, field: str) -> list[str]:
    containers = spec.get(field)
    if not isinstance(containers, list):
        return []
    return [str(c.get("name", "")) for c in containers if isinstance(c, dict)]


def check_pod_container(pod: JSONObject, subresource: str, container: str) -> None:
    """
    Refuse, with the real server's 400 messages, a C{container} the pod lacks,
    or none where the pod has several (k8s.io/kubernetes pkg/registry/core/pod
    C{validateContainer} for logs, C{streamLocation} for exec and attach).
    """
    if subresource == "portforward":
        return
    name = str((pod.get("metadata") or {}).get("name", ""))
    spec = pod.get("spec")
    spec = spec if isinstance(spec, dict) else {}
    containers = _container_names(spec, "containers")
    init = _container_names(spec, "initContainers")
    ephemeral = _container_names(spec, "ephemeralContainers")
    if container:
        if container not in (*containers, *init, *ephemeral):
            raise bad_request(f"container {container} is not valid for pod {name}")
        return
    if len(containers) == 1:
        return
    if not containers:
        raise bad_request(f"a container name must be specified for pod {name}")
    if subresource == "log":
        every = " ".join([*init, *containers, *ephemeral])
        raise bad_request(
            f"a container name must be specified for pod {name}, choose one of: [{every}]"
        )
    message = (
        f"a container name must be specified for pod {name}, "
        f"choose one of: [{' '.join(containers)}]"
    )
    if init:
        message += f" or one of the init containers: [{' '.join(init)}]"
    raise bad_request(message)


def _not_found(rtype: ResourceType, name: str) -> ApiError:
    from clusternet.sandbox._meta import not_found

    return not_found(rtype.plural, name, rtype.group)


def _patch_rv(patch: Any) -> str | None:
    if isinstance(patch, dict):
        meta = patch.get("metadata")
        if isinstance(meta, dict) and meta.get("resourceVersion"):
            return str(meta["resourceVersion"])
    if isinstance(patch, list):
        for op in patch:
            if isinstance(op, dict) and op.get("path") == "/metadata/resourceVersion":
                return str(op.get("value"))
    return None


def _check_namespace(
    rtype: ResourceType, meta: JSONObject, namespace: str | None
) -> None:
    """
    Refuse a body whose metadata.namespace differs from the request's (400).
    """
    if rtype.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
        raise bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
