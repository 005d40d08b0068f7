"""
The agent: registers a child cluster and serves the hub's requests through a tunnel.
"""

from clusternet.agent._options import AgentOptions
from clusternet.agent._service import make_agent_service

__all__ = ["AgentOptions", "make_agent_service"]
