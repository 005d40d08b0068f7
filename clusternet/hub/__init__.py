"""
The hub: aggregated API server C{proxies.clusternet.io} in the parent cluster.

It authenticates every request (front-proxy certificate and C{X-Remote-*}
headers, client certificates, bearer tokens through TokenReview), authorizes with
SubjectAccessReviews on C{sockets} and C{sockets/proxy}, holds the agents'
tunnels, proxies requests to child clusters, approves registrations and watches
cluster health.
"""

from clusternet.hub._approver import ApprovalQueue, Approver, approval_objects
from clusternet.hub._auth import (
    AuthConfig,
    Authenticator,
    CachingAuthorizer,
    Forbidden,
    IAccessReviewer,
    ITokenReviewer,
    RequestAttributes,
    Unauthorized,
    User,
)
from clusternet.hub._fairness import StreamBudget, StreamRefused
from clusternet.hub._health import ClusterHealth
from clusternet.hub._options import HubOptions
from clusternet.hub._proxying import ClusterProxy
from clusternet.hub._registry import ClusterNotConnected, SocketRegistry, UnknownCluster
from clusternet.hub._resource import HubResource
from clusternet.hub._service import HubParts, make_hub_service
from clusternet.hub._serving import (
    CABundleInjector,
    ServingCertificate,
    ServingMaterial,
)
from clusternet.hub._tunnels import TunnelAttach

__all__ = [
    "ApprovalQueue",
    "Approver",
    "AuthConfig",
    "Authenticator",
    "CABundleInjector",
    "CachingAuthorizer",
    "ClusterHealth",
    "ClusterNotConnected",
    "ClusterProxy",
    "Forbidden",
    "HubOptions",
    "HubParts",
    "HubResource",
    "IAccessReviewer",
    "ITokenReviewer",
    "RequestAttributes",
    "ServingCertificate",
    "ServingMaterial",
    "SocketRegistry",
    "StreamBudget",
    "StreamRefused",
    "TunnelAttach",
    "Unauthorized",
    "UnknownCluster",
    "User",
    "approval_objects",
    "make_hub_service",
]
