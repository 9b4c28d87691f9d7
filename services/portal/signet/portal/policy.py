"""Which signing policy an envelope runs under.

The policies in force are the operator's (a mounted folder of `SigningPolicy` files);
an envelope names one, or gets the one called ``default``.  An installation that has
published none (a fresh embedded default) runs under the built-in default: the
specification's own defaults, recorded as ``builtin-default`` with the hash of its
JSON, so the evidence still says exactly which rules applied.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from signet.common.contracts.appliance import SigningPolicySpec
from signet.common.errors import NotFound
from signet.common.policies import LoadedPolicy, PolicyDirectory

_SPEC = SigningPolicySpec()
BUILTIN = LoadedPolicy(
    "builtin-default",
    1,
    _SPEC,
    hashlib.sha256(_SPEC.model_dump_json().encode()).hexdigest(),
    "built-in",
)


def policy_chooser(directory: PolicyDirectory) -> Callable[[str | None], LoadedPolicy]:
    def choose(name: str | None) -> LoadedPolicy:
        policies = directory.current().policies
        if name is None:
            return policies.get("default") or BUILTIN
        if name == BUILTIN.name and name not in policies:
            return BUILTIN
        policy = policies.get(name)
        if policy is None:
            raise NotFound(f"no signing policy named {name!r}")
        return policy

    return choose
