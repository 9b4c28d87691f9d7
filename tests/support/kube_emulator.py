"""The Kubernetes API for the operator's tests: kmock's emulator plus what it lacks.

kmock 0.8 emulates the real protocol (discovery, list, watch, get, create, merge
patch, status subresource) with objects in memory; this subclass adds, in one
place, what a real API server does and the operator relies on:

- server-side metadata: ``metadata.name`` from ``generateName`` (Kopf's Events),
  ``uid``, ``generation`` (bumped when a patch changes ``spec``),
  ``resourceVersion``, ``creationTimestamp``: ``kopf.adopt`` needs the owner's
  uid, ``observedGeneration`` needs the generation, and the ``kubernetes``
  client refuses an ownerReference without a uid;
- the core group's discovery document (kmock answers ``groupVersion: "/v1"``),
  a server version the chart accepts (kmock says 1.26), and errors with the
  machine-readable reasons clients test (``AlreadyExists``, ``NotFound``);
- a Secret's ``stringData`` stored as base64 ``data``, as the API server does;
- a PersistentVolumeClaim's ``status.phase`` (`Emulator.claim_phase`: bound at once,
  or left Pending as on a cluster without a class for its access mode);
- strategic merge patches refused (415): kmock would apply them as plain merges;
- replace (``PUT`` on a named object), which kmock does not serve at all, with
  the API server's optimistic concurrency: a body whose
  ``metadata.resourceVersion`` is not the stored one is refused with 409
  ``Conflict`` and nothing changes (no ``resourceVersion``: an unconditional
  replace); a missing object is 404 (no create-on-update). The storage
  service's Lease elector relies on this so two replicas never both win;
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
import base64
import collections
import itertools
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import rendering
from kmock._internal.k8s import KubernetesError
from kmock._internal.references import ResourceInfo

#: HTTP status -> the reason a real API server puts in its Status object
_STATUS_REASONS = {404: "NotFound", 409: "AlreadyExists"}

VERBS = {"get", "list", "watch", "create", "patch", "update", "delete"}
BUILTIN = {
    "v1/secrets": ("Secret", "secret"),
    "v1/configmaps": ("ConfigMap", "configmap"),
    "v1/persistentvolumeclaims": ("PersistentVolumeClaim", "persistentvolumeclaim"),
    "v1/services": ("Service", "service"),
    "v1/serviceaccounts": ("ServiceAccount", "serviceaccount"),
    "v1/events": ("Event", "event"),
    "events.k8s.io/v1/events": ("Event", "event"),
    "apps/v1/deployments": ("Deployment", "deployment"),
    "policy/v1/poddisruptionbudgets": ("PodDisruptionBudget", "poddisruptionbudget"),
    "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", "networkpolicy"),
    "networking.k8s.io/v1/ingresses": ("Ingress", "ingress"),
    # a cluster with cert-manager: the portal's Certificate
    "cert-manager.io/v1/certificates": ("Certificate", "certificate"),
    # a cluster with the Prometheus Operator: the chart's ServiceMonitors
    "monitoring.coreos.com/v1/servicemonitors": ("ServiceMonitor", "servicemonitor"),
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


#: (User-Agent, API group, resource[/subresource], RBAC verb) of every request served
Call = tuple[str, str, str, str]
#: (User-Agent, resource[/subresource], RBAC verb, object name or "") -> how many requests
Counted = tuple[str, str, str, str]


def rbac_verb(request: rendering.Request) -> str:
    """The RBAC verb a real API server would authorise this request as."""
    method = str(request.method.value if request.method else "").upper()
    if method == "GET":
        if str(request.params.get("watch", "")).lower() in ("true", "1"):
            return "watch"
        return "get" if request.name else "list"
    return {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}.get(
        method, method.lower()
    )


class Emulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    _versions = itertools.count(1000)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: every API call, for tests that compare what a client does with what RBAC grants
        self.calls: set[Call] = set()
        #: how often each object was asked for what (a create names it in its body)
        self.counts: collections.Counter[Counted] = collections.Counter()
        self._serving: set[int] = set()
        #: the phase a new PersistentVolumeClaim gets: "Bound" (a provisioner that binds at
        #: once), "Pending" for a cluster with no class that can provide the access mode
        self.claim_phase = "Bound"

    #: kmock keeps every request for assertions, and matches each new one against that
    #: history (O(history × reactions) per request: 0.5 s per create after a few
    #: thousand calls).
    #: Our tests record calls themselves (`calls`), so only recent requests are kept.
    #: Requests still being served are always kept: kmock finds a request's reaction by
    #: looking for the request itself in that history.
    _HISTORY = 8

    async def _handle(self, request: rendering.Request) -> Any:
        self._serving.add(id(request))
        try:
            if len(self._requests) > 4 * self._HISTORY:
                recent = self._requests[-self._HISTORY :]
                older = [r for r in self._requests[: -self._HISTORY] if id(r) in self._serving]
                self._requests[:] = older + recent
            return await self._handle_request(request)
        finally:
            self._serving.discard(id(request))

    async def _handle_request(self, request: rendering.Request) -> Any:
        if request.method == kmock.method.PATCH and "strategic-merge-patch" in str(
            request.headers.get("Content-Type", "")
        ):
            # kmock merges every patch as RFC 7386; a strategic merge (lists merged by key)
            # would silently mean something else here, so it is refused, not faked.
            return _status(415, "UnsupportedMediaType", "strategic merge patch", request)
        if request.resource is not None:
            plural = request.resource.plural
            if request.subresource:
                plural = f"{plural}/{request.subresource}"
            agent = str(request.headers.get("User-Agent", ""))
            verb = rbac_verb(request)
            self.calls.add((agent, request.resource.group or "", plural, verb))
            named = request.name
            if named is None and isinstance(request.data, dict):
                named = (request.data.get("metadata") or {}).get("name")
            self.counts[agent, plural, verb, str(named or "")] += 1
        if (
            request.resource is not None
            and request.method == kmock.method.PUT
            and request.name is not None
            and request.subresource is None
        ):
            return await self._replace(request)
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
                if request.resource.plural == "persistentvolumeclaims":
                    # the API server reports a claim's phase; a provisioner binds it (or not)
                    request.data["status"] = {"phase": self.claim_phase}
                string_data = request.data.pop("stringData", None)
                if string_data:  # the API server stores stringData as base64 `data`
                    encoded = {
                        k: base64.b64encode(v.encode()).decode() for k, v in string_data.items()
                    }
                    request.data["data"] = {**request.data.get("data", {}), **encoded}
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

    async def _render_error(self, exc: Exception) -> Any:
        """Errors carry Kubernetes' machine-readable reasons (`metav1.StatusReason`).

        kmock writes prose ("Object Already Exists"); clients test the reason
        field: Helm's CRD install skips a CRD only on ``AlreadyExists``.
        """
        if isinstance(exc, KubernetesError) and exc.status in _STATUS_REASONS:
            exc = attrs.evolve(exc, reason=_STATUS_REASONS[exc.status])
        return await super()._render_error(exc)

    async def _serve_server_version(self, request: rendering.Request) -> Any:
        """`/version`: kmock 0.8 says 1.26 (k3s); the chart needs >= 1.28, as do our tests."""
        answer = dict(await super()._serve_server_version(request))
        answer.update(major="1", minor="31", gitVersion="v1.31.0")
        return answer

    async def _replace(self, request: rendering.Request) -> Any:
        """PUT: the whole object is replaced, or 409 if the client read a stale version.

        The compare and the write happen under kmock's own lock, as one step, like
        the API server's storage-level compare-and-swap; server-owned metadata
        (uid, creationTimestamp, generation) is kept, resourceVersion advances.
        """
        resource = request.resource
        what = f"{resource.plural}.{resource.group}" if resource.group else str(resource.plural)
        body = request.data if isinstance(request.data, dict) else {}
        key = (resource, request.namespace, request.name)
        async with self._lock:
            current = self._objects[key] if key in self._objects else None  # noqa: SIM401
            if current is None or current.deleted:
                return _status(404, "NotFound", f'{what} "{request.name}" not found', request)
            old = current.get("metadata", {})
            wanted = body.get("metadata", {}).get("resourceVersion")
            if wanted is not None and str(wanted) != str(old.get("resourceVersion")):
                return _status(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {what} "{request.name}": the object has'
                    " been modified; please apply your changes to the latest version and try"
                    " again",
                    request,
                )
            new = dict(body)
            meta = dict(new.get("metadata", {}))
            for field in ("name", "namespace", "uid", "creationTimestamp", "generation"):
                if field in old:
                    meta[field] = old[field]
            if new.get("spec") != current.get("spec"):
                meta["generation"] = int(old.get("generation", 1)) + 1
            meta["resourceVersion"] = str(next(self._versions))
            new["metadata"] = meta
            current.create(new)
            raw = current.raw
            await self._buses[resource].put({"type": "MODIFIED", "object": raw})
        return aiohttp.web.json_response(raw)

    async def _serve_version(self, request: rendering.Request) -> Any:
        answer = await super()._serve_version(request)
        if isinstance(answer, dict) and answer.get("groupVersion") == "/v1":
            answer["groupVersion"] = "v1"
        return answer


def _status(code: int, reason: str, message: str, request: rendering.Request) -> Any:
    """A `metav1.Status` failure as the API server writes it (clients read `reason`)."""
    resource = request.resource
    details = {"name": request.name, "group": resource.group or "", "kind": resource.plural}
    return aiohttp.web.json_response(
        {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "details": details,
            "code": code,
        },
        status=code,
    )


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
        self.calls: set[Call] = set()
        self.counts: collections.Counter[Counted] = collections.Counter()
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
                self.calls = emulator.calls
                self.counts = emulator.counts
                self.url = str(server.url).rstrip("/")
                self._ready.set()
                await self._stop.wait()

        asyncio.run(serve())

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
