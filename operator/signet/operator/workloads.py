"""The Deployment of each component: pods locked down, the HSM module, Secrets as files.

Security defaults on every pod: non-root, read-only root file system, no
privilege escalation, all capabilities dropped, the runtime's seccomp
profile, no service-account token unless the component calls the API.
"""

from __future__ import annotations

import hashlib
import json

from signet.common.contracts.appliance import ApplianceSpec, VolumeAccessMode
from signet.operator.components import (
    BATCH_DIR,
    HSM_MODULE_DIR,
    PIN_DIR,
    POLICIES_CONFIG_MAP,
    POLICY_DIR,
    S3_DIR,
    Component,
    Manifest,
    batch_claim_name,
    labels,
    secret_env,
)

UID = 10001
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


def config_hash(spec: ApplianceSpec, component: Component, name: str) -> str:
    """Changes whenever this component's configuration changes, so its Deployment rolls
    out, and only then: a portal hostname must not restart a one-replica signer
    (`Recreate`, a signing gap).  Hashes the component's environment and the spec fields
    it reads (`Component.settings`), never the whole spec."""
    dumped = spec.model_dump(mode="json", by_alias=True)
    payload = {
        "env": component.env(name, spec),
        "spec": {key: dumped.get(key) for key in component.settings},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def metrics_env(component: Component) -> Manifest:
    """The metrics port as the service's setting (``SIGNET_<SERVICE>_METRICS_PORT``)."""
    return {
        "name": f"SIGNET_{component.name.upper()}_METRICS_PORT",
        "value": str(component.metrics_port),
    }


def _scrape_annotations(spec: ApplianceSpec, component: Component) -> dict[str, str]:
    """``prometheus.io/*`` for annotation-based discovery, only when a scraper is named:
    without one the NetworkPolicy admits nobody to the metrics port, and a Prometheus
    that discovers pods by annotation would report every pod down (``up == 0``)."""
    if spec.metrics.scraper is None:
        return {}
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(component.metrics_port),
        "prometheus.io/path": "/metrics",
    }


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
        secret_env(
            f"SIGNET_{component.name.upper()}_SERVICE_TOKEN", f"{name}-service-token", "token"
        ),
        *component.env(name, spec),
        metrics_env(component),
    ]
    if component.name == "signer":
        hsm = spec.hsm
        image = SOFTHSM_IMAGE if hsm.softhsm else hsm.module_image
        source = "/usr/lib/softhsm/libsofthsm2.so" if hsm.softhsm else hsm.module_path
        volumes.append({"name": "hsm-module", "emptyDir": {}})
        mounts.append({"name": "hsm-module", "mountPath": HSM_MODULE_DIR, "readOnly": True})
        # Batch uploads and results: a claimed volume, never the pod's emptyDir (a restart
        # would lose them while the database still lists the batches).
        volumes.append(
            {
                "name": "batches",
                "persistentVolumeClaim": {"claimName": batch_claim_name(name, spec)},
            }
        )
        mounts.append({"name": "batches", "mountPath": BATCH_DIR})
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
    # Never two pods at once: a ReadWriteOnce volume (the trial token's, a one-replica
    # signer's batches) would leave a rolling update's new pod on another node waiting for
    # the attachment forever (Multi-Attach) while the old pod holds it; the ledger's one
    # writer.  Recreate costs that one signer a short gap during a rollout instead.
    single_volume = component.name == "storage" or (
        component.name == "signer"
        and (spec.hsm.softhsm or spec.signer.batch_access_mode is VolumeAccessMode.READ_WRITE_ONCE)
    )
    probe = {"httpGet": {"path": "/readyz", "port": component.port}, "periodSeconds": 10}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": full, "namespace": namespace, "labels": labels(name, component.name)},
        "spec": {
            "replicas": component.replicas(spec),
            "strategy": {"type": "Recreate" if single_volume else "RollingUpdate"},
            "selector": {"matchLabels": labels(name, component.name)},
            "template": {
                "metadata": {
                    "labels": labels(name, component.name),
                    "annotations": {
                        "signet.dev/config-hash": config_hash(spec, component, name),
                        **_scrape_annotations(spec, component),
                    },
                },
                "spec": {
                    "serviceAccountName": full,
                    "automountServiceAccountToken": component.needs_api_token,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": UID,
                        "fsGroup": UID,
                        # a large batch volume is not walked (chown/chmod) at every start:
                        # only when its root is not already the group's
                        "fsGroupChangePolicy": "OnRootMismatch",
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "initContainers": init,
                    "containers": [
                        {
                            "name": component.name,
                            "image": spec.image,
                            # Options every image release knows: `spec.image` is versioned
                            # apart from the operator, and an older `serve` exits on an
                            # option it lacks.  The metrics port goes in the environment
                            # (`metrics_env`), which an older release simply ignores.
                            "args": [*component.args, "--port", str(component.port)],
                            "ports": [
                                {"name": "http", "containerPort": component.port},
                                {"name": "metrics", "containerPort": component.metrics_port},
                            ],
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
