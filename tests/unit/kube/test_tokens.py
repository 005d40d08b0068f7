"""
Bearer token sources: a token file read again when it changes (and only then),
the in-cluster token, a client's own refresh hook, and L{TokenRefresher} keeping
a source current from a thread.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from kubernetes.client import ApiClient, Configuration

from twisted.logger import Logger, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from clusternet.kube import (
    ConfigurationToken,
    ConnectionInfo,
    ITokenSource,
    StaticToken,
    TokenFile,
    TokenRefresher,
    _config,
    connection_info,
    load_api_client,
)
from clusternet.kube.testing import ImmediateReactor

CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


class QueuedThreadPool:
    """
    Holds each call until the test runs it, as a pool thread would.
    """

    def __init__(self) -> None:
        self.queue: list[tuple[Callable[[bool, object], None], Callable[[], Any]]] = []

    def callInThreadWithCallback(
        self,
        onResult: Callable[[bool, object], None],
        func: Callable[..., object],
        *args: object,
        **kw: object,
    ) -> None:
        self.queue.append((onResult, lambda: func(*args, **kw)))

    def run_one(self) -> None:
        onResult, call = self.queue.pop(0)
        try:
            result = call()
        except BaseException:
            onResult(False, Failure())
        else:
            onResult(True, result)


def replace(path: Path, text: str) -> None:
    """
    Write C{text} next to C{path} and rename it over C{path} (as a kubelet or a
    secret syncer swaps a token in).
    """
    new = path.with_name(path.name + ".new")
    new.write_text(text)
    os.replace(new, path)


def capture(source: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    source._log = Logger(observer=cast(Any, events.append))
    return events


class TokenFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = Path(self.mktemp())
        self.path.write_text("token-1\n")
        self.source = TokenFile(str(self.path))
        self.source.reload()

    def test_provides_the_interface_and_strips_the_token(self) -> None:
        verifyObject(ITokenSource, self.source)
        assert self.source.current() == "token-1"
        assert "token-1" not in repr(self.source)

    def test_a_replaced_file_gives_the_new_token_after_a_reload(self) -> None:
        replace(self.path, "token-2")
        assert self.source.current() == "token-1"  # no I/O until reloaded
        self.source.reload()
        assert self.source.current() == "token-2"

    def test_a_file_rewritten_in_place_gives_the_new_token(self) -> None:
        self.path.write_text("token-22\n")
        self.source.reload()
        assert self.source.current() == "token-22"

    def test_an_unchanged_file_is_not_read_again(self) -> None:
        opened: list[str] = []

        def spy(path: str, *args: Any) -> Any:
            opened.append(path)
            return open(path, *args)

        _config.open = spy  # type: ignore[attr-defined]  # shadows the builtin
        self.addCleanup(delattr, _config, "open")
        for _ in range(5):
            self.source.reload()
        assert opened == []
        replace(self.path, "token-2")
        self.source.reload()
        self.source.reload()
        assert opened == [str(self.path)]
        assert self.source.current() == "token-2"

    def test_an_unreadable_file_keeps_the_last_token_and_warns_once(self) -> None:
        events = capture(self.source)
        self.path.unlink()
        self.source.reload()
        self.source.reload()
        assert self.source.current() == "token-1"
        assert len(events) == 1
        message = formatEvent(events[0])
        assert str(self.path) in message and "keeping the last token" in message
        assert "token-1" not in repr(events[0])
        assert events[0]["log_level"].name == "warn"

        self.path.write_text("")
        self.source.reload()
        assert self.source.current() == "token-1"
        assert "empty" in formatEvent(events[-1])

        self.path.write_text("token-3")
        self.source.reload()
        assert self.source.current() == "token-3"
        assert all("token-3" not in repr(event) for event in events)

    def test_a_change_is_logged_without_the_token(self) -> None:
        events = capture(self.source)
        replace(self.path, "token-2")
        self.source.reload()
        assert [formatEvent(e) for e in events] == [
            f"Token file {self.path} changed: using its new token"
        ]
        assert "token-2" not in repr(events)


class StaticAndConfigurationTokenTests(SynchronousTestCase):
    def test_a_string_becomes_a_static_token_hidden_from_repr(self) -> None:
        info = ConnectionInfo(server="https://child", token="s3cret")
        token: Any = info.token
        assert isinstance(token, StaticToken)
        verifyObject(ITokenSource, token)
        assert token.current() == "s3cret"
        assert not token.rotates
        assert "s3cret" not in repr(info) and "s3cret" not in repr(token)
        assert ConnectionInfo(server="https://child", token="").token is None

    def test_a_client_hook_is_run_by_reload_only(self) -> None:
        tokens = iter(["fresh-1", "fresh-2"])
        calls: list[str] = []

        def hook(configuration: Configuration) -> None:
            token = next(tokens)
            calls.append(token)
            configuration.api_key["BearerToken"] = f"Bearer {token}"

        configuration = Configuration(host="https://child")
        configuration.api_key["BearerToken"] = "Bearer loaded"
        cast(Any, configuration).refresh_api_key_hook = hook
        source: Any = connection_info(ApiClient(configuration)).token
        assert isinstance(source, ConfigurationToken)
        verifyObject(ITokenSource, source)
        assert source.current() == "loaded"
        assert calls == []
        source.reload()
        assert source.current() == "fresh-1"

    def test_a_failing_client_hook_keeps_the_last_token(self) -> None:
        def hook(configuration: Configuration) -> None:
            raise RuntimeError("exec plugin failed: secret-ish output")

        configuration = Configuration(host="https://child")
        configuration.api_key["BearerToken"] = "Bearer loaded"
        cast(Any, configuration).refresh_api_key_hook = hook
        source = ConfigurationToken(configuration)
        events = capture(source)
        source.reload()
        source.reload()
        assert source.current() == "loaded"
        assert len(events) == 1
        assert "secret-ish" not in formatEvent(events[0])


def write_kubeconfig(directory: Path, user: dict[str, Any]) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "child",
                "cluster": {
                    "server": "https://127.0.0.1:6443",
                    "certificate-authority-data": base64.b64encode(CA).decode(),
                },
            }
        ],
        "users": [{"name": "agent", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "child", "user": "agent"}}],
        "current-context": "c",
    }
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def authorization(client: ApiClient) -> str | None:
    """
    What the client sends on its next call (this runs its hook, as a pool
    thread does before each call).
    """
    value: str | None = client.configuration.get_api_key_with_prefix(
        "BearerToken", alias="authorization"
    )
    return value


def test_kubeconfig_token_file_is_followed_by_info_and_api_client(
    tmp_path: Path,
) -> None:
    (tmp_path / "secrets").mkdir()
    token_path = tmp_path / "secrets" / "token"
    token_path.write_text("token-1\n")
    kubeconfig = write_kubeconfig(tmp_path, {"tokenFile": "secrets/token"})
    client = load_api_client(str(kubeconfig))
    source: Any = connection_info(client).token
    assert isinstance(source, TokenFile)
    assert source.path == str(token_path)
    assert source.current() == "token-1"
    assert authorization(client) == "Bearer token-1"

    replace(token_path, "token-2\n")
    assert authorization(client) == "Bearer token-2"
    assert source.current() == "token-2"  # one source for both


def test_kubeconfig_inline_token_wins_over_token_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file")
    kubeconfig = write_kubeconfig(
        tmp_path, {"token": "inline", "tokenFile": str(tmp_path / "token")}
    )
    client = load_api_client(str(kubeconfig))
    source = connection_info(client).token
    assert source == StaticToken("inline")
    assert authorization(client) == "Bearer inline"


def test_in_cluster_token_file_is_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_path = tmp_path / "token"
    token_path.write_text("pod-token-1")
    ca_path = tmp_path / "ca.crt"
    ca_path.write_bytes(CA)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setattr(_config, "SERVICE_TOKEN_FILENAME", str(token_path))
    monkeypatch.setattr(_config, "SERVICE_CERT_FILENAME", str(ca_path))
    client = load_api_client(None)
    info = connection_info(client)
    assert info.server == "https://10.0.0.1:443"
    assert info.ca_pem == CA
    source: Any = info.token
    assert isinstance(source, TokenFile)
    assert source.current() == "pod-token-1"
    assert authorization(client) == "Bearer pod-token-1"

    replace(token_path, "pod-token-2")
    assert authorization(client) == "Bearer pod-token-2"


@implementer(ITokenSource)
class FakeSource:
    rotates = True

    def __init__(self) -> None:
        self.value = "t-0"
        self.reloads = 0

    def current(self) -> str | None:
        return self.value

    def reload(self) -> None:
        self.reloads += 1
        self.value = f"t-{self.reloads}"


class TokenRefresherTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = ImmediateReactor()
        self.pool = QueuedThreadPool()

    def test_reloads_a_replaced_file_on_a_thread_every_interval(self) -> None:
        path = Path(self.mktemp())
        path.write_text("token-1")
        source = TokenFile(str(path))
        refresher = TokenRefresher(self.clock, source, interval=2, threadpool=self.pool)
        refresher.start()
        self.clock.advance(2)
        assert len(self.pool.queue) == 1
        assert refresher.current() is None  # the reactor thread read nothing
        self.pool.run_one()
        assert refresher.current() == "token-1"

        replace(path, "token-2")
        self.clock.advance(1.9)
        assert self.pool.queue == []
        self.clock.advance(0.1)
        self.pool.run_one()
        assert refresher.current() == "token-2"
        self.successResultOf(refresher.stop())
        assert self.clock.getDelayedCalls() == []

    def test_refreshes_share_the_reload_in_flight_and_one_more(self) -> None:
        source = FakeSource()
        refresher = TokenRefresher(self.clock, source, threadpool=self.pool)
        first = refresher.refresh()
        second = refresher.refresh()
        third = refresher.refresh()
        assert len(self.pool.queue) == 1
        self.pool.run_one()
        self.successResultOf(first)
        self.assertNoResult(second)
        assert len(self.pool.queue) == 1
        self.pool.run_one()
        self.successResultOf(second)
        self.successResultOf(third)
        assert source.reloads == 2
        assert self.pool.queue == []

    def test_stop_waits_for_the_reload_in_flight(self) -> None:
        refresher = TokenRefresher(self.clock, FakeSource(), 1, self.pool)
        refresher.start()
        self.clock.advance(1)
        stopped = refresher.stop()
        self.assertNoResult(stopped)
        self.pool.run_one()
        self.successResultOf(stopped)
        assert self.clock.getDelayedCalls() == []

    def test_a_static_token_is_never_reloaded(self) -> None:
        refresher = TokenRefresher(self.clock, StaticToken("x"), 1, self.pool)
        refresher.start()
        self.clock.advance(10)
        self.successResultOf(refresher.refresh())
        assert self.pool.queue == []
        assert refresher.current() == "x"
