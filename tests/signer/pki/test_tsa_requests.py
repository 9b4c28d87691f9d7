"""Malformed RFC 3161 requests get a rejection reply (failInfo), never a 500."""

from __future__ import annotations

import hashlib
import random
import subprocess
from pathlib import Path

import httpx
import pytest
from asn1crypto import cms, core, tsp


def _request(**fields: object) -> bytes:
    base: dict[str, object] = {
        "version": 1,
        "message_imprint": {
            "hash_algorithm": {"algorithm": "sha256"},
            "hashed_message": hashlib.sha256(b"fuzz").digest(),
        },
        "nonce": 12345,
        "cert_req": True,
    }
    request: bytes = tsp.TimeStampReq({**base, **fields}).dump()
    return request


class _Reply(core.Sequence):  # type: ignore[misc]
    """TimeStampResp with its token optional, as RFC 3161 has it (asn1crypto's requires it)."""

    _fields = [  # noqa: RUF012 - asn1crypto's declaration style
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def _status(reply: bytes) -> tuple[str, set[str]]:
    status = _Reply.load(reply, strict=True)["status"]
    fail_info = status["fail_info"].native
    return status["status"].native, set(fail_info or ())


def _openssl_text(reply: bytes, tmp_path: Path) -> str:
    path = tmp_path / "r.tsr"
    path.write_bytes(reply)
    result = subprocess.run(
        ["openssl", "ts", "-reply", "-in", str(path), "-text"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.stdout


@pytest.fixture
def client(signer_url: str) -> httpx.Client:
    return httpx.Client(base_url=signer_url, timeout=30)


def test_each_kind_of_bad_request_has_its_fail_info(client: httpx.Client, tmp_path: Path) -> None:
    def post(body: bytes) -> bytes:
        response = client.post("/tsa", content=body)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/timestamp-reply"
        return response.content

    critical = [{"extn_id": "1.3.6.1.4.1.99999.1", "critical": True, "extn_value": b"\x05\x00"}]
    reply = post(_request(extensions=critical))
    assert _status(reply) == ("rejection", {"unaccepted_extensions"})
    assert "extension is not supported by the TSA" in _openssl_text(reply, tmp_path)
    harmless = [{"extn_id": "1.3.6.1.4.1.99999.1", "critical": False, "extn_value": b"\x05\x00"}]
    assert _status(post(_request(extensions=harmless)))[0] == "granted"

    reply = post(_request(version=2))
    assert _status(reply) == ("rejection", {"bad_request"})
    assert "transaction not permitted or supported" in _openssl_text(reply, tmp_path)

    unknown_alg = {"hash_algorithm": {"algorithm": "1.2.3.4.5"}, "hashed_message": b"x" * 32}
    reply = post(_request(message_imprint=unknown_alg))
    assert _status(reply) == ("rejection", {"bad_alg"})
    assert "unrecognized or unsupported algorithm" in _openssl_text(reply, tmp_path)

    assert _status(post(_request() + b"\x00"))[1] == {"bad_data_format"}  # trailing bytes
    assert _status(post(_request(req_policy="1.2.3")))[1] == {"unaccepted_policy"}


def test_random_and_truncated_requests_never_give_500(client: httpx.Client) -> None:
    rng = random.Random(3161)  # fixed: a failure is reproducible
    valid = _request()
    bodies = [valid[:n] for n in range(len(valid))]  # every truncation
    for _ in range(150):  # one to three bytes changed
        body = bytearray(valid)
        for _ in range(rng.randint(1, 3)):
            body[rng.randrange(len(body))] = rng.randrange(256)
        bodies.append(bytes(body))
    bodies += [rng.randbytes(rng.randint(1, 300)) for _ in range(150)]
    bodies += [b"\x30\x84\xff\xff\xff\xff", b"\x30\x80" * 200, b"\x30" + b"\x82\xff\xff"]
    outcomes: dict[str, int] = {}
    for body in bodies:
        response = client.post("/tsa", content=body)
        assert response.status_code == 200, (body.hex(), response.text)
        status, _ = _status(response.content)
        assert status in ("granted", "rejection"), body.hex()
        outcomes[status] = outcomes.get(status, 0) + 1
    assert outcomes["rejection"] > 300  # nearly everything is refused, with a reply
