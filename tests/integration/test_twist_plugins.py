"""
The installed C{twist} plugins, run as real processes.
"""

import json
import re
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from support.processes import clean_env, command, twist


def run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=60
    )


def test_twist_lists_both_plugins(tmp_path: Path) -> None:
    result = run(command("twist"), "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "clusternet-hub" in result.stdout
    assert "clusternet-agent" in result.stdout


def test_agent_help_documents_defaults(tmp_path: Path) -> None:
    result = run(command("twist"), "clusternet-agent", "--help", cwd=tmp_path)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--cluster-status-update-frequency=" in text
    assert re.search(r"--cluster-status-update-frequency=.*?\[default: 3m\]", text)
    assert "[default: EdgeClusterSelfProvisioned]" in text


def test_hub_help_works(tmp_path: Path) -> None:
    result = run(command("twist"), "clusternet-hub", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "--requestheader-client-ca-file" in result.stdout
    assert "[default: 443]" in " ".join(result.stdout.split())


def test_bad_value_exits_64_naming_the_flag(tmp_path: Path) -> None:
    result = run(
        command("twist"),
        "clusternet-agent",
        "--cluster-status-update-frequency=banana",
        cwd=tmp_path,
    )
    assert result.returncode == 64
    output = result.stdout + result.stderr
    first = output.strip().splitlines()[0]
    assert first.startswith("Error:")
    assert "--cluster-status-update-frequency" in first
    assert "Traceback" not in output


def test_unknown_flag_exits_64(tmp_path: Path) -> None:
    result = run(command("twist"), "clusternet-hub", "--bogus", cwd=tmp_path)
    assert result.returncode == 64
    assert (result.stdout + result.stderr).strip().startswith("Error:")


UNREACHABLE_PARENT = """\
apiVersion: v1
kind: Config
clusters:
- name: parent
  cluster: {server: "https://127.0.0.1:9", insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: not-a-real-token}
contexts:
- name: parent
  context: {cluster: parent, user: admin}
current-context: parent
"""


def test_hub_without_parent_config_exits_with_one_line(tmp_path: Path) -> None:
    result = run(command("twist"), "clusternet-hub", "--secure-port=0", cwd=tmp_path)
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output
    assert output.splitlines()[-1].startswith("Error: parent cluster: cannot load")


def test_hub_serves_probes_and_exits_zero_on_sigterm(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "parent.kubeconfig"
    kubeconfig.write_text(UNREACHABLE_PARENT)
    with twist(
        "clusternet-hub",
        ["--secure-port=0", "--bind-address=127.0.0.1", f"--kubeconfig={kubeconfig}"],
        tmp_path,
    ) as hub:
        event = hub.wait_for_event("Site (TLS) starting on")
        port = int(re.search(r"starting on (\d+)", json.dumps(event)).group(1))  # type: ignore[union-attr]
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        for path in ("/healthz", "/livez"):
            with urllib.request.urlopen(
                f"https://127.0.0.1:{port}{path}", context=context, timeout=10
            ) as response:
                assert response.read() == b"ok"
        for path, code, needle in (
            ("/readyz?verbose", 500, b"[-]informer-sync failed"),
            ("/apis/proxies.clusternet.io/v1alpha1", 401, b'"reason": "Unauthorized"'),
        ):
            try:
                urllib.request.urlopen(
                    f"https://127.0.0.1:{port}{path}", context=context, timeout=10
                )
            except urllib.error.HTTPError as e:
                assert e.code == code, path
                assert needle in e.read(), path
            else:
                raise AssertionError(f"{path} must answer {code}")
        started = time.monotonic()
        assert hub.terminate(timeout=10) == 0, hub.explain()
        assert time.monotonic() - started < 10
        events = hub.events()
        assert any("SIGTERM received" in e.get("log_format", "") for e in events)


def test_agent_starts_and_exits_zero_on_sigterm(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "child.kubeconfig"
    kubeconfig.write_text(UNREACHABLE_PARENT)
    with twist(
        "clusternet-agent",
        [
            f"--kubeconfig={kubeconfig}",
            "--cluster-reg-parent-url=https://127.0.0.1:6443",
            "--cluster-reg-token=07401b.f395accd246ae52d",
        ],
        tmp_path,
    ) as agent:
        agent.wait_for_event("clusternet-agent starting")
        # Running: its reactor has reported back a call to the (unreachable)
        # child.  A SIGTERM while the reactor starts is covered against a
        # real reactor in tests/unit/test_runtime.py.
        agent.wait_for_event("Cannot ensure namespace")
        assert agent.terminate(timeout=10) == 0, agent.explain()
        assert "f395accd246ae52d" not in agent.log.read_text()
        events = agent.events()
        assert any("SIGTERM received" in e.get("log_format", "") for e in events)


def test_clusternet_console_script_help(tmp_path: Path) -> None:
    result = run(command("clusternet"), "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "twist clusternet-hub" in result.stdout
