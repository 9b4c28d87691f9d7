"""`signet demo` against a running `signet up`: the three-party story (an approver,
then two signers in parallel) completes through the API, and what it writes is
checked here again independently: every signature of the final PDFs per pyHanko
(the last one a document timestamp: B-LTA), the certificate of completion per
pdfsig, and the evidence package per `signet verify-evidence`."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

from tests.support.appliance import SIGNET, running_appliance


def test_the_demo_runs_the_story_and_its_outputs_verify(tmp_path: Path) -> None:
    from asn1crypto import pem, x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    home = tmp_path / "home"
    out = tmp_path / "demo"
    with running_appliance(home) as appliance:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")} | {
            "SIGNET_HOME": str(home), "COLUMNS": "200"}  # fmt: skip
        ran = subprocess.run(
            [str(SIGNET), "demo", "--port", str(appliance.port), "--out", str(out)],
            env=env, capture_output=True, text=True, timeout=400, check=False,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stdout + ran.stderr
    said = ran.stdout
    for party in ("Wang Fang (approver, group 0): done", "Li Wei (signer, group 1): done",
                  "Ana García (signer, group 1): done"):  # fmt: skip
        assert party in said, said
    assert "NOT VALID" not in said and said.count(" valid") >= 4, said
    files = sorted(p.name for p in out.iterdir())
    assert files == ["certificate-of-completion.pdf", "evidence.zip",
                     "final-1-contract.pdf", "final-2-annex-1.pdf"], files  # fmt: skip
    root_der = (home / "signer" / "ca" / "root.pem").read_bytes()
    _, _, der = pem.unarmor(root_der)
    context = ValidationContext(trust_roots=[x509.Certificate.load(der)], allow_fetching=False)
    # the contract: both signers' signatures (approvers do not sign), then B-LTA
    for name, signers in (("final-1-contract.pdf", 2), ("final-2-annex-1.pdf", 1)):
        reader = PdfFileReader(io.BytesIO((out / name).read_bytes()))
        signatures = reader.embedded_signatures
        kinds = [s.sig_object.get("/Type") for s in signatures]
        assert kinds[-1] == "/DocTimeStamp" and len(kinds) == signers + 1, (name, kinds)
        for signature in signatures[:-1]:
            status = validate_pdf_signature(signature, context)
            assert status.intact and status.valid, (name, status.pretty_print_details())
    # poppler too: a signature with several widgets is listed (and valid) once per widget
    for name in ("final-1-contract.pdf", "final-2-annex-1.pdf", "certificate-of-completion.pdf"):
        said = subprocess.run(["pdfsig", "-nocert", str(out / name)], capture_output=True,
                              text=True, timeout=60, check=False).stdout  # fmt: skip
        assert "Signature is Valid." in said and "not signed" not in said, (name, said)
        assert "Invalid" not in said, (name, said)
    certificate = str(out / "certificate-of-completion.pdf")
    text = subprocess.run(["pdftotext", certificate, "-"], capture_output=True, text=True,
                          timeout=60, check=True).stdout  # fmt: skip
    for name in ("王芳 Wang Fang", "李伟 Li Wei", "Ana García", "sms-otp", "email-otp"):
        assert name in text, (name, text)
    checked = subprocess.run(
        [str(SIGNET), "verify-evidence", str(out / "evidence.zip"), "--root",
         str(home / "signer" / "ca" / "root.pem")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_demo_without_a_running_appliance_says_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")} | {
        "SIGNET_HOME": str(tmp_path / "empty")}  # fmt: skip
    ran = subprocess.run([str(SIGNET), "demo", "--out", str(tmp_path / "o")], env=env,
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert ran.returncode == 2 and "signet up" in ran.stdout, ran.stdout + ran.stderr
    assert not (tmp_path / "o").exists()
