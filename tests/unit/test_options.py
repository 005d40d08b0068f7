"""
The twist plugins' options: every flag parses, bad values are refused naming
the flag, defaults are what the help text says.
"""

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twisted.python.usage import UsageError

from clusternet._options import coerce_byte_size
from clusternet.agent import AgentOptions
from clusternet.agent._identity import KUBERNETES_EXTRAS
from clusternet.hub import HubOptions


def parse(options_class: type, *argv: str) -> Any:
    options = options_class()
    options.parseOptions(list(argv))
    return options


def test_agent_defaults() -> None:
    options = parse(AgentOptions)
    assert options["cluster-status-update-frequency"] == 180.0
    assert options["cluster-status-collect-frequency"] == 20.0
    assert options["cluster-type"] == "EdgeClusterSelfProvisioned"
    assert options["cluster-reg-namespace"] == "edge-system"
    assert options["parent-secret"] == "parent-cluster"
    assert options["cluster-reg-secret"] == "clusternet-agent-cluster-registration"
    assert options["cluster-reg-name-prefix"] == "clusternet-cluster"
    assert options["leader-elect"] is True
    assert options["lease-duration"] == 15.0
    assert options["cluster-reg-insecure-skip-tls-verify"] == 0
    assert options["impersonate-extras"] == KUBERNETES_EXTRAS


def test_agent_impersonate_extras() -> None:
    assert parse(AgentOptions, "--impersonate-extras=*")["impersonate-extras"] is None
    assert parse(AgentOptions, "--impersonate-extras=")["impersonate-extras"] == ()
    assert parse(AgentOptions, "--impersonate-extras=A/b, c")["impersonate-extras"] == (
        "a/b",
        "c",
    )
    with pytest.raises(UsageError, match="--impersonate-extras"):
        parse(AgentOptions, "--impersonate-extras=a,*")


def test_agent_every_flag_parses(tmp_path: Any) -> None:
    kubeconfig = tmp_path / "child.kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    options = parse(
        AgentOptions,
        f"--kubeconfig={kubeconfig}",
        "--cluster-id=0b9f5e4a-7f1c-4c39-9d7e-3f2b4b8a1c2d",
        "--cluster-reg-parent-url=https://parent.example.com:6443",
        "--cluster-reg-token=07401b.f395accd246ae52d",
        f"--cluster-reg-parent-ca-file={ca}",
        "--cluster-reg-name=edge-1",
        "--cluster-reg-name-prefix=edge",
        "--cluster-type=EdgeClusterSelfProvisioned",
        "--cluster-reg-namespace=other-system",
        "--cluster-reg-secret=reg",
        "--parent-secret=parent",
        "--cluster-status-collect-frequency=10s",
        "--cluster-status-update-frequency=1h30m",
        "--leader-elect=false",
        "--lease-duration=30s",
        "--renew-deadline=20s",
        "--retry-period=5s",
        "--metrics-listen=tcp:9091:interface=127.0.0.1",
        "--kube-threads=4",
        "--shutdown-timeout=5s",
        "--cluster-reg-insecure-skip-tls-verify",
        "--tunnel-queue=64Ki",
    )
    assert options["tunnel-queue"] == 65536
    assert options["cluster-status-update-frequency"] == 5400.0
    assert options["cluster-reg-parent-url"] == "https://parent.example.com:6443"
    assert options["leader-elect"] is False
    assert options["kube-threads"] == 4
    assert options["cluster-reg-insecure-skip-tls-verify"] == 1


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (
            ["--cluster-status-update-frequency=banana"],
            "--cluster-status-update-frequency",
        ),
        (
            ["--cluster-status-collect-frequency=-5s"],
            "--cluster-status-collect-frequency",
        ),
        (["--cluster-reg-parent-url=not a url"], "--cluster-reg-parent-url"),
        (["--cluster-reg-parent-url=ftp://x"], "--cluster-reg-parent-url"),
        (["--cluster-reg-name=Not_Valid"], "--cluster-reg-name"),
        (["--cluster-reg-name=" + "a" * 61], "--cluster-reg-name"),
        (["--cluster-type=Managed"], "--cluster-type"),
        (["--leader-elect=maybe"], "--leader-elect"),
        (["--kube-threads=0"], "--kube-threads"),
        (["--lease-duration=5s"], "--lease-duration"),
        (["--cluster-reg-token=short"], "--cluster-reg-token"),
        (["--kubeconfig=/nonexistent/kubeconfig"], "--kubeconfig"),
        (["--cluster-status-update-frequency=0"], "--cluster-status-update-frequency"),
        (["--tunnel-queue=1Ki"], "--tunnel-queue"),
        (["--tunnel-queue=lots"], "--tunnel-queue"),
    ],
)
def test_agent_bad_values_name_the_flag(argv: list[str], flag: str) -> None:
    with pytest.raises(UsageError, match=flag):
        parse(AgentOptions, *argv)


