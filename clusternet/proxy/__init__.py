"""
The streaming HTTP/1.1 reverse proxy shared by the hub, the agent and the
sandbox's aggregation layer.

It forwards a twisted.web request to an upstream reached through any
L{IStreamClientEndpoint} (TCP, TLS, a tunnel stream), streaming bodies both
ways with backpressure, switching protocols for C{Upgrade} requests, and
answering Kubernetes C{Status} errors when the upstream cannot be reached.
See docs/proxy.md.
"""

from clusternet.proxy._budget import (
    BudgetedHTTPChannel,
    ConnectionBudget,
    budget_from_options,
)
from clusternet.proxy._head import (
    HeadError,
    ResponseHead,
    ResponseHeadParser,
    serialize_head,
)
from clusternet.proxy._headers import (
    HOP_BY_HOP,
    client_response_headers,
    connection_tokens,
    upgrade_token,
    upstream_request_headers,
)
from clusternet.proxy._proxy import (
    ProxyError,
    ProxyResource,
    ReverseProxy,
    Route,
    UpstreamTimeout,
    default_error_status,
    remaining_path,
)
from clusternet.proxy._server import (
    IRequestBody,
    IStreamingResource,
    RequestBody,
    StreamingRequest,
    StreamingSite,
    switching_protocols,
)
from clusternet.proxy._splice import Splice

__all__ = [
    "HOP_BY_HOP",
    "BudgetedHTTPChannel",
    "ConnectionBudget",
    "HeadError",
    "IRequestBody",
    "IStreamingResource",
    "ProxyError",
    "ProxyResource",
    "RequestBody",
    "ResponseHead",
    "ResponseHeadParser",
    "ReverseProxy",
    "Route",
    "Splice",
    "StreamingRequest",
    "StreamingSite",
    "UpstreamTimeout",
    "budget_from_options",
    "client_response_headers",
    "connection_tokens",
    "default_error_status",
    "remaining_path",
    "serialize_head",
    "switching_protocols",
    "upgrade_token",
    "upstream_request_headers",
]
