"""The storage service's Prometheus metrics, declared once; on ``/metrics`` with the HTTP ones.

Vault writes are counted where the API stores an object (kind and whether it
was new or already there), the ledger where events are accepted and heads
published.  The ledger's size and the age of its latest head are read at
scrape time, so they are never stale.  Labels are fixed vocabularies (object
kinds, outcomes): never a hash, an envelope or an actor.
"""

from __future__ import annotations

from prometheus_client import Counter
from signet.common.metrics import gauge

VAULT_WRITES = Counter(
    "signet_vault_writes_total",
    "Objects stored through the API, by kind and outcome: created, or existing "
    "(the same bytes were already retained).",
    ["kind", "outcome"],
)
VAULT_BYTES = Counter(
    "signet_vault_written_bytes_total", "Bytes of objects newly stored through the API."
)
LEDGER_APPENDS = Counter(
    "signet_ledger_appends_total", "Evidence events accepted (durable) into the ledger."
)
TREE_HEADS = Counter(
    "signet_tree_heads_published_total",
    "Signed and timestamped tree heads this process stored, by outcome.",
    ["outcome"],
)
LEDGER_SIZE = gauge("signet_ledger_size", "Entries in the evidence ledger.")
TREE_HEAD_SIZE = gauge("signet_tree_head_size", "Entries covered by the latest signed tree head.")

# The preservation job (`signet.storage.preservation_runner`): set by the replica that runs it.
PRESERVATION_RENEWALS = Counter(
    "signet_preservation_renewals_total",
    "Documents the preservation job renewed (a new archive timestamp, a new vault object), "
    "by outcome: renewed, or failed (the reason is in readiness' preservation.last_run).",
    ["outcome"],
)
PRESERVATION_PASSES = Counter(
    "signet_preservation_passes_total",
    "Passes of the preservation job over the vault, by kind (run, dry_run) and outcome "
    "(ok, stopped, error).",
    ["kind", "outcome"],
)
PRESERVATION_BACKLOG = gauge(
    "signet_preservation_backlog",
    "Documents due for a renewal and not renewed, as of the last pass (a dry run counts too).",
)
PRESERVATION_DEADLINE = gauge(
    "signet_preservation_backlog_deadline_timestamp_seconds",
    "When the first certificate of a backlog document's last timestamp expires: the backlog "
    "must be renewed before it (0: no backlog).",
)
PRESERVATION_LAST_SUCCESS = gauge(
    "signet_preservation_last_success_timestamp_seconds",
    "When the last pass that renewed (not a dry run) ended without error (0: none yet).",
)
