"""Policy files are validated with the CRD's models and reloaded without a restart."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from signet.common.errors import NotFound
from signet.common.policies import PolicyDirectory, PolicyError, parse_policy

MANIFEST = """\
apiVersion: signet.dev/v1alpha1
kind: SigningPolicy
metadata: {name: hr, generation: 3}
spec:
  level: B-LT
  identityChecks: [otp-sms]
  seals: [{keyLabel: hr-seal, allowedGroups: [hr]}]
"""


def _operator_file(name: str, version: int, **spec: object) -> str:
    return json.dumps({"name": name, "version": version, "spec": spec})


def _configmap_swap(folder: Path, files: dict[str, str], generation: int) -> None:
    """Write files the way the kubelet updates a ConfigMap volume: a new timestamped
    folder, then an atomic rename of the `..data` symlink, keys as symlinks into it."""
    data = folder / f"..2026_11_25_{generation}"
    data.mkdir()
    for name, text in files.items():
        (data / name).write_text(text)
    link = folder / "..data_tmp"
    link.symlink_to(data.name)
    link.rename(folder / "..data")
    for name in files:
        key = folder / name
        if not key.is_symlink():
            key.symlink_to(f"..data/{name}")


def test_manifest_and_operator_shapes_parse() -> None:
    policy = parse_policy(MANIFEST.encode(), "hr.yaml")
    assert (policy.name, policy.version, policy.spec.level.value) == ("hr", 3, "B-LT")
    assert policy.spec.seals[0].approval_required  # the default: every seal use is approved
    policy = parse_policy(_operator_file("sales", 2, routing="parallel").encode(), "sales.json")
    assert (policy.name, policy.version, policy.spec.routing.value) == ("sales", 2, "parallel")


@pytest.mark.parametrize(
    ("text", "source", "reason"),
    [
        (_operator_file("x", 1, retentionYears=3), "x.json", "retentionYears"),
        (_operator_file("x", 1, levle="B-B"), "x.json", "levle"),
        (_operator_file("x", 1, deadlineDays=5, linkValidityDays=14), "x.json", "deadlineDays"),
        ("kind: Appliance\nmetadata: {name: x}\n", "x.yaml", "not SigningPolicy"),
        ("{not json", "x.json", "not valid JSON"),
        (json.dumps({"version": 1, "spec": {}}), "x.json", "no name"),
    ],
)
def test_bad_files_are_refused_with_the_reason(text: str, source: str, reason: str) -> None:
    with pytest.raises(PolicyError, match=reason) as refused:
        parse_policy(text.encode(), source)
    assert source in str(refused.value)


def test_a_mounted_configmap_change_is_picked_up_without_restart(tmp_path: Path) -> None:
    policies = PolicyDirectory(tmp_path, min_interval=0)
    assert policies.current().versions() == {}  # nothing published yet: empty, not an error
    _configmap_swap(tmp_path, {"hr.json": _operator_file("hr", 1, level="B-T")}, 1)
    assert policies.current().versions() == {"hr": 1}
    _configmap_swap(
        tmp_path,
        {
            "hr.json": _operator_file("hr", 2, level="B-LTA"),
            "sales.json": _operator_file("sales", 1),
        },
        2,
    )
    current = policies.current()
    assert current.versions() == {"hr": 2, "sales": 1}
    assert policies.get("hr").spec.level.value == "B-LTA"
    with pytest.raises(NotFound):
        policies.get("legal")


def test_a_broken_edit_keeps_the_last_good_version_in_force(tmp_path: Path) -> None:
    path = tmp_path / "hr.yaml"
    path.write_text(MANIFEST)
    policies = PolicyDirectory(tmp_path, min_interval=0)
    good = policies.get("hr")
    path.write_text(MANIFEST.replace("generation: 3", "generation: 4").replace("B-LT", "B-Q"))
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse clocks
    current = policies.current()
    assert current.policies["hr"] == good
    assert "hr.yaml" in current.problems and "level" in current.problems["hr.yaml"]


def test_rereads_are_rate_limited(tmp_path: Path) -> None:
    policies = PolicyDirectory(tmp_path, min_interval=3600)
    assert policies.current().versions() == {}
    (tmp_path / "hr.yaml").write_text(MANIFEST)
    assert policies.current().versions() == {}  # not before min_interval has passed
