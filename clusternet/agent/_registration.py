"""
The agent's registration with the parent, as a state machine on the reactor.

 1. Find the cluster ID (L{clusternet.agent._cluster_id}).
 2. Read C{<namespace>/parent-cluster} in the child. When it names the same parent
    and its token still works (a GET of our ClusterRegistrationRequest with it), use
    it: no new request, no new namespace.
 3. Else decide how to trust the parent (L{clusternet.agent._bootstrap}), and with
    the bootstrap token create the request C{clusternet-<id>} with the agent's
    public key (or reuse the one that exists, if it names the same key), then
    poll it with capped, jittered backoff until the hub answers:
    C{Approved} stores the credentials in C{parent-cluster} and returns them;
    C{Denied} logs one clear error and stops (L{RegistrationDenied}); C{Failed},
    a refused or expired bootstrap token (401/403) or an unreachable parent are
    logged and retried with backoff, so an operator can fix things without
    restarting the agent.

The agent's key: an X25519 key pair made on first registration and kept in
C{parent-cluster} (C{agent.key}) before the request is created, so a restart
while the request waits keeps the same key. The hub seals each token it issues
to the public key; the agent opens it (L{clusternet.sealing}), and accepts the
approval only when the dedicated namespace it names carries the hub's label for
this cluster ID. A request for this cluster ID made with another key gets this
agent nothing: it says so and waits for an operator to delete that request.

Every call goes through L{IKubeAPI}; nothing here blocks the reactor.
"""

from __future__ import annotations

import base64
import binascii
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from attrs import field, frozen
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from clusternet.agent._bootstrap import BootstrapError, ParentTrust, same_server
from clusternet.agent._cluster_id import ClusterIDError, discover_cluster_id
from clusternet.apis import (
    BOOTSTRAPPING_LABEL,
    CLUSTER_ID_LABEL,
    CLUSTER_NAME_LABEL,
    CLUSTER_NAME_PREFIX,
    CLUSTER_TYPE_EDGE_SELF_PROVISIONED,
    CREDENTIALS_AUTO,
    DEDICATED_FOR_LABEL,
    EDGE_SYSTEM_NAMESPACE,
    PARENT_SECRET_CA_KEY,
    PARENT_SECRET_KEY_KEY,
    PARENT_SECRET_NAME,
    PARENT_SECRET_NAMESPACE_KEY,
    PARENT_SECRET_TOKEN_KEY,
    PARENT_SECRET_URL_KEY,
    REGISTRATION_SECRET_NAME,
    REGISTRATION_SECRET_TOKEN_KEY,
    REGISTRATION_SECRET_URL_KEY,
    RESULT_APPROVED,
    RESULT_DENIED,
    RESULT_FAILED,
    ClusterRegistrationRequest,
    ClusterRegistrationRequestStatus,
    InvalidName,
    InvalidObject,
    crr_name,
    generate_cluster_name,
    validate_cluster_name,
)
from clusternet.apis._time import format_time, now
from clusternet.kube._client import KubeClient
from clusternet.kube._config import ITokenSource, MutableToken, api_client_for_token
from clusternet.kube._errors import (
    AlreadyExists,
    Conflict,
    Forbidden,
    KubeError,
    NotFound,
    Unauthorized,
)
from clusternet.kube._interfaces import IKubeAPI
from clusternet.kube._resources import (
    CLUSTER_REGISTRATION_REQUESTS,
    EVENTS,
    NAMESPACES,
    SECRETS,
)
from clusternet.sealing import (
    SealingError,
    fingerprint,
    generate_key,
    load_private_key,
    open_sealed,
    private_key_pem,
    public_key_pem,
    sealing_context,
)

# What a registration refused for its key says (and its Event is found by).
KEY_CONFLICT = "registered in the parent with another key"

__all__ = [
    "KEY_CONFLICT",
    "ParentAPIFactory",
    "ParentClients",
    "ParentCredentials",
    "Registration",
    "RegistrationDenied",
    "RegistrationError",
    "RetryBackoff",
    "read_registration_secret",
]

Obj = dict[str, Any]
_T = TypeVar("_T")

ParentAPIFactory = Callable[[str | ITokenSource, bytes | None, bool], IKubeAPI]
"""
C{(token, ca_pem, insecure_skip_tls_verify) -> IKubeAPI} of the parent.
"""


