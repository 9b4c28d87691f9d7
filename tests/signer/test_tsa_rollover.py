"""TSA key rollover and validation in the future (issue 19).

A signer of its own (tests/support/preservation_scenario.py, in a process of its own:
its SoftHSM token cannot share the session's) makes a TSA certificate valid an hour,
seals a PDF at B-LTA, rolls the TSA over and renews the document.  The documents are
then validated here with the clock moved (freezegun) ten minutes past the first TSA
certificate's expiry, given what a validator would fetch then (the root's CRL and an
OCSP answer for the current TSA certificate, made by the scenario at that moment).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import crl, ocsp, pem, x509
from freezegun import freeze_time
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESPassed
from pyhanko.sign.validation import validate_pdf_timestamp
from pyhanko.sign.validation.ades import ades_lta_validation
from pyhanko.sign.validation.policy_decl import (
    LocalKnowledge,
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from pyhanko_certvalidator.policy_decl import (
    REQUIRE_REVINFO,
    CertRevTrustPolicy,
    FreshnessReqType,
)
from pyhanko_certvalidator.registry import SimpleTrustManager
from pyhanko_certvalidator.revinfo.archival import CRLContainer, OCSPContainer

from tests.support.pdfs import make_pdf

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Scenario:
    directory: Path
    facts: dict[str, object]
    root: x509.Certificate
    future: datetime

    def pdf(self, name: str) -> PdfFileReader:
        return PdfFileReader(io.BytesIO((self.directory / f"{name}.pdf").read_bytes()))

    @property
    def future_crl(self) -> crl.CertificateList:
        return crl.CertificateList.load((self.directory / "future-root.crl").read_bytes())

    @property
    def future_ocsp(self) -> ocsp.OCSPResponse:
        return ocsp.OCSPResponse.load((self.directory / "future-tsa.ocsp").read_bytes())


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    directory = tmp_path_factory.mktemp("rollover")
    subprocess.run(
        [sys.executable, "-W", "ignore", "-m", "tests.support.preservation_scenario", directory],
        cwd=ROOT,
        check=True,
        timeout=120,
        capture_output=True,
    )
    facts = json.loads((directory / "facts.json").read_text())
    first = facts["first_tsa"]
    assert isinstance(first, dict)
    future = datetime.fromisoformat(first["not_after"]) + timedelta(minutes=10)
    root = x509.Certificate.load((directory / "root.der").read_bytes())
    yield Scenario(directory, facts, root, future)


def test_the_rollover_makes_a_new_tsa_key_and_keeps_the_old_certificate(
    scenario: Scenario,
) -> None:
    facts = scenario.facts
    first, second = facts["first_tsa"], facts["second_tsa"]
    assert isinstance(first, dict) and isinstance(second, dict)
    assert first["serial"] != second["serial"]
    assert first["label"] == "signet-tsa" and second["label"] != first["label"]
    # an hour, as the setting said (five minutes of clock-skew allowance before now)
    not_after = datetime.fromisoformat(first["not_after"])
    assert timedelta(minutes=50) < not_after - datetime.now(UTC) < timedelta(hours=1)
    assert facts["registry_tsa_serials"] == [first["serial"], second["serial"]]
    assert facts["current_tsa_serial"] == second["serial"]
    assert facts["stamper_serial"] == second["serial"]  # the new key stamps from then on
    assert facts["original_timestamps"] == [first["serial"]]
    assert facts["renewed_timestamps"] == [first["serial"], second["serial"]]


def _timestamp_context(scenario: Scenario) -> ValidationContext:
    return ValidationContext(
        trust_roots=[scenario.root],
        crls=[scenario.future_crl],
        ocsps=[scenario.future_ocsp],
        allow_fetching=False,
        revocation_mode="hard-fail",
    )


def test_after_the_first_tsa_expired_only_the_renewal_timestamp_validates(
    scenario: Scenario,
) -> None:
    """At the future moment the original's only document timestamp no longer validates
    (its TSA certificate expired); the renewal's, by the new key, does."""
    with freeze_time(scenario.future, tick=True):
        (original,) = scenario.pdf("original").embedded_timestamp_signatures
        first, renewal = scenario.pdf("renewed").embedded_timestamp_signatures
        before = validate_pdf_timestamp(original, _timestamp_context(scenario))
        assert before.intact and not before.trusted  # intact, but its TSA has expired
        old = validate_pdf_timestamp(first, _timestamp_context(scenario))
        assert old.intact and not old.trusted
        new = validate_pdf_timestamp(renewal, _timestamp_context(scenario))
        assert new.intact and new.valid and new.trusted, new.trust_problem_indic


