"""
The agent as a Twisted service.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger
from twisted.web.server import Site

from clusternet._runtime import CleanExitOnSIGTERM
from clusternet._web import StatusRoot
from clusternet.health import HealthChecks, add_probes

__all__ = ["make_agent_service"]


class _Announce(Service):
    _log = Logger()

    def __init__(self, options: Any) -> None:
        self._options = options

    def startService(self) -> None:
        super().startService()
        self._log.info(
            "clusternet-agent starting: parent {parent}, cluster type {type}, "
            "status update every {update}s",
            parent=self._options["cluster-reg-parent-url"],
            type=self._options["cluster-type"],
            update=self._options["cluster-status-update-frequency"],
        )
        if self._options["cluster-reg-insecure-skip-tls-verify"]:
            self._log.warn(
                "--cluster-reg-insecure-skip-tls-verify is set: the parent's "
                "certificate is NOT verified during bootstrap"
            )


def make_agent_service(reactor: IReactorCore, options: Any) -> IService:
    """
    Build the agent's services from parsed L{clusternet.agent.AgentOptions}.
    """
    top = MultiService()
    CleanExitOnSIGTERM(reactor).setServiceParent(top)
    _Announce(options).setServiceParent(top)
    if options["metrics-listen"]:
        root = StatusRoot()
        add_probes(root, HealthChecks())
        StreamServerEndpointService(
            serverFromString(reactor, options["metrics-listen"]), Site(root)
        ).setServiceParent(top)
    return top
