"""
The agent: registers a child cluster with the parent, reports its health and
serves the hub's requests through a tunnel.
"""

from clusternet.agent._acceptor import AgentAcceptor
from clusternet.agent._bootstrap import ParentTrust, ParentTrustResolver
from clusternet.agent._direct import ChildProxyResource, DirectServer
from clusternet.agent._identity import IDENTITY_MODES, IdentityPolicy, ParentIdentity
from clusternet.agent._options import AgentOptions
from clusternet.agent._registration import (
    ParentClients,
    ParentCredentials,
    Registration,
    RegistrationDenied,
    RegistrationError,
)
from clusternet.agent._service import AgentWork, make_agent_service
from clusternet.agent._status import StatusReporter, make_reporting_service

__all__ = [
    "IDENTITY_MODES",
    "AgentAcceptor",
    "AgentOptions",
    "AgentWork",
    "ChildProxyResource",
    "DirectServer",
    "IdentityPolicy",
    "ParentClients",
    "ParentCredentials",
    "ParentIdentity",
    "ParentTrust",
    "ParentTrustResolver",
    "Registration",
    "RegistrationDenied",
    "RegistrationError",
    "StatusReporter",
    "make_agent_service",
    "make_reporting_service",
]
