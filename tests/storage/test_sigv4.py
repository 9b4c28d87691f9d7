"""Our SigV4 signer signs exactly as minio's `sign_v4_s3`, and a store accepts it."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from minio.credentials.credentials import Credentials
from minio.signer import sign_v4_s3
from minio.time import to_amz_date
from signet.storage.sigv4 import UNSIGNED_PAYLOAD, SigV4


@pytest.mark.parametrize("content_sha256", ["ab" * 32, UNSIGNED_PAYLOAD])
def test_signature_is_minios(content_sha256: str) -> None:
    signer = SigV4("AKID", "secret/key+x", "us-east-1")
    headers = {
        "Host": "127.0.0.1:8333",
        "Content-Type": "application/pdf",
        "Content-Length": "1024",
        "x-amz-meta-signet-kind": "original",
        "x-amz-checksum-sha256": "q83vEjRWeJA=",
        "If-None-Match": "*",
    }
    path = "/bucket/objects/" + "cd" * 32
    ours = signer.sign("PUT", path, headers, content_sha256)
    date = datetime.fromtimestamp(signer._second, UTC)  # the second it signed in
    theirs = sign_v4_s3(
        method="PUT",
        url=urlsplit(f"http://127.0.0.1:8333{path}"),
        region="us-east-1",
        headers={
            **headers,
            "x-amz-date": to_amz_date(date),
            "x-amz-content-sha256": content_sha256,
        },
        credentials=Credentials("AKID", "secret/key+x"),
        content_sha256=content_sha256,
        date=date,
    )
    assert ours == theirs


def test_the_signing_key_follows_the_day() -> None:
    clock = [datetime(2026, 12, 1, 23, 59, 59, tzinfo=UTC).timestamp()]
    signer = SigV4("AKID", "secret", "eu-west-1", clock=lambda: clock[0])
    before = signer.sign("GET", "/b/k", {"Host": "h"}, "x")["Authorization"]
    clock[0] += 1
    after = signer.sign("GET", "/b/k", {"Host": "h"}, "x")["Authorization"]
    assert "20261201/eu-west-1/s3/aws4_request" in before
    assert "20261202/eu-west-1/s3/aws4_request" in after
