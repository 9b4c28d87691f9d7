"""The signer's Prometheus metrics, declared once; shown on ``/metrics`` with the HTTP ones.

They count what the signer's layers do, wherever the call came from (the API,
batch workers, the CLI in its own process), so a signature sealed by a batch
worker counts as one just like one made for ``POST /v1/sign``.  Labels are fixed
vocabularies (signature levels, error codes, certificate kinds, OCSP statuses):
never a serial, a subject or a document name.

Label children on the hot paths (a signature, a timestamp) are looked up once
here: ``labels()`` takes a lock and builds a key, which is a few µs we would
otherwise pay per signature.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram
from signet.common.contracts.signer import CertificateKind, SignatureLevel
from signet.common.errors import SignetError

#: From an in-memory B-B seal (under 1 ms) to B-LTA on a 200 MB document.
SIGNATURE_BUCKETS = (5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

SIGNATURES = Counter(
    "signet_signatures_total",
    "PDF signatures attempted, by PAdES level and outcome: ok, or the error code "
    "of the failure (unprocessable_document, hsm_unavailable, service_unavailable, …).",
    ["level", "outcome"],
)
SIGNATURE_DURATION = Histogram(
    "signet_signature_duration_seconds",
    "Time to sign one document (successful signatures only), by PAdES level.",
    ["level"],
    buckets=SIGNATURE_BUCKETS,
)
TIMESTAMPS = Counter(
    "signet_timestamps_total",
    "RFC 3161 tokens of the built-in TSA: granted (for POST /tsa and inside B-T and "
    "later signatures), rejected (a bad request), failed (the HSM or database failed), "
    "clock_unsynchronised (refused: the clock cannot show the declared accuracy).",
    ["outcome"],
)
TIME_SYNCHRONISED = Gauge(
    "signet_tsa_time_synchronised",
    "1 while the TSA's time check lets stamps be issued (synchronised, or trusted-host), "
    "0 while it refuses them.",
)
CLOCK_ESTIMATED_ERROR = Gauge(
    "signet_tsa_clock_estimated_error_seconds",
    "The kernel's estimated error of the clock (adjtimex esterror) at the last time check; "
    "NaN when not read (trusted-host).",
)
REFERENCE_OFFSET = Gauge(
    "signet_tsa_reference_offset_seconds",
    "The measured offset of the clock against each NTP reference the admin named "
    "(the reference's time minus ours), at its last good answer.",
    ["reference"],
)
HSM_ERRORS = Counter(
    "signet_hsm_errors_total",
    "HSM calls that failed on the HSM's side (unreachable, login, session lost, "
    "PKCS#11 errors), by operation; a missing key asked for by a caller is not one.",
    ["operation"],
)
CERTIFICATES_ISSUED = Counter(
    "signet_certificates_issued_total",
    "Certificates issued by the internal CA, by kind (root, issuing, tsa, person, seal, event).",
    ["kind"],
)
CERTIFICATES_REVOKED = Counter(
    "signet_certificates_revoked_total", "Certificates revoked by the internal CA."
)
OCSP_RESPONSES = Counter(
    "signet_ocsp_responses_total",
    "OCSP responses, by certificate status (good, revoked, unknown; a request about several "
    "certificates counts once, by the worst) or malformed_request.",
    ["status"],
)

_SIGNED = {
    level: (SIGNATURES.labels(level.value, "ok"), SIGNATURE_DURATION.labels(level.value))
    for level in SignatureLevel
}
GRANTED = TIMESTAMPS.labels("granted")
REJECTED = TIMESTAMPS.labels("rejected")
FAILED = TIMESTAMPS.labels("failed")
CLOCK_REFUSED = TIMESTAMPS.labels("clock_unsynchronised")
for _kind in CertificateKind:
    CERTIFICATES_ISSUED.labels(_kind.value)
for _status in ("good", "revoked", "unknown", "malformed_request"):
    OCSP_RESPONSES.labels(_status)
for _operation in ("connect", "ping", "sign", "lookup", "generate_key", "destroy_key"):
    HSM_ERRORS.labels(_operation)  # present at 0, so an alert on increase() sees the first


def error_code(exc: BaseException) -> str:
    """A bounded label for a failure: the `SignetError` code, else ``internal_error``."""
    return exc.code if isinstance(exc, SignetError) else "internal_error"


def time_status(stamping: bool, estimated_error_ms: float | None) -> None:
    TIME_SYNCHRONISED.set(1 if stamping else 0)
    CLOCK_ESTIMATED_ERROR.set(
        float("nan") if estimated_error_ms is None else estimated_error_ms / 1000
    )


def reference_offset(reference: str, offset_s: float) -> None:
    REFERENCE_OFFSET.labels(reference).set(offset_s)


def signature_made(level: SignatureLevel, seconds: float) -> None:
    counter, histogram = _SIGNED[level]
    counter.inc()
    histogram.observe(seconds)


def signature_failed(level: SignatureLevel, exc: BaseException) -> None:
    SIGNATURES.labels(level.value, error_code(exc)).inc()


def is_hsm_fault(exc: BaseException) -> bool:
    """True unless the HSM answered as designed and the caller was wrong (404/409: no such
    key, key exists).  Unexpected exceptions from PKCS#11 count as faults."""
    return not (isinstance(exc, SignetError) and exc.status_code < 500)


def hsm_failed(operation: str, exc: BaseException) -> None:
    if is_hsm_fault(exc):
        HSM_ERRORS.labels(operation).inc()


@contextmanager
def hsm_operation(operation: str) -> Iterator[None]:
    """Count an HSM fault raised inside the block under `operation`, then re-raise it."""
    try:
        yield
    except Exception as exc:
        hsm_failed(operation, exc)
        raise
