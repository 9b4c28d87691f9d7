"""The Kopf handlers of `SigningPolicy`: validate, then publish into the policies ConfigMap.

The services mount that ConfigMap (`desired.POLICIES_CONFIG_MAP`, key
`<name>.json`) and re-read it without a restart; a refused change leaves the
last accepted version in force.  Registered by importing this module
(`signet operator run` imports it with `handlers`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError
from signet.common.contracts.appliance import SigningPolicySpec
from signet.common.errors import summarize_validation
from signet.operator import desired
from signet.operator.cluster import api_client, apply
from signet.operator.conditions import merge_transitions


def _policies_patch(namespace: str, data: dict[str, str | None]) -> None:
    """Merge `data` into the namespace's policies ConfigMap (a None value removes a key).

    A merge patch touches only the keys named, so handlers of different policies,
    running concurrently, never overwrite each other's entries.
    """
    with api_client() as api:
        core = client.CoreV1Api(api)
        try:
            core.patch_namespaced_config_map(
                desired.POLICIES_CONFIG_MAP,
                namespace,
                {"data": data},  # a plain dict is a valid body
                _content_type="application/merge-patch+json",  # null removes a key
            )
            return
        except ApiException as exc:
            if exc.status != 404:
                raise
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": desired.POLICIES_CONFIG_MAP,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "signet-operator"},
            },
            "data": {key: value for key, value in data.items() if value is not None},
        }
        apply(api, body)  # created meanwhile by another handler: apply patches it


@kopf.on.create("signet.dev", "v1alpha1", "signingpolicies")
@kopf.on.update("signet.dev", "v1alpha1", "signingpolicies", field="spec")
@kopf.on.resume("signet.dev", "v1alpha1", "signingpolicies")
def policy_changed(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Validate, then publish `<name>.json` into the policies ConfigMap.

    A refused change leaves the previous version in the ConfigMap: services go on
    signing under the last accepted version, and the status says why.
    """
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    version = int(body["metadata"].get("generation") or 1)
    now = datetime.now(UTC).isoformat()
    previous = list(body.get("status", {}).get("conditions", []))
    try:
        spec = SigningPolicySpec.model_validate(dict(body.get("spec", {})))
    except ValidationError as exc:
        message = summarize_validation(exc.errors())
        kopf.warn(body, reason="PolicyRefused", message=message)
        patch.status["conditions"] = merge_transitions(
            previous,
            [
                {"type": "Accepted", "status": "False", "reason": "Invalid", "message": message},
                {
                    "type": "Applied",
                    "status": "False",
                    "reason": "Refused",
                    "message": f"version {version} refused ({message}); "
                    f"version {body.get('status', {}).get('version', 'none')} stays in force",
                },
            ],
            now,
        )
        return
    document = {
        "name": name,
        "version": version,
        "spec": spec.model_dump(mode="json", by_alias=True),
    }
    _policies_patch(namespace, {f"{name}.json": json.dumps(document, sort_keys=True)})
    kopf.info(body, reason="PolicyApplied", message=f"version {version} distributed")
    patch.status["version"] = version
    patch.status["conditions"] = merge_transitions(
        previous,
        [
            {"type": "Accepted", "status": "True", "reason": "Valid", "message": ""},
            {
                "type": "Applied",
                "status": "True",
                "reason": "Distributed",
                "message": f"version {version} in ConfigMap {desired.POLICIES_CONFIG_MAP}",
            },
        ],
        now,
    )


@kopf.on.delete("signet.dev", "v1alpha1", "signingpolicies")
def policy_deleted(body: kopf.Body, **_: Any) -> None:
    """Withdraw the policy from the services.

    Kopf holds a finalizer on each policy for this, so a policy deleted while the
    operator is down is withdrawn when it comes back, never left in force unseen.
    """
    _policies_patch(body["metadata"]["namespace"], {f"{body['metadata']['name']}.json": None})
