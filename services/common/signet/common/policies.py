"""Signing policies as the services see them: a folder of files, re-read when it changes.

In a cluster the operator writes every accepted `SigningPolicy` into one
ConfigMap (`signet-policies`, one key per policy) that the pods mount as a
folder.  The kubelet replaces a mounted ConfigMap by swapping its ``..data``
symlink, atomically, so a reader sees either the old set or the new one, and a
changed policy reaches running pods without a restart (within the kubelet's
sync period, about a minute).  In the embedded default the admin keeps
policy files in ``$SIGNET_HOME/policies``; the same models validate both.

Two file shapes are read: the operator's ``{"name", "version", "spec"}`` JSON
(``*.json``), and a `SigningPolicy` manifest as an admin writes it for
`kubectl apply` (``*.yaml``/``*.yml``; version = ``metadata.generation``, or 1).

A file that does not validate is reported and ignored, and the last good
version of that policy stays in force: a typo never takes away a policy that
envelopes are being signed under.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from signet.common.contracts.appliance import SigningPolicySpec
from signet.common.errors import NotFound, summarize_validation

log = logging.getLogger(__name__)

SUFFIXES = (".json", ".yaml", ".yml")
#: Larger files are refused unread (a policy is a few hundred bytes).
MAX_FILE_BYTES = 256 * 1024


@dataclass(frozen=True)
class LoadedPolicy:
    name: str
    version: int
    spec: SigningPolicySpec
    #: SHA-256 of the file's bytes: what the evidence records as "the policy in force"
    sha256: str
    source: str


@dataclass(frozen=True)
class PolicySet:
    policies: dict[str, LoadedPolicy] = field(default_factory=dict)
    #: file name -> why it was not (re)loaded
    problems: dict[str, str] = field(default_factory=dict)

    def versions(self) -> dict[str, int]:
        return {name: policy.version for name, policy in sorted(self.policies.items())}


class PolicyError(ValueError):
    """A policy file that cannot be used, with the reason an admin can act on."""


def parse_policy(raw: bytes, source: str) -> LoadedPolicy:
    """Validate one file's bytes; raises `PolicyError` naming the file and the field."""
    if len(raw) > MAX_FILE_BYTES:
        raise PolicyError(f"{source}: larger than {MAX_FILE_BYTES} bytes")
    try:
        document: Any = (
            json.loads(raw) if source.endswith(".json") else yaml.safe_load(raw.decode("utf-8"))
        )
    except (ValueError, yaml.YAMLError) as exc:
        raise PolicyError(
            f"{source}: not valid {source.rsplit('.', 1)[-1].upper()}: {exc}"
        ) from exc
    if not isinstance(document, dict):
        raise PolicyError(f"{source}: expected a mapping at the top level")
    if "kind" in document:  # a manifest
        if document.get("kind") != "SigningPolicy":
            raise PolicyError(f"{source}: kind {document.get('kind')!r} is not SigningPolicy")
        metadata = document.get("metadata") or {}
        name, version = metadata.get("name"), metadata.get("generation", 1)
    else:
        name, version = document.get("name"), document.get("version", 1)
    if not isinstance(name, str) or not name:
        raise PolicyError(f"{source}: the policy has no name")
    if not isinstance(version, int) or version < 1:
        raise PolicyError(f"{source}: version must be a positive integer")
    try:
        spec = SigningPolicySpec.model_validate(document.get("spec") or {})
    except ValidationError as exc:
        raise PolicyError(f"{source}: {summarize_validation(exc.errors())}") from exc
    return LoadedPolicy(name, version, spec, hashlib.sha256(raw).hexdigest(), source)


class PolicyDirectory:
    """The policies in force, from `path`; safe to call from any thread.

    `current()` costs one `stat` per file at most every `min_interval` seconds,
    and re-parses only when a file's name, size or modification time changed.
    A missing folder is an empty set (no policy published yet), not an error.
    """

    def __init__(self, path: Path, *, min_interval: float = 2.0) -> None:
        self.path = path
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._checked = float("-inf")
        self._fingerprint: tuple[tuple[str, int, int], ...] | None = None
        self._set = PolicySet()

    def current(self) -> PolicySet:
        with self._lock:
            now = time.monotonic()
            if now - self._checked >= self.min_interval:
                self._checked = now
                fingerprint = self._stat()
                if fingerprint != self._fingerprint:
                    self._fingerprint = fingerprint
                    self._set = self._load(self._set)
            return self._set

    def get(self, name: str) -> LoadedPolicy:
        policy = self.current().policies.get(name)
        if policy is None:
            raise NotFound(f"no signing policy named {name!r}")
        return policy

    def _files(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        # ConfigMap volumes hold `..data`/`..2026_…` entries next to the keys: skip dot-files.
        return sorted(
            p for p in self.path.iterdir() if p.suffix in SUFFIXES and not p.name.startswith(".")
        )

    def _stat(self) -> tuple[tuple[str, int, int], ...]:
        entries = []
        for path in self._files():
            try:
                info = path.stat()  # follows the ConfigMap's symlinks to the current data
            except OSError:
                continue
            entries.append((path.name, info.st_size, info.st_mtime_ns))
        return tuple(entries)

    def _load(self, previous: PolicySet) -> PolicySet:
        policies: dict[str, LoadedPolicy] = {}
        problems: dict[str, str] = {}
        for path in self._files():
            try:
                policy = parse_policy(path.read_bytes(), path.name)
            except (OSError, PolicyError) as exc:
                problems[path.name] = str(exc)
                continue
            if policy.name in policies:
                problems[path.name] = f"{path.name}: policy {policy.name!r} is defined twice"
                continue
            policies[policy.name] = policy
        # Keep the last good version of a policy whose file is now broken.
        broken = {
            name
            for name, old in previous.policies.items()
            if old.source in problems and name not in policies
        }
        for name in broken:
            policies[name] = previous.policies[name]
            log.warning("policy %s: keeping version %d in force", name, policies[name].version)
        for reason in problems.values():
            log.warning("policy file refused: %s", reason)
        changed = {
            name: policy.version
            for name, policy in policies.items()
            if previous.policies.get(name) != policy
        }
        if changed:
            log.info("signing policies loaded: %s", changed)
        return PolicySet(policies, problems)
