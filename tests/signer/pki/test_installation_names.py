"""Every installation's CAs carry its organisation and its own installation id (issue 17).

Two installations, even of one organisation on one machine, must not look alike to a
validator: before, every root was "O=Signet, CN=Signet Root CA".  The CLI's ceremony
runs in two homes (each its own SoftHSM token and database, as an admin runs it);
OpenSSL and poppler's pdfsig check that the chains stay valid; an installation made
before ids keeps its names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from asn1crypto import pem, x509
from signet.signer.pki.names import INSTALLATION_ID_LENGTH, installation_of
from signet.signer.service import SignerService

from tests.signer.conftest import pdfsig
from tests.support.pdfs import make_pdf


def _signet(home: Path, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
    env |= {"SIGNET_HOME": str(home), **env_extra}
    return subprocess.run(
        [sys.executable, "-m", "signet.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _certificate(path: Path) -> x509.Certificate:
    return x509.Certificate.load(pem.unarmor(path.read_bytes())[2])


def _openssl_verify(ca: Path, *, root: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`openssl verify` of the TSA certificate through the issuing CA up to `root`."""
    return subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(root or ca / "root.pem"),
            "-untrusted",
            str(ca / "issuing.pem"),
            "-purpose",
            "timestampsign",
            str(ca / "tsa.pem"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_session_ca_names_carry_the_organisation_and_one_installation_id(
    signer_service: SignerService,
) -> None:
    ca = signer_service.ca
    installation = ca.installation
    assert installation is not None and len(installation) == INSTALLATION_ID_LENGTH
    for issued in (ca.root, ca.issuing, ca.tsa):
        subject = issued.certificate.subject.native
        assert subject["organization_name"] == signer_service.settings.organization
        assert subject["serial_number"] == installation
        assert subject["common_name"].endswith(f" {installation}")
        assert installation_of(issued.certificate) == installation
    assert ca.issuing.certificate.issuer == ca.root.certificate.subject
    assert ca.tsa.certificate.issuer == ca.issuing.certificate.subject


def test_two_installations_get_distinct_names_and_valid_chains(tmp_path: Path) -> None:
    homes = [tmp_path / "first", tmp_path / "second"]
    subjects, ids = [], []
    for home in homes:
        made = _signet(home, "ca", "init", SIGNET_SIGNER_ORGANIZATION="Example Corp")
        assert made.returncode == 0, made.stderr
        root = _certificate(home / "signer" / "ca" / "root.pem")
        installation = installation_of(root)
        assert installation is not None
        assert installation in made.stdout  # the ceremony's table shows whose root it is
        assert root.subject.native["common_name"] == f"Example Corp Root CA {installation}"
        assert root.subject.native["organization_name"] == "Example Corp"
        subjects.append(root.subject.dump())
        ids.append(installation)
        checked = _openssl_verify(home / "signer" / "ca")
        assert checked.returncode == 0 and ": OK" in checked.stdout, checked.stderr
    assert ids[0] != ids[1]
    assert subjects[0] != subjects[1]
    # One installation's TSA does not chain to the other's root, by name or by key.
    crossed = _openssl_verify(
        homes[0] / "signer" / "ca", root=homes[1] / "signer" / "ca" / "root.pem"
    )
    assert crossed.returncode != 0

    # A seal signature of the first installation validates with poppler trusting its root.
    home, ca = homes[0], homes[0] / "signer" / "ca"
    document, signed = tmp_path / "contract.pdf", tmp_path / "signed.pdf"
    document.write_bytes(make_pdf(1))
    result = _signet(home, "sign", str(document), "--out", str(signed), "--level", "B-LT")
    assert result.returncode == 0, result.stderr
    nss = tmp_path / "nss"
    nss.mkdir()
    subprocess.run(["certutil", "-N", "-d", f"sql:{nss}", "--empty-password"], check=True)
    subprocess.run(
        [
            "certutil",
            "-A",
            "-d",
            f"sql:{nss}",
            "-n",
            "root",
            "-t",
            "CT,C,C",
            "-i",
            str(ca / "root.pem"),
        ],
        check=True,
    )
    out = pdfsig(signed, f"sql:{nss}", ocsp=False)
    assert "Signature is Valid." in out and "Certificate is Trusted." in out, out


_OLD_INSTALLATION = """
import json, sys
from datetime import timedelta
from pathlib import Path
from unittest import mock

from signet.hsm.softhsm import ensure_dev_token
from signet.signer.config import SignerSettings
from signet.signer.service import SignerService

directory = Path(sys.argv[1])
token = ensure_dev_token(directory / "softhsm", label="old")
settings = SignerSettings(
    home=directory / "signer", hsm_module=token.config.module_path,
    hsm_token_label=token.config.token_label, hsm_pin=token.config.pin,
    public_url="http://127.0.0.1:9", time_trust="trusted-host",
)
# The ceremony as it was before installation ids: no id in any name.
with mock.patch("signet.signer.pki.ca.new_installation_id", lambda: None):
    SignerService(settings).ca.ceremony()
service = SignerService(settings)  # a later process: reads its names from the registry
rolled = service.rotate_tsa(timedelta(days=30))
print(json.dumps({
    "installation": service.ca.installation,
    "root": service.ca.root.certificate.subject.native,
    "tsa": rolled.certificate.subject.native,
    "tsa_issuer": rolled.certificate.issuer.native,
}))
"""


def test_an_installation_made_before_ids_keeps_its_names(tmp_path: Path) -> None:
    """Its names are read from its certificates: a TSA rollover names the new TSA as the
    old ceremony did, under the same issuer, and no id is invented for it."""
    result = subprocess.run(
        [sys.executable, "-c", _OLD_INSTALLATION, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")},
    )
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["installation"] is None
    assert facts["root"] == {"common_name": "Signet Root CA", "organization_name": "Signet"}
    assert facts["tsa"] == {
        "common_name": "Signet Time-Stamping Authority 2",
        "organization_name": "Signet",
    }
    assert facts["tsa_issuer"] == {
        "common_name": "Signet Issuing CA 1",
        "organization_name": "Signet",
    }
