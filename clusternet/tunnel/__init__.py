"""
The clusternet tunnel: many byte streams over one carrier (WebSocket, TLS/TCP,
memory), with per-stream flow control, keepalive and drain.

The protocol is in docs/tunnel-protocol.md.  The session is sans-IO
(L{FrameDecoder}, L{SessionMachine}); L{TunnelSession} wires it to Twisted.
"""

from __future__ import annotations

from clusternet.tunnel._codec import (
    DEFAULT_INITIAL_WINDOW,
    DEFAULT_MAX_AUTO_WINDOW,
    DEFAULT_MAX_FRAME,
    DEFAULT_MAX_STREAMS,
    PROTOCOL_VERSION,
    Data,
    ErrorCode,
    Fin,
    Frame,
    FrameDecoder,
    FrameType,
    GoAway,
    Hello,
    Open,
    OpenFail,
    OpenFailReason,
    OpenOk,
    Ping,
    Pong,
    ProtocolError,
    Reset,
    WindowUpdate,
    encode,
)
from clusternet.tunnel._connector import CARRIERS, TunnelConnector
from clusternet.tunnel._dialer import (
    AllowList,
    DialingAcceptor,
    EndpointFactory,
    parse_target,
    tcp_endpoint,
)
from clusternet.tunnel._endpoint import TunnelEndpoint
from clusternet.tunnel._errors import (
    OpenRefused,
    StreamOpenFailed,
    TunnelClosed,
    TunnelStreamReset,
)
from clusternet.tunnel._interfaces import (
    IDialPolicy,
    IStreamAcceptor,
    ITunnelProtocol,
    ITunnelTransport,
)
from clusternet.tunnel._machine import LocalStreamError, Role, SessionMachine
from clusternet.tunnel._memory import MemoryLink, MemoryTransport
from clusternet.tunnel._metrics import TunnelMetrics
from clusternet.tunnel._reconnect import Backoff, ReconnectingTunnelClient
from clusternet.tunnel._session import (
    AUTO_CARRIER_QUEUE,
    MIN_CARRIER_QUEUE,
    SessionConfig,
    TunnelAddress,
    TunnelSession,
    TunnelStream,
)
from clusternet.tunnel._tcp import StreamCarrierFactory, StreamCarrierProtocol
from clusternet.tunnel._tuning import tune_allocator
from clusternet.tunnel._upgrade import (
    UPGRADE_PROTOCOL,
    UpgradeNotSupported,
    connect_upgrade,
    is_tunnel_upgrade,
    take_over,
)
from clusternet.tunnel._websocket import (
    SUBPROTOCOL,
    TunnelWebSocketClientFactory,
    TunnelWebSocketServerFactory,
    connect_websocket,
)

__all__ = [
    "AUTO_CARRIER_QUEUE",
    "CARRIERS",
    "DEFAULT_INITIAL_WINDOW",
    "DEFAULT_MAX_AUTO_WINDOW",
    "DEFAULT_MAX_FRAME",
    "DEFAULT_MAX_STREAMS",
    "MIN_CARRIER_QUEUE",
    "PROTOCOL_VERSION",
    "SUBPROTOCOL",
    "UPGRADE_PROTOCOL",
    "AllowList",
    "Backoff",
    "Data",
    "DialingAcceptor",
    "EndpointFactory",
    "ErrorCode",
    "Fin",
    "Frame",
    "FrameDecoder",
    "FrameType",
    "GoAway",
    "Hello",
    "IDialPolicy",
    "IStreamAcceptor",
    "ITunnelProtocol",
    "ITunnelTransport",
    "LocalStreamError",
    "MemoryLink",
    "MemoryTransport",
    "Open",
    "OpenFail",
    "OpenFailReason",
    "OpenOk",
    "OpenRefused",
    "Ping",
    "Pong",
    "ProtocolError",
    "ReconnectingTunnelClient",
    "Reset",
    "Role",
    "SessionConfig",
    "SessionMachine",
    "StreamCarrierFactory",
    "StreamCarrierProtocol",
    "StreamOpenFailed",
    "TunnelAddress",
    "TunnelClosed",
    "TunnelConnector",
    "TunnelEndpoint",
    "TunnelMetrics",
    "TunnelSession",
    "TunnelStream",
    "TunnelStreamReset",
    "TunnelWebSocketClientFactory",
    "TunnelWebSocketServerFactory",
    "UpgradeNotSupported",
    "WindowUpdate",
    "connect_upgrade",
    "connect_websocket",
    "encode",
    "is_tunnel_upgrade",
    "parse_target",
    "take_over",
    "tcp_endpoint",
    "tune_allocator",
]
