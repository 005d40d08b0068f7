"""
The live tunnels, one per cluster.

A second attach for the same cluster replaces the first: the new session becomes
the one requests use at once, and the old one is told to go away, so its running
streams finish and it closes when they have.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from attrs import define, field

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from clusternet.hub._discovery import SocketInfo

__all__ = ["AttachedSession", "ClusterNotConnected", "SocketRegistry", "UnknownCluster"]


class AttachedSession(Protocol):
    """
    What the registry needs of a tunnel session.
    """

    @property
    def stream_count(self) -> int: ...

    def go_away(self, message: str) -> None:
        """
        Accept no new streams; close once the running ones finish.
        """


class UnknownCluster(Exception):
    """
    No cluster with this ID is registered with the parent (404).
    """


class ClusterNotConnected(Exception):
    """
    The cluster is registered but its agent has no tunnel open (503).
    """


@define
class _Entry:
    session: AttachedSession
    info: SocketInfo


@define
class SocketRegistry:
    """
    Tunnels by cluster ID, and the cluster IDs the parent knows.

    @ivar known: cluster IDs of the genuine ManagedClusters in the parent (each
        in the namespace the hub made for its ID, L{clusternet.apis.judge_claims}),
        kept current by the hub's L{ClusterHealth
        <clusternet.hub._health.ClusterHealth>}; one claimed only from elsewhere
        is not known. A cluster that ever attached counts as known too.
    """

    clock: IReactorTime
    known: set[str] = field(factory=set)
    _entries: dict[str, _Entry] = field(factory=dict)
    _listeners: list[Callable[[str, bool], None]] = field(factory=list)
    _log = Logger()

    def attach(
        self, cluster_id: str, session: AttachedSession, peer: str, user: str
    ) -> None:
        previous = self._entries.get(cluster_id)
        self._entries[cluster_id] = _Entry(
            session, SocketInfo(cluster_id, peer, self.clock.seconds(), 0, user)
        )
        self.known.add(cluster_id)
        if previous is not None and previous.session is not session:
            old = previous.info
            if (old.peer, old.user) != (peer, user):
                # The same credential from elsewhere: an agent that moved, or
                # a copy of its credentials in other hands.
                self._log.warn(
                    "Tunnel for {cluster} replaced by an attach from another peer: "
                    "{old_peer} ({old_user}) by {peer} ({user}); draining the old one",
                    cluster=cluster_id,
                    old_peer=old.peer,
                    old_user=old.user,
                    peer=peer,
                    user=user,
                )
            else:
                self._log.info(
                    "Tunnel for {cluster} replaced by a new attach from {peer}; "
                    "draining the old one",
                    cluster=cluster_id,
                    peer=peer,
                )
            previous.session.go_away("replaced by a newer tunnel for this cluster")
        else:
            self._log.info(
                "Tunnel attached: {cluster} from {peer}", cluster=cluster_id, peer=peer
            )
        for listener in list(self._listeners):
            listener(cluster_id, True)

    def detach(self, cluster_id: str, session: AttachedSession) -> None:
        """
        Forget C{session} if it is still the cluster's current one.
        """
        entry = self._entries.get(cluster_id)
        if entry is None or entry.session is not session:
            return
        del self._entries[cluster_id]
        self._log.info("Tunnel detached: {cluster}", cluster=cluster_id)
        for listener in list(self._listeners):
            listener(cluster_id, False)

    def session_for(self, cluster_id: str) -> AttachedSession:
        """
        The current session of a cluster.

        @raise UnknownCluster: the parent knows no such cluster.
        @raise ClusterNotConnected: it does, but no tunnel is attached.
        """
        entry = self._entries.get(cluster_id)
        if entry is not None:
            return entry.session
        if cluster_id in self.known:
            raise ClusterNotConnected(
                f"cluster {cluster_id} is registered but its agent is not connected; "
                "check that clusternet-agent runs in that cluster and can reach "
                "the parent"
            )
        raise UnknownCluster(f'sockets "{cluster_id}" not found')

    def infos(self) -> list[SocketInfo]:
        return sorted(
            (
                SocketInfo(
                    e.info.cluster_id,
                    e.info.peer,
                    e.info.attached_at,
                    e.session.stream_count,
                    e.info.user,
                )
                for e in self._entries.values()
            ),
            key=lambda info: info.cluster_id,
        )

    def info(self, cluster_id: str) -> SocketInfo | None:
        for info in self.infos():
            if info.cluster_id == cluster_id:
                return info
        return None

    def __len__(self) -> int:
        return len(self._entries)

    def on_change(self, listener: Callable[[str, bool], None]) -> None:
        """
        Call C{listener(cluster_id, attached)} on every attach and detach.
        """
        self._listeners.append(listener)

    def drain_all(self, message: str) -> None:
        for entry in list(self._entries.values()):
            entry.session.go_away(message)
