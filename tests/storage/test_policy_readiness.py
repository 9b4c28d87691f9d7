"""The storage service reports the signing policies in force, re-read without a restart."""

from __future__ import annotations

import json
import time
from pathlib import Path

from signet.storage.config import StorageSettings
from signet.storage.service import StorageService


def test_readiness_reports_policies_as_they_change(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    service = StorageService(
        StorageSettings(home=tmp_path / "storage", policy_dir=policies, tree_head_interval=0)
    )
    service.policies.min_interval = 0
    try:
        assert service.readiness().policies == {}
        policies.mkdir()
        (policies / "hr.json").write_text(
            json.dumps({"name": "hr", "version": 1, "spec": {"level": "B-LT"}})
        )
        assert service.readiness().policies == {"hr": 1}
        time.sleep(0.01)
        (policies / "hr.json").write_text(
            json.dumps({"name": "hr", "version": 2, "spec": {"retentionYears": 2}})
        )
        ready = service.readiness()
        assert ready.policies == {"hr": 1}  # the refused version 2 did not replace version 1
        assert any("retentionYears" in problem for problem in ready.policy_problems)
    finally:
        service.close()
