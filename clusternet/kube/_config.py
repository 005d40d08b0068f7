"""
Client configuration: kubeconfig, in-cluster, or (server, CA, token).

Kubeconfig files are read by the C{kubernetes} package's own loaders, never by hand.

Bearer tokens are never copied once and kept: a L{ITokenSource} always has the
current one.  A kubeconfig C{tokenFile} and the in-cluster token file (projected
service-account tokens, which the kubelet rewrites) are re-read when their stat
signature changes; exec plugins and auth providers (EKS, GKE, AKS) are refreshed
by the C{kubernetes} client's own C{refresh_api_key_hook}.  The C{ApiClient}s of
L{load_api_client} check their token file before each call (on their pool
thread); L{TokenRefresher} keeps a source current from a thread for code on the
reactor thread, which only reads the cached value.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, ClassVar, cast

import yaml
from attrs import field, frozen
from kubernetes.client import ApiClient, Configuration
from kubernetes.config import ConfigException, incluster_config
from kubernetes.config.kube_config import KubeConfigLoader, KubeConfigMerger

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

__all__ = [
    "TOKEN_CHECK_INTERVAL",
    "ConfigurationToken",
    "ConnectionInfo",
    "ITokenSource",
    "KubeConfigError",
    "MutableToken",
    "StaticToken",
    "TokenFile",
    "TokenRefresher",
    "api_client_for_token",
    "connection_info",
    "load_api_client",
]

# Seconds between two checks of a rotating token (a stat of a token file).
TOKEN_CHECK_INTERVAL = 2.0

# Where a pod's service account lives (module attributes, so tests can move them).
SERVICE_TOKEN_FILENAME = incluster_config.SERVICE_TOKEN_FILENAME
SERVICE_CERT_FILENAME = incluster_config.SERVICE_CERT_FILENAME


class KubeConfigError(Exception):
    """
    No usable client configuration (unreadable kubeconfig, not in a cluster).
    """


class ITokenSource(Interface):
    """
    Where the current bearer token of a configuration comes from.
    """

    rotates = Attribute("Whether L{reload} can ever change the token.")

    def current() -> str | None:
        """
        The token last loaded (C{None}: none).  No I/O: safe on the reactor
        thread.
        """

    def reload() -> None:
        """
        Load the token again if it changed.  Blocking (file I/O, exec plugins):
        call it on a pool thread only.  Never raises: a failure keeps the last
        token and is logged (without the token).
        """


@implementer(ITokenSource)
@frozen
class StaticToken:
    """
    A token that never changes (a kubeconfig C{token}, a token given in code).
    """

    rotates: ClassVar[bool] = False
    value: str = field(repr=False)

    def current(self) -> str | None:
        return self.value

    def reload(self) -> None:
        pass


@implementer(ITokenSource)
class MutableToken:
    """
    A token its owner replaces (the agent's parent token, when the hub issues
    the next one). L{set} on the reactor thread; readers on pool threads see
    the old or the new value, never a mix.
    """

    rotates: ClassVar[bool] = True

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "<MutableToken>"

    def current(self) -> str | None:
        return self._value or None

    def reload(self) -> None:
        pass

    def set(self, value: str) -> None:
        self._value = value


def _signature(stat: os.stat_result) -> tuple[int, ...]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@implementer(ITokenSource)
class TokenFile:
    """
    A token read from a file, read again only when the file's stat signature
    (device, inode, size, modification and change times) changes: a kubelet's
    symlink swap, a rename over it or a rewrite in place.  Thread-safe.
    """

    rotates = True
    _log = Logger()

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._token: str | None = None
        self._signature: tuple[int, ...] | None = None
        self._problem: str | None = None

    def __repr__(self) -> str:
        return f"<TokenFile {self.path!r}>"

    def current(self) -> str | None:
        return self._token

    def reload(self) -> None:
        with self._lock:
            try:
                signature = _signature(os.stat(self.path))
            except OSError as e:
                self._signature = None
                self._failed(e.strerror or str(e))
                return
            if signature == self._signature:
                return
            self._signature = signature
            try:
                with open(self.path, "rb") as f:
                    self._signature = _signature(os.fstat(f.fileno()))
                    token = f.read().decode("utf-8").strip()
            except OSError as e:
                self._failed(e.strerror or str(e))
                return
            except UnicodeDecodeError:
                self._failed("the file is not UTF-8 text")
                return
            if not token:
                self._failed("the file is empty")
                return
            changed = self._token is not None and token != self._token
            self._token = token
            self._problem = None
        if changed:
            self._log.info(
                "Token file {path} changed: using its new token", path=self.path
            )

    def _failed(self, problem: str) -> None:
        if problem != self._problem:
            self._problem = problem
            self._log.warn(
                "Cannot read the token file {path} ({problem}): keeping the last token",
                path=self.path,
                problem=problem,
            )


@implementer(ITokenSource)
class ConfigurationToken:
    """
    The token of a C{kubernetes} client configuration with a
    C{refresh_api_key_hook} (exec plugins, auth providers): reloading calls the
    hook, which refreshes the token when the client thinks it expired.
    """

    rotates = True
    _log = Logger()

    def __init__(self, configuration: Configuration) -> None:
        self._configuration = configuration
        self._token = _bearer(_configured_header(configuration))
        self._failing = False

    def __repr__(self) -> str:
        return f"<ConfigurationToken of {self._configuration.host!r}>"

    def current(self) -> str | None:
        return self._token

    def reload(self) -> None:
        try:
            header = self._configuration.get_api_key_with_prefix(
                "BearerToken", alias="authorization"
            )
        except Exception as e:
            if not self._failing:
                self._log.warn(
                    "Cannot refresh the client's token ({error}): keeping the last "
                    "token",
                    error=type(e).__name__,
                )
            self._failing = True
            return
        self._failing = False
        token = _bearer(header)
        if token:
            self._token = token


class _TokenFileHook:
    """
    A C{refresh_api_key_hook} that puts the current token of a L{TokenFile} in
    the configuration; the client runs it (on its pool thread) before each call.
    """

    def __init__(self, source: TokenFile) -> None:
        self.source = source

    def __call__(self, configuration: Configuration) -> None:
        self.source.reload()
        _set_token(configuration, self.source.current())


def _set_token(configuration: Configuration, token: str | None) -> None:
    if token:
        configuration.api_key["BearerToken"] = f"Bearer {token}"
        configuration.api_key_prefix.pop("BearerToken", None)


def _watch_token_file(configuration: Configuration, path: str) -> None:
    source = TokenFile(path)
    source.reload()
    _set_token(configuration, source.current())
    # The client's own hook would put back the token it read at load time.
    cast(Any, configuration).refresh_api_key_hook = _TokenFileHook(source)


def _use_user_token(
    configuration: Configuration, config: Any, loader: KubeConfigLoader
) -> None:
    """
    When the loader took the current user's token from C{token} or C{tokenFile}
    (it prefers an C{auth-provider}), replace its refresh hook: nothing to
    refresh for a fixed token; a token file is followed.
    """
    context = loader.current_context.get("context") or {}
    name = context.get("user")
    if not name or not config.safe_get("users"):
        return
    entry = config["users"].get_with_name(name, safe=True)
    user = entry.safe_get("user") if entry is not None else None
    if not isinstance(user, dict) or "auth-provider" in user:
        return
    if user.get("token"):
        cast(Any, configuration).refresh_api_key_hook = None
    elif user.get("tokenFile"):
        base = os.path.abspath(os.path.dirname(entry.path)) if entry.path else ""
        path = os.path.normpath(os.path.join(base, str(user["tokenFile"])))
        _watch_token_file(configuration, path)


def _finish(client: ApiClient, threads: int) -> ApiClient:
    # One connection per pool thread: watches hold theirs for minutes.
    client.configuration.connection_pool_maxsize = max(threads, 1)
    client.rest_client.close()
    client.rest_client = type(client.rest_client)(client.configuration)
    client.user_agent = "clusternet"
    return client


def _from_kubeconfig(kubeconfig: str, context: str | None) -> Configuration:
    merged = KubeConfigMerger(kubeconfig)
    if merged.config is None:
        raise ConfigException("Invalid kube-config file. No configuration found.")
    loader = KubeConfigLoader(
        config_dict=merged.config, active_context=context, config_base_path=None
    )
    configuration = Configuration()
    loader.load_and_set(configuration)
    _use_user_token(configuration, merged.config, loader)
    return configuration


def _in_cluster() -> Configuration:
    configuration = Configuration()
    incluster_config.InClusterConfigLoader(
        token_filename=SERVICE_TOKEN_FILENAME,
        cert_filename=SERVICE_CERT_FILENAME,
        try_refresh_token=False,
    ).load_and_set(configuration)
    _watch_token_file(configuration, SERVICE_TOKEN_FILENAME)
    return configuration


def load_api_client(
    kubeconfig: str | None = None, context: str | None = None, threads: int = 10
) -> ApiClient:
    """
    An C{ApiClient} from the kubeconfig file C{kubeconfig} (its current context,
    or C{context}), or from the pod's service account when C{kubeconfig} is
    C{None}.  A token file (kubeconfig C{tokenFile}, the pod's projected token)
    is checked before each call and read again when it changed.

    @raise KubeConfigError: the configuration cannot be loaded.
    """
    try:
        if kubeconfig is not None:
            configuration = _from_kubeconfig(kubeconfig, context)
        else:
            configuration = _in_cluster()
    except (
        ConfigException,
        OSError,
        ValueError,
        TypeError,
        KeyError,
        yaml.YAMLError,
    ) as e:
        where = kubeconfig if kubeconfig is not None else "in-cluster configuration"
        raise KubeConfigError(f"cannot load {where}: {e}") from None
    return _finish(ApiClient(configuration=configuration), threads)


def api_client_for_token(
    server: str,
    token: str | ITokenSource,
    ca_pem: bytes | None = None,
    insecure_skip_tls_verify: bool = False,
    tls_server_name: str | None = None,
    threads: int = 10,
) -> ApiClient:
    """
    An C{ApiClient} for C{server} authenticating with the bearer C{token}, verifying
    the server against C{ca_pem} (the system trust store when C{None}), as the
    agent talks to its parent.  A token source is asked for its current token
    before every call.
    """
    configuration = Configuration(host=server.rstrip("/"))
    if isinstance(token, str):
        configuration.api_key["BearerToken"] = token
        configuration.api_key_prefix["BearerToken"] = "Bearer"
    else:
        source = token
        _set_token(configuration, source.current())
        cast(Any, configuration).refresh_api_key_hook = lambda conf: _set_token(
            conf, source.current()
        )
    if ca_pem:
        configuration.ca_cert_data = ca_pem.decode("ascii")
    configuration.verify_ssl = not insecure_skip_tls_verify
    if tls_server_name:
        configuration.tls_server_name = tls_server_name
    return _finish(ApiClient(configuration=configuration), threads)


def _token_source(value: str | ITokenSource | None) -> ITokenSource | None:
    if isinstance(value, str):
        return StaticToken(value) if value else None
    return value


@frozen
class ConnectionInfo:
    """
    Where a client connects and how it authenticates: what the agent's proxy and
    the hub's TLS need from a loaded configuration.

    @ivar token: where the current bearer token comes from (a string given here
        becomes a L{StaticToken}); never a copy of a rotating token.
    """

    server: str
    ca_pem: bytes | None = field(default=None, repr=False)
    client_cert_pem: bytes | None = field(default=None, repr=False)
    client_key_pem: bytes | None = field(default=None, repr=False)
    token: ITokenSource | None = field(
        default=None, repr=False, converter=_token_source
    )
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise KubeConfigError(f"cannot read {path}: {e.strerror}") from None


def _configured_header(conf: Configuration) -> str | None:
    """
    The C{Authorization} value C{conf} holds now, without running its hook.
    """
    key = conf.api_key.get("BearerToken", conf.api_key.get("authorization"))
    if not key:
        return None
    prefix = conf.api_key_prefix.get(
        "BearerToken", conf.api_key_prefix.get("authorization")
    )
    return f"{prefix} {key}" if prefix else str(key)


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return header


def _token_source_of(conf: Configuration) -> ITokenSource | None:
    hook: Any = conf.refresh_api_key_hook
    if isinstance(hook, _TokenFileHook):
        return hook.source
    if hook is not None:
        return ConfigurationToken(conf)
    return _token_source(_bearer(_configured_header(conf)))


def connection_info(client: ApiClient) -> ConnectionInfo:
    """
    The server URL, CA, client certificate and bearer token source of C{client}.
    """
    conf = client.configuration
    ca = _read(conf.ssl_ca_cert)
    if ca is None and conf.ca_cert_data:
        data = conf.ca_cert_data
        ca = data.encode("ascii") if isinstance(data, str) else bytes(data)
    return ConnectionInfo(
        server=conf.host,
        ca_pem=ca,
        client_cert_pem=_read(conf.cert_file),
        client_key_pem=_read(conf.key_file),
        token=_token_source_of(conf),
        insecure_skip_tls_verify=not conf.verify_ssl,
        tls_server_name=conf.tls_server_name or None,
    )


class TokenRefresher:
    """
    Keeps an L{ITokenSource} current for code on the reactor thread: reloads it
    on a thread of C{threadpool} (the reactor's by default) every C{interval}
    seconds once started, and at once on L{refresh}.  Concurrent refreshes
    share the reload in flight and at most one more.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        source: ITokenSource,
        interval: float = TOKEN_CHECK_INTERVAL,
        threadpool: Any = None,
    ) -> None:
        self._reactor = reactor
        self.source = source
        self._interval = interval
        self._threadpool = threadpool
        self._loop: LoopingCall | None = None
        self._busy = False
        self._current: list[Deferred[None]] = []
        self._next: list[Deferred[None]] = []

    def current(self) -> str | None:
        """
        The source's current token (no I/O).
        """
        return self.source.current()

    def start(self) -> None:
        """
        Reload every C{interval} seconds (nothing to do for a static token).
        """
        if self._loop is not None or not self.source.rotates:
            return
        self._loop = LoopingCall(self.refresh)
        self._loop.clock = self._reactor
        self._loop.start(self._interval, now=False)

    def stop(self) -> Deferred[None]:
        """
        Stop reloading; fires when no reload is in flight any more.
        """
        if self._loop is not None:
            if self._loop.running:
                self._loop.stop()
            self._loop = None
        if not self._busy:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._current.append(done)
        return done

    def refresh(self) -> Deferred[None]:
        """
        Reload now; fires once a reload that started after this call is over.
        """
        if not self.source.rotates:
            return succeed(None)
        done: Deferred[None] = Deferred()
        if self._busy:
            self._next.append(done)
        else:
            self._current.append(done)
            self._run()
        return done

    def _run(self) -> None:
        self._busy = True
        pool = self._threadpool
        if pool is None:
            pool = self._reactor.getThreadPool()
        reloading: Deferred[None] = deferToThreadPool(
            self._reactor, pool, self.source.reload
        )
        reloading.addErrback(self._failed)
        reloading.addBoth(self._done)

    def _failed(self, failure: Failure) -> None:
        self._log.failure("Reloading {source} failed", failure, source=self.source)

    def _done(self, _: object) -> None:
        waiting, self._current = self._current, []
        self._busy = False
        if self._next:
            self._current, self._next = self._next, []
            self._run()
        for done in waiting:
            done.callback(None)
