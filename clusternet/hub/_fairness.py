"""
A fair share of each cluster's tunnel streams for every user.

A cluster's tunnel carries at most as many streams as its agent allows (the
C{max streams} of its HELLO, 1024 by default), and every proxied request holds
one for as long as it runs: a watch, C{logs -f}, an exec or a port-forward for
minutes or hours. Without a budget, one user with enough watches takes them
all and everyone else gets C{503 TOO_MANY} for that cluster.

L{StreamBudget} counts, per tunnel session, the streams each user holds, and
before a stream is opened for a user allows it only when

    - the user holds fewer than the per-user cap (C{--max-streams-per-user})
      and the session has a stream free outside the reserve, or
    - the user holds none yet and only the reserve (C{--stream-reserve}) is
      left: so a user who holds nothing gets a stream while the session has
      any stream free, however many others are at their cap.

Otherwise the request is refused with C{429 Too Many Requests} (L{StreamRefused};
the hub answers a Kubernetes C{Status} and C{Retry-After}). The stream is given
back when the request ends, however it ends (L{StreamSlot.release}, which
counts once).

Users are told apart by their authenticated name. Callers of the C{token}
identity mode all arrive as the user C{clusternet} with their child credential
in a user extra: they are told apart by that credential too, as the child tells
them apart (L{StreamBudget.key_for}; an HMAC with a key of this process, never
logged).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Hashable, Iterator
from typing import Any

from attrs import define, field, frozen
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from twisted.logger import Logger

from clusternet.apis.status import status_body
from clusternet.hub._auth import User

__all__ = [
    "CREDENTIAL_EXTRAS",
    "DEFAULT_RETRY_AFTER",
    "DEFAULT_STREAM_RESERVE",
    "REFUSAL_REASONS",
    "StreamBudget",
    "StreamLimits",
    "StreamRefused",
    "StreamSlot",
    "coerce_streams_per_user",
    "stream_limits",
]

#: Streams kept for users who hold none, when the session allows at least
#: eight times as many (at most an eighth of the session's limit otherwise).
DEFAULT_STREAM_RESERVE = 32
#: Seconds a refused client is asked to wait (C{Retry-After}); what the
#: Kubernetes API server itself answers with its 429s, which client-go honours.
DEFAULT_RETRY_AFTER = 1
#: The refusals counted in C{clusternet_hub_streams_refused_total{reason}}.
USER_LIMIT = "user_limit"
CLUSTER_FULL = "cluster_full"
REFUSAL_REASONS = (USER_LIMIT, CLUSTER_FULL)
#: The user extras of the C{token} identity mode that name who the caller is
#: in the child (the private key only goes with the certificate).
CREDENTIAL_EXTRAS = ("clusternet-token", "clusternet-certificate")


def coerce_streams_per_user(text: str) -> int | None:
    """
    C{--max-streams-per-user}: C{auto} (C{None}: a quarter of the session's
    stream limit) or a whole number greater than zero.
    """
    if text.strip() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither auto nor a whole number") from None
    if value <= 0:
        raise ValueError(f"{text!r} must be greater than zero")
    return value


coerce_streams_per_user.coerceDoc = (  # type: ignore[attr-defined]
    "auto, or a whole number greater than zero."
)


def coerce_stream_reserve(text: str) -> int:
    """
    C{--stream-reserve}: a whole number, 0 or more.
    """
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise ValueError(f"{text!r} must not be negative")
    return value


coerce_stream_reserve.coerceDoc = "A whole number, 0 or more."  # type: ignore[attr-defined]


@frozen
class StreamLimits:
    """
    The budget of one session.

    @ivar limit: the streams the session may have open (the peer's limit).
    @ivar per_user: the streams one user may hold.
    @ivar reserve: the streams only users who hold none may take.
    """

    limit: int
    per_user: int
    reserve: int


def stream_limits(
    limit: int, max_per_user: int | None, reserve: int = DEFAULT_STREAM_RESERVE
) -> StreamLimits:
    """
    The budget of a session of C{limit} streams: the reserve is at most an
    eighth of the limit; the cap is C{max_per_user} (a quarter of the limit
    when C{None}), at least 1 and at most the limit minus the reserve.
    """
    limit = max(1, limit)
    reserve = max(0, min(reserve, limit // 8))
    room = limit - reserve
    per_user = max(1, limit // 4) if max_per_user is None else max_per_user
    return StreamLimits(limit, max(1, min(per_user, room)), reserve)


class StreamRefused(Exception):
    """
    No stream for this user now (429).

    @ivar reason: L{USER_LIMIT} or L{CLUSTER_FULL}.
    @ivar retry_after: seconds the client should wait before it retries.
    """

    def __init__(
        self, reason: str, message: str, cluster: str, retry_after: int
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.cluster = cluster
        self.retry_after = retry_after

    def status(self) -> bytes:
        """
        The Kubernetes C{Status} body to answer with.
        """
        return status_body(
            429,
            self.message,
            "TooManyRequests",
            {
                "name": self.cluster,
                "group": "proxies.clusternet.io",
                "kind": "sockets",
                "retryAfterSeconds": self.retry_after,
            },
        )


@define(eq=False)
class _Pool:
    """
    The streams held on one session of one cluster, by user.
    """

    cluster: str
    held: dict[Hashable, int] = field(factory=dict)
    total: int = 0
    # Refusals already logged: users told they are at their cap, and whether
    # the session was reported full, until that changes.
    noted: set[Hashable] = field(factory=set)
    full_noted: bool = False


class StreamSlot:
    """
    One stream a user holds: L{release} gives it back, once, however often it
    is called.
    """

    def __init__(self, budget: StreamBudget, pool_key: Hashable, user: Hashable):
        self._budget: StreamBudget | None = budget
        self._pool_key = pool_key
        self._user = user

    @property
    def released(self) -> bool:
        return self._budget is None

    def release(self, result: Any = None) -> Any:
        """
        Give the stream back; returns C{result}, so it fits C{addBoth}.
        """
        budget, self._budget = self._budget, None
        if budget is not None:
            budget._release(self._pool_key, self._user)
        return result


class StreamBudget:
    """
    The streams users hold on each cluster's tunnel, and who may take another.

    @param max_per_user: streams one user may hold on one session; C{None}
        for a quarter of the session's limit (see L{stream_limits}).
    @param reserve: streams kept for users who hold none.
    @param retry_after: seconds a refused client is asked to wait.
    @param per_cluster_metrics: label the gauges with the cluster ID (one
        series per cluster with streams held; off for large fleets).
    """

    _log = Logger()

    def __init__(
        self,
        max_per_user: int | None = None,
        reserve: int = DEFAULT_STREAM_RESERVE,
        *,
        retry_after: int = DEFAULT_RETRY_AFTER,
        per_cluster_metrics: bool = False,
        secret: bytes | None = None,
    ) -> None:
        if max_per_user is not None and max_per_user < 1:
            raise ValueError("max_per_user must be at least 1")
        if reserve < 0:
            raise ValueError("reserve must not be negative")
        self.max_per_user = max_per_user
        self.reserve = reserve
        self.retry_after = retry_after
        self.per_cluster_metrics = per_cluster_metrics
        self._secret = secret if secret is not None else os.urandom(32)
        self._pools: dict[Hashable, _Pool] = {}
        self.refused: dict[str, int] = dict.fromkeys(REFUSAL_REASONS, 0)

    # -- who is who ----------------------------------------------------------

    def key_for(self, user: User) -> Hashable:
        """
        Whose budget a request of C{user} counts against: the user name, and
        for a caller that brings its own child credential (the C{token}
        identity mode, where everyone is C{clusternet}) an HMAC of that
        credential, so that one such caller cannot take every other's share.
        The credential itself is never kept nor logged.
        """
        credentials = [
            value for name in CREDENTIAL_EXTRAS for value in user.extra.get(name, ())
        ]
        if not credentials:
            return (user.name, "")
        mac = hmac.new(self._secret, digestmod=hashlib.sha256)
        for value in credentials:
            mac.update(value.encode("utf-8", "surrogatepass") + b"\0")
        return (user.name, mac.hexdigest())

    # -- taking and giving back ----------------------------------------------

    def limits(self, limit: int) -> StreamLimits:
        """
        The budget of a session that may have C{limit} streams open.
        """
        return stream_limits(limit, self.max_per_user, self.reserve)

    def acquire(
        self,
        cluster: str,
        user: Hashable,
        limit: int,
        *,
        session: Hashable = None,
        busy: int = 0,
        who: str | None = None,
    ) -> StreamSlot:
        """
        Take a stream of C{cluster}'s C{session} for C{user} (a L{key_for}).

        @param limit: the streams the session may have open.
        @param busy: the streams the session has open now; the budget counts
            the larger of that and the streams its users hold (a stream still
            closing, or idle in a connection pool, is busy too).
        @param who: the user's name, for the refusal's message and the log.
        @raise StreamRefused: the user is at their cap, or the session has
            no stream left that this user may take.
        """
        limits = self.limits(limit)
        pool_key = (cluster, session)
        pool = self._pools.get(pool_key)
        holds = 0 if pool is None else pool.held.get(user, 0)
        total = 0 if pool is None else pool.total
        used = max(total, busy)
        free = limits.limit - used
        name = who if who is not None else str(user)
        if holds >= limits.per_user:
            self._refuse(
                pool,
                user,
                USER_LIMIT,
                cluster,
                f'user "{name}" already holds {holds} streams of cluster {cluster}\'s '
                f"tunnel, the most one user may hold (--max-streams-per-user: "
                f"{limits.per_user} of {limits.limit}); retry when one of them "
                "(a watch, exec, logs -f or port-forward) has ended",
            )
        if free - limits.reserve <= 0 and (holds > 0 or free <= 0):
            if free <= 0:
                why = f"all {limits.limit} streams of its tunnel are in use"
            else:
                why = (
                    f"{used} of its tunnel's {limits.limit} streams are in use and "
                    f"the last {limits.reserve} are kept for users who hold none "
                    f'(user "{name}" holds {holds})'
                )
            self._refuse(
                pool,
                user,
                CLUSTER_FULL,
                cluster,
                f"cluster {cluster} is busy: {why}; retry shortly",
            )
        if pool is None:
            pool = self._pools[pool_key] = _Pool(cluster)
        pool.held[user] = holds + 1
        pool.total += 1
        return StreamSlot(self, pool_key, user)

    def _refuse(
        self, pool: _Pool | None, user: Hashable, reason: str, cluster: str, text: str
    ) -> None:
        self.refused[reason] += 1
        if pool is not None:
            if reason == USER_LIMIT and user not in pool.noted:
                pool.noted.add(user)
                self._log.info("Stream refused (429): {why}", why=text)
            elif reason == CLUSTER_FULL and not pool.full_noted:
                pool.full_noted = True
                self._log.warn("Stream refused (429): {why}", why=text)
        raise StreamRefused(reason, text, cluster, self.retry_after)

    def _release(self, pool_key: Hashable, user: Hashable) -> None:
        pool = self._pools.get(pool_key)
        holds = 0 if pool is None else pool.held.get(user, 0)
        if pool is None or holds <= 0:
            # Cannot happen: a slot releases once. Never count below zero.
            self._log.error(
                "Stream budget: release of a stream not held on {cluster}",
                cluster=pool_key,
            )
            return
        pool.total -= 1
        if holds == 1:
            del pool.held[user]
            pool.noted.discard(user)
        else:
            pool.held[user] = holds - 1
        pool.full_noted = False
        if not pool.total:
            del self._pools[pool_key]

    # -- what is held ----------------------------------------------------------

    def held(self, cluster: str, user: Hashable | None = None) -> int:
        """
        Streams of C{cluster} held by C{user} (by everyone when C{None}), on
        all its sessions.
        """
        return sum(
            pool.total if user is None else pool.held.get(user, 0)
            for pool in self._pools.values()
            if pool.cluster == cluster
        )

    def holders(self) -> dict[str, int]:
        """
        How many users hold streams, by cluster.
        """
        users: dict[str, set[Hashable]] = {}
        for pool in self._pools.values():
            users.setdefault(pool.cluster, set()).update(pool.held)
        return {cluster: len(keys) for cluster, keys in users.items()}

    def collector(self) -> Collector:
        """
        The budget's Prometheus metrics, for the hub's registry.
        """
        return _BudgetCollector(self)


class _BudgetCollector(Collector):
    def __init__(self, budget: StreamBudget) -> None:
        self._budget = budget

    def collect(self) -> Iterator[Metric]:
        budget = self._budget
        refused = CounterMetricFamily(
            "clusternet_hub_streams_refused",
            "Proxied requests refused a tunnel stream (429): the user held "
            "their share (user_limit), or the cluster's tunnel had no stream "
            "left for them (cluster_full)",
            labels=["reason"],
        )
        for reason in REFUSAL_REASONS:
            refused.add_metric([reason], budget.refused[reason])
        yield refused
        labels = ["cluster"] if budget.per_cluster_metrics else []
        users = GaugeMetricFamily(
            "clusternet_hub_stream_users",
            "Users holding tunnel streams (counted once per cluster)",
            labels=labels,
        )
        held = GaugeMetricFamily(
            "clusternet_hub_streams_held",
            "Tunnel streams held by proxied requests",
            labels=labels,
        )
        holders = budget.holders()
        streams: dict[str, int] = {}
        for pool in budget._pools.values():
            streams[pool.cluster] = streams.get(pool.cluster, 0) + pool.total
        if budget.per_cluster_metrics:
            for cluster in sorted(holders):
                users.add_metric([cluster], holders[cluster])
                held.add_metric([cluster], streams.get(cluster, 0))
        else:
            users.add_metric([], sum(holders.values()))
            held.add_metric([], sum(streams.values()))
        yield users
        yield held