def test_agent_unknown_flag_refused() -> None:
    with pytest.raises(UsageError, match="no-such-flag"):
        parse(AgentOptions, "--no-such-flag=1")


def test_agent_token_never_echoed() -> None:
    secret = "NOT-A-TOKEN-SECRET-VALUE"
    with pytest.raises(UsageError) as caught:
        parse(AgentOptions, f"--cluster-reg-token={secret}")
    assert secret not in str(caught.value)
    options = parse(AgentOptions, "--cluster-reg-token=07401b.f395accd246ae52d")
    assert "f395accd246ae52d" not in repr(options)


def test_hub_defaults() -> None:
    options = parse(HubOptions)
    assert options["secure-port"] == 443
    assert options["bind-address"] == "0.0.0.0"
    assert options["requestheader-username-headers"] == "X-Remote-User"
    assert options["requestheader-allowed-names"] == []
    assert options["cluster-lease-grace-period"] == 40.0
    assert options["tunnel-queue"] is None


def test_hub_every_flag_parses(tmp_path: Any) -> None:
    files = {}
    for name in ("kubeconfig", "tls.crt", "tls.key", "client-ca", "front-proxy-ca"):
        path = tmp_path / name
        path.write_text("x")
        files[name] = str(path)
    options = parse(
        HubOptions,
        f"--kubeconfig={files['kubeconfig']}",
        "--secure-port=6443",
        "--bind-address=127.0.0.1",
        f"--tls-cert-file={files['tls.crt']}",
        f"--tls-private-key-file={files['tls.key']}",
        f"--client-ca-file={files['client-ca']}",
        f"--requestheader-client-ca-file={files['front-proxy-ca']}",
        "--requestheader-allowed-names=front-proxy-client, aggregator",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--metrics-listen=tcp:9090:interface=127.0.0.1",
        "--kube-threads=3",
        "--cluster-lease-grace-period=1m",
        "--shutdown-timeout=2s",
        "--tunnel-queue=262144",
    )
    assert options["tunnel-queue"] == 256 * 1024
    assert options["secure-port"] == 6443
    assert options["requestheader-allowed-names"] == [
        "front-proxy-client",
        "aggregator",
    ]
    assert options["cluster-lease-grace-period"] == 60.0


def test_hub_listen_endpoint() -> None:
    options = parse(HubOptions, "--listen=ssl:6443:privateKey=k.pem:certKey=c.pem")
    assert options["listen"].startswith("ssl:6443")


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--secure-port=70000"], "--secure-port"),
        (["--secure-port=https"], "--secure-port"),
        (["--cluster-lease-grace-period=soon"], "--cluster-lease-grace-period"),
        (["--tls-cert-file=/nonexistent"], "--tls-private-key-file"),
        (["--kube-threads=-1"], "--kube-threads"),
        (["--tunnel-queue=-1"], "--tunnel-queue"),
    ],
)
def test_hub_bad_values_name_the_flag(argv: list[str], flag: str) -> None:
    with pytest.raises(UsageError, match=flag):
        parse(HubOptions, *argv)


def test_agent_token_from_a_file(tmp_path: Any) -> None:
    token = tmp_path / "token"
    token.write_text("07401b.f395accd246ae52d\n")
    options = parse(AgentOptions, f"--cluster-reg-token-file={token}")
    assert options["cluster-reg-token"] == "07401b.f395accd246ae52d"
    token.write_text("not-a-token")
    with pytest.raises(UsageError, match="--cluster-reg-token"):
        parse(AgentOptions, f"--cluster-reg-token-file={token}")
    with pytest.raises(UsageError, match="not both"):
        parse(
            AgentOptions,
            f"--cluster-reg-token-file={token}",
            "--cluster-reg-token=07401b.f395accd246ae52d",
        )


@pytest.mark.parametrize(
    ("text", "size"),
    [("0", 0), ("65536", 65536), ("64Ki", 65536), ("1Mi", 1 << 20), ("2Gi", 2 << 30)],
)
def test_byte_sizes(text: str, size: int) -> None:
    assert coerce_byte_size(text) == size


@given(st.text(max_size=12))
def test_a_byte_size_parses_or_fails_with_a_message(text: str) -> None:
    try:
        size = coerce_byte_size(text)
    except ValueError as e:
        assert repr(text) in str(e)
    else:
        assert size >= 0


@given(st.integers(0, 10**6), st.sampled_from(["", "Ki", "Mi", "Gi"]))
def test_byte_sizes_round_trip(number: int, suffix: str) -> None:
    unit = {"": 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}[suffix]
    assert coerce_byte_size(f"{number}{suffix}") == number * unit


def test_tunnel_queue_auto_and_zero() -> None:
    assert parse(AgentOptions)["tunnel-queue"] is None
    assert parse(HubOptions, "--tunnel-queue=auto")["tunnel-queue"] is None
    assert parse(AgentOptions, "--tunnel-queue=0")["tunnel-queue"] == 0
