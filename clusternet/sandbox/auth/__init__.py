"""
Authentication and authorization of the sandbox API server, as a real
kube-apiserver v1.32 does them.

Authenticators (L{UnionAuthenticator} chains them in the real server's order),
the RBAC authorizer with its default bootstrap policy, the review APIs as pure
handlers, and the controllers that fill service-account token Secrets and sign
C{kube-public/cluster-info}.  Everything runs on the reactor thread and reads or
writes only through the store seams of C{clusternet.sandbox._store_api}.
"""

from ._authn import (
    ALL_AUTHENTICATED,
    ALL_UNAUTHENTICATED,
    ANONYMOUS_USER,
    CREDENTIAL_ID_KEY,
    SYSTEM_MASTERS,
    BearerTokenAuthenticator,
    ITokenAuthenticator,
    RequestHeaderAuthenticator,
    StaticTokenAuthenticator,
    TokenResponse,
    UnionAuthenticator,
    WebSocketProtocolAuthenticator,
    X509Authenticator,
    parse_token_file,
)
from ._bootstrap import (
    BootstrapSigner,
    BootstrapTokenAuthenticator,
    TokenCleaner,
    cluster_info_kubeconfig,
    parse_bootstrap_token,
    sign_cluster_info,
    verify_cluster_info_jws,
)
from ._errors import APIError
from ._escalation import (
    breakdown_rule,
    compact_rules,
    compact_string,
    confirm_no_escalation,
    covers,
    escalation_message,
    rule_covers,
)
from ._jose import load_signing_key
from ._policy import default_rbac_objects
from ._rbac import (
    BrowserSafeAuthorizer,
    PolicyRule,
    PrivilegedGroupAuthorizer,
    RBACAuthorizer,
    UnionAuthorizer,
    forbidden_message,
    forbidden_status,
    new_authorizer,
    rule_allows,
)
from ._reviews import (
    handle_local_subject_access_review,
    handle_self_subject_access_review,
    handle_self_subject_review,
    handle_self_subject_rules_review,
    handle_subject_access_review,
    handle_token_review,
    user_info_json,
)
from ._serviceaccount import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    ServiceAccountTokenAuthenticator,
    ServiceAccountTokenSigner,
    TokenController,
    create_token_request,
    service_account_user,
)

__all__ = [
    "ALL_AUTHENTICATED",
    "ALL_UNAUTHENTICATED",
    "ANONYMOUS_USER",
    "CREDENTIAL_ID_KEY",
    "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER",
    "SYSTEM_MASTERS",
    "APIError",
    "BearerTokenAuthenticator",
    "BootstrapSigner",
    "BootstrapTokenAuthenticator",
    "BrowserSafeAuthorizer",
    "ITokenAuthenticator",
    "PolicyRule",
    "PrivilegedGroupAuthorizer",
    "RBACAuthorizer",
    "RequestHeaderAuthenticator",
    "ServiceAccountTokenAuthenticator",
    "ServiceAccountTokenSigner",
    "StaticTokenAuthenticator",
    "TokenCleaner",
    "TokenController",
    "TokenResponse",
    "UnionAuthenticator",
    "UnionAuthorizer",
    "WebSocketProtocolAuthenticator",
    "X509Authenticator",
    "breakdown_rule",
    "cluster_info_kubeconfig",
    "compact_rules",
    "compact_string",
    "confirm_no_escalation",
    "covers",
    "create_token_request",
    "default_rbac_objects",
    "escalation_message",
    "forbidden_message",
    "forbidden_status",
    "handle_local_subject_access_review",
    "handle_self_subject_access_review",
    "handle_self_subject_review",
    "handle_self_subject_rules_review",
    "handle_subject_access_review",
    "handle_token_review",
    "load_signing_key",
    "new_authorizer",
    "parse_bootstrap_token",
    "parse_token_file",
    "rule_allows",
    "rule_covers",
    "service_account_user",
    "sign_cluster_info",
    "user_info_json",
    "verify_cluster_info_jws",
]
