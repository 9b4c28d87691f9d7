"""Everything an Appliance needs in the cluster, computed as pure functions of its spec.

The Kopf handlers only apply what these functions return, so the whole
reconcile logic is tested here without a cluster.  Components are rows of
one table (`COMPONENTS`): the portal is already a row, marked not installed
until its service exists, so adding it is flipping that row, not a rewrite.

Security defaults on every pod: non-root, read-only root file system, no
privilege escalation, all capabilities dropped, the runtime's seccomp
profile, no service-account token unless the component calls the API.
Network: nothing reaches a pod but what its NetworkPolicy lists; only the
portal accepts traffic from outside the namespace; only the signer may leave
for the HSM and the database; only storage may leave for the object store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from signet.common.contracts.appliance import ApplianceSpec

Manifest = dict[str, Any]

PIN_DIR = "/var/run/secrets/signet/hsm"
S3_DIR = "/var/run/secrets/signet/s3"
HSM_MODULE_DIR = "/opt/hsm"
POLICY_DIR = "/etc/signet/policies"
#: One ConfigMap per namespace holds every accepted SigningPolicy (key `<name>.json`);
#: pods mount it, and the kubelet refreshes the files in place when a policy changes.
POLICIES_CONFIG_MAP = "signet-policies"
SOFTHSM_IMAGE = "signet-softhsm:0.1.0"
#: Trials: the SoftHSM token lives on a PersistentVolumeClaim mounted here.
SOFTHSM_DIR = "/var/lib/softhsm"
SOFTHSM_TOKEN_SIZE = "64Mi"  # noqa: S105 - a volume size, not a secret
#: Runs in the SoftHSM image before the signer: writes the configuration onto the token
#: volume and initialises the token once.  Label and PIN files come in as arguments and
#: files, never interpolated into the script.
SOFTHSM_INIT_SCRIPT = """set -eu
dir="$1"; label="$2"; pins="$3"
mkdir -p "$dir/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
  "$dir" > "$dir/softhsm2.conf"
export SOFTHSM2_CONF="$dir/softhsm2.conf"
if ! softhsm2-util --show-slots | grep -q "Label: *$label *$"; then
  softhsm2-util --init-token --free --label "$label" \
    --so-pin "$(cat "$pins/so-pin")" --pin "$(cat "$pins/pin")" >/dev/null
