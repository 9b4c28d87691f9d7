"""Real Helm (helm-sdkpy, Helm's own Go library) against a Kubernetes API, in a subprocess.

Why a subprocess: Helm's storage driver is read from the environment by the Go
runtime when the library loads, from the environment the *process started with*
(a Go c-shared library gets the loader's original envp, not later `putenv`s).
The emulator cannot decode the protobuf release Secret of Helm's default driver,
so the child process is started with ``HELM_DRIVER=memory``.  A real cluster
(``KUBECONFIG`` tier) uses Helm's default driver.

Run as a module, it reads a JSON request on stdin and prints a JSON answer:
``{"ok": true, "manifest": "..."}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml


def kubeconfig_for(url: str, path: Path, namespace: str) -> Path:
    """A kubeconfig naming the emulator (plain http; any token is accepted)."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emulator", "cluster": {"server": url}}],
                "users": [{"name": "test", "user": {"token": "emulator"}}],
                "contexts": [
                    {
                        "name": "emulator",
                        "context": {"cluster": "emulator", "user": "test", "namespace": namespace},
                    }
                ],
                "current-context": "emulator",
            }
        )
    )
    return path


def uninstall(release: str, namespace: str, kubeconfig: Path) -> dict[str, Any]:
    """`helm uninstall` (the real-cluster tier cleans up after itself)."""
    return _run(
        {
            "action": "uninstall",
            "release": release,
            "namespace": namespace,
            "kubeconfig": str(kubeconfig),
        },
        {},
    )


def install(
    chart: Path,
    release: str,
    namespace: str,
    values: dict[str, Any],
    kubeconfig: Path | None,
    *,
    memory_driver: bool = True,
    skip_schema: bool = False,
) -> dict[str, Any]:
    """`helm install RELEASE CHART -n NAMESPACE --values …` (no wait: nothing schedules pods)."""
    env = dict(os.environ)
    if memory_driver:
        env["HELM_DRIVER"] = "memory"
    request = {
        "action": "install",
        "chart": str(chart),
        "release": release,
        "namespace": namespace,
        "values": values,
        "kubeconfig": str(kubeconfig) if kubeconfig else None,
        "skip_schema": skip_schema,
    }
    return _run(request, env)


def _run(request: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.helm"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=env or dict(os.environ),
        timeout=180,
        cwd=Path(__file__).resolve().parents[2],
    )
    if result.returncode != 0:
        raise RuntimeError(f"helm subprocess failed: {result.stderr[-2000:]}")
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def _main() -> None:
    import asyncio

    import helm_sdkpy

    request = json.loads(sys.stdin.read())
    configuration = helm_sdkpy.Configuration(
        namespace=request["namespace"], kubeconfig=request["kubeconfig"]
    )
    if request["action"] == "uninstall":
        try:
            asyncio.run(helm_sdkpy.Uninstall(configuration).run(request["release"], wait=False))
        except helm_sdkpy.HelmError as exc:
            print(json.dumps({"ok": False, "error": str(exc)}))
            return
        print(json.dumps({"ok": True}))
        return
    try:
        release = asyncio.run(
            helm_sdkpy.Install(configuration).run(
                request["release"],
                request["chart"],
                values=request["values"],
                wait=False,
                skip_schema_validation=request["skip_schema"],
            )
        )
    except helm_sdkpy.HelmError as exc:
        print(json.dumps({"ok": False, "error": str(exc)}))
        return
    notes = (release.get("info") or {}).get("notes", "")
    print(json.dumps({"ok": True, "manifest": release.get("manifest", ""), "notes": notes}))


if __name__ == "__main__":
    _main()
