"""The certificate of completion prints every party's name and every label with the
cut font (only the characters it can print, not the 5 MB font), and the text reads back."""

from __future__ import annotations

import io
import logging
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from signet.portal.envelopes import certificate
from signet.portal.envelopes.facts import (
    Check,
    CompletionFacts,
    DocumentFacts,
    PartyFacts,
    TimelineEntry,
)

pytestmark = pytest.mark.skipif(
    not certificate.DEFAULT_FONT.is_file(), reason="the certificate font package is not installed"
)

NAMES = ["龘张伟", "José Núñez Ñandú", "Ærøskøbing Søren"]


def _facts() -> CompletionFacts:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    check = Check("sms-otp", "+86****1234", now, "10.0.0.1")
    parties = [
        PartyFacts(i, name, "signer", i, "completed", "x@example.com", check, check, now,
                   "10.0.0.1", "Mozilla/5.0", "1234")
        for i, name in enumerate(NAMES)
    ]  # fmt: skip
    return CompletionFacts(
        "env-1", "采购合同 Contrato de compraventa", "示例公司 Ejemplo S.A.", "王芳", "default",
        now, now, now, [DocumentFacts(0, "合同.pdf", 3, "a" * 64, "b" * 64)], parties,
        [TimelineEntry(i, now, "recipient.signed", NAMES[i % 3], "10.0.0.1", i) for i in range(9)],
        [("身份证.png", "c" * 64)], (9, "d" * 64, now),
    )  # fmt: skip


def test_every_name_and_label_prints_from_a_small_cut_font(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        pdf = certificate.render(_facts())
    assert not [r for r in caplog.records if "missing" in r.getMessage()], caplog.text
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True,
                          check=True, timeout=60).stdout  # fmt: skip
    for expected in [
        *NAMES,
        "采购合同",
        "完成证书",
        "Certificado de finalización",
        "身份证.png",
        "执行者",
    ]:
        assert expected in text, (expected, text)
    reader = PdfFileReader(io.BytesIO(pdf))
    fonts = [
        font.get_object()
        for page in reader.root["/Pages"]["/Kids"]
        for font in page.get_object()["/Resources"]["/Font"].values()
    ]
    programs = [
        f["/DescendantFonts"][0].get_object()["/FontDescriptor"]["/FontFile2"].get_object()
        for f in fonts
    ]
    assert programs and all(len(p.data) < 200_000 for p in programs)  # the font is 4.6 MB
