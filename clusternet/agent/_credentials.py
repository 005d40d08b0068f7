"""
Keeping the agent's parent token current.

The hub issues each cluster a token that expires (C{--cluster-token-lifetime}
on the hub) and seals the next one into the cluster's registration request
before it does, or at once when an operator asks for a new one (and then
revokes the old). The agent reads its request every
C{--credential-check-frequency}, opens a newer sealed token with its key and
uses it from then on: the status reports, the heartbeat and the next tunnel
attach pick it up from the shared L{clusternet.kube.MutableToken}. When the
parent refuses the current token (revoked), the request is read with the
bootstrap token instead, if the agent has one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from clusternet.agent._registration import ParentCredentials, open_token
from clusternet.apis import crr_name
from clusternet.kube import ITokenSource, KubeError, Unauthorized
from clusternet.kube._interfaces import IKubeAPI
from clusternet.kube._resources import CLUSTER_REGISTRATION_REQUESTS

__all__ = ["CredentialRefresh"]


class CredentialRefresh(Service):
    """
    Every C{interval} seconds, take the newest token the hub sealed for this
    agent.

    @param parent: the parent's API for a token (current or bootstrap).
    @param store: keeps the credentials in the child after a change.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        credentials: ParentCredentials,
        parent: Callable[[str | ITokenSource], IKubeAPI],
        bootstrap_token: str | None,
        store: Callable[[ParentCredentials], Awaitable[None]],
        interval: float = 30.0,
    ) -> None:
        self._clock = clock
        self._credentials = credentials
        self._parent = parent
        self._bootstrap = bootstrap_token
        self._store = store
        self._interval = interval
        self._loop: LoopingCall | None = None
        self.changes = 0

    def startService(self) -> None:
        super().startService()
        loop = LoopingCall(self.check)
        loop.clock = self._clock
        # The first check after one interval: registration just read it.
        loop.start(self._interval, now=False).addErrback(
            lambda f: self._log.failure("Checking the parent token stopped", f)
        )
        self._loop = loop

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def check(self) -> Deferred[None]:
        """
        Read the request once; take a newer token from it. Never fails.
        """
        return ensureDeferred(self._check())

    async def _check(self) -> None:
        credentials = self._credentials
        name = crr_name(credentials.cluster_id)
        try:
            crr = await self._read(credentials.source, name)
        except Unauthorized:
            if not self._bootstrap:
                self._log.warn(
                    "The parent refused this cluster's token and the agent has no "
                    "bootstrap token to read {crr} with; waiting for the next check",
                    crr=name,
                )
                return
            try:
                crr = await self._read(self._bootstrap, name)
            except KubeError as e:
                self._log.warn(
                    "Reading {crr} with the bootstrap token failed: {error}",
                    crr=name,
                    error=str(e),
                )
                return
        except KubeError as e:
            self._log.warn("Reading {crr} failed: {error}", crr=name, error=str(e))
            return
        if credentials.key is None:
            return
        token = open_token(credentials.key, crr, credentials.cluster_id)
        if token is None or token == credentials.token:
            return
        credentials.source.set(token)
        self.changes += 1
        expires = (crr.get("status") or {}).get("tokenExpirationTimestamp")
        self._log.info(
            "Using the parent's new token for cluster {cluster} (expires {expires})",
            cluster=credentials.cluster_id,
            expires=expires or "(not said)",
        )
        await self._store(credentials)

    async def _read(self, token: str | ITokenSource, name: str) -> dict[str, Any]:
        return await self._parent(token).get(CLUSTER_REGISTRATION_REQUESTS, name)