fi
"""
UID = 10001
OPERATOR_LABELS = {"app.kubernetes.io/name": "signet-operator"}


@dataclass(frozen=True)
class Component:
    name: str
    port: int
    #: arguments of the signet image's entry point (`signet …`)
    args: tuple[str, ...]
    installed: bool
    enabled: Callable[[ApplianceSpec], bool]
    replicas: Callable[[ApplianceSpec], int]
    #: peers (component names) allowed to connect to this one
    callers: tuple[str, ...] = ()
    #: reachable from outside the namespace (through an ingress controller)
    public: bool = False
    needs_api_token: bool = False
    env: Callable[[str, ApplianceSpec], list[Manifest]] = field(default=lambda _n, _s: [])


def _signer_env(name: str, spec: ApplianceSpec) -> list[Manifest]:
    hsm = spec.hsm
    module = (
        f"{HSM_MODULE_DIR}/libsofthsm2.so"
        if hsm.softhsm
        else f"{HSM_MODULE_DIR}/{PurePosixPath(hsm.module_path or 'module.so').name}"
    )
    env = [
        {"name": "SIGNET_SIGNER_HSM_MODULE", "value": module},
        {"name": "SIGNET_SIGNER_HSM_TOKEN_LABEL", "value": hsm.token_label},
        {"name": "SIGNET_SIGNER_HSM_PIN_FILE", "value": f"{PIN_DIR}/pin"},
        {"name": "SIGNET_SIGNER_PUBLIC_URL", "value": spec.public_url},
        {"name": "SIGNET_SIGNER_ORGANIZATION", "value": spec.organization},
        {"name": "SIGNET_SIGNER_HOST", "value": "0.0.0.0"},  # noqa: S104 - pod network
    ]
    if spec.database is not None:
        env.append(
            _secret_env("SIGNET_SIGNER_DATABASE_URL", spec.database.url.name, spec.database.url.key)
        )
    return env


def _storage_env(name: str, spec: ApplianceSpec) -> list[Manifest]:
    store = spec.object_store
    return [
        {"name": "SIGNET_STORAGE_VAULT", "value": "s3"},
        {"name": "SIGNET_STORAGE_S3_ENDPOINT", "value": store.endpoint},
        {"name": "SIGNET_STORAGE_S3_BUCKET", "value": store.bucket},
        {"name": "SIGNET_STORAGE_S3_SECURE", "value": str(store.secure).lower()},
        {"name": "SIGNET_STORAGE_S3_ACCESS_KEY_FILE", "value": f"{S3_DIR}/access-key"},
        {"name": "SIGNET_STORAGE_S3_SECRET_KEY_FILE", "value": f"{S3_DIR}/secret-key"},
        {"name": "SIGNET_STORAGE_RETENTION_YEARS", "value": str(store.retention_years)},
        {"name": "SIGNET_STORAGE_SIGNER_URL", "value": f"http://{name}-signer:8101"},
        {
            "name": "SIGNET_STORAGE_TREE_HEAD_INTERVAL",
            "value": str(spec.tree_head_interval_seconds),
        },
        {"name": "SIGNET_STORAGE_LEASE_NAME", "value": f"{name}-tree-head-publisher"},
        {"name": "SIGNET_STORAGE_HOST", "value": "0.0.0.0"},  # noqa: S104 - pod network
    ]


COMPONENTS: tuple[Component, ...] = (
    Component(
        "signer",
        8101,
        ("signer", "serve"),
        installed=True,
        enabled=lambda spec: True,
        replicas=lambda spec: spec.signer.replicas,
        callers=("storage", "portal"),
        env=_signer_env,
    ),
    Component(
        "storage",
        8102,
        ("storage", "serve"),
        installed=True,
        enabled=lambda spec: True,
        replicas=lambda spec: spec.storage.replicas,
        callers=("portal",),
        needs_api_token=True,  # the tree-head publisher's Lease
        env=_storage_env,
    ),
    Component(
        "portal",
        8103,
        ("portal", "serve"),
        installed=False,  # arrives with the portal issue: flip this row, nothing else
        enabled=lambda spec: spec.portal.enabled,
        replicas=lambda spec: spec.portal.replicas,
        public=True,
    ),
)


def labels(name: str, component: str | None = None) -> dict[str, str]:
    result = {
        "app.kubernetes.io/name": "signet",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "signet-operator",
    }
    if component:
        result["app.kubernetes.io/component"] = component
    return result


def _secret_env(variable: str, secret: str, key: str) -> Manifest:
    return {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def referenced_secrets(spec: ApplianceSpec) -> list[tuple[str, str]]:
    """(Secret, key) pairs the spec names: they must exist before anything starts."""
    refs = [(spec.object_store.access_key.name, spec.object_store.access_key.key)]
    refs.append((spec.object_store.secret_key.name, spec.object_store.secret_key.key))
    if spec.hsm.pin is not None:
        refs.append((spec.hsm.pin.name, spec.hsm.pin.key))
    if spec.database is not None:
        refs.append((spec.database.url.name, spec.database.url.key))
    return refs


def config_hash(spec: ApplianceSpec, component: Component, name: str) -> str:
    """Changes whenever the pod's configuration changes, so the Deployment rolls out."""
    payload = {
        "env": component.env(name, spec),
        "spec": spec.model_dump(mode="json", by_alias=True),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _container_security() -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def deployment(name: str, namespace: str, spec: ApplianceSpec, component: Component) -> Manifest:
    full = f"{name}-{component.name}"
    resources = getattr(spec, component.name, None)
    requests = (
        {"cpu": resources.resources.cpu, "memory": resources.resources.memory}
        if resources is not None and hasattr(resources, "resources")
        else {"cpu": "250m", "memory": "256Mi"}
    )
    volumes: list[Manifest] = [{"name": "tmp", "emptyDir": {}}, {"name": "data", "emptyDir": {}}]
    mounts: list[Manifest] = [
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir, not the image's /tmp
        {"name": "data", "mountPath": "/var/lib/signet"},
    ]
    # Policies: optional (none published yet is fine), re-read by the service on change.
    volumes.append(
        {"name": "policies", "configMap": {"name": POLICIES_CONFIG_MAP, "optional": True}}
    )
    mounts.append({"name": "policies", "mountPath": POLICY_DIR, "readOnly": True})
    init: list[Manifest] = []
    env = [
        {"name": "SIGNET_HOME", "value": "/var/lib/signet"},
        {"name": f"SIGNET_{component.name.upper()}_POLICY_DIR", "value": POLICY_DIR},
        # Who this pod is: the Lease holder identity and namespace (downward API).
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        _secret_env(
            f"SIGNET_{component.name.upper()}_SERVICE_TOKEN", f"{name}-service-token", "token"
        ),
        *component.env(name, spec),
    ]
    if component.name == "signer":
        hsm = spec.hsm
        image = SOFTHSM_IMAGE if hsm.softhsm else hsm.module_image
        source = "/usr/lib/softhsm/libsofthsm2.so" if hsm.softhsm else hsm.module_path
        volumes.append({"name": "hsm-module", "emptyDir": {}})
        mounts.append({"name": "hsm-module", "mountPath": HSM_MODULE_DIR, "readOnly": True})
        init.append(
            {
                "name": "hsm-module",
                "image": image,
                "command": ["cp", "-L", str(source), f"{HSM_MODULE_DIR}/"],
                "volumeMounts": [{"name": "hsm-module", "mountPath": HSM_MODULE_DIR}],
                "securityContext": _container_security(),
            }
        )
        if hsm.softhsm:
            # Trials: the token on its own volume, initialised once, before the signer starts.
            volumes.append(
                {
                    "name": "hsm-token",
                    "persistentVolumeClaim": {"claimName": f"{name}-softhsm-token"},
                }
            )
            mounts.append({"name": "hsm-token", "mountPath": SOFTHSM_DIR})
            env.append({"name": "SOFTHSM2_CONF", "value": f"{SOFTHSM_DIR}/softhsm2.conf"})
            init.append(
                {
                    "name": "softhsm-token",
                    "image": SOFTHSM_IMAGE,
                    "command": ["sh", "-c", SOFTHSM_INIT_SCRIPT, "softhsm-token"],
                    "args": [SOFTHSM_DIR, hsm.token_label, "/var/run/secrets/signet/softhsm"],
                    "volumeMounts": [
                        {"name": "hsm-token", "mountPath": SOFTHSM_DIR},
                        {
                            "name": "softhsm-pins",
                            "mountPath": "/var/run/secrets/signet/softhsm",
                            "readOnly": True,
                        },
                    ],
                    "securityContext": _container_security(),
                }
            )
            volumes.append(
                {
                    "name": "softhsm-pins",
                    "secret": {"secretName": f"{name}-softhsm-pin", "defaultMode": 0o400},
                }
            )
        pin_secret = hsm.pin.name if hsm.pin else f"{name}-softhsm-pin"
        pin_key = hsm.pin.key if hsm.pin else "pin"
        volumes.append(
            {
                "name": "hsm-pin",
                "secret": {
                    "secretName": pin_secret,
                    "items": [{"key": pin_key, "path": "pin"}],
                    "defaultMode": 0o400,
                },
            }
        )
        mounts.append({"name": "hsm-pin", "mountPath": PIN_DIR, "readOnly": True})
        if hsm.config_map:
            volumes.append({"name": "hsm-config", "configMap": {"name": hsm.config_map}})
            mounts.append({"name": "hsm-config", "mountPath": "/etc/hsm", "readOnly": True})
    if component.name == "storage":
        store = spec.object_store
        volumes.append(
            {
                "name": "s3",
                "projected": {
                    "defaultMode": 0o400,
                    "sources": [
                        {
                            "secret": {
                                "name": store.access_key.name,
                                "items": [{"key": store.access_key.key, "path": "access-key"}],
                            }
                        },
                        {
                            "secret": {
                                "name": store.secret_key.name,
                                "items": [{"key": store.secret_key.key, "path": "secret-key"}],
                            }
                        },
                    ],
                },
            }
        )
        mounts.append({"name": "s3", "mountPath": S3_DIR, "readOnly": True})
    single_volume = component.name == "signer" and spec.hsm.softhsm
    probe = {"httpGet": {"path": "/readyz", "port": component.port}, "periodSeconds": 10}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": full, "namespace": namespace, "labels": labels(name, component.name)},
        "spec": {
            "replicas": component.replicas(spec),
            # One pod at a time on the trial token's ReadWriteOnce volume.
            "strategy": {"type": "Recreate" if single_volume else "RollingUpdate"},
            "selector": {"matchLabels": labels(name, component.name)},
            "template": {
                "metadata": {
                    "labels": labels(name, component.name),
                    "annotations": {"signet.dev/config-hash": config_hash(spec, component, name)},
                },
                "spec": {
                    "serviceAccountName": full,
                    "automountServiceAccountToken": component.needs_api_token,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": UID,
                        "fsGroup": UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "initContainers": init,
                    "containers": [
                        {
                            "name": component.name,
                            "image": spec.image,
                            "args": [*component.args, "--port", str(component.port)],
                            "ports": [{"name": "http", "containerPort": component.port}],
                            "env": env,
                            "volumeMounts": mounts,
                            "resources": {
                                "requests": requests,
                                "limits": {"memory": requests["memory"]},
                            },
                            "readinessProbe": probe,
                            "livenessProbe": {
                                "httpGet": {"path": "/healthz", "port": component.port},
                                "periodSeconds": 20,
                            },
                            "securityContext": _container_security(),
                        }
                    ],
                    "volumes": volumes,
                },
            },
        },
    }


