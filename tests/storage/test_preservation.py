"""The preservation job on real vaults (filesystem and SeaweedFS) with the real signer.

The session's signer cannot roll its TSA over (every other test trusts its one TSA
certificate; the rollover itself is tested in tests/signer/test_tsa_rollover.py), so
the job is first told another certificate is current: to it, every document's last
timestamp then comes from a rolled-over key.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from asn1crypto import x509
from signet.common.contracts.signer import SignatureLevel, SignOptions
from signet.common.contracts.storage import ObjectKind
from signet.signer.pades.renewal import renew_pdf
from signet.signer.service import SignerService
from signet.storage.ledger import Ledger
from signet.storage.preservation import (
    RECORD_PREFIX,
    PreservationJob,
    last_timestamp,
)
from signet.storage.vault import Vault

from tests.support.pdfs import make_pdf

SEAL = "preservation-test-seal"


def _b_lta(service: SignerService, title: str) -> bytes:
    service.ca.ensure_seal(SEAL, "Preservation Test Seal")
    output = io.BytesIO()
    options = SignOptions(key_label=SEAL, level=SignatureLevel.B_LTA)
    service.sign_document(io.BytesIO(make_pdf(title=title)), output, options)
    return output.getvalue()


@pytest.fixture
def ledger(vault: Vault) -> Iterator[Ledger]:
    ledger = Ledger(vault)
    yield ledger
    ledger.close()


def _job(
    vault: Vault, ledger: Ledger, service: SignerService, current: x509.Certificate, **kw: object
) -> PreservationJob:
    return PreservationJob(
        vault,
        ledger,
        renew=lambda pdf: renew_pdf(service.engine, pdf),
        current_tsa=lambda: current,
        **kw,  # type: ignore[arg-type]
    )


def test_a_rolled_over_document_is_renewed_once_into_a_new_object(
    vault: Vault, ledger: Ledger, signer_service: SignerService
) -> None:
    pdf = _b_lta(signer_service, "Preserve me")
    original, _ = vault.put(
        io.BytesIO(pdf), content_type="application/pdf", kind=ObjectKind.FINAL, envelope_id="env-p1"
    )
    unsigned, _ = vault.put(
        io.BytesIO(make_pdf()), content_type="application/pdf", kind=ObjectKind.ORIGINAL
    )
    real_tsa = signer_service.ca.tsa.certificate
    stand_in = signer_service.ca.issuing.certificate  # "the current TSA is another"

    dry = _job(vault, ledger, signer_service, stand_in).run(dry_run=True)
    assert (dry.scanned, dry.due, dry.renewed) == (1, 1, 0)
    assert sorted(vault.objects()) == sorted([original.sha256, unsigned.sha256])

    seen: list[tuple[int, int]] = []
    report = _job(vault, ledger, signer_service, stand_in).run(
        progress=lambda done, total: seen.append((done, total))
    )
    assert report.failed == {}
    assert (report.due, report.renewed) == (1, 1)
    assert seen[-1] == (2, 2)
    ((old, new),) = report.renewals
    assert old == original.sha256 and new != old
    # the original is untouched; the renewal is a new object, kept at least as long
    assert b"".join(vault.open(original.sha256)) == pdf
    renewed_info = vault.head(new)
    assert renewed_info.kind is ObjectKind.FINAL and renewed_info.envelope_id == "env-p1"
    assert renewed_info.retain_until >= vault.head(original.sha256).retain_until
    renewed = b"".join(vault.open(new))
    assert renewed.startswith(pdf)
    stamp = last_timestamp(renewed)
    assert stamp is not None and stamp.certificate.dump() == real_tsa.dump()
    # the ledger links both hashes; the vault remembers the renewal
    leaf = json.loads(ledger.leaf(ledger.size - 1))
    assert leaf["event_type"] == "document.preserved"
    assert leaf["document_hashes"] == [original.sha256, new]
    record = json.loads(vault.get_record(f"{RECORD_PREFIX}{original.sha256}"))
    assert record["renewed"] == new and record["reason"] == "tsa_rolled_over"

    # after the rollover, the key that stamped the renewal is current: nothing is due,
    # and the original is never renewed twice
    again = _job(vault, ledger, signer_service, real_tsa).run()
    assert (again.renewed, again.already_preserved) == (0, 1)
    size = ledger.size
    # a margin longer than the TSA's validity: due, but only a rollover can help
    waiting = _job(vault, ledger, signer_service, real_tsa, margin=timedelta(days=20 * 365))
    result = waiting.run()
    assert (result.renewed, result.waiting_for_rollover) == (0, 1)
    assert ledger.size == size


def test_storage_renews_over_http_with_its_own_token(
    signer_url: str, signer_service: SignerService
) -> None:
    """What the job calls in a deployment: storage's SignerClient, storage's token."""
    from signet.common.errors import ServiceUnavailable
    from signet.storage.signer_client import SignerClient

    from tests.conftest import PORTAL_TOKEN, STORAGE_TOKEN

    client = SignerClient(signer_url, STORAGE_TOKEN, key_label="unused")
    try:
        current = client.tsa_certificate()
        assert current.dump() == signer_service.ca.tsa.certificate.dump()
        pdf = _b_lta(signer_service, "Over HTTP")
        renewed = client.renew(pdf)
        assert renewed.startswith(pdf)
        stamp = last_timestamp(renewed)
        assert stamp is not None and stamp.certificate.dump() == current.dump()
        with pytest.raises(ServiceUnavailable, match="422"):
            client.renew(make_pdf())  # unsigned: no_signatures
    finally:
        client.close()
    portal = SignerClient(signer_url, PORTAL_TOKEN, key_label="unused")
    try:
        with pytest.raises(ServiceUnavailable, match="403"):
            portal.renew(pdf)  # only storage preserves
        assert portal.tsa_certificate().dump() == current.dump()  # public, like root.cer
    finally:
        portal.close()
