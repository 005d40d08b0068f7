"""
The deploy tree: every manifest parses, names agree with the code, and the flags
the Deployments and the systemd unit pass exist in the plugins' options.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusternet.agent import AgentOptions
from clusternet.apis import (
    BOOTSTRAP_GROUP,
    EDGE_SYSTEM_NAMESPACE,
    HUB_NAMESPACE,
    PROXIES_GROUP,
    PROXIES_VERSION,
    REGISTRATION_SECRET_NAME,
    REGISTRATION_SECRET_TOKEN_KEY,
    REGISTRATION_SECRET_URL_KEY,
)
from clusternet.hub import HubOptions

ROOT = Path(__file__).resolve().parents[3]
YAML_FILES = sorted(
    p for d in ("deploy", "manifests") for p in (ROOT / d).rglob("*.yaml")
)
KNOWN_KINDS = {
    ("v1", "Namespace"),
    ("v1", "ServiceAccount"),
    ("v1", "Service"),
    ("v1", "Secret"),
    ("apps/v1", "Deployment"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ("apiregistration.k8s.io/v1", "APIService"),
}
TWIST_OPTIONS = {"--log-format", "--log-level", "--log-file", "--reactor"}
SAMPLE_ENV = {
    "PARENT_URL": "https://parent.example.com:6443",
    "REG_TOKEN": "07401b.f395accd246ae52d",
    "AGENT_ARGS": "",
}


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def all_docs() -> list[dict[str, Any]]:
    return [d for p in YAML_FILES for d in docs(p)]


def find(kind: str, name: str) -> dict[str, Any]:
    for doc in all_docs():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name}")


def test_the_tree_has_the_seeds_files() -> None:
    names = {str(p.relative_to(ROOT)) for p in YAML_FILES}
    for expected in (
        "deploy/hub/clusternet_hub_deployment.yaml",
        "deploy/hub/clusternet_hub_rbac.yaml",
        "deploy/hub/clusternet_hub_apiservice.yaml",
        "deploy/hub/clusternet_hub_serving_rbac.yaml",
        "deploy/hub/clusternet_bootstrap_rbac.yaml",
        "deploy/agent/clusternet_agent_deployment.yaml",
        "deploy/agent/clusternet_agent_rbac.yaml",
        "deploy/templates/clusternet_agent_secret.yaml",
        "manifests/samples/cluster_bootstrap_token.yaml",
        "manifests/crds/clusters.clusternet.io_clusterregistrationrequests.yaml",
        "manifests/crds/clusters.clusternet.io_managedclusters.yaml",
    ):
        assert expected in names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_manifest_parses_with_known_kinds(path: Path) -> None:
    found = docs(path)
    assert found, f"{path} is empty"
    for doc in found:
        assert (doc.get("apiVersion"), doc.get("kind")) in KNOWN_KINDS, doc
        assert doc["metadata"]["name"]


def test_agent_secret_template_has_exactly_the_two_variables() -> None:
    text = (ROOT / "deploy/templates/clusternet_agent_secret.yaml").read_text()
    assert sorted(set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))) == [
        "PARENTURL",
        "REGTOKEN",
    ]
    secret = docs(ROOT / "deploy/templates/clusternet_agent_secret.yaml")[0]
    assert secret["metadata"] == {
        "name": REGISTRATION_SECRET_NAME,
        "namespace": EDGE_SYSTEM_NAMESPACE,
    }
    assert set(secret["stringData"]) == {
        REGISTRATION_SECRET_URL_KEY,
        REGISTRATION_SECRET_TOKEN_KEY,
    }


def _container(name: str) -> dict[str, Any]:
    return find("Deployment", name)["spec"]["template"]["spec"]["containers"][0]


def _plugin_args(args: list[str], plugin: str) -> list[str]:
    position = args.index(plugin)
    for option in args[:position]:
        assert option.split("=")[0] in TWIST_OPTIONS, option
    return [
        re.sub(r"\$\((\w+)\)", lambda m: SAMPLE_ENV[m.group(1)], a)
        for a in args[position + 1 :]
    ]


def test_hub_deployment_flags_exist_and_parse() -> None:
    container = _container("clusternet-hub")
    options = HubOptions()
    options.parseOptions(_plugin_args(container["args"], "clusternet-hub"))
    port = options["secure-port"]
    assert {"name": "https", "containerPort": port, "protocol": "TCP"} in container[
        "ports"
    ]
    assert (
        find("Deployment", "clusternet-hub")["metadata"]["namespace"] == HUB_NAMESPACE
    )


def test_agent_deployment_flags_exist_and_parse_with_three_replicas() -> None:
    deployment = find("Deployment", "clusternet-agent")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["metadata"]["namespace"] == EDGE_SYSTEM_NAMESPACE
    container = _container("clusternet-agent")
    options = AgentOptions()
    options.parseOptions(_plugin_args(container["args"], "clusternet-agent"))
    assert options["cluster-reg-parent-url"] == SAMPLE_ENV["PARENT_URL"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert refs["PARENT_URL"] == {
        "name": REGISTRATION_SECRET_NAME,
        "key": REGISTRATION_SECRET_URL_KEY,
    }
    assert refs["REG_TOKEN"] == {
        "name": REGISTRATION_SECRET_NAME,
        "key": REGISTRATION_SECRET_TOKEN_KEY,
    }


def test_apiservice_points_at_the_hub_service() -> None:
    apiservice = find("APIService", f"{PROXIES_VERSION}.{PROXIES_GROUP}")
    assert apiservice["spec"]["group"] == PROXIES_GROUP
    assert apiservice["spec"]["version"] == PROXIES_VERSION
    service = apiservice["spec"]["service"]
    hub_service = find("Service", service["name"])
    assert hub_service["metadata"]["namespace"] == service["namespace"]
    assert service["port"] in [p["port"] for p in hub_service["spec"]["ports"]]


def test_the_parent_verifies_the_hub() -> None:
    """
    No manifest skips TLS verification of the hub: the hub sets the
    APIService's caBundle itself, with the rights its serving RBAC grants, on
    exactly its own Secret and APIService.
    """
    options = HubOptions()
    options.parseOptions([])
    apiservice = find("APIService", options["apiservice-name"])
    assert "insecureSkipTLSVerify" not in apiservice["spec"]
    for doc in all_docs():
        assert "insecureSkipTLSVerify" not in (doc.get("spec") or {}), doc
    rbac = docs(ROOT / "deploy/hub/clusternet_hub_serving_rbac.yaml")
    role = find("Role", "clusternet:hub:serving")
    assert role["metadata"]["namespace"] == HUB_NAMESPACE
    by_verb = {
        verb: rule.get("resourceNames")
        for rule in role["rules"]
        if rule["resources"] == ["secrets"]
        for verb in rule["verbs"]
    }
    assert by_verb == {
        "get": [options["serving-secret"]],
        "update": [options["serving-secret"]],
        "create": None,  # RBAC cannot limit create by name
    }
    cluster_role = find("ClusterRole", "clusternet:hub:apiservice")
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["apiregistration.k8s.io"],
            "resources": ["apiservices"],
            "resourceNames": [options["apiservice-name"]],
            "verbs": ["list", "watch", "patch"],
        }
    ]
    bindings = [d for d in rbac if d["kind"].endswith("Binding")]
    assert {b["roleRef"]["name"] for b in bindings} == {
        "clusternet:hub:serving",
        "clusternet:hub:apiservice",
    }
    for binding in bindings:
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": "clusternet-hub",
                "namespace": HUB_NAMESPACE,
            }
        ]


def test_bootstrap_tokens_may_only_create_and_get_registrations() -> None:
    role = find("ClusterRole", "clusternet:system:bootstrapping")
    assert role["rules"] == [
        {
            "apiGroups": ["clusters.clusternet.io"],
            "resources": ["clusterregistrationrequests"],
            "verbs": ["get", "create"],
        }
    ]
    binding = find("ClusterRoleBinding", "clusternet:system:bootstrapping")
    assert binding["subjects"][0]["name"] == BOOTSTRAP_GROUP
    token = docs(ROOT / "manifests/samples/cluster_bootstrap_token.yaml")[0]
    assert token["stringData"]["auth-extra-groups"] == BOOTSTRAP_GROUP
    assert (token["stringData"]["token-id"], token["stringData"]["token-secret"]) == (
        "07401b",
        "f395accd246ae52d",
    )


def _unit() -> dict[str, str]:
    text = (ROOT / "deploy/systemd/clusternet-agent.service").read_text()
    text = text.replace("\\\n", " ")
    values: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def test_systemd_unit_restarts_runs_unprivileged_and_its_flags_parse(
    tmp_path: Path,
) -> None:
    unit = _unit()
    assert unit["Restart"] == "on-failure"
    assert unit["User"] == "clusternet"
    assert unit["EnvironmentFile"].startswith("/etc/clusternet/")
    assert unit["NoNewPrivileges"] == "yes"
    assert unit["ProtectSystem"] == "strict"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("")
    words = shlex.split(unit["ExecStart"])
    assert words[0].endswith("/twist")
    args = [
        re.sub(r"\$\{?(\w+)\}?", lambda m: SAMPLE_ENV[m.group(1)], w)
        for w in words[1:]
        if w != "$AGENT_ARGS"
    ]
    args = [a.replace("/etc/clusternet/kubeconfig", str(kubeconfig)) for a in args]
    options = AgentOptions()
    options.parseOptions(_plugin_args(args, "clusternet-agent"))
    assert options["kubeconfig"] == str(kubeconfig)


def test_dockerfile_runs_twist_as_a_non_root_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert re.search(r"^USER 65532", text, re.M)
    assert 'ENTRYPOINT ["twist"]' in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".git" in ignored


def test_the_agent_may_impersonate_exactly_the_extras_it_passes_on() -> None:
    """
    RBAC has no wildcard for user extra keys (C{userextras/*} matches none):
    the agent's ClusterRole names C{userextras/<key>} for each key of its
    default C{--impersonate-extras}, and nothing else in that group.
    """
    options = AgentOptions()
    options.parseOptions([])
    role = find("ClusterRole", "clusternet:agent")
    granted = [
        resource
        for rule in role["rules"]
        if "authentication.k8s.io" in rule.get("apiGroups", [])
        and "impersonate" in rule["verbs"]
        for resource in rule["resources"]
    ]
    assert sorted(granted) == sorted(
        f"userextras/{key}" for key in options["impersonate-extras"]
    )
    assert not [r for r in granted if r.endswith("/*") or r == "*"]
