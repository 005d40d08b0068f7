"""
Service-account tokens: the signer (legacy Secret tokens and bound TokenRequest
tokens, claims as the real server writes them), their authenticator, the
TokenRequest subresource and the token controller that fills token Secrets.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from attrs import frozen

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from .._auth_api import AuthenticationError, UserInfo
from .._store_api import ObjectReader, ObjectWriter, StoreError, StoreEvent
from ._authn import CREDENTIAL_ID_KEY, ITokenAuthenticator, TokenResponse
from ._errors import APIError, bad_request, invalid, not_found
from ._jose import (
    JOSEError,
    SignatureError,
    SigningKey,
    VerifyingKey,
    sign_jwt,
    unverified_claims,
    verify_jwt,
)
from ._objects import (
    encode_data,
    format_time,
    metadata,
    object_annotations,
    parse_rfc3339,
    secret_data,
)

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER",
    "LEGACY_ISSUER",
    "SERVICE_ACCOUNT_TOKEN_TYPE",
    "ServiceAccountTokenAuthenticator",
    "ServiceAccountTokenSigner",
    "TokenController",
    "create_token_request",
    "service_account_user",
]

DEFAULT_ISSUER = "https://kubernetes.default.svc"
DEFAULT_AUDIENCE = "https://kubernetes.default.svc"
LEGACY_ISSUER = "kubernetes/serviceaccount"
SERVICE_ACCOUNT_TOKEN_TYPE = "kubernetes.io/service-account-token"  # noqa: S105
SA_NAME_KEY = "kubernetes.io/service-account.name"
SA_UID_KEY = "kubernetes.io/service-account.uid"
INVALID_SINCE_LABEL = "kubernetes.io/legacy-token-invalid-since"
POD_NAME_KEY = "authentication.kubernetes.io/pod-name"
POD_UID_KEY = "authentication.kubernetes.io/pod-uid"
NODE_NAME_KEY = "authentication.kubernetes.io/node-name"
NODE_UID_KEY = "authentication.kubernetes.io/node-uid"

_LEEWAY = 60.0  # go-jose's DefaultLeeway
_MIN_EXPIRATION = 600
_MAX_EXPIRATION = 1 << 32
_DEFAULT_EXPIRATION = 3600

_PREFIX = "system:serviceaccount:"


def service_account_user(
    namespace: str,
    name: str,
    uid: str = "",
    extra: dict[str, tuple[str, ...]] | None = None,
) -> UserInfo:
    """
    The user a service account authenticates as (without system:authenticated,
    which the union adds).
    """
    return UserInfo(
        name=f"{_PREFIX}{namespace}:{name}",
        uid=uid,
        groups=("system:serviceaccounts", f"system:serviceaccounts:{namespace}"),
        extra=extra or {},
    )


def _split_username(username: str) -> tuple[str, str] | None:
    if not username.startswith(_PREFIX):
        return None
    parts = username[len(_PREFIX) :].split(":")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return None
    return parts[0], parts[1]


@frozen
class BoundObject:
    """
    What a bound token is bound to, as its C{kubernetes.io} claim names it.
    """

    kind: str  # "pod", "secret" or "node"
    name: str
    uid: str


class ServiceAccountTokenSigner:
    """
    Signs service-account tokens with the sandbox's key.

    @ivar issuer: C{iss} of bound tokens (C{--service-account-issuer}).
    @ivar api_audiences: the server's own audiences (C{--api-audiences}),
        defaulting to the issuer.
    """

    def __init__(
        self,
        key: SigningKey,
        clock: IReactorTime,
        *,
        issuer: str = DEFAULT_ISSUER,
        api_audiences: Sequence[str] = (),
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._key = key
        self._clock = clock
        self.issuer = issuer
        self.api_audiences = tuple(api_audiences) or (issuer,)
        self._new_id = new_id

    @property
    def public_key(self) -> VerifyingKey:
        return self._key.public_key()

    def legacy_token(self, service_account: dict[str, Any], secret_name: str) -> str:
        """
        The token the token controller writes into a Secret.
        """
        meta = metadata(service_account)
        namespace = str(meta.get("namespace", ""))
        name = str(meta.get("name", ""))
        claims = {
            "iss": LEGACY_ISSUER,
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/secret.name": secret_name,
            "kubernetes.io/serviceaccount/service-account.name": name,
            "kubernetes.io/serviceaccount/service-account.uid": str(
                meta.get("uid", "")
            ),
            "sub": f"{_PREFIX}{namespace}:{name}",
        }
        return sign_jwt(self._key, claims)

    def bound_token(
        self,
        service_account: dict[str, Any],
        *,
        audiences: Sequence[str] = (),
        expiration_seconds: int = _DEFAULT_EXPIRATION,
        bound: Sequence[BoundObject] = (),
    ) -> tuple[str, int]:
        """
        A TokenRequest token and its expiry (Unix seconds).
        """
        meta = metadata(service_account)
        namespace = str(meta.get("namespace", ""))
        name = str(meta.get("name", ""))
        now = int(self._clock.seconds())
        expiry = now + int(expiration_seconds)
        kubernetes: dict[str, Any] = {
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": str(meta.get("uid", ""))},
        }
        for ref in bound:
            kubernetes[ref.kind] = {"name": ref.name, "uid": ref.uid}
        claims = {
            "aud": list(audiences) or list(self.api_audiences),
            "exp": expiry,
            "iat": now,
            "iss": self.issuer,
            "jti": self._new_id(),
            "kubernetes.io": kubernetes,
            "nbf": now,
            "sub": f"{_PREFIX}{namespace}:{name}",
        }
        return sign_jwt(self._key, claims), expiry


def _go_quote_list(values: Sequence[str]) -> str:
    import json

    return "[" + " ".join(json.dumps(v) for v in values) + "]"


def _numeric(claims: dict[str, Any], key: str) -> float | None:
    value = claims.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthenticationError(f"square/go-jose/jwt: invalid {key} claim")
    return float(value)


def _deleted(obj: dict[str, Any]) -> bool:
    return bool(metadata(obj).get("deletionTimestamp"))


@implementer(ITokenAuthenticator)
class ServiceAccountTokenAuthenticator:
    """
    Service-account JWTs: legacy Secret tokens (valid while the Secret still
    holds them and the account exists with the same UID) and bound tokens (valid
    until C{exp}, while the account and any bound object exist).
    """

    def __init__(
        self,
        reader: ObjectReader,
        clock: IReactorTime,
        keys: Sequence[VerifyingKey],
        *,
        issuers: Sequence[str] = (DEFAULT_ISSUER,),
        api_audiences: Sequence[str] = (),
    ) -> None:
        self._reader = reader
        self._clock = clock
        self._keys = list(keys)
        self._issuers = tuple(issuers)
        self._implicit = tuple(api_audiences) or self._issuers[:1]

    def authenticate_token(
        self, token: str, audiences: tuple[str, ...]
    ) -> TokenResponse | None:
        try:
            peek = unverified_claims(token)
        except JOSEError:
            return None
        issuer = peek.get("iss")
        if issuer != LEGACY_ISSUER and issuer not in self._issuers:
            return None
        try:
            claims = verify_jwt(token, self._keys)
        except SignatureError as e:
            raise AuthenticationError(str(e)) from None
        except JOSEError:
            return None
        aud = claims.get("aud")
        if isinstance(aud, str):
            token_audiences: tuple[str, ...] = (aud,)
        elif isinstance(aud, list) and all(isinstance(a, str) for a in aud):
            token_audiences = tuple(aud)
        elif aud is None:
            token_audiences = ()
        else:
            raise AuthenticationError("square/go-jose/jwt: invalid aud claim")
        if not token_audiences:
            token_audiences = self._implicit
        requested = audiences or self._implicit
        accepted = tuple(a for a in requested if a in token_audiences)
        if not accepted and self._implicit:
            raise AuthenticationError(
                f"token audiences {_go_quote_list(token_audiences)} is invalid for"
                f" the target audiences {_go_quote_list(requested)}"
            )
        if claims.get("iss") == LEGACY_ISSUER:
            user = self._validate_legacy(token, claims)
        else:
            user = self._validate_bound(claims)
        return TokenResponse(user, accepted)

    def _validate_legacy(self, token: str, claims: dict[str, Any]) -> UserInfo:
        def claim(key: str) -> str:
            value = claims.get(key, "")
            return value if isinstance(value, str) else ""

        subject = claim("sub")
        if not subject:
            raise AuthenticationError("sub claim is missing")
        namespace = claim("kubernetes.io/serviceaccount/namespace")
        if not namespace:
            raise AuthenticationError("namespace claim is missing")
        secret_name = claim("kubernetes.io/serviceaccount/secret.name")
        if not secret_name:
            raise AuthenticationError("secretName claim is missing")
        sa_name = claim("kubernetes.io/serviceaccount/service-account.name")
        if not sa_name:
            raise AuthenticationError("serviceAccountName claim is missing")
        sa_uid = claim("kubernetes.io/serviceaccount/service-account.uid")
        if not sa_uid:
            raise AuthenticationError("serviceAccountUID claim is missing")
        if _split_username(subject) != (namespace, sa_name):
            raise AuthenticationError("sub claim is invalid")
        secret = self._reader.get("/secrets", namespace, secret_name)
        if secret is None or _deleted(secret):
            raise AuthenticationError("token has been invalidated")
        if secret_data(secret).get("token", "") != token:
            raise AuthenticationError("Token does not match server's copy")
        account = self._reader.get("/serviceaccounts", namespace, sa_name)
        if account is None:
            raise AuthenticationError(f'serviceaccounts "{sa_name}" not found')
        if _deleted(account):
            raise AuthenticationError(
                f"ServiceAccount {namespace}/{sa_name} has been deleted"
            )
        uid = str(metadata(account).get("uid", ""))
        if uid != sa_uid:
            raise AuthenticationError(
                f"ServiceAccount UID ({uid}) does not match claim ({sa_uid})"
            )
        labels = metadata(secret).get("labels")
        if isinstance(labels, dict) and labels.get(INVALID_SINCE_LABEL):
            raise AuthenticationError(
                f"the token in secret {namespace}/{secret_name} for service account"
                f" {namespace}/{sa_name} has been marked invalid. Use tokens from"
                " the TokenRequest API or manually created secret-based tokens, or"
                f" remove the '{INVALID_SINCE_LABEL}' label from the secret to"
                " temporarily allow use of this token"
            )
        return service_account_user(namespace, sa_name, sa_uid)

    def _validate_bound(self, claims: dict[str, Any]) -> UserInfo:
        now = self._clock.seconds()
        expiry = _numeric(claims, "exp")
        not_before = _numeric(claims, "nbf")
        issued = _numeric(claims, "iat")
        if expiry is not None and now - _LEEWAY > expiry:
            raise AuthenticationError("service account token has expired")
        if not_before is not None and now + _LEEWAY < not_before:
            raise AuthenticationError("service account token is not valid yet")
        if issued is not None and now + _LEEWAY < issued:
            raise AuthenticationError("service account token is issued in the future")
        private = claims.get("kubernetes.io")
        if not isinstance(private, dict):
            private = {}

        def ref(key: str) -> dict[str, str] | None:
            value = private.get(key)
            if not isinstance(value, dict):
                return None
            return {
                "name": str(value.get("name", "")),
                "uid": str(value.get("uid", "")),
            }

        namespace = str(private.get("namespace", ""))
        account_ref = ref("serviceaccount") or {"name": "", "uid": ""}
        sa_name = account_ref["name"]
        account = self._reader.get("/serviceaccounts", namespace, sa_name)
        if account is None:
            raise AuthenticationError(f'serviceaccounts "{sa_name}" not found')
        if self._deleted_before_leeway(account, now):
            raise AuthenticationError(
                f"service account {namespace}/{sa_name} has been deleted"
            )
        uid = str(metadata(account).get("uid", ""))
        if uid != account_ref["uid"]:
            raise AuthenticationError(
                f"service account UID ({uid}) does not match claim"
                f" ({account_ref['uid']})"
            )
        extra: dict[str, tuple[str, ...]] = {}
        for kind, resource, namespaced in (
            ("secret", "/secrets", True),
            ("pod", "/pods", True),
            ("node", "/nodes", False),
        ):
            bound = ref(kind)
            if bound is None:
                continue
            obj = self._reader.get(
                resource, namespace if namespaced else None, bound["name"]
            )
            if obj is None:
                raise AuthenticationError(f'{resource[1:]} "{bound["name"]}" not found')
            where = f"{namespace}/{bound['name']}" if namespaced else bound["name"]
            if self._deleted_before_leeway(obj, now):
                raise AuthenticationError(f"{kind} {where} has been deleted")
            actual = str(metadata(obj).get("uid", ""))
            if actual != bound["uid"]:
                raise AuthenticationError(
                    f"{kind} UID ({actual}) does not match service account {kind}"
                    f" ref claim ({bound['uid']})"
                )
            if kind == "pod":
                extra[POD_NAME_KEY] = (bound["name"],)
                extra[POD_UID_KEY] = (bound["uid"],)
            elif kind == "node":
                extra[NODE_NAME_KEY] = (bound["name"],)
                extra[NODE_UID_KEY] = (bound["uid"],)
        jti = claims.get("jti")
        if isinstance(jti, str) and jti:
            extra[CREDENTIAL_ID_KEY] = (f"JTI={jti}",)
        return service_account_user(namespace, sa_name, uid, extra)

    @staticmethod
    def _deleted_before_leeway(obj: dict[str, Any], now: float) -> bool:
        stamp = metadata(obj).get("deletionTimestamp")
        if not stamp:
            return False
        moment = parse_rfc3339(str(stamp))
        return moment is None or moment.timestamp() < now - _LEEWAY


_TR_KIND = "TokenRequest"
_TR_GROUP = "authentication.k8s.io"


def create_token_request(
    store: ObjectReader,
    namespace: str,
    sa_name: str,
    body: Any,
    signer: ServiceAccountTokenSigner,
) -> dict[str, Any]:
    """
    C{POST .../namespaces/<ns>/serviceaccounts/<name>/token}: the TokenRequest
    the real server answers (201), with a freshly signed bound token.

    @raise APIError: 400 for a malformed body or a bad bound object, 404 when the
        account (or the bound object) is missing, 409 for a stale bound UID, 422
        for an invalid expiration or mismatched metadata.
    """
    if not isinstance(body, dict):
        raise bad_request("the request body must be a TokenRequest object")
    spec = body.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise bad_request("spec must be an object")
    meta = body.get("metadata") or {}
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    account = store.get("/serviceaccounts", namespace, sa_name)
    if account is None:
        raise not_found("serviceaccounts", sa_name)
    given_name = meta.get("name") or ""
    if given_name and given_name != sa_name:
        raise invalid(
            _TR_KIND,
            _TR_GROUP,
            str(given_name),
            [
                (
                    "metadata.name",
                    f'"{given_name}"',
                    "must match the service account name if specified",
                )
            ],
        )
    given_ns = meta.get("namespace") or ""
    if given_ns and given_ns != namespace:
        raise invalid(
            _TR_KIND,
            _TR_GROUP,
            sa_name,
            [
                (
                    "metadata.namespace",
                    f'"{given_ns}"',
                    "must match the service account namespace if specified",
                )
            ],
        )
    expiration = spec.get("expirationSeconds")
    if expiration is None:
        expiration = _DEFAULT_EXPIRATION
    if isinstance(expiration, bool) or not isinstance(expiration, int):
        raise bad_request("spec.expirationSeconds must be an integer")
    if expiration < _MIN_EXPIRATION:
        raise invalid(
            _TR_KIND,
            _TR_GROUP,
            sa_name,
            [
                (
                    "spec.expirationSeconds",
                    str(expiration),
                    "may not specify a duration less than 10 minutes",
                )
            ],
        )
    if expiration > _MAX_EXPIRATION:
        raise invalid(
            _TR_KIND,
            _TR_GROUP,
            sa_name,
            [
                (
                    "spec.expirationSeconds",
                    str(expiration),
                    "may not specify a duration larger than 2^32 seconds",
                )
            ],
        )
    audiences = spec.get("audiences") or []
    if not isinstance(audiences, list) or not all(
        isinstance(a, str) for a in audiences
    ):
        raise bad_request("spec.audiences must be a list of strings")
    bound = _bound_objects(store, namespace, sa_name, spec.get("boundObjectRef"))
    token, expiry = signer.bound_token(
        account,
        audiences=audiences,
        expiration_seconds=expiration,
        bound=bound,
    )
    return {
        "kind": _TR_KIND,
        "apiVersion": f"{_TR_GROUP}/v1",
        "metadata": {
            "name": sa_name,
            "namespace": namespace,
            "creationTimestamp": format_time(expiry - expiration),
        },
        "spec": {
            "audiences": list(audiences) or list(signer.api_audiences),
            "expirationSeconds": expiration,
            "boundObjectRef": spec.get("boundObjectRef"),
        },
        "status": {"token": token, "expirationTimestamp": format_time(expiry)},
    }


def _bound_objects(
    store: ObjectReader, namespace: str, sa_name: str, ref: Any
) -> list[BoundObject]:
    if ref is None:
        return []
    if not isinstance(ref, dict):
        raise bad_request("spec.boundObjectRef must be an object")
    api_version = str(ref.get("apiVersion", ""))
    kind = str(ref.get("kind", ""))
    name = str(ref.get("name", ""))
    group, _, version = api_version.rpartition("/")
    if group == "" and kind == "Pod":
        pod = store.get("/pods", namespace, name)
        if pod is None:
            raise not_found("pods", name)
        pod_spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
        assert isinstance(pod_spec, dict)
        if pod_spec.get("serviceAccountName", "") != sa_name:
            raise bad_request(
                f'cannot bind token for serviceaccount "{sa_name}" to pod running'
                " with different serviceaccount name."
            )
        uid = str(metadata(pod).get("uid", ""))
        result = [BoundObject("pod", name, uid)]
        node_name = pod_spec.get("nodeName")
        if isinstance(node_name, str) and node_name:
            node = store.get("/nodes", None, node_name)
            if node is not None:
                result.append(
                    BoundObject("node", node_name, str(metadata(node).get("uid", "")))
                )
    elif group == "" and kind == "Secret":
        secret = store.get("/secrets", namespace, name)
        if secret is None:
            raise not_found("secrets", name)
        uid = str(metadata(secret).get("uid", ""))
        result = [BoundObject("secret", name, uid)]
    elif group == "" and kind == "Node":
        node = store.get("/nodes", None, name)
        if node is None:
            raise not_found("nodes", name)
        uid = str(metadata(node).get("uid", ""))
        result = [BoundObject("node", name, uid)]
    else:
        raise bad_request(
            f"cannot bind token to object of type {group}/{version}, Kind={kind}"
        )
    wanted = ref.get("uid")
    if wanted and wanted != uid:
        raise APIError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {kind} "{name}": the UID in the bound'
            f" object reference ({wanted}) does not match the UID in record. The"
            " object might have been deleted and then recreated",
            {"name": name, "kind": kind},
        )
    return result


class TokenController:
    """
    The token half of kube-controller-manager's service-account controller:
    fills Secrets of type C{kubernetes.io/service-account-token} (C{data.token},
    C{data["ca.crt"]}, C{data.namespace}, the C{service-account.uid}
    annotation), deletes those whose account is gone, and deletes an account's
    token Secrets when the account is deleted.
    """

    _log = Logger()

    def __init__(
        self,
        store: ObjectWriter,
        signer: ServiceAccountTokenSigner,
        root_ca_pem: bytes,
    ) -> None:
        self._store = store
        self._signer = signer
        self._root_ca = root_ca_pem
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        """
        Subscribe to the store and bring every existing token Secret up to date.
        """
        if self._unsubscribe is None:
            self._unsubscribe = self._store.subscribe(self._on_event)
        for secret in self._store.list("/secrets"):
            self._sync_secret(secret)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_event(self, event: StoreEvent) -> None:
        try:
            if event.resource == "/secrets" and event.type != "DELETED":
                self._sync_secret(event.object)
            elif event.resource == "/serviceaccounts" and event.type == "DELETED":
                self._delete_tokens_of(event.object)
        except StoreError as e:
            self._log.info(
                "Token controller: {resource} write refused: {error}",
                resource=event.resource,
                error=e.message,
            )

    def _sync_secret(self, secret: dict[str, Any]) -> None:
        if secret.get("type") != SERVICE_ACCOUNT_TOKEN_TYPE:
            return
        meta = metadata(secret)
        namespace = str(meta.get("namespace", ""))
        name = str(meta.get("name", ""))
        live = self._store.get("/secrets", namespace, name)
        if live is None or live.get("type") != SERVICE_ACCOUNT_TOKEN_TYPE:
            return
        if _deleted(live):
            return
        notes = object_annotations(live)
        sa_name = notes.get(SA_NAME_KEY, "")
        if not sa_name:
            return
        account = self._store.get("/serviceaccounts", namespace, sa_name)
        sa_uid = str(metadata(account).get("uid", "")) if account else ""
        wanted_uid = notes.get(SA_UID_KEY, "")
        if (
            account is None
            or _deleted(account)
            or (wanted_uid and wanted_uid != sa_uid)
        ):
            self._log.info(
                "Deleting token secret {namespace}/{name}: service account {sa} is gone",  # noqa: E501
                namespace=namespace,
                name=name,
                sa=sa_name,
            )
            self._store.delete("/secrets", namespace, name)
            return
        data = live.get("data") if isinstance(live.get("data"), dict) else None
        current = secret_data(live)
        ca_b64 = encode_data(self._root_ca) if self._root_ca else ""
        needs_ca = bool(ca_b64) and (data or {}).get("ca.crt") != ca_b64
        needs_namespace = not current.get("namespace")
        needs_token = not current.get("token")
        if not (needs_ca or needs_namespace or needs_token):
            return
        updated = dict(live)
        new_data = dict(data or {})
        if needs_ca:
            new_data["ca.crt"] = ca_b64
        if needs_namespace:
            new_data["namespace"] = encode_data(namespace)
        if needs_token:
            new_data["token"] = encode_data(self._signer.legacy_token(account, name))
        updated["data"] = new_data
        new_meta = dict(meta)
        new_meta.update(metadata(live))
        new_notes = dict(notes)
        new_notes[SA_NAME_KEY] = sa_name
        new_notes[SA_UID_KEY] = sa_uid
        new_meta["annotations"] = new_notes
        updated["metadata"] = new_meta
        self._store.update("/secrets", namespace, updated)

    def _delete_tokens_of(self, account: dict[str, Any]) -> None:
        meta = metadata(account)
        namespace = str(meta.get("namespace", ""))
        sa_name = str(meta.get("name", ""))
        sa_uid = str(meta.get("uid", ""))
        for secret in self._store.list("/secrets", namespace):
            if secret.get("type") != SERVICE_ACCOUNT_TOKEN_TYPE:
                continue
            notes = object_annotations(secret)
            if notes.get(SA_NAME_KEY) != sa_name:
                continue
            if notes.get(SA_UID_KEY, "") not in ("", sa_uid):
                continue
            self._store.delete("/secrets", namespace, str(metadata(secret)["name"]))