def _ades_at_the_future(scenario: Scenario, name: str) -> object:
    spec = PdfSignatureValidationSpec(
        SignatureValidationSpec(
            cert_validation_policy=CertValidationPolicySpec(
                trust_manager=SimpleTrustManager.build([scenario.root]),
                # revocation data counts ten minutes: the test's hour-long TSA
                # certificate against a CRL valid a day (the real six years against a
                # day make the default policy behave the same way)
                revinfo_policy=CertRevTrustPolicy(
                    REQUIRE_REVINFO,
                    freshness=timedelta(minutes=10),
                    freshness_req_type=FreshnessReqType.MAX_DIFF_REVOCATION_VALIDATION,
                ),
            ),
            local_knowledge=LocalKnowledge(
                known_crls=[CRLContainer(scenario.future_crl)],
                known_ocsps=[OCSPContainer(scenario.future_ocsp)],
            ),
            revinfo_gathering_policy=RevocationInfoGatheringSpec(
                online_fetching_rule=RevinfoOnlineFetchingRule.LOCAL_ONLY
            ),
        )
    )
    logging.disable(logging.CRITICAL)  # pyHanko logs every failed path with a traceback
    try:
        with freeze_time(scenario.future, tick=True):
            (embedded,) = scenario.pdf(name).embedded_regular_signatures
            now = datetime.now(UTC)
            result = asyncio.run(
                ades_lta_validation(
                    embedded, spec, timing_info=ValidationTimingInfo(now, now, True)
                )
            )
    finally:
        logging.disable(logging.NOTSET)
    return result.ades_subindic


def test_without_the_renewal_the_signature_is_not_passed_in_the_future(
    scenario: Scenario,
) -> None:
    assert _ades_at_the_future(scenario, "original") is not AdESPassed.OK


@pytest.mark.xfail(
    strict=True,
    reason="pyHanko 0.38's past validation of the first document timestamp needs "
    "revocation data issued after its proof of existence (the renewal timestamp), "
    "which no revision covered by a timestamp can hold: REVOCATION_OUT_OF_BOUNDS_NO_POE "
    "(docs/admin/preservation.md, 'What is proven')",
)
def test_with_the_renewal_the_signature_is_passed_in_the_future(scenario: Scenario) -> None:
    assert _ades_at_the_future(scenario, "renewed") is AdESPassed.OK


def test_cli_rotate_tsa_then_sign_and_verify(tmp_path: Path) -> None:
    """`signet ca rotate-tsa` on a real installation: the old certificate stays in the CA
    files, a document timestamped before the rollover still verifies, and one signed
    after carries a token of the new key."""
    from tests.signer.test_health_and_cli import _signet

    home = tmp_path / "home"
    assert _signet(home, "ca", "init").returncode == 0
    ca = home / "signer" / "ca"
    before = (ca / "tsa.pem").read_bytes()
    document = tmp_path / "contract.pdf"
    document.write_bytes(make_pdf())
    old_signed = tmp_path / "old.pdf"
    signed = _signet(home, "sign", str(document), "--out", str(old_signed), "--level", "B-LTA")
    assert signed.returncode == 0, signed.stderr

    rotated = _signet(home, "ca", "rotate-tsa", "--validity-days", "30")
    assert rotated.returncode == 0, rotated.stderr
    assert "TSA rolled over" in rotated.stdout and "2 TSA certificates" in rotated.stdout
    assert (ca / "tsa.pem").read_bytes() != before
    kept = sorted(p.name for p in ca.glob("tsa-*.pem") if p.name != "tsa-all.pem")
    assert len(kept) == 2
    assert before in [(ca / name).read_bytes() for name in kept]
    assert (ca / "tsa-all.pem").read_bytes().count(b"BEGIN CERTIFICATE") == 2

    assert _signet(home, "verify", str(old_signed)).returncode == 0  # the old TSA still counts
    new_signed = tmp_path / "new.pdf"
    signed = _signet(home, "sign", str(document), "--out", str(new_signed), "--level", "B-LTA")
    assert signed.returncode == 0, signed.stderr
    assert _signet(home, "verify", str(new_signed)).returncode == 0
    new_tsa = x509.Certificate.load(pem.unarmor((ca / "tsa.pem").read_bytes())[2]).serial_number
    from tests.support.preservation_scenario import timestamp_serials

    assert timestamp_serials(new_signed.read_bytes()) == [format(new_tsa, "x")]


def test_the_evidence_packages_verify_after_the_first_tsa_expired(scenario: Scenario) -> None:
    """The package sealed before the rollover (its tree head stamped by the first TSA
    key) and the newer one the preservation job made after the renewal (by the second,
    naming the first): both verify at the future moment, offline."""
    from signet.storage.evidence import verify_package

    root = scenario.root.dump()
    old = scenario.directory / "old-package.zip"
    with freeze_time(scenario.future, tick=True):
        assert datetime.now(UTC) > datetime.fromisoformat(
            str(scenario.facts["first_tsa"]["not_after"])
        )  # type: ignore[index]
        verdicts = {
            name: verify_package(scenario.directory / f"{name}-package.zip", root)
            for name in ("old", "new")
        }
    for name, checks in verdicts.items():
        assert [c for c in checks if not c.ok] == [], name
    superseding = {c.what: c.detail for c in verdicts["new"]}["supersedes"]
    assert hashlib.sha256(old.read_bytes()).hexdigest() in superseding
    assert "supersedes" not in {c.what for c in verdicts["old"]}
