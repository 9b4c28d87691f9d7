"""The Helm chart with a real Helm implementation (helm-sdkpy), and the images' Dockerfiles."""

from __future__ import annotations

import asyncio
import inspect
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "signet"


def _lint() -> dict[str, Any]:
    import helm_sdkpy

    run = helm_sdkpy.Lint(helm_sdkpy.Configuration(namespace="signet")).run
    result = run(str(CHART))
    if inspect.isawaitable(result):
        result = asyncio.run(result)  # type: ignore[arg-type]
    return dict(result)


def test_chart_lints_clean_with_real_helm() -> None:
    result = _lint()
    assert result["TotalChartsLinted"] == 1
    assert not result["Errors"], result
    # Severity 1 is INFO (e.g. "icon is recommended"); anything above is a finding.
    assert all(message["Severity"] <= 1 for message in result["Messages"]), result


def test_values_schema_accepts_the_defaults_and_refuses_short_retention() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(values)
    values["appliance"]["spec"]["objectStore"]["retentionYears"] = 3
    assert list(jsonschema.Draft7Validator(schema).iter_errors(values))
    values["appliance"]["spec"]["objectStore"]["retentionYears"] = 10
    values["appliance"]["spec"]["objectStore"]["secretKey"] = "inline-secret"
    assert list(jsonschema.Draft7Validator(schema).iter_errors(values))
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    scraper = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
    values["appliance"]["spec"]["metrics"] = {"scraper": scraper}
    jsonschema.Draft7Validator(schema).validate(values)
    for typo in ({"scrapers": scraper}, {"scraper": {"podSelectors": {}}}, {"scraper": {}}):
        values["appliance"]["spec"]["metrics"] = typo
        assert list(jsonschema.Draft7Validator(schema).iter_errors(values)), typo
    # The signer's batch volume: typos refused, and several replicas need a shared one.
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    signer = values["appliance"]["spec"]["signer"]
    assert signer["batchStorage"] == {"size": "10Gi"}
    # several signers need a vendor HSM (SoftHSM's token is one volume's files)
    values["appliance"]["spec"]["hsm"] = {
        "moduleImage": "registry.example.com/luna-client:10.7",
        "modulePath": "/usr/lib/libCryptoki2_64.so",
        "pin": {"name": "hsm-pin", "key": "pin"},
    }
    for fine in (
        {"replicas": 1, "batchStorage": {"accessMode": "ReadWriteOnce"}},
        {"replicas": 3, "batchStorage": {"accessMode": "ReadWriteMany", "size": "1Ti"}},
        {"replicas": 3, "batchStorage": {"storageClassName": "cephfs.rook"}},
        {"batchStorage": {"claimName": "signet-batches"}},
    ):
        values["appliance"]["spec"]["signer"] = fine
        jsonschema.Draft7Validator(schema).validate(values)
    for wrong in (
        {"replicas": 2, "batchStorage": {"accessMode": "ReadWriteOnce"}},
        {"batchStorage": {"accesMode": "ReadWriteMany"}},
        {"batchStorage": {"size": "ten gigabytes"}},
        {"batchStorge": {}},
    ):
        values["appliance"]["spec"]["signer"] = wrong
        assert list(jsonschema.Draft7Validator(schema).iter_errors(values)), wrong


def test_chart_refuses_short_retention_at_render_time() -> None:
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert 'fail (printf "%s: retention of %d years is below the statutory minimum' in helpers
    for template in ("appliance.yaml", "signingpolicy.yaml"):
        assert "signet.checkRetention" in (CHART / "templates" / template).read_text()


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    lines, current = [], ""
    for raw in dockerfile.read_text().splitlines():
        if raw.strip().startswith("#") or not raw.strip():
            continue
        current += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            instruction, _, rest = current.strip().partition(" ")
            lines.append((instruction.upper(), rest))
            current = ""
    return lines


def test_dockerfiles_name_only_what_exists() -> None:
    for dockerfile, context in (
        (ROOT / "Dockerfile", ROOT),
        (ROOT / "hsm" / "Dockerfile", ROOT / "hsm"),
    ):
        instructions = _instructions(dockerfile)
        froms = [rest for kind, rest in instructions if kind == "FROM"]
        assert froms and all(
            ":" in f.split()[0] and not f.split()[0].endswith(":latest") for f in froms
        )
        users = [rest for kind, rest in instructions if kind == "USER"]
        assert users and not users[-1].startswith(("0", "root")), "images run as non-root"
        for kind, rest in instructions:
            if kind == "COPY" and not rest.startswith("--from"):
                *sources, _target = shlex.split(rest)
                for source in sources:
                    assert (context / source).exists(), f"{dockerfile}: COPY {source} is missing"
    entry = next(rest for kind, rest in _instructions(ROOT / "Dockerfile") if kind == "ENTRYPOINT")
    assert json.loads(entry) == ["signet"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'signet = "signet.cli.main:main"' in pyproject


def test_component_commands_exist_in_the_cli() -> None:
    """Every `signet …` the operator puts in a pod is a real command of the image."""
    from signet.operator.desired import COMPONENTS

    for component in COMPONENTS:
        if not component.installed:
            continue
        result = subprocess.run(
            [sys.executable, "-m", "signet.cli", *component.args, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, (component.name, result.stderr)
        assert "--port" in result.stdout and "--metrics-port" in result.stdout


def test_values_schema_is_what_the_models_generate() -> None:
    """The Appliance and SigningPolicy parts come from the models (`signet operator crds`)."""
    from signet.operator.values_schema import values_schema

    committed = json.loads((CHART / "values.schema.json").read_text())
    assert values_schema(committed) == committed


@pytest.mark.parametrize(
    ("where", "key"),
    [
        (("appliance", "spec", "objectStore"), "retentionYear"),
        ((), "operater"),
        (("operator", "image"), "tagg"),
        (("appliance", "spec", "portal"), "hostnme"),
        (("defaultSigningPolicy", "spec"), "maxSigner"),
    ],
)
def test_values_schema_refuses_unknown_keys_everywhere(where: tuple[str, ...], key: str) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    node = values
    for step in where:
        node = node[step]
    node[key] = 3
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(values))
    assert any(key in e.message for e in errors), [e.message for e in errors]


def test_values_schema_refuses_softhsm_with_two_signers() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    values["appliance"]["spec"]["signer"] = {
        "replicas": 2,
        "batchStorage": {"accessMode": "ReadWriteMany"},
    }
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(values))
    assert any("maximum" in e.message or "1" in e.message for e in errors)
    values["appliance"]["spec"]["hsm"] = {
        "softhsm": False,
        "moduleImage": "luna:1",
        "modulePath": "/lib/x.so",
        "pin": {"name": "p", "key": "pin"},
    }
    assert not list(jsonschema.Draft7Validator(schema).iter_errors(values))


def test_crd_status_declares_conditions_and_generation() -> None:
    crd = yaml.safe_load((CHART / "crds" / "appliances.signet.dev.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["observedGeneration"]["type"] == "integer"
    item = status["conditions"]["items"]["properties"]
    for field in ("type", "status", "reason", "message", "lastTransitionTime"):
        assert field in item
    assert "observedGeneration" in item
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Retention"] == ".status.retentionYears"  # in force, not only asked
