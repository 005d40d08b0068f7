# ruff: noqa: E501 - captured request bodies are long base64 strings
"""
Real request bodies of kubectl v1.32 (/usr/bin/kubectl, v1.32.4) and the JSON
they must decode to.

Captured with a recording TLS proxy in front of the sandbox; "want" is what
``kubectl <same command> --dry-run=client -o json`` prints ("dry-run"), or, for
the commands without a client dry-run (token, auth), the object checked field
by field against the Go types of k8s.io/api v0.32 ("reviewed").  The TLS secret
fixture is left out: its body carries a private key.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusternet.sandbox._protobuf import PROTOBUF_CONTENT_TYPE, decode_body

CAPTURED: list[dict[str, Any]] = [
    {
        "command": "kubectl create namespace demo-ns",
        "path": "/api/v1/namespaces",
        "group": "",
        "version": "v1",
        "source": "dry-run",
        "body": "azhzAAoPCgJ2MRIJTmFtZXNwYWNlEh8KFwoHZGVtby1ucxIAGgAiACoAMgA4AEIAEgAaAgoAGgAiAA==",
        "want": {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {"name": "demo-ns", "creationTimestamp": None},
            "spec": {},
            "status": {},
        },
    },
    {
        "command": "kubectl create serviceaccount robot -n default",
        "path": "/api/v1/namespaces/default/serviceaccounts",
        "group": "",
        "version": "v1",
        "source": "dry-run",
        "body": "azhzAAoUCgJ2MRIOU2VydmljZUFjY291bnQSHgocCgVyb2JvdBIAGgdkZWZhdWx0IgAqADIAOABCABoAIgA=",
        "want": {
            "kind": "ServiceAccount",
            "apiVersion": "v1",
            "metadata": {
                "name": "robot",
                "namespace": "default",
                "creationTimestamp": None,
            },
        },
    },
    {
        "command": "kubectl create secret generic s1 -n default "
        "--from-literal=user=admin --from-literal=pass=p@ss",
        "path": "/api/v1/namespaces/default/secrets",
        "group": "",
        "version": "v1",
        "source": "dry-run",
        "body": "azhzAAoMCgJ2MRIGU2VjcmV0EjoKGQoCczESABoHZGVmYXVsdCIAKgAyADgAQgASDAoEcGFzcxIEcEBzcxINCgR1c2VyEgVhZG1pbhoAGgAiAA==",
        "want": {
            "kind": "Secret",
            "apiVersion": "v1",
            "metadata": {
                "name": "s1",
                "namespace": "default",
                "creationTimestamp": None,
            },
            "data": {"pass": "cEBzcw==", "user": "YWRtaW4="},
        },
    },
    {
        "command": "kubectl create secret docker-registry reg1 -n default "
        "--docker-server=r.example --docker-username=u --docker-password=p",
        "path": "/api/v1/namespaces/default/secrets",
        "group": "",
        "version": "v1",
        "source": "dry-run",
        "body": "azhzAAoMCgJ2MRIGU2VjcmV0EpkBChsKBHJlZzESABoHZGVmYXVsdCIAKgAyADgAQgASWgoRLmRvY2tlcmNvbmZpZ2pzb24SRXsiYXV0aHMiOnsici5leGFtcGxlIjp7InVzZXJuYW1lIjoidSIsInBhc3N3b3JkIjoicCIsImF1dGgiOiJkVHB3In19fRoea3ViZXJuZXRlcy5pby9kb2NrZXJjb25maWdqc29uGgAiAA==",
        "want": {
            "kind": "Secret",
            "apiVersion": "v1",
            "metadata": {
                "name": "reg1",
                "namespace": "default",
                "creationTimestamp": None,
            },
            "data": {
                ".dockerconfigjson": "eyJhdXRocyI6eyJyLmV4YW1wbGUiOnsidXNlcm5hbWUiOiJ1IiwicGFzc3dvcmQiOiJwIiwiYXV0aCI6ImRUcHcifX19"
            },
            "type": "kubernetes.io/dockerconfigjson",
        },
    },
    {
        "command": "kubectl create configmap cm1 -n default --from-literal=a=1 "
        "--from-literal=b=two",
        "path": "/api/v1/namespaces/default/configmaps",
        "group": "",
        "version": "v1",
        "source": "dry-run",
        "body": "azhzAAoPCgJ2MRIJQ29uZmlnTWFwEi4KGgoDY20xEgAaB2RlZmF1bHQiACoAMgA4AEIAEgYKAWESATESCAoBYhIDdHdvGgAiAA==",
        "want": {
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {
                "name": "cm1",
                "namespace": "default",
                "creationTimestamp": None,
            },
            "data": {"a": "1", "b": "two"},
        },
    },
    {
        "command": "kubectl create token default -n default --duration=1h --audience=api",
        "path": "/api/v1/namespaces/default/serviceaccounts/default/token",
        "group": "",
        "version": "v1",
        "source": "reviewed",
        "body": "azhzAAooChhhdXRoZW50aWNhdGlvbi5rOHMuaW8vdjESDFRva2VuUmVxdWVzdBIiChAKABIAGgAiACoAMgA4AEIAEggKA2FwaSCQHBoECgASABoAIgA=",
        "want": {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": {
                "audiences": ["api"],
                "expirationSeconds": 3600,
                "boundObjectRef": None,
            },
            "status": {"token": "", "expirationTimestamp": None},
        },
    },
    {
        "command": "kubectl auth can-i get pods -n default",
        "path": "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        "group": "authorization.k8s.io",
        "version": "v1",
        "source": "reviewed",
        "body": "azhzAAoyChdhdXRob3JpemF0aW9uLms4cy5pby92MRIXU2VsZlN1YmplY3RBY2Nlc3NSZXZpZXcSPAoQCgASABoAIgAqADIAOABCABIeChwKB2RlZmF1bHQSA2dldBoAIgAqBHBvZHMyADoAGggIABIAGgAgABoAIgA=",
        "want": {
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": {
                "resourceAttributes": {
                    "namespace": "default",
                    "verb": "get",
                    "resource": "pods",
                }
            },
            "status": {"allowed": False},
        },
    },
    {
        "command": "kubectl auth can-i get pods --subresource=log -n default --as=alice",
        "path": "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        "group": "authorization.k8s.io",
        "version": "v1",
        "source": "reviewed",
        "body": "azhzAAoyChdhdXRob3JpemF0aW9uLms4cy5pby92MRIXU2VsZlN1YmplY3RBY2Nlc3NSZXZpZXcSPwoQCgASABoAIgAqADIAOABCABIhCh8KB2RlZmF1bHQSA2dldBoAIgAqBHBvZHMyA2xvZzoAGggIABIAGgAgABoAIgA=",
        "want": {
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": {
                "resourceAttributes": {
                    "namespace": "default",
                    "verb": "get",
                    "resource": "pods",
                    "subresource": "log",
                }
            },
            "status": {"allowed": False},
        },
    },
    {
        "command": "kubectl auth can-i --list -n default",
        "path": "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        "group": "authorization.k8s.io",
        "version": "v1",
        "source": "reviewed",
        "body": "azhzAAoxChdhdXRob3JpemF0aW9uLms4cy5pby92MRIWU2VsZlN1YmplY3RSdWxlc1JldmlldxIjChAKABIAGgAiACoAMgA4AEIAEgkKB2RlZmF1bHQaBBgAIgAaACIA",
        "want": {
            "kind": "SelfSubjectRulesReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": {"namespace": "default"},
            "status": {
                "resourceRules": None,
                "nonResourceRules": None,
                "incomplete": False,
            },
        },
    },
    {
        "command": "kubectl auth whoami",
        "path": "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        "group": "authentication.k8s.io",
        "version": "v1",
        "source": "reviewed",
        "body": "azhzAAotChhhdXRoZW50aWNhdGlvbi5rOHMuaW8vdjESEVNlbGZTdWJqZWN0UmV2aWV3EhoKEAoAEgAaACIAKgAyADgAQgASBgoECgASABoAIgA=",
        "want": {
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "status": {"userInfo": {}},
        },
    },
    {
        "command": "kubectl create role r1 -n default --verb=get,list "
        "--resource=pods,secrets --resource-name=x",
        "path": "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
        "group": "rbac.authorization.k8s.io",
        "version": "v1",
        "source": "dry-run",
        "body": "azhzAAokChxyYmFjLmF1dGhvcml6YXRpb24uazhzLmlvL3YxEgRSb2xlEjwKGQoCcjESABoHZGVmYXVsdCIAKgAyADgAQgASHwoDZ2V0CgRsaXN0EgAaBHBvZHMaB3NlY3JldHMiAXgaACIA",
        "want": {
            "kind": "Role",
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {
                "name": "r1",
                "namespace": "default",
                "creationTimestamp": None,
            },
            "rules": [
                {
                    "verbs": ["get", "list"],
                    "apiGroups": [""],
                    "resources": ["pods", "secrets"],
                    "resourceNames": ["x"],
                }
            ],
        },
    },
    {
        "command": "kubectl create clusterrole cr1 --verb=get "
        "--non-resource-url=/healthz",
        "path": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "group": "rbac.authorization.k8s.io",
        "version": "v1",
        "source": "dry-run",
        "body": "azhzAAorChxyYmFjLmF1dGhvcml6YXRpb24uazhzLmlvL3YxEgtDbHVzdGVyUm9sZRImChMKA2NyMRIAGgAiACoAMgA4AEIAEg8KA2dldCoIL2hlYWx0aHoaACIA",
        "want": {
            "kind": "ClusterRole",
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {"name": "cr1", "creationTimestamp": None},
            "rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}],
        },
    },
    {
        "command": "kubectl create rolebinding rb1 -n default --role=r1 --user=alice "
        "--group=devs --serviceaccount=default:robot",
        "path": "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
        "group": "rbac.authorization.k8s.io",
        "version": "v1",
        "source": "dry-run",
        "body": "azhzAAorChxyYmFjLmF1dGhvcml6YXRpb24uazhzLmlvL3YxEgtSb2xlQmluZGluZxK/AQoaCgNyYjESABoHZGVmYXVsdCIAKgAyADgAQgASKgoEVXNlchIZcmJhYy5hdXRob3JpemF0aW9uLms4cy5pbxoFYWxpY2UiABIqCgVHcm91cBIZcmJhYy5hdXRob3JpemF0aW9uLms4cy5pbxoEZGV2cyIAEiIKDlNlcnZpY2VBY2NvdW50EgAaBXJvYm90IgdkZWZhdWx0GiUKGXJiYWMuYXV0aG9yaXphdGlvbi5rOHMuaW8SBFJvbGUaAnIxGgAiAA==",
        "want": {
            "kind": "RoleBinding",
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {
                "name": "rb1",
                "namespace": "default",
                "creationTimestamp": None,
            },
            "subjects": [
                {
                    "kind": "User",
                    "apiGroup": "rbac.authorization.k8s.io",
                    "name": "alice",
                },
                {
                    "kind": "Group",
                    "apiGroup": "rbac.authorization.k8s.io",
                    "name": "devs",
                },
                {"kind": "ServiceAccount", "name": "robot", "namespace": "default"},
            ],
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "r1",
            },
        },
    },
    {
        "command": "kubectl create clusterrolebinding crb1 --clusterrole=cr1 --user=bob",
        "path": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        "group": "rbac.authorization.k8s.io",
        "version": "v1",
        "source": "dry-run",
        "body": "azhzAAoyChxyYmFjLmF1dGhvcml6YXRpb24uazhzLmlvL3YxEhJDbHVzdGVyUm9sZUJpbmRpbmcSbwoUCgRjcmIxEgAaACIAKgAyADgAQgASKAoEVXNlchIZcmJhYy5hdXRob3JpemF0aW9uLms4cy5pbxoDYm9iIgAaLQoZcmJhYy5hdXRob3JpemF0aW9uLms4cy5pbxILQ2x1c3RlclJvbGUaA2NyMRoAIgA=",
        "want": {
            "kind": "ClusterRoleBinding",
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {"name": "crb1", "creationTimestamp": None},
            "subjects": [
                {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "bob"}
            ],
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cr1",
            },
        },
    },
    {
        "command": "kubectl create service clusterip svc1 -n default --tcp=80:8080",
        "path": "/api/v1/namespaces/default/services",
        "group": "",
        "version": "v1",
        "source": "dry-run",
        "body": "azhzAAoNCgJ2MRIHU2VydmljZRJzCigKBHN2YzESABoHZGVmYXVsdCIAKgAyADgAQgBaCwoDYXBwEgRzdmMxEkMKGwoHODAtODA4MBIDVENQGFAiBwgAEJA/GgAoABILCgNhcHASBHN2YzEaACIJQ2x1c3RlcklQOgBCAFIAWgBgAGgAGgIKABoAIgA=",
        "want": {
            "kind": "Service",
            "apiVersion": "v1",
            "metadata": {
                "name": "svc1",
                "namespace": "default",
                "creationTimestamp": None,
                "labels": {"app": "svc1"},
            },
            "spec": {
                "ports": [
                    {
                        "name": "80-8080",
                        "protocol": "TCP",
                        "port": 80,
                        "targetPort": 8080,
                    }
                ],
                "selector": {"app": "svc1"},
                "type": "ClusterIP",
            },
            "status": {"loadBalancer": {}},
        },
    },
    {
        "command": "kubectl create service nodeport svc2 -n default --tcp=443:https "
        "--node-port=30001",
        "path": "/api/v1/namespaces/default/services",
        "group": "",
        "version": "v1",
        "source": "dry-run",
        "body": "azhzAAoNCgJ2MRIHU2VydmljZRJ7CigKBHN2YzISABoHZGVmYXVsdCIAKgAyADgAQgBaCwoDYXBwEgRzdmMyEksKJAoJNDQzLWh0dHBzEgNUQ1AYuwMiCwgBEAAaBWh0dHBzKLHqARILCgNhcHASBHN2YzIaACIITm9kZVBvcnQ6AEIAUgBaAGAAaAAaAgoAGgAiAA==",
        "want": {
            "kind": "Service",
            "apiVersion": "v1",
            "metadata": {
                "name": "svc2",
                "namespace": "default",
                "creationTimestamp": None,
                "labels": {"app": "svc2"},
            },
            "spec": {
                "ports": [
                    {
                        "name": "443-https",
                        "protocol": "TCP",
                        "port": 443,
                        "targetPort": "https",
                        "nodePort": 30001,
                    }
                ],
                "selector": {"app": "svc2"},
                "type": "NodePort",
            },
            "status": {"loadBalancer": {}},
        },
    },
    {
        "command": "kubectl create deployment web -n default --image=nginx:1.27 "
        "--replicas=3 --port=80",
        "path": "/apis/apps/v1/namespaces/default/deployments",
        "group": "apps",
        "version": "v1",
        "source": "dry-run",
        "body": "azhzAAoVCgdhcHBzL3YxEgpEZXBsb3ltZW50EsQBCiYKA3dlYhIAGgdkZWZhdWx0IgAqADIAOABCAFoKCgNhcHASA3dlYhKLAQgDEgwKCgoDYXBwEgN3ZWIacQocCgASABoAIgAqADIAOABCAFoKCgNhcHASA3dlYhJREjMKBW5naW54EgpuZ2lueDoxLjI3KgAyCgoAEAAYUCIAKgBCAGoAcgCAAQCIAQCQAQCiAQAaADIAQgBKAFIAWABgAGgAggEAigEAmgEAwgEAIgIKACgAOAAaDAgAEAAYACAAKAA4ABoAIgA=",
        "want": {
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "creationTimestamp": None,
                "labels": {"app": "web"},
            },
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"creationTimestamp": None, "labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "nginx",
                                "image": "nginx:1.27",
                                "ports": [{"containerPort": 80}],
                                "resources": {},
                            }
                        ]
                    },
                },
                "strategy": {},
            },
            "status": {},
        },
    },
    {
        "command": "kubectl create priorityclass pc1 --value=1000 --description=d",
        "path": "/apis/scheduling.k8s.io/v1/priorityclasses",
        "group": "scheduling.k8s.io",
        "version": "v1",
        "source": "dry-run",
        "body": "azhzAAolChRzY2hlZHVsaW5nLms4cy5pby92MRINUHJpb3JpdHlDbGFzcxIzChMKA3BjMRIAGgAiACoAMgA4AEIAEOgHGAAiAWQqFFByZWVtcHRMb3dlclByaW9yaXR5GgAiAA==",
        "want": {
            "kind": "PriorityClass",
            "apiVersion": "scheduling.k8s.io/v1",
            "metadata": {"name": "pc1", "creationTimestamp": None},
            "value": 1000,
            "description": "d",
            "preemptionPolicy": "PreemptLowerPriority",
        },
    },
    {
        "command": "kubectl create configmap cm2 -n default --from-file=blob=<bytes 00 "
        "01 ff fe> --from-literal=t=x",
        "path": "/api/v1/namespaces/default/configmaps",
        "group": "",
        "version": "v1",
        "source": "dry-run",
        "body": "azhzAAoPCgJ2MRIJQ29uZmlnTWFwEjIKGgoDY20yEgAaB2RlZmF1bHQiACoAMgA4AEIAEgYKAXQSAXgaDAoEYmxvYhIEAAH//hoAIgA=",
        "want": {
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {
                "name": "cm2",
                "namespace": "default",
                "creationTimestamp": None,
            },
            "data": {"t": "x"},
            "binaryData": {"blob": "AAH//g=="},
        },
    },
    {
        "command": "kubectl create quota q1 -n default --hard=cpu=1,memory=1Gi,pods=10",
        "path": "/api/v1/namespaces/default/resourcequotas",
        "group": "",
        "version": "v1",
        "source": "dry-run",
        "body": "azhzAAoTCgJ2MRINUmVzb3VyY2VRdW90YRJKChkKAnExEgAaB2RlZmF1bHQiACoAMgA4AEIAEisKCgoDY3B1EgMKATEKDwoGbWVtb3J5EgUKAzFHaQoMCgRwb2RzEgQKAjEwGgAaACIA",
        "want": {
            "kind": "ResourceQuota",
            "apiVersion": "v1",
            "metadata": {
                "name": "q1",
                "namespace": "default",
                "creationTimestamp": None,
            },
            "spec": {"hard": {"cpu": "1", "memory": "1Gi", "pods": "10"}},
            "status": {},
        },
    },
    {
        "command": "kubectl create poddisruptionbudget pdb1 -n default --selector=app=x "
        "--min-available=50%",
        "path": "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
        "group": "policy",
        "version": "v1",
        "source": "dry-run",
        "body": "azhzAAogCglwb2xpY3kvdjESE1BvZERpc3J1cHRpb25CdWRnZXQSQgobCgRwZGIxEgAaB2RlZmF1bHQiACoAMgA4AEIAEhcKCQgBEAAaAzUwJRIKCggKA2FwcBIBeBoKCAAYACAAKAAwABoAIgA=",
        "want": {
            "kind": "PodDisruptionBudget",
            "apiVersion": "policy/v1",
            "metadata": {
                "name": "pdb1",
                "namespace": "default",
                "creationTimestamp": None,
            },
            "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "x"}}},
            "status": {
                "disruptionsAllowed": 0,
                "currentHealthy": 0,
                "desiredHealthy": 0,
                "expectedPods": 0,
            },
        },
    },
    {
        "command": "kubectl create job j1 -n default --image=busybox -- echo hi",
        "path": "/apis/batch/v1/namespaces/default/jobs",
        "group": "batch",
        "version": "v1",
        "source": "dry-run",
        "body": "azhzAAoPCghiYXRjaC92MRIDSm9iEosBChkKAmoxEgAaB2RlZmF1bHQiACoAMgA4AEIAEmQyYgoQCgASABoAIgAqADIAOABCABJOEisKAmoxEgdidXN5Ym94GgRlY2hvGgJoaSoAQgBqAHIAgAEAiAEAkAEAogEAGgVOZXZlcjIAQgBKAFIAWABgAGgAggEAigEAmgEAwgEAGgggACgAMAA6ABoAIgA=",
        "want": {
            "kind": "Job",
            "apiVersion": "batch/v1",
            "metadata": {
                "name": "j1",
                "namespace": "default",
                "creationTimestamp": None,
            },
            "spec": {
                "template": {
                    "metadata": {"creationTimestamp": None},
                    "spec": {
                        "containers": [
                            {
                                "name": "j1",
                                "image": "busybox",
                                "command": ["echo", "hi"],
                                "resources": {},
                            }
                        ],
                        "restartPolicy": "Never",
                    },
                }
            },
            "status": {},
        },
    },
    {
        "command": "kubectl create ingress ing1 -n default --rule=foo.com/bar=svc1:80",
        "path": "/apis/networking.k8s.io/v1/namespaces/default/ingresses",
        "group": "networking.k8s.io",
        "version": "v1",
        "source": "dry-run",
        "body": "azhzAAofChRuZXR3b3JraW5nLms4cy5pby92MRIHSW5ncmVzcxJRChsKBGluZzESABoHZGVmYXVsdCIAKgAyADgAQgASLhosCgdmb28uY29tEiEKHwodCgQvYmFyEg4iDAoEc3ZjMRIECgAQUBoFRXhhY3QaAgoAGgAiAA==",
        "want": {
            "kind": "Ingress",
            "apiVersion": "networking.k8s.io/v1",
            "metadata": {
                "name": "ing1",
                "namespace": "default",
                "creationTimestamp": None,
            },
            "spec": {
                "rules": [
                    {
                        "host": "foo.com",
                        "http": {
                            "paths": [
                                {
                                    "path": "/bar",
                                    "pathType": "Exact",
                                    "backend": {
                                        "service": {
                                            "name": "svc1",
                                            "port": {"number": 80},
                                        }
                                    },
                                }
                            ]
                        },
                    }
                ]
            },
            "status": {"loadBalancer": {}},
        },
    },
]


def _body(fixture: dict[str, Any]) -> bytes:
    return base64.b64decode(fixture["body"])


@pytest.mark.parametrize(
    "fixture", CAPTURED, ids=[f["command"].split(" -")[0] for f in CAPTURED]
)
def test_kubectl_body_decodes_to_the_json_kubectl_would_send(
    fixture: dict[str, Any],
) -> None:
    obj = decode_body(_body(fixture), fixture["group"], fixture["version"], None)
    assert obj == fixture["want"]
    # Key order follows the Go struct, as encoding/json writes it.
    assert json.dumps(obj) == json.dumps(fixture["want"])


def test_fixtures_cover_the_typed_commands() -> None:
    kinds = {f["want"]["kind"] for f in CAPTURED}
    assert {
        "Namespace",
        "ServiceAccount",
        "Secret",
        "ConfigMap",
        "TokenRequest",
        "SelfSubjectAccessReview",
        "SelfSubjectRulesReview",
        "SelfSubjectReview",
        "Role",
        "ClusterRole",
        "RoleBinding",
        "ClusterRoleBinding",
        "Service",
        "Deployment",
    } <= kinds
    assert PROTOBUF_CONTENT_TYPE == "application/vnd.kubernetes.protobuf"


def test_every_truncation_of_a_kubectl_body_is_a_dict_or_value_error() -> None:
    decoded = 0
    for fixture in CAPTURED:
        body = _body(fixture)
        for end in range(len(body)):
            try:
                result = decode_body(body[:end], fixture["group"], fixture["version"])
            except ValueError:
                continue
            assert isinstance(result, dict)
            decoded += 1
    assert decoded > 0  # some prefixes end on a field boundary and still decode


@given(
    st.sampled_from(CAPTURED),
    st.lists(
        st.tuples(
            st.sampled_from(["flip", "insert", "delete"]),
            st.integers(min_value=0, max_value=4096),
            st.integers(min_value=0, max_value=255),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_kubectl_bodies_decode_or_raise_value_error(
    fixture: dict[str, Any], mutations: list[tuple[str, int, int]]
) -> None:
    body = bytearray(_body(fixture))
    for op, offset, value in mutations:
        at = 4 + offset % max(1, len(body) - 4)  # keep the magic mostly intact
        if op == "flip" and at < len(body):
            body[at] ^= value or 1
        elif op == "insert":
            body.insert(at, value)
        elif op == "delete" and at < len(body):
            del body[at]
    try:
        result = decode_body(bytes(body), fixture["group"], fixture["version"])
    except ValueError:
        return
    assert isinstance(result, dict)
    json.dumps(result)  # always JSON-serializable