class RegistrationError(Exception):
    """
    Registration cannot go on without a change of configuration.
    """


class RegistrationDenied(RegistrationError):
    """
    The hub denied the request; C{message} is its C{errorMessage}.
    """

    def __init__(self, request: str, message: str) -> None:
        super().__init__(request, message)
        self.request = request
        self.message = message

    def __str__(self) -> str:
        return f"the parent denied {self.request}: {self.message}"


@frozen
class ParentCredentials:
    """
    What the parent granted: the dedicated namespace and a token for it, which
    the hub replaces before it expires (L{source} holds the current one; the
    agent's key, L{key}, opens the next). Neither is ever in C{repr}.
    """

    parent_url: str
    ca_pem: bytes | None = field(repr=False)
    source: MutableToken = field(repr=False, eq=False)
    namespace: str
    cluster_id: str
    cluster_name: str
    managed_cluster_name: str
    insecure_skip_tls_verify: bool = False
    key: X25519PrivateKey | None = field(default=None, repr=False, eq=False)

    @property
    def token(self) -> str:
        return self.source.current() or ""


@frozen
class RetryBackoff:
    """
    Delay before retry C{n} (0-based): C{min(maximum, initial * multiplier ** n)},
    less up to C{jitter} of it at random, so many agents spread out.
    """

    initial: float = 1.0
    maximum: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.5
    rng: random.Random = field(factory=random.Random, eq=False, repr=False)

    def delay(self, attempt: int) -> float:
        exponent = min(max(attempt, 0), 64)
        base = min(self.maximum, self.initial * self.multiplier**exponent)
        return max(0.0, base * (1.0 - self.jitter * self.rng.random()))


# --- secrets --------------------------------------------------------------------


def _decode_data(secret: Mapping[str, Any], key: str) -> bytes | None:
    data = secret.get("data") or {}
    value = data.get(key) if isinstance(data, Mapping) else None
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        return None


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8").strip() or None
    except UnicodeDecodeError:
        return None


async def _read_registration_secret(
    child: IKubeAPI, namespace: str, name: str
) -> tuple[str | None, str | None]:
    try:
        secret = await child.get(SECRETS, name, namespace)
    except NotFound:
        return (None, None)
    return (
        _text(_decode_data(secret, REGISTRATION_SECRET_URL_KEY)),
        _text(_decode_data(secret, REGISTRATION_SECRET_TOKEN_KEY)),
    )


def read_registration_secret(
    child: IKubeAPI,
    namespace: str = EDGE_SYSTEM_NAMESPACE,
    name: str = REGISTRATION_SECRET_NAME,
) -> Deferred[tuple[str | None, str | None]]:
    """
    C{(parentURL, regToken)} from the child's registration secret (made from
    C{deploy/templates/clusternet_agent_secret.yaml}); C{None} for what is missing.
    """
    return Deferred.fromCoroutine(_read_registration_secret(child, namespace, name))


@frozen
class _Stored:
    parent_url: str
    ca_pem: bytes | None = field(repr=False)
    token: str = field(repr=False)
    namespace: str
    cluster_name: str | None


def _stored_key(secret: Mapping[str, Any]) -> X25519PrivateKey | None:
    pem = _decode_data(secret, PARENT_SECRET_KEY_KEY)
    if not pem:
        return None
    try:
        return load_private_key(pem)
    except SealingError:
        return None


def open_token(key: X25519PrivateKey, crr: Obj, cluster_id: str) -> str | None:
    """
    The token sealed in C{crr}'s status for C{key}; C{None} when there is none
    or it is not for this key and request.
    """
    sealed = (crr.get("status") or {}).get("sealedToken")
    if not isinstance(sealed, str) or not sealed:
        return None
    uid = str((crr.get("metadata") or {}).get("uid") or "")
    try:
        token = open_sealed(key, sealed, sealing_context(cluster_id, uid))
        return token.decode("ascii").strip() or None
    except (SealingError, UnicodeDecodeError):
        return None


def _spec_key(crr: Obj) -> str:
    key = (crr.get("spec") or {}).get("publicKey")
    return key.strip() if isinstance(key, str) else ""


