"""The chart's `values.schema.json`, its Appliance and SigningPolicy parts generated from
the same models as the CRDs, so that `helm install` refuses a typo anywhere.

The CRD's structural schema cannot say `additionalProperties: false` (the API server
prunes unknown fields instead, silently: `retentionYear: 3` would install with the
default retention).  Helm validates values with JSON Schema before rendering, so here
every object of the spec refuses unknown keys, and the chart's own keys do too.  The
CEL rule that SoftHSM has one signer becomes a JSON Schema `if`/`then`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from signet.common.contracts.appliance import ApplianceSpec, SigningPolicySpec
from signet.operator.crds import structural_schema


def closed(node: Any) -> Any:
    """Every object with properties refuses other keys; Kubernetes extensions dropped."""
    if isinstance(node, list):
        return [closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: closed(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def appliance_spec_schema() -> dict[str, Any]:
    schema: dict[str, Any] = closed(structural_schema(ApplianceSpec))
    # hsm.softhsm keeps its token on one volume (the CRD's CEL rule, for Helm).
    schema["if"] = {
        "required": ["hsm"],
        "properties": {
            "hsm": {"required": ["softhsm"], "properties": {"softhsm": {"const": True}}}
        },
    }
    schema["then"] = {"properties": {"signer": {"properties": {"replicas": {"maximum": 1}}}}}
    props = schema["properties"]
    # several signers share their batches (the SignerComponentSpec rule)
    props["signer"]["if"] = {"required": ["replicas"], "properties": {"replicas": {"minimum": 2}}}
    props["signer"]["then"] = {
        "properties": {"batchStorage": {"properties": {"accessMode": {"const": "ReadWriteMany"}}}}
    }
    # a scraper names someone (the ScraperSpec rule)
    scraper = props["metrics"]["properties"]["scraper"]
    scraper["anyOf"] = [{"required": ["namespaceSelector"]}, {"required": ["podSelector"]}]
    # an enabled portal has a hostname and a database (the PortalSpec rule)
    props["portal"]["if"] = {"required": ["enabled"], "properties": {"enabled": {"const": True}}}
    props["portal"]["then"] = {"required": ["hostname", "database"]}
    return schema


def values_schema(base: dict[str, Any]) -> dict[str, Any]:
    """`base` (the chart's hand-written keys) with the generated spec schemas, every
    object closed."""
    result: dict[str, Any] = closed(base)
    props = result["properties"]
    props["appliance"]["properties"]["spec"] = appliance_spec_schema()
    policy = closed(structural_schema(SigningPolicySpec))
    props["defaultSigningPolicy"]["properties"]["spec"] = policy
    return result


def write(path: Path) -> Path:
    base = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(values_schema(base), indent=2) + "\n", encoding="utf-8")
    return path
