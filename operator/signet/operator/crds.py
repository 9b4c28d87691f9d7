"""CustomResourceDefinitions generated from the pydantic models (the one source of truth).

Pydantic's JSON Schema becomes a Kubernetes *structural* OpenAPI v3 schema:
references inlined, titles dropped, `anyOf [X, null]` turned into `X` with
`nullable`, `additionalProperties: false` dropped (the API server prunes
unknown fields instead; a map's value schema is kept), and the status left open for the operator.
`signet operator crds` writes them into the chart; a test fails when the
committed files differ from what the models generate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from signet.common.contracts.appliance import GROUP, VERSION, ApplianceSpec, SigningPolicySpec

GENERATED_BY = "signet operator crds (from signet.common.contracts.appliance)"


#: What the operator writes into status, declared for `kubectl explain` and validators;
#: open beyond these (endpoints, policy versions), which the operator also keeps there.
STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "x-kubernetes-preserve-unknown-fields": True,
    "properties": {
        "observedGeneration": {
            "type": "integer",
            "description": "the spec generation the conditions describe",
        },
        "retentionYears": {
            "type": "integer",
            "description": "the retention in force: what storage reports it runs with",
        },
        "conditions": {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
            "items": {
                "type": "object",
                "required": ["type", "status"],
                "properties": {
                    "type": {"type": "string"},
                    "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                    "reason": {"type": "string"},
                    "message": {"type": "string"},
                    "lastTransitionTime": {"type": "string", "format": "date-time"},
                    "observedGeneration": {"type": "integer"},
                },
            },
        },
    },
}


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.pop("$defs", {})

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = definitions[node["$ref"].rsplit("/", 1)[1]]
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return convert(merged)
        any_of = node.get("anyOf")
        if any_of and any(option == {"type": "null"} for option in any_of):
            options = [option for option in any_of if option != {"type": "null"}]
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            if len(options) == 1:
                merged = {**convert(options[0]), **convert(rest), "nullable": True}
                if merged.get("default", "") is None:
                    merged.pop("default")
                return merged
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "title" or (key == "additionalProperties" and not isinstance(value, dict)):
                continue  # a schema for a map's values stays: without it, its keys are pruned
            out[key] = convert(value)
        return out

    schema = convert(raw)
    schema.setdefault("type", "object")
    return dict(schema)


def _crd(
    kind: str,
    plural: str,
    short_names: list[str],
    spec_model: type[BaseModel],
    columns: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "annotations": {"signet.dev/generated-by": GENERATED_BY},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        *columns,
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "spec": structural_schema(spec_model),
                                "status": STATUS_SCHEMA,
                            },
                        }
                    },
                }
            ],
        },
    }


def appliance_crd() -> dict[str, Any]:
    return _crd(
        "Appliance",
        "appliances",
        ["sgn"],
        ApplianceSpec,
        [
            {
                "name": "Ready",
                "type": "string",
                "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
            },
            {
                "name": "Reason",
                "type": "string",
                "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
            },
            {"name": "Signers", "type": "integer", "jsonPath": ".spec.signer.replicas"},
            # what is in force (storage's report), not only what the spec asks
            {"name": "Retention", "type": "integer", "jsonPath": ".status.retentionYears"},
            {
                "name": "Asked",
                "type": "integer",
                "jsonPath": ".spec.objectStore.retentionYears",
                "priority": 1,
            },
        ],
    )


def signing_policy_crd() -> dict[str, Any]:
    return _crd(
        "SigningPolicy",
        "signingpolicies",
        ["sgnpol"],
        SigningPolicySpec,
        [
            {"name": "Level", "type": "string", "jsonPath": ".spec.level"},
            {
                "name": "Accepted",
                "type": "string",
                "jsonPath": '.status.conditions[?(@.type=="Accepted")].status',
            },
            {"name": "Version", "type": "integer", "jsonPath": ".status.version"},
        ],
    )


def rendered() -> dict[str, str]:
    """File name -> YAML text, exactly as committed in helm/signet/crds/."""
    header = f"# Generated by {GENERATED_BY}. Do not edit: run `signet operator crds`.\n"
    return {
        f"{crd['metadata']['name']}.yaml": header + yaml.safe_dump(crd, sort_keys=False, width=100)
        for crd in (appliance_crd(), signing_policy_crd())
    }


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
