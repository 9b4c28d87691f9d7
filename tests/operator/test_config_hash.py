"""A change to one component's settings rolls out that component alone.

`config_hash` once hashed the whole spec into every Deployment, so a portal
hostname restarted a one-replica signer (`Recreate`: a signing gap).
"""

from __future__ import annotations

import copy
from typing import Any

from signet.common.contracts.appliance import ApplianceSpec
from signet.operator.components import COMPONENTS
from signet.operator.desired import config_hash, desired_objects

from tests.operator.test_crds_and_desired import VENDOR_SPEC


def _hashes(raw: dict[str, Any]) -> dict[str, str]:
    """Each Deployment's config-hash annotation, by name."""
    spec = ApplianceSpec.model_validate(raw)
    return {
        o["metadata"]["name"]: o["spec"]["template"]["metadata"]["annotations"][
            "signet.dev/config-hash"
        ]
        for o in desired_objects("acme", "signet", spec)
        if o["kind"] == "Deployment"
    }


def _changed(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    old, new = _hashes(before), _hashes(after)
    assert old.keys() == new.keys()
    return {name for name in old if old[name] != new[name]}


def test_storage_settings_roll_out_storage_alone() -> None:
    longer = copy.deepcopy(VENDOR_SPEC)
    longer["objectStore"]["retentionYears"] = 12
    assert _changed(VENDOR_SPEC, longer) == {"acme-storage"}
    slower = {**VENDOR_SPEC, "treeHeadIntervalSeconds": 300}
    assert _changed(VENDOR_SPEC, slower) == {"acme-storage"}


def test_signer_settings_roll_out_the_signer_alone() -> None:
    renamed = {**VENDOR_SPEC, "organization": "Other AG"}
    assert _changed(VENDOR_SPEC, renamed) == {"acme-signer"}
    timed = {**VENDOR_SPEC, "signer": {"time": {"accuracyMs": 100}}}
    assert _changed(VENDOR_SPEC, timed) == {"acme-signer"}


def test_shared_settings_roll_out_every_reader() -> None:
    newer = {**VENDOR_SPEC, "image": "signet:0.2.0"}
    assert _changed(VENDOR_SPEC, newer) == set(_hashes(VENDOR_SPEC))


def test_portal_settings_leave_signer_and_storage_alone() -> None:
    spec = ApplianceSpec.model_validate(VENDOR_SPEC)
    moved = ApplianceSpec.model_validate(
        {**VENDOR_SPEC, "portal": {"hostname": "contracts.example.com"}}
    )
    by_name = {c.name: c for c in COMPONENTS}
    for component in ("signer", "storage"):
        c = by_name[component]
        assert config_hash(spec, c, "acme") == config_hash(moved, c, "acme")
    portal = by_name["portal"]
    assert config_hash(spec, portal, "acme") != config_hash(moved, portal, "acme")
    # and the Deployments the operator applies agree
    assert _changed(VENDOR_SPEC, {**VENDOR_SPEC, "portal": {"hostname": "x.example.com"}}) <= {
        "acme-portal"
    }
