"""
Bootstrap tokens: their authenticator, the bootstrap signer that signs
C{kube-public/cluster-info} for each signing token, the token cleaner that
deletes expired tokens, and the check an agent makes of a signed cluster-info.
"""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from .._auth_api import UserInfo
from .._store_api import ObjectReader, ObjectWriter, StoreError, StoreEvent
from ._authn import ITokenAuthenticator, TokenResponse
from ._jose import detached_hs256
from ._objects import metadata, parse_rfc3339, secret_data

__all__ = [
    "BOOTSTRAP_TOKEN_TYPE",
    "BootstrapSigner",
    "BootstrapTokenAuthenticator",
    "TokenCleaner",
    "cluster_info_kubeconfig",
    "parse_bootstrap_token",
    "sign_cluster_info",
    "verify_cluster_info_jws",
]

BOOTSTRAP_TOKEN_TYPE = "bootstrap.kubernetes.io/token"  # noqa: S105
BOOTSTRAP_NAMESPACE = "kube-system"
SECRET_PREFIX = "bootstrap-token-"  # noqa: S105
DEFAULT_GROUP = "system:bootstrappers"
USER_PREFIX = "system:bootstrap:"
CLUSTER_INFO_NAMESPACE = "kube-public"
CLUSTER_INFO_NAME = "cluster-info"
KUBECONFIG_KEY = "kubeconfig"
JWS_PREFIX = "jws-kubeconfig-"

_TOKEN = re.compile(r"\A([a-z0-9]{6})\.([a-z0-9]{16})\Z")
_SECRET_NAME = re.compile(r"\Abootstrap-token-([a-z0-9]{6})\Z")
_GROUP = re.compile(r"\Asystem:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]\Z")


def parse_bootstrap_token(token: str) -> tuple[str, str] | None:
    """
    C{(token-id, token-secret)} of a C{[a-z0-9]{6}.[a-z0-9]{16}} token, or C{None}.
    """
    match = _TOKEN.match(token)
    if match is None:
        return None
    return match.group(1), match.group(2)


def _expired(data: dict[str, str], now: float) -> bool:
    """
    C{bootstrapsecretutil.HasExpired}: an unparseable expiration counts as
    expired.
    """
    expiration = data.get("expiration", "")
    if not expiration:
        return False
    moment = parse_rfc3339(expiration)
    if moment is None:
        return True
    return moment.timestamp() - now <= 0


def _expiry(data: dict[str, str]) -> float | None:
    expiration = data.get("expiration", "")
    if not expiration:
        return None
    moment = parse_rfc3339(expiration)
    return 0.0 if moment is None else moment.timestamp()


def _groups(data: dict[str, str]) -> tuple[str, ...] | None:
    """
    The token's groups, sorted and unique as the real server lists them, or
    C{None} when an extra group is not C{system:bootstrappers:...}.
    """
    groups = {DEFAULT_GROUP}
    if "auth-extra-groups" in data:
        groups.update(g.strip() for g in data["auth-extra-groups"].split(","))
    for group in groups:
        if group != DEFAULT_GROUP and not _GROUP.match(group):
            return None
    return tuple(sorted(groups))


@implementer(ITokenAuthenticator)
class BootstrapTokenAuthenticator:
    """
    C{<id>.<secret>} tokens backed by C{kube-system/bootstrap-token-<id>}
    Secrets of type C{bootstrap.kubernetes.io/token} with
    C{usage-bootstrap-authentication: "true"}, not expired.
    """

    _log = Logger()

    def __init__(self, reader: ObjectReader, clock: IReactorTime) -> None:
        self._reader = reader
        self._clock = clock

    def authenticate_token(
        self, token: str, audiences: tuple[str, ...]
    ) -> TokenResponse | None:
        parsed = parse_bootstrap_token(token)
        if parsed is None:
            return None
        token_id, token_secret = parsed
        name = SECRET_PREFIX + token_id
        secret = self._reader.get("/secrets", BOOTSTRAP_NAMESPACE, name)
        if secret is None:
            return None
        data = secret_data(secret)
        groups = _groups(data)
        why = self._problem(secret, data, token_id, token_secret)
        if why is None and groups is None:
            why = "has invalid value for key auth-extra-groups."
        if why is not None or groups is None:
            self._log.debug(
                "Bootstrap secret {namespace}/{name} matching bearer token {why}",
                namespace=BOOTSTRAP_NAMESPACE,
                name=name,
                why=why,
            )
            return None
        return TokenResponse(UserInfo(name=USER_PREFIX + token_id, groups=groups))

    def _problem(
        self,
        secret: dict[str, Any],
        data: dict[str, str],
        token_id: str,
        token_secret: str,
    ) -> str | None:
        """
        Why the Secret does not prove the token, in the real server's order.
        """
        if metadata(secret).get("deletionTimestamp"):
            return "is deleted and awaiting removal"
        if secret.get("type") != BOOTSTRAP_TOKEN_TYPE:
            return f"has invalid type, expected {BOOTSTRAP_TOKEN_TYPE}."
        if not hmac.compare_digest(
            data.get("token-secret", "").encode("utf-8"), token_secret.encode("utf-8")
        ):
            return "has invalid value for key token-secret."
        if data.get("token-id", "") != token_id:
            return "has invalid value for key token-id."
        if _expired(data, self._clock.seconds()):
            return "has expired."
        if data.get("usage-bootstrap-authentication", "") != "true":
            return "not marked usage-bootstrap-authentication=true."
        return None


