"""HTTP clients of the signer and storage, for the services that call them (the portal).

The portal reaches the signer and storage only through these (DESIGN.md "Portal
inside"; import-linter keeps it from importing their modules): the wire contract is
`signet.common.contracts`, and each client turns the other side's answers into
`signet.common.errors` — a refusal keeps its status and code, an unreachable or
failing service becomes `ServiceUnavailable` naming it — so the portal's callers see
one JSON error shape whatever went wrong where.
"""

from signet.common.clients.base import RemoteError, ServiceClient
from signet.common.clients.signer import SignerClient
from signet.common.clients.storage import StorageClient

__all__ = ["RemoteError", "ServiceClient", "SignerClient", "StorageClient"]
