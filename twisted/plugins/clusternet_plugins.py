"""
C{twist} plugins for clusternet: C{clusternet-hub} and C{clusternet-agent}.

Heavy modules load only when a plugin is chosen, so C{twist --help} stays fast.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService, IServiceMaker
from twisted.plugin import IPlugin
from twisted.python.usage import Options
from zope.interface import implementer


@implementer(IServiceMaker, IPlugin)
class _ServiceMaker:
    def __init__(
        self, tapname: str, description: str, module: str, options: str, maker: str
    ) -> None:
        self.tapname = tapname
        self.description = description
        self._module = module
        self._options = options
        self._maker = maker

    def _load(self, name: str) -> Any:
        module = __import__(self._module, fromlist=[name])
        return getattr(module, name)

    @property
    def options(self) -> type[Options]:
        options: type[Options] = self._load(self._options)
        return options

    def makeService(self, options: Options) -> IService:
        from twisted.internet import reactor

        service: IService = self._load(self._maker)(reactor, options)
        return service


hub = _ServiceMaker(
    "clusternet-hub",
    "Clusternet hub: aggregated API server and tunnel endpoint in the parent cluster.",
    "clusternet.hub",
    "HubOptions",
    "make_hub_service",
)
agent = _ServiceMaker(
    "clusternet-agent",
    "Clusternet agent: registers a child cluster and tunnels the hub's requests.",
    "clusternet.agent",
    "AgentOptions",
    "make_agent_service",
)
