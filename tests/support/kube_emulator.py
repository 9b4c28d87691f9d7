"""The Kubernetes API for the operator's tests: kmock's emulator plus what it lacks.

kmock 0.8 emulates the real protocol (discovery, list, watch, get, create, merge
patch, status subresource) with objects in memory; this subclass adds, in one
place, what a real API server does and the operator relies on:

- server-side metadata: ``metadata.name`` from ``generateName`` (Kopf's Events),
  ``uid``, ``generation`` (bumped when a patch changes ``spec``),
  ``resourceVersion``, ``creationTimestamp``: ``kopf.adopt`` needs the owner's
  uid, ``observedGeneration`` needs the generation, and the ``kubernetes``
  client refuses an ownerReference without a uid;
- the core group's discovery document (kmock answers ``groupVersion: "/v1"``);
- the resources the operator uses, the custom ones read from the chart's CRDs
  (kmock does not interpret CRDs).

What it does not do, and the tests therefore check otherwise: garbage
collection by ownerReferences (asserted on the children, GC is the cluster's
job), defaulting and validation by CRD schemas (checked with a JSON-schema
validator), scheduling and controllers (Deployments never become ready by
themselves: readiness is simulated).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kmock
import yaml
from kmock._internal import rendering
from kmock._internal.references import ResourceInfo

VERBS = {"get", "list", "watch", "create", "patch", "update", "delete"}
BUILTIN = {
    "v1/secrets": ("Secret", "secret"),
    "v1/configmaps": ("ConfigMap", "configmap"),
    "v1/services": ("Service", "service"),
    "v1/serviceaccounts": ("ServiceAccount", "serviceaccount"),
    "v1/events": ("Event", "event"),
    "events.k8s.io/v1/events": ("Event", "event"),
    "apps/v1/deployments": ("Deployment", "deployment"),
    "policy/v1/poddisruptionbudgets": ("PodDisruptionBudget", "poddisruptionbudget"),
    "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", "networkpolicy"),
    "rbac.authorization.k8s.io/v1/roles": ("Role", "role"),
    "rbac.authorization.k8s.io/v1/rolebindings": ("RoleBinding", "rolebinding"),
    "coordination.k8s.io/v1/leases": ("Lease", "lease"),
}

CLUSTER_WIDE = {
    "v1/namespaces": ("Namespace", "namespace"),
    "apiextensions.k8s.io/v1/customresourcedefinitions": (
        "CustomResourceDefinition",
        "customresourcedefinition",
    ),
}


class Emulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    _versions = itertools.count(1000)

    async def _handle(self, request: rendering.Request) -> Any:
        if request.resource is not None and isinstance(request.data, dict):
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if request.action == kmock.action.CREATE:
                meta = request.data.setdefault("metadata", {})
                if not meta.get("name") and meta.get("generateName"):
                    meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("generation", 1)
                meta.setdefault("creationTimestamp", now)
                meta["resourceVersion"] = str(next(self._versions))
            elif request.action == kmock.action.UPDATE and request.name is not None:
                key = (request.resource, request.namespace, request.name)
                # kmock's ObjectsArray has no .get()
                current = self._objects[key] if key in self._objects else None  # noqa: SIM401
                meta = request.data.setdefault("metadata", {}) if request.data is not None else {}
                if current is not None and not current.deleted:
                    old = current.get("metadata", {})
                    generation = int(old.get("generation", 1))
                    if "spec" in request.data and request.subresource != "status":
                        generation += 1
                    meta["generation"] = generation
                    meta["uid"] = old.get("uid")
                    meta["creationTimestamp"] = old.get("creationTimestamp")
                meta["resourceVersion"] = str(next(self._versions))
        return await super()._handle(request)

    async def _serve_version(self, request: rendering.Request) -> Any:
        answer = await super()._serve_version(request)
        if isinstance(answer, dict) and answer.get("groupVersion") == "/v1":
            answer["groupVersion"] = "v1"
        return answer


def register(emulator: Emulator, crd_dir: Path) -> None:
    for key, (kind, singular) in BUILTIN.items():
        emulator.resources[key] = ResourceInfo(
            namespaced=True, kind=kind, singular=singular, verbs=VERBS
        )
    for key, (kind, singular) in CLUSTER_WIDE.items():
        emulator.resources[key] = ResourceInfo(
            namespaced=False, kind=kind, singular=singular, verbs=VERBS
        )
    for path in sorted(crd_dir.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        spec = crd["spec"]
        for version in spec["versions"]:
            emulator.resources[f"{spec['group']}/{version['name']}/{spec['names']['plural']}"] = (
                ResourceInfo(
                    namespaced=spec["scope"] == "Namespaced",
                    kind=spec["names"]["kind"],
                    singular=spec["names"]["singular"],
                    shortnames=set(spec["names"].get("shortNames", [])),
                    verbs=VERBS,
                    subresources=set(version.get("subresources", {})),
                )
            )


class RunningEmulator:
    """The emulator on a loopback port, served from a thread with its own event loop."""

    def __init__(self, crd_dir: Path) -> None:
        self.url = ""
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, args=(crd_dir,), daemon=True)
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("the Kubernetes emulator did not start")

    def _run(self, crd_dir: Path) -> None:
        async def serve() -> None:
            self._stop = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            async with Emulator() as emulator, kmock.Server(emulator, host="127.0.0.1") as server:
                register(emulator, crd_dir)
                self.url = str(server.url).rstrip("/")
                self._ready.set()
                await self._stop.wait()

        asyncio.run(serve())

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
