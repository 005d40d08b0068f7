"""
Wiring of C{clusternet.sandbox.auth} into a L{SandboxServer}: the authenticator
chain, RBAC with the default bootstrap policy, the review APIs, the TokenRequest
subresource and the token and bootstrap controllers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from clusternet.sandbox._auth_api import UserInfo
from clusternet.sandbox._store_api import StoreError
from clusternet.sandbox.auth import (
    BootstrapSigner,
    BootstrapTokenAuthenticator,
    RBACAuthorizer,
    RequestHeaderAuthenticator,
    ServiceAccountTokenAuthenticator,
    ServiceAccountTokenSigner,
    StaticTokenAuthenticator,
    TokenCleaner,
    TokenController,
    UnionAuthenticator,
    X509Authenticator,
    cluster_info_kubeconfig,
    create_token_request,
    default_rbac_objects,
    handle_local_subject_access_review,
    handle_self_subject_access_review,
    handle_self_subject_review,
    handle_self_subject_rules_review,
    handle_subject_access_review,
    handle_token_review,
    load_signing_key,
    new_authorizer,
)
from clusternet.sandbox.auth._errors import bad_request

if TYPE_CHECKING:
    from clusternet.sandbox._server import SandboxServer

__all__ = ["FRONT_PROXY_CLIENT_NAME", "AuthWiring", "store_key_of"]

FRONT_PROXY_CLIENT_NAME = "front-proxy-client"
_AUTHN = "authentication.k8s.io"
_AUTHZ = "authorization.k8s.io"

_KINDS = {
    "ClusterRole": "rbac.authorization.k8s.io/clusterroles",
    "ClusterRoleBinding": "rbac.authorization.k8s.io/clusterrolebindings",
    "Role": "rbac.authorization.k8s.io/roles",
    "RoleBinding": "rbac.authorization.k8s.io/rolebindings",
}


def store_key_of(obj: Mapping[str, Any]) -> str:
    """
    The store key (C{"<group>/<plural>"}) of a default policy object.
    """
    return _KINDS[str(obj.get("kind"))]


class AuthWiring:
    """
    Everything about who a caller is and what they may do, for one server.

    @ivar union: the authenticator (also what TokenReviews ask).
    @ivar signer: signs service-account tokens with the sandbox's key.
    """

    _log = Logger()

    def __init__(
        self,
        server: SandboxServer,
        reactor: IReactorTime,
        *,
        anonymous: bool = False,
        static_tokens: Mapping[str, UserInfo] | None = None,
    ) -> None:
        material = server.material
        store = server.store
        self._server = server
        self._reactor = reactor
        self.signer = ServiceAccountTokenSigner(
            load_signing_key(material.service_account_key_pem), reactor
        )
        self.front_proxy = RequestHeaderAuthenticator(
            [material.front_proxy_ca.certificate],
            reactor,
            allowed_names=[FRONT_PROXY_CLIENT_NAME],
        )
        tokens: list[Any] = []
        if static_tokens:
            tokens.append(StaticTokenAuthenticator(static_tokens))
        tokens.append(
            ServiceAccountTokenAuthenticator(store, reactor, [self.signer.public_key])
        )
        tokens.append(BootstrapTokenAuthenticator(store, reactor))
        self.union = UnionAuthenticator(
            front_proxy=self.front_proxy,
            client_certificates=X509Authenticator([material.ca.certificate], reactor),
            tokens=tokens,
            anonymous=anonymous,
        )
        self.authorizer = new_authorizer(store)
        self.rbac = RBACAuthorizer(store)
        self._token_controller = TokenController(
            store, self.signer, material.ca.certificate_pem
        )
        self._bootstrap_signer: BootstrapSigner | None = None
        self._token_cleaner = TokenCleaner(store, reactor)

    def install(self) -> None:
        """
        Set the authenticator and authorizer and serve the review APIs and the
        TokenRequest subresource.
        """
        server = self._server
        server.set_authenticator(self.union)
        server.set_authorizer(self.authorizer)
        union, authorizer, rbac, signer = (
            self.union,
            self.authorizer,
            self.rbac,
            self.signer,
        )
        now = self._reactor.seconds

        def token_review(user: UserInfo, ns: Any, name: Any, body: Any) -> Any:
            return handle_token_review(body, union)

        def self_subject_review(user: UserInfo, ns: Any, name: Any, body: Any) -> Any:
            return handle_self_subject_review(user, now())

        def subject_access_review(user: UserInfo, ns: Any, name: Any, body: Any) -> Any:
            return handle_subject_access_review(body, authorizer)

        def local_subject_access_review(
            user: UserInfo, ns: Any, name: Any, body: Any
        ) -> Any:
            return handle_local_subject_access_review(body, ns, authorizer)

        def self_subject_access_review(
            user: UserInfo, ns: Any, name: Any, body: Any
        ) -> Any:
            return handle_self_subject_access_review(body, user, authorizer)

        def self_subject_rules_review(
            user: UserInfo, ns: Any, name: Any, body: Any
        ) -> Any:
            return handle_self_subject_rules_review(body, user, rbac)

        def token_request(user: UserInfo, ns: Any, name: Any, body: Any) -> Any:
            if not ns or not name:
                raise bad_request("a TokenRequest needs a namespace and a name")
            return create_token_request(server.store, ns, name, body, signer)

        add = server.add_create_handler
        add(_AUTHN, "v1", "tokenreviews", "TokenReview", token_review)
        add(
            _AUTHN, "v1", "selfsubjectreviews", "SelfSubjectReview", self_subject_review
        )
        add(
            _AUTHZ,
            "v1",
            "subjectaccessreviews",
            "SubjectAccessReview",
            subject_access_review,
        )
        add(
            _AUTHZ,
            "v1",
            "selfsubjectaccessreviews",
            "SelfSubjectAccessReview",
            self_subject_access_review,
        )
        add(
            _AUTHZ,
            "v1",
            "selfsubjectrulesreviews",
            "SelfSubjectRulesReview",
            self_subject_rules_review,
        )
        add(
            _AUTHZ,
            "v1",
            "localsubjectaccessreviews",
            "LocalSubjectAccessReview",
            local_subject_access_review,
            namespaced=True,
        )
        server.add_subresource_handler(
            "",
            "serviceaccounts",
            "token",
            token_request,
            response_group=_AUTHN,
            response_version="v1",
            response_kind="TokenRequest",
        )

    def seed(self) -> None:
        """
        Create the default bootstrap RBAC objects that are missing.
        """
        for obj in default_rbac_objects():
            self._server.seed(store_key_of(obj), obj)

    def start(self) -> None:
        """
        Start the controllers (once the server knows its URL).
        """
        self.seed()
        self._refresh_cluster_info()
        self._token_controller.start()
        self._bootstrap_signer = BootstrapSigner(
            self._server.store,
            self._reactor,
            server_url=self._server.url,
            ca_pem=self._server.material.ca.certificate_pem,
        )
        self._bootstrap_signer.start()
        self._token_cleaner.start()

    def _refresh_cluster_info(self) -> None:
        # A restarted sandbox may listen on another port: the kubeconfig that
        # cluster-info publishes must name the server as it is now.
        store = self._server.store
        current = store.get("/configmaps", "kube-public", "cluster-info")
        if current is None:
            return
        wanted = cluster_info_kubeconfig(
            self._server.url, self._server.material.ca.certificate_pem
        )
        data = dict(current.get("data") or {})
        if data.get("kubeconfig") == wanted:
            return
        data["kubeconfig"] = wanted
        updated = {**current, "data": data}
        try:
            store.update("/configmaps", "kube-public", updated)
        except StoreError as e:
            self._log.warn("cannot refresh cluster-info: {error}", error=e.message)

    def stop(self) -> None:
        self._token_controller.stop()
        if self._bootstrap_signer is not None:
            self._bootstrap_signer.stop()
            self._bootstrap_signer = None
        self._token_cleaner.stop()
