# ruff: noqa: E501  (long human-readable messages and descriptions, kept verbatim)
"""
The real kubectl against a running sandbox.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.support.sandbox import KUBECTL, Sandbox

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        KUBECTL is None, reason="kubectl is not installed on this machine"
    ),
]

CRD = textwrap.dedent(
    """
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: gadgets.kubectl.example.com
    spec:
      group: kubectl.example.com
      scope: Namespaced
      names: {kind: Gadget, plural: gadgets, singular: gadget, shortNames: [gdg], categories: [gizmos]}
      versions:
      - name: v1
        served: true
        storage: true
        subresources: {status: {}}
        additionalPrinterColumns:
        - {name: Color, type: string, jsonPath: .spec.color}
        - {name: Size, type: integer, jsonPath: .spec.size, priority: 1}
        - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
        schema:
          openAPIV3Schema:
            type: object
            properties:
              spec:
                type: object
                description: What the gadget should be.
                properties:
                  color: {type: string, description: The colour of the gadget.}
                  size: {type: integer, minimum: 1}
              status:
                type: object
                properties:
                  phase: {type: string}
    """
)


def manifest(namespace: str, color: str = "blue") -> str:
    return textwrap.dedent(
        f"""
        apiVersion: v1
        kind: Namespace
        metadata: {{name: {namespace}}}
        ---
        apiVersion: kubectl.example.com/v1
        kind: Gadget
        metadata: {{name: g1, namespace: {namespace}}}
        spec: {{color: {color}, size: 3}}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: settings, namespace: {namespace}}}
        data: {{mode: "{color}"}}
        """
    )


@pytest.fixture(scope="module")
def crd(sandbox: Sandbox) -> None:
    sandbox.kubectl("apply", "-f", "-", input=CRD)
    sandbox.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/gadgets.kubectl.example.com",
        "--timeout=20s",
    )


def test_version_reports_the_configured_git_version(sandbox: Sandbox) -> None:
    out = json.loads(sandbox.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == "v1.32.0"
    assert out["serverVersion"]["minor"] == "32"


def test_api_resources_lists_builtins_and_crd(sandbox: Sandbox, crd: None) -> None:
    out = sandbox.kubectl("api-resources").stdout
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "cm" in lines["configmaps"]
    assert "gdg" in lines["gadgets"] and "kubectl.example.com/v1" in lines["gadgets"]
    assert "crd,crds" in lines["customresourcedefinitions"]


def test_apply_creates_then_unchanged_then_configured(
    sandbox: Sandbox, crd: None
) -> None:
    first = sandbox.kubectl("apply", "-f", "-", input=manifest("kc-apply")).stdout
    assert "namespace/kc-apply created" in first
    assert "gadget.kubectl.example.com/g1 created" in first
    second = sandbox.kubectl("apply", "-f", "-", input=manifest("kc-apply")).stdout
    assert second.count("unchanged") == 3, second
    third = sandbox.kubectl(
        "apply", "-f", "-", input=manifest("kc-apply", "red")
    ).stdout
    assert "gadget.kubectl.example.com/g1 configured" in third
    assert "configmap/settings configured" in third
    got = json.loads(
        sandbox.kubectl("get", "gdg", "g1", "-n", "kc-apply", "-o", "json").stdout
    )
    assert got["spec"] == {"color": "red", "size": 3}
    assert got["metadata"]["generation"] == 2


LIST_FILE = textwrap.dedent(
    """
    apiVersion: v1
    kind: List
    items:
    - apiVersion: v1
      kind: Namespace
      metadata: {name: kc-list}
    - apiVersion: v1
      kind: ConfigMap
      metadata: {name: first, namespace: kc-list, labels: {app: listed}}
      data: {a: "1"}
    - apiVersion: v1
      kind: ConfigMap
      metadata: {name: second, namespace: kc-list}
      data: {b: "2"}
    """
)


def test_apply_of_a_list_file_validates_with_openapi_v2_protobuf(
    sandbox: Sandbox, crd: None, tmp_path: Path
) -> None:
    """
    kubectl validates the items of a C{kind: List} file with the protobuf
    C{/openapi/v2} (kube-wire 090) and refuses the file on a 406.
    """
    directory = tmp_path
    listed = directory / "list.yaml"
    listed.write_text(LIST_FILE)
    out = sandbox.kubectl("apply", "-f", str(listed)).stdout
    assert "namespace/kc-list created" in out
    assert "configmap/first created" in out and "configmap/second created" in out
    names = sandbox.kubectl(
        "get", "configmaps", "-n", "kc-list", "-o", "jsonpath={.items[*].metadata.name}"
    ).stdout.split()
    assert {"first", "second"} <= set(names)
    assert "unchanged" in sandbox.kubectl("apply", "-f", str(listed)).stdout
    # What the document says is checked: an unknown field of a ConfigMap or
    # of a custom resource's spec refuses the file on the client.
    bad = directory / "bad.yaml"
    bad.write_text(
        LIST_FILE.replace("data: {b:", "dta: {b:")
        + textwrap.dedent(
            """
            - apiVersion: kubectl.example.com/v1
              kind: Gadget
              metadata: {name: listed, namespace: kc-list}
              spec: {color: blue, size: 1}
            """
        )
    )
    result = sandbox.kubectl("apply", "-f", str(bad), check=False)
    assert result.returncode != 0
    assert 'unknown field "dta" in io.k8s.api.core.v1.ConfigMap' in result.stderr
    gadgets = directory / "gadgets.yaml"
    gadgets.write_text(
        textwrap.dedent(
            """
            apiVersion: v1
            kind: List
            items:
            - apiVersion: kubectl.example.com/v1
              kind: Gadget
              metadata: {name: listed, namespace: kc-list}
              spec: {color: blue, size: 1, shape: round}
            """
        )
    )
    result = sandbox.kubectl("apply", "-f", str(gadgets), check=False)
    assert result.returncode != 0
    assert 'unknown field "shape"' in result.stderr
    gadgets.write_text(gadgets.read_text().replace(", shape: round", ""))
    assert "gadget.kubectl.example.com/listed created" in (
        sandbox.kubectl("apply", "-f", str(gadgets)).stdout
    )


def test_get_prints_crd_printer_columns(sandbox: Sandbox, crd: None) -> None:
    sandbox.kubectl("apply", "-f", "-", input=manifest("kc-columns", "green"))
    out = sandbox.kubectl("get", "gadgets", "-n", "kc-columns").stdout.splitlines()
    assert out[0].split() == ["NAME", "COLOR", "AGE"]
    assert out[1].split()[:2] == ["g1", "green"]
    wide = sandbox.kubectl(
        "get", "gizmos", "-n", "kc-columns", "-o", "wide"
    ).stdout.splitlines()
    assert wide[0].split() == ["NAME", "COLOR", "SIZE", "AGE"]
    every = sandbox.kubectl("get", "gdg", "-A").stdout.splitlines()
    assert every[0].split()[:2] == ["NAMESPACE", "NAME"]


def test_get_prints_builtin_columns(sandbox: Sandbox) -> None:
    out = sandbox.kubectl("get", "ns", "default").stdout.splitlines()
    assert out[0].split() == ["NAME", "STATUS", "AGE"]
    assert out[1].split()[:2] == ["default", "Active"]


def test_explain_describes_crd_fields(sandbox: Sandbox, crd: None) -> None:
    out = sandbox.kubectl("explain", "gadget.spec").stdout
    assert "What the gadget should be." in out
    assert "The colour of the gadget." in out


def test_server_side_apply_creates_and_reapplies(sandbox: Sandbox, crd: None) -> None:
    sandbox.kubectl(
        "apply",
        "-f",
        "-",
        input="apiVersion: v1\nkind: Namespace\nmetadata: {name: kc-ssa}\n",
    )
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa, namespace: kc-ssa}\ndata: {a: '1'}\n"
    assert (
        "serverside-applied"
        in sandbox.kubectl("apply", "--server-side", "-f", "-", input=body).stdout
    )
    body2 = body.replace("'1'", "'2'")
    sandbox.kubectl("apply", "--server-side", "-f", "-", input=body2)
    got = json.loads(
        sandbox.kubectl(
            "get", "cm", "ssa", "-n", "kc-ssa", "-o", "json", "--show-managed-fields"
        ).stdout
    )
    assert got["data"] == {"a": "2"}
    managers = {
        (m["manager"], m["operation"]) for m in got["metadata"]["managedFields"]
    }
    assert ("kubectl", "Apply") in managers


def test_patch_status_subresource_and_main_resource_ignores_status(
    sandbox: Sandbox, crd: None
) -> None:
    sandbox.kubectl("apply", "-f", "-", input=manifest("kc-status"))
    sandbox.kubectl(
        "patch",
        "gdg",
        "g1",
        "-n",
        "kc-status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"X"}}',
    )
    got = json.loads(
        sandbox.kubectl("get", "gdg", "g1", "-n", "kc-status", "-o", "json").stdout
    )
    assert "status" not in got
    sandbox.kubectl(
        "patch",
        "gdg",
        "g1",
        "-n",
        "kc-status",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Done"}}',
    )
    got = json.loads(
        sandbox.kubectl("get", "gdg", "g1", "-n", "kc-status", "-o", "json").stdout
    )
    assert got["status"] == {"phase": "Done"}
    assert got["metadata"]["generation"] == 1


def test_delete_namespace_removes_its_objects(sandbox: Sandbox, crd: None) -> None:
    sandbox.kubectl("apply", "-f", "-", input=manifest("kc-delete"))
    sandbox.kubectl("delete", "ns", "kc-delete", "--timeout=30s")
    out = sandbox.kubectl("get", "ns", "kc-delete", check=False)
    assert out.returncode != 0 and "NotFound" in out.stderr
    left = sandbox.kubectl("get", "gdg", "-A", "-o", "json").stdout
    assert all(
        i["metadata"]["namespace"] != "kc-delete" for i in json.loads(left)["items"]
    )


def test_invalid_custom_resource_is_refused_with_422(
    sandbox: Sandbox, crd: None
) -> None:
    sandbox.kubectl(
        "apply",
        "-f",
        "-",
        input="apiVersion: v1\nkind: Namespace\nmetadata: {name: kc-bad}\n",
    )
    bad = "apiVersion: kubectl.example.com/v1\nkind: Gadget\nmetadata: {name: bad, namespace: kc-bad}\nspec: {size: 0}\n"
    out = sandbox.kubectl("apply", "-f", "-", input=bad, check=False)
    assert out.returncode != 0
    assert "spec.size in body should be greater than or equal to 1" in out.stderr


def test_everyday_edits_label_annotate_edit_describe(sandbox: Sandbox) -> None:
    sandbox.kubectl("create", "namespace", "everyday")
    sandbox.kubectl("create", "configmap", "c1", "-n", "everyday", "--from-literal=a=1")
    sandbox.kubectl("create", "secret", "generic", "s1", "-n", "everyday",
                    "--from-literal=k=secret")  # fmt: skip
    sandbox.kubectl("label", "cm", "c1", "-n", "everyday", "tier=web")
    sandbox.kubectl("annotate", "cm", "c1", "-n", "everyday", "note=hi")
    assert KUBECTL is not None
    subprocess.run(
        [KUBECTL, "edit", "cm", "c1", "-n", "everyday"],
        env=dict(
            os.environ,
            KUBECONFIG=str(sandbox.kubeconfig),
            HOME=str(sandbox.data_dir),
            KUBE_EDITOR="sed -i s/note:\\ hi/note:\\ edited/",
        ),
        check=True,
        capture_output=True,
        timeout=60,
    )
    got = json.loads(sandbox.kubectl("get", "cm", "c1", "-n", "everyday",
                                     "-o", "json").stdout)  # fmt: skip
    assert got["metadata"]["labels"] == {"tier": "web"}
    assert got["metadata"]["annotations"] == {"note": "edited"}
    described = sandbox.kubectl("describe", "secret", "s1", "-n", "everyday").stdout
    assert "k:  6 bytes" in described and "secret\n" not in described
    assert (
        "Events:  <none>"
        in sandbox.kubectl("describe", "cm", "c1", "-n", "everyday").stdout
    )
    sandbox.kubectl("delete", "cm", "c1", "-n", "everyday")


def test_logs_exec_attach_of_a_pod_no_node_runs(sandbox: Sandbox) -> None:
    """
    As on a real cluster for a pod that no node runs: an empty log, and
    400 "does not have a host assigned" for exec and attach.
    """
    sandbox.kubectl("create", "namespace", "pods")
    sandbox.kubectl("run", "p1", "-n", "pods", "--image=nginx")
    logs = sandbox.kubectl("logs", "p1", "-n", "pods")
    assert logs.stdout == ""
    for command in (("exec", "p1", "--", "ls"), ("attach", "p1")):
        result = sandbox.kubectl("-n", "pods", *command, check=False, timeout=30)
        assert result.returncode != 0
        assert (
            "Error from server (BadRequest): pod p1 does not have a host assigned"
            in result.stderr
        ), result.stderr
    wrong = sandbox.kubectl("logs", "p1", "-n", "pods", "-c", "nope", check=False)
    assert "container nope is not valid for pod p1" in wrong.stderr
