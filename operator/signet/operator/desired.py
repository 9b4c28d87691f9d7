"""Everything an Appliance needs in the cluster, computed as pure functions of its spec.

The Kopf handlers only apply what these functions return, so the whole
reconcile logic is tested without a cluster.  The components are a table
(`components.COMPONENTS`); their Deployments come from `workloads`.

Network: nothing reaches a pod but what its NetworkPolicy lists; only the
portal accepts traffic from outside the namespace on its API port; only the
signer may leave for the HSM and the database; only storage may leave for the
object store.  The scraper the Appliance names reaches the metrics ports alone.
"""

from __future__ import annotations

from signet.common.contracts.appliance import ApplianceSpec
from signet.operator.components import (
    COMPONENTS,
    HELM_TEST_LABELS,
    OPERATOR_LABELS,
    POLICIES_CONFIG_MAP,
    Component,
    Manifest,
    batch_claim_name,
    labels,
)
from signet.operator.portal import (
    exposure,
    portal_egress,
    portal_ingress_from,
    signer_channel_egress,
)
from signet.operator.workloads import SOFTHSM_TOKEN_SIZE, config_hash, deployment

__all__ = [
    "CLEARED_ON_PATCH",
    "COMPONENTS",
    "POLICIES_CONFIG_MAP",
    "RETAINED",
    "Component",
    "batch_claim",
    "batch_claim_name",
    "config_hash",
    "deployment",
    "desired_objects",
    "labels",
    "referenced_secrets",
    "service_token_secret",
    "softhsm_pin_secret",
    "softhsm_token_claim",
]


def referenced_secrets(spec: ApplianceSpec) -> list[tuple[str, str]]:
    """(Secret, key) pairs the spec names: they must exist before anything starts."""
    refs = [(spec.object_store.access_key.name, spec.object_store.access_key.key)]
    refs.append((spec.object_store.secret_key.name, spec.object_store.secret_key.key))
    if spec.hsm.pin is not None:
        refs.append((spec.hsm.pin.name, spec.hsm.pin.key))
    refs.append((spec.database.url.name, spec.database.url.key))
    portal = spec.portal
    if portal.enabled:
        if portal.database is not None:
            refs.append((portal.database.name, portal.database.key))
        if portal.smtp is not None and portal.smtp.credentials is not None:
            refs += [(portal.smtp.credentials, key) for key in ("username", "password")]
        if portal.sms is not None:
            refs += [
                (portal.sms.credentials, "account-sid"),
                (portal.sms.credentials, "auth-token"),
            ]
        if portal.oidc is not None:
            refs.append((portal.oidc.client_secret.name, portal.oidc.client_secret.key))
        if portal.tls.cert_manager_issuer is None and portal.tls.secret_name is not None:
            refs.append((portal.tls.secret_name, "tls.crt"))
    return refs


def _network_policy(
    name: str, namespace: str, spec: ApplianceSpec, component: Component
) -> Manifest:
    ingress_from: list[Manifest] = [
        {"podSelector": {"matchLabels": labels(name, caller)}} for caller in component.callers
    ]
    ingress_from.append({"podSelector": {"matchLabels": OPERATOR_LABELS}})  # readiness checks
    ingress_from.append({"podSelector": {"matchLabels": HELM_TEST_LABELS}})  # `helm test`
    if component.public:  # the ingress controller's namespaces, not every namespace
        ingress_from = [*portal_ingress_from(spec), *ingress_from]
    dns = {
        "to": [{"namespaceSelector": {}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    egress: list[Manifest] = [dns]
    if component.name == "signer":
        if spec.hsm.endpoint:  # a network HSM: only the signer may leave for it
            port = int(spec.hsm.endpoint.rsplit(":", 1)[1]) if ":" in spec.hsm.endpoint else 1792
            egress.append({"ports": [{"protocol": "TCP", "port": port}]})
        egress.append({"ports": [{"protocol": "TCP", "port": 5432}]})  # PostgreSQL
        egress.extend(signer_channel_egress(spec))  # activation codes: mail and SMS alone
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
        egress.extend(portal_egress(name, spec, labels))
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
                {"from": ingress_from, "ports": [{"protocol": "TCP", "port": component.port}]},
                *_scraper_ingress(spec, component),
            ],
            "egress": egress,
        },
    }


def _scraper_ingress(spec: ApplianceSpec, component: Component) -> list[Manifest]:
    """The scraper named by `spec.metrics.scraper`, to the metrics port and nothing else
    (its own rule: NetworkPolicy rules admit every listed source to every listed port)."""
    scraper = spec.metrics.scraper
    if scraper is None:
        return []
    peer: Manifest = {}
    if scraper.namespace_selector is not None:
        peer["namespaceSelector"] = {"matchLabels": dict(scraper.namespace_selector.match_labels)}
    if scraper.pod_selector is not None:
        peer["podSelector"] = {"matchLabels": dict(scraper.pod_selector.match_labels)}
    return [{"from": [peer], "ports": [{"protocol": "TCP", "port": component.metrics_port}]}]


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
                    "ports": [
                        {"name": "http", "port": component.port, "targetPort": "http"},
                        {
                            "name": "metrics",
                            "port": component.metrics_port,
                            "targetPort": "metrics",
                        },
                    ],
                },
            }
        )
        objects.append(_disruption_budget(name, namespace, spec, component))
        objects.append(_network_policy(name, namespace, spec, component))
        if component.name == "portal":
            objects.extend(exposure(name, namespace, spec, labels(name, component.name)))
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


#: On what the operator makes but must outlive the Appliance (no owner reference, so the
#: garbage collector leaves it): why, for the admin who finds it.
RETAINED = "signet.dev/retained"


def batch_claim(name: str, namespace: str, spec: ApplianceSpec) -> Manifest:
    """The signer's batch volume: created once, never patched (its access modes and class
    cannot change; a larger size could, where the class allows expansion, but that is
    the admin's edit of the claim: the operator only warns, `BatchStorageSizeUnchanged`)
    and never owned by the Appliance, unlike the trial token's: it holds signed documents,
    so deleting the Appliance (or re-creating it) leaves it, and a new Appliance of the
    same name mounts it again.  Only an admin deletes it."""
    storage = spec.signer.batch_storage
    claim: Manifest = {
        "accessModes": [spec.signer.batch_access_mode.value],
        "resources": {"requests": {"storage": storage.size}},
    }
    if storage.storage_class_name:
        claim["storageClassName"] = storage.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": batch_claim_name(name, spec),
            "namespace": namespace,
            "labels": labels(name, "signer"),
            "annotations": {
                RETAINED: "signed batch documents: the operator never deletes this claim"
            },
        },
        "spec": claim,
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