def cluster_info_kubeconfig(server_url: str, ca_pem: bytes) -> str:
    """
    The kubeconfig C{kube-public/cluster-info} carries (compare kube-wire 087).
    """
    ca = base64.b64encode(ca_pem).decode("ascii")
    return (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- cluster:\n"
        f"    certificate-authority-data: {ca}\n"
        f"    server: {server_url}\n"
        '  name: ""\n'
        "contexts: []\n"
        "users: []\n"
    )


def sign_cluster_info(kubeconfig_text: str, token_id: str, token_secret: str) -> str:
    """
    The detached JWS the bootstrap signer writes under C{jws-kubeconfig-<id>}.
    """
    return detached_hs256(kubeconfig_text, token_id, token_secret)


def verify_cluster_info_jws(kubeconfig_text: str, jws: str, token: str) -> bool:
    """
    Whether C{jws} (the C{jws-kubeconfig-<id>} value) signs C{kubeconfig_text}
    for the bootstrap C{token} C{"<id>.<secret>"}: what C{kubeadm join} checks
    before it trusts the CA in an anonymously read cluster-info.
    """
    parsed = parse_bootstrap_token(token)
    if (
        parsed is None
        or not isinstance(jws, str)
        or not isinstance(kubeconfig_text, str)
    ):
        return False
    expected = sign_cluster_info(kubeconfig_text, *parsed)
    return hmac.compare_digest(expected.encode("utf-8"), jws.encode("utf-8"))


def _signing_tokens(
    store: ObjectReader, now: float
) -> dict[str, tuple[str, float | None]]:
    """
    token-id -> (secret, expiry) of every valid token with
    C{usage-bootstrap-signing: "true"}, as C{validateSecretForSigning}.
    """
    tokens: dict[str, tuple[str, float | None]] = {}
    for secret in store.list("/secrets", BOOTSTRAP_NAMESPACE):
        if secret.get("type") != BOOTSTRAP_TOKEN_TYPE:
            continue
        match = _SECRET_NAME.match(str(metadata(secret).get("name", "")))
        if match is None:
            continue
        data = secret_data(secret)
        token_id = data.get("token-id", "")
        if not token_id or token_id != match.group(1):
            continue
        token_secret = data.get("token-secret", "")
        if not token_secret:
            continue
        if _expired(data, now):
            continue
        if data.get("usage-bootstrap-signing", "") != "true":
            continue
        tokens[token_id] = (token_secret, _expiry(data))
    return tokens


