"""The table of Signet's components and what each needs from the Appliance's spec.

Components are rows of one table (`COMPONENTS`): signer, storage and the portal
(installed when `spec.portal.enabled`; its extras are in `portal`).  Pure data and
functions; `desired` builds the objects.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from signet.common.contracts.appliance import ApplianceSpec
from signet.operator.portal import portal_env, signer_channel_env

Manifest = dict[str, Any]

PIN_DIR = "/var/run/secrets/signet/hsm"
S3_DIR = "/var/run/secrets/signet/s3"
HSM_MODULE_DIR = "/opt/hsm"
POLICY_DIR = "/etc/signet/policies"
#: The signer's batch volume (`BatchStorageSpec`): uploads and signed results of batches.
BATCH_DIR = "/var/lib/signet-batches"
#: One ConfigMap per namespace holds every accepted SigningPolicy (key `<name>.json`);
#: pods mount it, and the kubelet refreshes the files in place when a policy changes.
POLICIES_CONFIG_MAP = "signet-policies"
OPERATOR_LABELS = {"app.kubernetes.io/name": "signet-operator"}
#: The chart's `helm test` pod: its own label, admitted to the API ports (/healthz).
HELM_TEST_LABELS = {"app.kubernetes.io/name": "signet-helm-test"}


@dataclass(frozen=True)
class Component:
    name: str
    #: the API (and /readyz, /healthz): peers and the operator only
    port: int
    #: `/metrics` alone, for the scraper the Appliance names (`spec.metrics.scraper`)
    metrics_port: int
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
    #: the top-level spec fields (camelCase) this component's pods read: only a change to
    #: one of them rolls this component out (`workloads.config_hash`)
    settings: tuple[str, ...] = ("image",)


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
        {"name": "SIGNET_SIGNER_BATCH_DIRECTORY", "value": BATCH_DIR},
    ]
    database = spec.database.url
    env.append(secret_env("SIGNET_SIGNER_DATABASE_URL", database.name, database.key))
    clock = spec.signer.time
    env.append({"name": "SIGNET_SIGNER_TSA_ACCURACY_MS", "value": str(clock.accuracy_ms)})
    env.append({"name": "SIGNET_SIGNER_TIME_TRUST", "value": clock.trust})
    if clock.references:
        env.append({"name": "SIGNET_SIGNER_TIME_REFERENCES", "value": json.dumps(clock.references)})
    env.extend(signer_channel_env(spec))  # activation codes: the portal's mail and SMS
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
        9101,
        ("signer", "serve"),
        installed=True,
        enabled=lambda spec: True,
        replicas=lambda spec: spec.signer.replicas,
        callers=("storage", "portal"),
        env=_signer_env,
        settings=("image", "organization", "publicUrl", "signer", "hsm", "database"),
    ),
    Component(
        "storage",
        8102,
        9102,
        ("storage", "serve"),
        installed=True,
        enabled=lambda spec: True,
        replicas=lambda spec: spec.storage.replicas,
        callers=("portal",),
        needs_api_token=True,  # the tree-head publisher's Lease
        env=_storage_env,
        settings=("image", "storage", "objectStore", "treeHeadIntervalSeconds"),
    ),
    Component(
        "portal",
        8103,
        9103,
        ("portal", "serve"),
        installed=True,
        enabled=lambda spec: spec.portal.enabled,
        replicas=lambda spec: spec.portal.replicas,
        public=True,
        env=portal_env,
        settings=("image", "portal", "database"),
    ),
)


def batch_claim_name(name: str, spec: ApplianceSpec) -> str:
    """The signer's batch volume claim: the one the spec names, or the operator's own."""
    return spec.signer.batch_storage.claim_name or f"{name}-signer-batches"


def labels(name: str, component: str | None = None) -> dict[str, str]:
    result = {
        "app.kubernetes.io/name": "signet",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "signet-operator",
    }
    if component:
        result["app.kubernetes.io/component"] = component
    return result


def secret_env(variable: str, secret: str, key: str) -> Manifest:
    return {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