def _stored_credentials(secret: Mapping[str, Any]) -> _Stored | None:
    url = _text(_decode_data(secret, PARENT_SECRET_URL_KEY))
    token = _text(_decode_data(secret, PARENT_SECRET_TOKEN_KEY))
    namespace = _text(_decode_data(secret, PARENT_SECRET_NAMESPACE_KEY))
    ca = _decode_data(secret, PARENT_SECRET_CA_KEY) or None
    labels = (secret.get("metadata") or {}).get("labels") or {}
    name = labels.get(CLUSTER_NAME_LABEL) if isinstance(labels, Mapping) else None
    if not url or not token or not namespace:
        return None
    return _Stored(url, ca, token, namespace, name if isinstance(name, str) else None)


def _same_parent(a: str, b: str) -> bool:
    return same_server(a, b) and a.rstrip("/").lower() == b.rstrip("/").lower()


# --- the state machine ---------------------------------------------------------


class Registration:
    """
    Register the child with the parent (see the module docstring).

    @param clock: the reactor's time (sleeps between retries).
    @param child: the child's API server (cluster ID, the C{parent-cluster} secret).
    @param parent_api: makes the parent's L{IKubeAPI} for a token and CA (see
        L{ParentClients}).
    @param parent_url: the parent API server's URL.
    @param trust: how to verify the parent while bootstrapping (for example
        L{clusternet.agent._bootstrap.ParentTrustResolver.resolve}); called only
        when stored credentials cannot be reused, and again after a failure.
    @param bootstrap_token: C{<id>.<secret>}; without it only stored credentials
        can be used.
    @param cluster_id: the C{--cluster-id} override; the UID of the child's
        kube-system namespace when C{None}.
    @param cluster_name: C{--cluster-reg-name}; when C{None} the name is the one
        already registered (the request's label, or the stored secret's), else
        C{cluster_name_prefix} plus 5 random characters.
    @param poll: backoff between polls of a pending request.
    @param retry: backoff after errors (unreachable parent, refused token, ...).
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        child: IKubeAPI,
        parent_api: ParentAPIFactory,
        parent_url: str,
        trust: Callable[[], Deferred[ParentTrust]],
        bootstrap_token: str | None,
        cluster_id: str | None = None,
        cluster_name: str | None = None,
        cluster_name_prefix: str = CLUSTER_NAME_PREFIX,
        cluster_type: str = CLUSTER_TYPE_EDGE_SELF_PROVISIONED,
        namespace: str = EDGE_SYSTEM_NAMESPACE,
        parent_secret: str = PARENT_SECRET_NAME,
        poll: RetryBackoff | None = None,
        retry: RetryBackoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._child = child
        self._parent_api = parent_api
        self.parent_url = parent_url
        self._trust = trust
        self._bootstrap_token = bootstrap_token
        self._cluster_id_override = cluster_id
        self._cluster_name = (
            validate_cluster_name(cluster_name) if cluster_name is not None else None
        )
        self._cluster_name_prefix = cluster_name_prefix
        self.cluster_type = cluster_type
        self.namespace = namespace
        self.parent_secret = parent_secret
        self._rng = rng if rng is not None else random.Random()
        self._poll = poll if poll is not None else RetryBackoff(0.5, 10.0, 1.5, 0.3)
        self._retry = retry if retry is not None else RetryBackoff(1.0, 60.0, 2.0, 0.5)
        self.cluster_id: str | None = None
        self.attempts = 0
        self.key: X25519PrivateKey | None = None
        self._stored_secret: Obj | None = None

    def __repr__(self) -> str:
        return f"<Registration with {self.parent_url} cluster {self.cluster_id}>"

    def register(self) -> Deferred[ParentCredentials]:
        """
        Register, or reuse stored credentials. Fires with the L{ParentCredentials};
        fails with L{RegistrationDenied}, or L{RegistrationError} when the
        configuration cannot work (no bootstrap token and nothing stored, a
        malformed C{--cluster-id}). Cancel it to give up.
        """
        return Deferred.fromCoroutine(self._register())

    # --- helpers ------------------------------------------------------------------

    async def _sleep(self, seconds: float) -> None:
        await deferLater(self._clock, seconds, lambda: None)

    async def _retrying(self, what: str, call: Callable[[], Awaitable[_T]]) -> _T:
        """
        C{call()} until it does not fail with a L{KubeError}.
        """
        failures = 0
        while True:
            try:
                return await call()
            except KubeError as e:
                delay = self._retry.delay(failures)
                failures += 1
                self._log.warn(
                    "{what} failed: {error}; retrying in {delay:.1f}s",
                    what=what,
                    error=str(e),
                    delay=delay,
                )
            await self._sleep(delay)

    # --- the steps ------------------------------------------------------------------

    async def _register(self) -> ParentCredentials:
        cluster_id = await self._find_cluster_id()
        self.cluster_id = cluster_id
        stored = await self._retrying(
            f"Reading {self.namespace}/{self.parent_secret} in the child",
            self._read_stored,
        )
        await self._ensure_key()
        name_hint: str | None = None
        if stored is not None:
            name_hint = stored.cluster_name
            if not _same_parent(stored.parent_url, self.parent_url):
                self._log.info(
                    "Stored credentials are for parent {old}, not {new}: "
                    "registering again",
                    old=stored.parent_url,
                    new=self.parent_url,
                )
            else:
                reused = await self._reuse(stored, cluster_id)
                if reused is not None:
                    return reused
        if not self._bootstrap_token:
            raise RegistrationError(
                "no usable credentials stored in "
                f"{self.namespace}/{self.parent_secret} and no bootstrap token: pass "
                "--cluster-reg-token (or fill the registration secret)"
            )
        return await self._bootstrap(self._bootstrap_token, cluster_id, name_hint)

    async def _find_cluster_id(self) -> str:
        failures = 0
        while True:
            try:
                return await discover_cluster_id(self._child, self._cluster_id_override)
            except ClusterIDError as e:
                if self._cluster_id_override is not None:
                    raise RegistrationError(str(e)) from None
                message = str(e)
            except KubeError as e:
                message = f"cannot read the cluster ID: {e}"
            delay = self._retry.delay(failures)
            failures += 1
            self._log.error(
                "{problem}; retrying in {delay:.1f}s", problem=message, delay=delay
            )
            await self._sleep(delay)

    async def _read_stored(self) -> _Stored | None:
        try:
            secret = await self._child.get(SECRETS, self.parent_secret, self.namespace)
        except NotFound:
            return None
        self._stored_secret = secret
        self.key = _stored_key(secret)
        stored = _stored_credentials(secret)
        if stored is None and self.key is not None:
            return None  # the key alone: a registration waiting for approval
        if stored is None:
            self._log.warn(
                "{namespace}/{name} lacks parent-url, token or namespace: ignoring it",
                namespace=self.namespace,
                name=self.parent_secret,
            )
        return stored

    @property
    def public_key(self) -> str:
        assert self.key is not None
        return public_key_pem(self.key)

    async def _ensure_key(self) -> None:
        """
        This agent's key: the stored one, or a new one stored before anything
        is sent to the parent (a restart must not change it).
        """
        if self.key is not None:
            return
        self.key = generate_key()
        await self._retrying(
            f"Storing the agent's key in {self.namespace}/{self.parent_secret}",
            lambda: self._write_secret({PARENT_SECRET_KEY_KEY: self._key_data()}, {}),
        )
        self._log.info(
            "Made this agent's key {fingerprint}: the parent's credentials will be "
            "sealed to it",
            fingerprint=fingerprint(self.public_key),
        )

    def _key_data(self) -> str:
        assert self.key is not None
        return _b64(private_key_pem(self.key))

    async def _reuse(
        self, stored: _Stored, cluster_id: str
    ) -> ParentCredentials | None:
        """
        The stored credentials, if the parent still accepts them; C{None} when it
        does not (register again).
        """
        parent = self._parent_api(stored.token, stored.ca_pem, False)
        name = crr_name(cluster_id)
        failures = 0
        while True:
            try:
                crr = await parent.get(CLUSTER_REGISTRATION_REQUESTS, name)
                break
            except (Unauthorized, Forbidden) as e:
                self._log.warn(
                    "The parent rejected the stored credentials ({status} {reason}): "
                    "registering again with the bootstrap token",
                    status=e.status,
                    reason=e.reason,
                )
                return None
            except NotFound:
                self._log.warn(
                    "The parent has no {crr} any more: registering again", crr=name
                )
                return None
            except KubeError as e:
                delay = self._retry.delay(failures)
                failures += 1
                self._log.warn(
                    "Checking the stored credentials with {url} failed: {error}; "
                    "retrying in {delay:.1f}s",
                    url=self.parent_url,
                    error=str(e),
                    delay=delay,
                )
            await self._sleep(delay)
        if _spec_key(crr) != self.public_key.strip():
            self._log.warn(
                "{crr} in the parent names another key than this agent's: "
                "registering again",
                crr=name,
            )
            return None
        assert self.key is not None
        token = open_token(self.key, crr, cluster_id) or stored.token
        status = crr.get("status") or {}
        labels = (crr.get("metadata") or {}).get("labels") or {}
        cluster_name = (
            labels.get(CLUSTER_NAME_LABEL)
            or (crr.get("spec") or {}).get("clusterName")
            or stored.cluster_name
            or ""
        )
        credentials = ParentCredentials(
            parent_url=self.parent_url,
            ca_pem=stored.ca_pem,
            source=MutableToken(token),
            key=self.key,
            namespace=stored.namespace,
            cluster_id=cluster_id,
            cluster_name=str(cluster_name),
            managed_cluster_name=str(
                status.get("managedClusterName") or cluster_name or name
            ),
        )
        self._log.info(
            "Reusing stored credentials: cluster {cluster} ({name}) in namespace "
            "{namespace} of {url}",
            cluster=cluster_id,
            name=credentials.cluster_name,
            namespace=credentials.namespace,
            url=self.parent_url,
        )
        return credentials

    def _name_for(self, existing: Obj | None, name_hint: str | None) -> str:
        if existing is not None:
            labels = (existing.get("metadata") or {}).get("labels") or {}
            registered = labels.get(CLUSTER_NAME_LABEL) or (
                existing.get("spec") or {}
            ).get("clusterName")
            if isinstance(registered, str) and registered:
                if self._cluster_name is not None and registered != self._cluster_name:
                    self._log.warn(
                        "This cluster is already registered as {registered}; "
                        "--cluster-reg-name {wanted} is ignored",
                        registered=registered,
                        wanted=self._cluster_name,
                    )
                return registered
        if self._cluster_name is not None:
            return self._cluster_name
        if name_hint:
            try:
                return validate_cluster_name(name_hint)
            except InvalidName:
                pass
        self._cluster_name = generate_cluster_name(self._cluster_name_prefix, self._rng)
        return self._cluster_name

    async def _ensure_request(
        self, parent: IKubeAPI, cluster_id: str, name_hint: str | None
    ) -> Obj:
        name = crr_name(cluster_id)
        try:
            return await parent.get(CLUSTER_REGISTRATION_REQUESTS, name)
        except NotFound:
            pass
        cluster_name = self._name_for(None, name_hint)
        body = ClusterRegistrationRequest.new(
            cluster_id, cluster_name, self.cluster_type, self.public_key
        ).to_dict()
        try:
            created = await parent.create(CLUSTER_REGISTRATION_REQUESTS, body)
        except AlreadyExists:
            return await parent.get(CLUSTER_REGISTRATION_REQUESTS, name)
        self._log.info(
            "Created {crr} for cluster {name}: waiting for the parent's approval",
            crr=name,
            name=cluster_name,
        )
        return created

    async def _bootstrap(
        self, bootstrap_token: str, cluster_id: str, name_hint: str | None
    ) -> ParentCredentials:
        name = crr_name(cluster_id)
        trust: ParentTrust | None = None
        errors = 0
        polls = 0
        last_state: tuple[str, str] | None = None
        while True:
            self.attempts += 1
            state: tuple[str, str]
            try:
                if trust is None:
                    trust = await self._trust()
                parent = self._parent_api(
                    bootstrap_token, trust.ca_pem, trust.insecure_skip_tls_verify
                )
                crr = await self._ensure_request(parent, cluster_id, name_hint)
                outcome = await self._outcome(crr, cluster_id, name_hint, trust)
                if isinstance(outcome, ParentCredentials):
                    return outcome
                state = outcome
            except Unauthorized:
                state = (
                    "error",
                    f"the parent {self.parent_url} refused the bootstrap token "
                    "(401 Unauthorized): it is wrong, expired or deleted; create a "
                    "new one and update the registration secret",
                )
            except Forbidden as e:
                state = (
                    "error",
                    f"the bootstrap token may not create or read {name} on the "
                    f"parent (403 Forbidden: {e.message[:200]}); check its RBAC",
                )
            except BootstrapError as e:
                trust = None
                state = ("error", f"cannot establish trust in the parent: {e}")
            except (KubeError, InvalidObject) as e:
                state = ("error", f"registering with {self.parent_url} failed: {e}")
            if state[0] == "error":
                delay = self._retry.delay(errors)
                errors += 1
                polls = 0
            else:
                delay = self._poll.delay(polls)
                polls += 1
                errors = 0
            if state != last_state:
                log = self._log.error if state[0] == "error" else self._log.info
                log(
                    "{problem}; retrying in {delay:.1f}s", problem=state[1], delay=delay
                )
                last_state = state
                if state[0] == "error" and KEY_CONFLICT in state[1]:
                    await self._event("RegistrationKeyConflict", state[1])
            await self._sleep(delay)

    async def _outcome(
        self,
        crr: Obj,
        cluster_id: str,
        name_hint: str | None,
        trust: ParentTrust,
    ) -> ParentCredentials | tuple[str, str]:
        name = crr_name(cluster_id)
        status = ClusterRegistrationRequestStatus.from_dict(crr.get("status") or {})
        if status.result == RESULT_DENIED:
            self._log.error(
                "The parent denied {crr}: {reason}. Not retrying: fix the cause, "
                "delete the request in the parent and restart the agent",
                crr=name,
                reason=status.error_message or "(no reason given)",
            )
            raise RegistrationDenied(name, status.error_message)
        if status.result == RESULT_FAILED:
            return (
                "error",
                f"the parent failed to approve {name}: "
                f"{status.error_message or '(no reason given)'}",
            )
        if _spec_key(crr) != self.public_key.strip():
            theirs = _spec_key(crr)
            try:
                other = fingerprint(theirs) if theirs else "no key"
            except SealingError:
                other = "a malformed key"
            return (
                "error",
                f"cluster {cluster_id} is {KEY_CONFLICT} "
                f"({other}; this agent's is {fingerprint(self.public_key)}): it gets "
                "nothing from that request. If this cluster was re-installed, an "
                f"operator deletes the old request (kubectl delete clsrr {name}) "
                "and this agent registers again",
            )
        if status.result != RESULT_APPROVED:
            return ("pending", f"{name} is pending approval")
        assert self.key is not None
        token = open_token(self.key, crr, cluster_id)
        if token is None or not status.dedicated_namespace:
            return (
                "pending",
                f"{name} is approved but holds no credentials sealed to this agent",
            )
        cluster_name = self._name_for(crr, name_hint)
        # The CA verified while bootstrapping wins over what the status says.
        ca = trust.ca_pem or status.ca_certificate or None
        insecure = trust.insecure_skip_tls_verify and not status.ca_certificate
        problem = await self._check_namespace(
            token, ca, insecure, status.dedicated_namespace, cluster_id
        )
        if problem is not None:
            return ("error", problem)
        credentials = ParentCredentials(
            parent_url=self.parent_url,
            ca_pem=ca,
            source=MutableToken(token),
            key=self.key,
            namespace=status.dedicated_namespace,
            cluster_id=cluster_id,
            cluster_name=cluster_name,
            managed_cluster_name=status.managed_cluster_name or cluster_name,
            insecure_skip_tls_verify=insecure,
        )
        self._log.info(
            "Registered: cluster {cluster} ({name}) approved, namespace {namespace}",
            cluster=cluster_id,
            name=cluster_name,
            namespace=credentials.namespace,
        )
        await self._store(credentials)
        return credentials

    async def _event(self, reason: str, message: str) -> None:
        """
        A Warning Event in the agent's namespace of the child, where whoever
        runs the child looks (best effort: logged when it cannot be made).
        """
        now_text = format_time(now(self._clock))
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "generateName": "clusternet-agent.",
                "namespace": self.namespace,
            },
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Secret",
                "name": self.parent_secret,
                "namespace": self.namespace,
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning",
            "source": {"component": "clusternet-agent"},
            "firstTimestamp": now_text,
            "lastTimestamp": now_text,
            "count": 1,
        }
        try:
            await self._child.create(EVENTS, body, self.namespace)
        except KubeError as e:
            self._log.warn(
                "Could not record the event {reason}: {error}",
                reason=reason,
                error=str(e),
            )

    async def _check_namespace(
        self,
        token: str,
        ca: bytes | None,
        insecure: bool,
        namespace: str,
        cluster_id: str,
    ) -> str | None:
        """
        Why the dedicated namespace named in the status is not one to accept
        (the hub labels the namespaces it makes with the cluster ID); C{None}
        when it is.
        """
        parent = self._parent_api(token, ca, insecure)
        try:
            found = await parent.get(NAMESPACES, namespace)
        except (Forbidden, NotFound) as e:
            return (
                f"the approval names namespace {namespace!r}, which this cluster's "
                f"credentials cannot read ({e.status}): not accepting it"
            )
        labels = (found.get("metadata") or {}).get("labels") or {}
        if labels.get(DEDICATED_FOR_LABEL) != cluster_id:
            return (
                f"the approval names namespace {namespace!r}, which the hub did not "
                f"make for cluster {cluster_id}: not accepting it"
            )
        return None

    async def store_token(self, credentials: ParentCredentials) -> None:
        """
        Keep the current token of C{credentials} in the child (after the hub
        issued the next one).
        """
        await self._store(credentials)

    async def _store(self, credentials: ParentCredentials) -> None:
        """
        Keep the credentials in the child's C{parent-cluster} secret. A failure is
        logged, not fatal: the approved request still holds them, so the next
        start finds them again without a second request.
        """
        data = {
            PARENT_SECRET_CA_KEY: _b64(credentials.ca_pem or b""),
            PARENT_SECRET_TOKEN_KEY: _b64(credentials.token.encode("ascii")),
            PARENT_SECRET_NAMESPACE_KEY: _b64(credentials.namespace.encode("utf-8")),
            PARENT_SECRET_URL_KEY: _b64(credentials.parent_url.encode("utf-8")),
            PARENT_SECRET_KEY_KEY: self._key_data(),
        }
        labels = {
            BOOTSTRAPPING_LABEL: CREDENTIALS_AUTO,
            CLUSTER_ID_LABEL: credentials.cluster_id,
            CLUSTER_NAME_LABEL: credentials.cluster_name,
        }
        try:
            await self._write_secret(data, labels)
        except KubeError as e:
            self._log.error(
                "Could not store the credentials in {namespace}/{name}: {error}; "
                "the next start will fetch them from the parent again",
                namespace=self.namespace,
                name=self.parent_secret,
                error=str(e),
            )

    async def _write_secret(self, data: dict[str, str], labels: dict[str, str]) -> None:
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": self.parent_secret,
                "namespace": self.namespace,
                "labels": labels,
            },
            "data": data,
        }
        for _ in range(5):
            try:
                await self._child.create(SECRETS, body, self.namespace)
                return
            except AlreadyExists:
                pass
            existing = await self._child.get(
                SECRETS, self.parent_secret, self.namespace
            )
            meta = dict(existing.get("metadata") or {})
            meta["labels"] = {**(meta.get("labels") or {}), **labels}
            merged = {**(existing.get("data") or {}), **data}
            updated = {**existing, "metadata": meta, "data": merged, "type": "Opaque"}
            updated.pop("stringData", None)
            try:
                await self._child.update(SECRETS, updated, self.namespace)
                return
            except (Conflict, NotFound):
                continue
        raise KubeError(409, "Conflict", "the secret kept changing")


# --- production clients to the parent -------------------------------------------


class ParentClients(MultiService):
    """
    Makes (and caches) a L{KubeClient} to the parent per (token, CA, insecure):
    a L{ParentAPIFactory} for L{Registration}, and the credentialed client the
    status reporter and heartbeat use (L{for_credentials}). Each client is a
    child service, so it runs (and its thread pool stops) with this one.
    """

    def __init__(self, reactor: Any, parent_url: str, threads: int = 4) -> None:
        super().__init__()
        self._reactor = reactor
        self.parent_url = parent_url
        self._threads = threads
        self._clients: dict[tuple[object, bytes | None, bool], KubeClient] = {}

    def __call__(
        self, token: str | ITokenSource, ca_pem: bytes | None, insecure: bool
    ) -> KubeClient:
        key = (token, ca_pem, insecure)
        client = self._clients.get(key)
        if client is None:
            api_client = api_client_for_token(
                self.parent_url,
                token,
                ca_pem=ca_pem,
                insecure_skip_tls_verify=insecure,
                threads=self._threads,
            )
            client = KubeClient(
                self._reactor,
                api_client,
                threads=self._threads,
                name=f"parent-{len(self._clients)}",
            )
            client.setServiceParent(self)
            self._clients[key] = client
        return client

    def for_credentials(self, credentials: ParentCredentials) -> KubeClient:
        return self(
            credentials.source, credentials.ca_pem, credentials.insecure_skip_tls_verify
        )