def _network_policy(
    name: str, namespace: str, spec: ApplianceSpec, component: Component
) -> Manifest:
    ingress_from: list[Manifest] = [
        {"podSelector": {"matchLabels": labels(name, caller)}} for caller in component.callers
    ]
    ingress_from.append({"podSelector": {"matchLabels": OPERATOR_LABELS}})  # readiness checks
    if component.public:
        ingress_from = [{"namespaceSelector": {}}, *ingress_from]
    dns = {
        "to": [{"namespaceSelector": {}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    egress: list[Manifest] = [dns]
    if component.name == "signer":
        if spec.hsm.endpoint:  # a network HSM: only the signer may leave for it
            port = int(spec.hsm.endpoint.rsplit(":", 1)[1]) if ":" in spec.hsm.endpoint else 1792
            egress.append({"ports": [{"protocol": "TCP", "port": port}]})
        if spec.database is not None:
            egress.append({"ports": [{"protocol": "TCP", "port": 5432}]})
    if component.name == "storage":
        endpoint = spec.object_store.endpoint
        port = (
            int(endpoint.rsplit(":", 1)[1])
            if ":" in endpoint
            else (443 if spec.object_store.secure else 80)
        )
        egress.append({"ports": [{"protocol": "TCP", "port": port}]})  # the object store
        egress.append({"to": [{"podSelector": {"matchLabels": labels(name, "signer")}}]})
        egress.append(
            {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}
        )  # the API server (Lease)
    if component.name == "portal":
        for peer in ("signer", "storage"):
            egress.append({"to": [{"podSelector": {"matchLabels": labels(name, peer)}}]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": f"{name}-{component.name}",
            "namespace": namespace,
            "labels": labels(name, component.name),
        },
        "spec": {
            "podSelector": {"matchLabels": labels(name, component.name)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {"from": ingress_from, "ports": [{"protocol": "TCP", "port": component.port}]}
            ],
            "egress": egress,
        },
    }


#: kind -> spec fields that exclude each other: a merge patch sets the absent one to null.
CLEARED_ON_PATCH: dict[str, tuple[str, ...]] = {
    "PodDisruptionBudget": ("minAvailable", "maxUnavailable"),
}


def _disruption_budget(
    name: str, namespace: str, spec: ApplianceSpec, component: Component
) -> Manifest:
    """Always present, so scaling down never leaves a stale budget behind (the operator
    deletes nothing): with 2+ replicas one must stay up during drains; with one, the
    budget allows its eviction (a `minAvailable: 1` on one pod would block every drain).
    The handler's merge patch clears the field not given here (`CLEARED_ON_PATCH`)."""
    several = component.replicas(spec) > 1
    budget: Manifest = {"minAvailable": 1} if several else {"maxUnavailable": 1}
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": f"{name}-{component.name}",
            "namespace": namespace,
            "labels": labels(name, component.name),
        },
        "spec": {**budget, "selector": {"matchLabels": labels(name, component.name)}},
    }


def desired_objects(name: str, namespace: str, spec: ApplianceSpec) -> list[Manifest]:
    """Every child of the Appliance `name`, in creation order (Secrets are not here: they are
    generated once by the handler, see `service_token_secret`)."""
    objects: list[Manifest] = []
    for component in COMPONENTS:
        if not (component.installed and component.enabled(spec)):
            continue
        full = f"{name}-{component.name}"
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {
                    "name": full,
                    "namespace": namespace,
                    "labels": labels(name, component.name),
                },
                "automountServiceAccountToken": component.needs_api_token,
            }
        )
        objects.append(deployment(name, namespace, spec, component))
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": full,
                    "namespace": namespace,
                    "labels": labels(name, component.name),
                },
                "spec": {
                    "selector": labels(name, component.name),
                    "ports": [{"name": "http", "port": component.port, "targetPort": "http"}],
                },
            }
        )
        objects.append(_disruption_budget(name, namespace, spec, component))
        objects.append(_network_policy(name, namespace, spec, component))
    lease_role = f"{name}-storage-lease"
    objects.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {
                "name": lease_role,
                "namespace": namespace,
                "labels": labels(name, "storage"),
            },
            "rules": [
                {
                    "apiGroups": ["coordination.k8s.io"],
                    "resources": ["leases"],
                    "verbs": ["create"],
                },
                {
                    "apiGroups": ["coordination.k8s.io"],
                    "resources": ["leases"],
                    "resourceNames": [f"{name}-tree-head-publisher"],
                    "verbs": ["get", "update"],
                },
            ],
        }
    )
    objects.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {
                "name": lease_role,
                "namespace": namespace,
                "labels": labels(name, "storage"),
            },
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": lease_role,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": f"{name}-storage", "namespace": namespace}
            ],
        }
    )
    return objects


def service_token_secret(name: str, namespace: str, token: str) -> Manifest:
    """The service-to-service token: generated once, never rotated by a reconcile."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"{name}-service-token",
            "namespace": namespace,
            "labels": labels(name),
        },
        "type": "Opaque",
        "stringData": {"token": token},
    }


def softhsm_token_claim(name: str, namespace: str) -> Manifest:
    """Trials: the volume holding the SoftHSM token (and so the CA keys).  Created once
    and never patched (a claim's spec is immutable); owned by the Appliance, so deleting
    the trial deletes its keys."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": f"{name}-softhsm-token",
            "namespace": namespace,
            "labels": labels(name, "signer"),
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": SOFTHSM_TOKEN_SIZE}},
        },
    }


def softhsm_pin_secret(name: str, namespace: str, pin: str, so_pin: str = "") -> Manifest:
    """Trials with SoftHSM: generated user and security-officer PINs, kept like the
    service token."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{name}-softhsm-pin", "namespace": namespace, "labels": labels(name)},
        "type": "Opaque",
        "stringData": {"pin": pin, "so-pin": so_pin or pin},
    }
