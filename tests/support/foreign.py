"""A PDF signed by plain pyHanko with a self-made certificate: a document signed
elsewhere, which `signet verify --root` can judge without this appliance's HSM."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.pdfs import make_pdf


def foreign_signed_pdf(folder: Path) -> Path:
    """`folder`/foreign.pdf, signed by "Somebody Else"; its certificate lies beside it
    as foreign-cert.pem."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Somebody Else"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Elsewhere Ltd"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_file, cert_file = folder / "foreign-key.pem", folder / "foreign-cert.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    signer = signers.SimpleSigner.load(str(key_file), str(cert_file))  # type: ignore[no-untyped-call]
    assert signer is not None
    out = io.BytesIO()
    signers.sign_pdf(
        IncrementalPdfFileWriter(io.BytesIO(make_pdf(1))),
        signers.PdfSignatureMetadata(field_name="Elsewhere"),
        signer=signer,
        output=out,
    )
    path = folder / "foreign.pdf"
    path.write_bytes(out.getvalue())
    return path