class BootstrapSigner:
    """
    kube-controller-manager's bootstrap signer: C{kube-public/cluster-info}
    carries C{jws-kubeconfig-<id>} for every signing token and no other.

    When C{server_url} and C{ca_pem} are given, the signer also creates
    cluster-info (as kubeadm does) if it is missing.
    """

    _log = Logger()

    def __init__(
        self,
        store: ObjectWriter,
        clock: IReactorTime,
        *,
        server_url: str | None = None,
        ca_pem: bytes | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._kubeconfig = (
            cluster_info_kubeconfig(server_url, ca_pem)
            if server_url is not None and ca_pem is not None
            else None
        )
        self._unsubscribe: Callable[[], None] | None = None
        self._timer: IDelayedCall | None = None

    def start(self) -> None:
        if self._unsubscribe is None:
            self._unsubscribe = self._store.subscribe(self._on_event)
        self._ensure_cluster_info()
        self.sign()

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._cancel_timer()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _on_event(self, event: StoreEvent) -> None:
        meta = metadata(event.object)
        namespace = meta.get("namespace")
        if event.resource == "/secrets" and namespace == BOOTSTRAP_NAMESPACE:
            self.sign()
        elif (
            event.resource == "/configmaps"
            and namespace == CLUSTER_INFO_NAMESPACE
            and meta.get("name") == CLUSTER_INFO_NAME
            and event.type != "DELETED"
        ):
            self.sign()
        elif (
            event.resource == "/namespaces"
            and meta.get("name") == CLUSTER_INFO_NAMESPACE
            and event.type == "ADDED"
        ):
            self._ensure_cluster_info()
            self.sign()

    def _ensure_cluster_info(self) -> None:
        if self._kubeconfig is None:
            return
        if self._store.get("/configmaps", CLUSTER_INFO_NAMESPACE, CLUSTER_INFO_NAME):
            return
        try:
            self._store.create(
                "/configmaps",
                CLUSTER_INFO_NAMESPACE,
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": CLUSTER_INFO_NAME,
                        "namespace": CLUSTER_INFO_NAMESPACE,
                    },
                    "data": {KUBECONFIG_KEY: self._kubeconfig},
                },
            )
        except StoreError as e:
            self._log.info(
                "Cannot create {namespace}/{name} yet: {error}",
                namespace=CLUSTER_INFO_NAMESPACE,
                name=CLUSTER_INFO_NAME,
                error=e.message,
            )

    def sign(self) -> None:
        """
        Bring the signatures on cluster-info up to date (no write when they are).
        """
        now = self._clock.seconds()
        tokens = _signing_tokens(self._store, now)
        self._schedule(tokens, now)
        current = self._store.get(
            "/configmaps", CLUSTER_INFO_NAMESPACE, CLUSTER_INFO_NAME
        )
        if current is None:
            return
        data = current.get("data")
        if not isinstance(data, dict):
            return
        content = data.get(KUBECONFIG_KEY)
        if not isinstance(content, str):
            return
        new_data = {k: v for k, v in data.items() if not k.startswith(JWS_PREFIX)}
        for token_id, (token_secret, _) in tokens.items():
            new_data[JWS_PREFIX + token_id] = sign_cluster_info(
                content, token_id, token_secret
            )
        if new_data == data:
            return
        updated = dict(current)
        updated["data"] = new_data
        try:
            self._store.update("/configmaps", CLUSTER_INFO_NAMESPACE, updated)
        except StoreError as e:
            self._log.info(
                "Signing {namespace}/{name} refused: {error}",
                namespace=CLUSTER_INFO_NAMESPACE,
                name=CLUSTER_INFO_NAME,
                error=e.message,
            )

    def _schedule(
        self, tokens: dict[str, tuple[str, float | None]], now: float
    ) -> None:
        """
        Re-sign when the next signing token expires, so an expired token's
        signature goes even without the token cleaner.
        """
        self._cancel_timer()
        expiries = [e for _, e in tokens.values() if e is not None and e > now]
        if expiries and self._unsubscribe is not None:
            self._timer = self._clock.callLater(min(expiries) - now, self.sign)


class TokenCleaner:
    """
    kube-controller-manager's token cleaner: deletes bootstrap token Secrets
    once their expiration has passed.
    """

    _log = Logger()

    def __init__(self, store: ObjectWriter, clock: IReactorTime) -> None:
        self._store = store
        self._clock = clock
        self._unsubscribe: Callable[[], None] | None = None
        self._timers: dict[str, IDelayedCall] = {}

    def start(self) -> None:
        if self._unsubscribe is None:
            self._unsubscribe = self._store.subscribe(self._on_event)
        for secret in self._store.list("/secrets", BOOTSTRAP_NAMESPACE):
            self._track(secret)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()

    def _on_event(self, event: StoreEvent) -> None:
        if event.resource != "/secrets":
            return
        if metadata(event.object).get("namespace") != BOOTSTRAP_NAMESPACE:
            return
        if event.type == "DELETED":
            self._forget(str(metadata(event.object).get("name", "")))
        else:
            self._track(event.object)

    def _forget(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _track(self, secret: dict[str, Any]) -> None:
        name = str(metadata(secret).get("name", ""))
        self._forget(name)
        if secret.get("type") != BOOTSTRAP_TOKEN_TYPE:
            return
        expiry = _expiry(secret_data(secret))
        if expiry is None:
            return
        delay = max(0.0, expiry - self._clock.seconds())
        self._timers[name] = self._clock.callLater(delay, self._clean, name)

    def _clean(self, name: str) -> None:
        self._timers.pop(name, None)
        secret = self._store.get("/secrets", BOOTSTRAP_NAMESPACE, name)
        if secret is None or secret.get("type") != BOOTSTRAP_TOKEN_TYPE:
            return
        if not _expired(secret_data(secret), self._clock.seconds()):
            self._track(secret)
            return
        self._log.info(
            "Deleting expired bootstrap token {namespace}/{name}",
            namespace=BOOTSTRAP_NAMESPACE,
            name=name,
        )
        try:
            self._store.delete("/secrets", BOOTSTRAP_NAMESPACE, name)
        except StoreError as e:
            self._log.info(
                "Deleting {name} refused: {error}", name=name, error=e.message
            )
