"""The TSA, OCSP responder and CRL, checked over HTTP by OpenSSL as an independent client."""

from __future__ import annotations

import base64
import hashlib
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from asn1crypto import ocsp, pem, tsp, x509
from signet.common.contracts.signer import RevocationReason
from signet.signer.service import SignerService


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60)


def test_openssl_ts_accepts_our_timestamps(signer_url: str, ca_files: Path, tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(b"the document to timestamp")
    serials = []
    for n in range(3):
        query = tmp_path / f"q{n}.tsq"
        assert (
            _run(
                "openssl",
                "ts",
                "-query",
                "-data",
                str(data),
                "-sha256",
                "-cert",
                "-out",
                str(query),
            ).returncode
            == 0
        )
        reply = httpx.post(
            f"{signer_url}/tsa",
            content=query.read_bytes(),
            headers={"Content-Type": "application/timestamp-query"},
        )
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "application/timestamp-reply"
        (tmp_path / f"r{n}.tsr").write_bytes(reply.content)
        verified = _run(
            "openssl",
            "ts",
            "-verify",
            "-data",
            str(data),
            "-in",
            str(tmp_path / f"r{n}.tsr"),
            "-CAfile",
            str(ca_files / "chain.pem"),
        )
        assert verified.stdout.strip() == "Verification: OK", verified.stderr
        # Nonce echoed, exactly as asked.
        assert (
            _run(
                "openssl",
                "ts",
                "-verify",
                "-queryfile",
                str(query),
                "-in",
                str(tmp_path / f"r{n}.tsr"),
                "-CAfile",
                str(ca_files / "chain.pem"),
            ).returncode
            == 0
        )
        info = tsp.TimeStampResp.load(reply.content)["time_stamp_token"]["content"][
            "encap_content_info"
        ]["content"].parsed
        assert info["accuracy"]["millis"].native == 500
        serials.append(info["serial_number"].native)
    assert serials == sorted(serials) and len(set(serials)) == 3

    # A token for other data must not verify.
    other = tmp_path / "other.bin"
    other.write_bytes(b"another document")
    assert (
        _run(
            "openssl",
            "ts",
            "-verify",
            "-data",
            str(other),
            "-in",
            str(tmp_path / "r0.tsr"),
            "-CAfile",
            str(ca_files / "chain.pem"),
        ).returncode
        != 0
    )


def test_tsa_rejects_bad_requests_with_a_reply(signer_url: str, tmp_path: Path) -> None:
    def reply_text(body: bytes) -> str:
        response = httpx.post(f"{signer_url}/tsa", content=body)
        assert response.status_code == 200
        (tmp_path / "r.tsr").write_bytes(response.content)
        return _run("openssl", "ts", "-reply", "-in", str(tmp_path / "r.tsr"), "-text").stdout

    garbage = reply_text(b"not asn.1")
    assert "Status: Rejected" in garbage and "wrong format" in garbage
    data = tmp_path / "d"
    data.write_bytes(b"x")
    query = tmp_path / "md5.tsq"
    _run("openssl", "ts", "-query", "-data", str(data), "-md5", "-out", str(query))
    weak = reply_text(query.read_bytes())
    assert "Status: Rejected" in weak and "unsupported algorithm" in weak


def test_openssl_ocsp_sees_good_then_revoked(
    signer_url: str,
    ca_files: Path,
    tmp_path: Path,
    signer_service: SignerService,
    issue: Callable[..., str],
) -> None:
    serial = issue("Wang Fang")
    record = signer_service.registry.get(serial)
    assert record is not None
    cert = tmp_path / "cert.pem"
    from asn1crypto import pem

    cert.write_bytes(pem.armor("CERTIFICATE", record.der))

    def ask() -> str:
        result = _run(
            "openssl",
            "ocsp",
            "-issuer",
            str(ca_files / "issuing.pem"),
            "-cert",
            str(cert),
            "-url",
            f"{signer_url}/ocsp",
            "-CAfile",
            str(ca_files / "chain.pem"),
        )
        assert "Response verify OK" in result.stderr, result.stderr
        return result.stdout

    assert f"{cert}: good" in ask()
    signer_service.ca.revoke(serial, RevocationReason.KEY_COMPROMISE)
    answer = ask()
    assert f"{cert}: revoked" in answer and "keyCompromise" in answer

    crl = tmp_path / "issuing.crl"
    crl.write_bytes(httpx.get(f"{signer_url}/ca/crl").content)
    text = _run("openssl", "crl", "-inform", "DER", "-in", str(crl), "-noout", "-text").stdout
    assert serial.upper().zfill(len(serial)) in text.upper()
    crl_pem = tmp_path / "issuing-crl.pem"
    assert (
        _run("openssl", "crl", "-inform", "DER", "-in", str(crl), "-out", str(crl_pem)).returncode
        == 0
    )
    checked = _run(
        "openssl",
        "verify",
        "-crl_check",
        "-CRLfile",
        str(crl_pem),
        "-CAfile",
        str(ca_files / "chain.pem"),
        str(cert),
    )
    assert "certificate revoked" in checked.stdout + checked.stderr


@pytest.mark.slow
def test_ten_thousand_concurrent_timestamps_are_unique_and_verify(
    signer_url: str, ca_files: Path, tmp_path: Path
) -> None:
    """10,000 requests in flight 100 at a time: unique serials, each verified by OpenSSL."""
    import asyncio
    import hashlib
    import os
    import secrets
    from concurrent.futures import ThreadPoolExecutor

    count = 10_000
    digests = [hashlib.sha256(os.urandom(16)).digest() for _ in range(count)]

    async def stamp_all() -> list[bytes]:
        limit = asyncio.Semaphore(100)
        async with httpx.AsyncClient(base_url=signer_url, timeout=120) as client:

            async def one(digest: bytes) -> bytes:
                query = tsp.TimeStampReq(
                    {
                        "version": 1,
                        "message_imprint": {
                            "hash_algorithm": {"algorithm": "sha256"},
                            "hashed_message": digest,
                        },
                        "nonce": secrets.randbits(62),
                        "cert_req": True,
                    }
                ).dump()
                async with limit:
                    reply = await client.post(
                        "/tsa",
                        content=query,
                        headers={"Content-Type": "application/timestamp-query"},
                    )
                reply.raise_for_status()
                return reply.content

            return await asyncio.gather(*(one(d) for d in digests))

    replies = asyncio.run(stamp_all())
    serials = set()
    for reply in replies:
        info = tsp.TimeStampResp.load(reply)["time_stamp_token"]["content"]["encap_content_info"][
            "content"
        ].parsed
        serials.add(info["serial_number"].native)
    assert len(serials) == count

    def verify(index: int) -> str:
        path = tmp_path / f"{index}.tsr"
        path.write_bytes(replies[index])
        result = _run(
            "openssl",
            "ts",
            "-verify",
            "-digest",
            digests[index].hex(),
            "-in",
            str(path),
            "-CAfile",
            str(ca_files / "chain.pem"),
        )
        return result.stdout.strip()

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(verify, range(count)))
    assert outcomes.count("Verification: OK") == count


def _nss_request(issuer: x509.Certificate, cert: x509.Certificate) -> bytes:
    """An OCSP request exactly as NSS 3.87 builds it for pdfsig: one SHA-1 CertID, no
    nonce, and the acceptable-responses extension naming id-pkix-ocsp-basic."""
    request: bytes = ocsp.OCSPRequest(
        {
            "tbs_request": {
                "request_list": [
                    {
                        "req_cert": {
                            "hash_algorithm": {"algorithm": "sha1"},
                            "issuer_name_hash": hashlib.sha1(
                                cert.issuer.dump(), usedforsecurity=False
                            ).digest(),
                            "issuer_key_hash": issuer.public_key.sha1,
                            "serial_number": cert.serial_number,
                        }
                    }
                ],
                "request_extensions": [
                    {"extn_id": "acceptable_responses", "extn_value": ["basic_ocsp_response"]}
                ],
            }
        }
    ).dump()
    return request


def _http10(url: str, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """One HTTP/1.0 exchange on a fresh connection, read to EOF (NSS's built-in client)."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(request)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return status, headers, body


def test_ocsp_answers_the_exact_requests_nss_sends(
    signer_url: str,
    ca_files: Path,
    tmp_path: Path,
    signer_service: SignerService,
    issue: Callable[..., str],
) -> None:
    """pdfsig (NSS's built-in HTTP client) first sends GET with the base64 percent-encoded
    (+ / = as %2B %2F %3D), HTTP/1.0, one request per connection, and falls back to POST.
    Both must get the same good, CA-signed answer that OpenSSL verifies."""
    serial = issue("Zhang Min")
    record = signer_service.registry.get(serial)
    assert record is not None
    cert = x509.Certificate.load(record.der)
    issuer = signer_service.ca.issuing.certificate
    der = _nss_request(issuer, cert)
    host = urlsplit(signer_url).netloc
    encoded = base64.b64encode(der).decode()
    path = "/ocsp/" + encoded.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    assert "%" in path  # the issuer name hash alone has a "+" in base64
    get = _http10(signer_url, f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    post = _http10(
        signer_url,
        f"POST /ocsp HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/ocsp-request\r\n"
        f"Content-Length: {len(der)}\r\n\r\n".encode()
        + der,
    )
    pem_cert = tmp_path / "cert.pem"
    pem_cert.write_bytes(pem.armor("CERTIFICATE", record.der))
    for name, (status, headers, body) in {"get": get, "post": post}.items():
        # What NSS's ocsp_GetEncodedResponse insists on: "HTTP/x 200 ...", "name: value"
        # headers, this content type; it reads the body to EOF or Content-Length.
        assert status.startswith("HTTP/1.") and status.split(" ")[1] == "200", status
        assert headers["content-type"] == "application/ocsp-response"
        assert int(headers["content-length"]) == len(body)
        response = ocsp.OCSPResponse.load(body)
        basic = response.basic_ocsp_response
        single = basic["tbs_response_data"]["responses"][0]
        assert (
            single["cert_id"].dump()
            == ocsp.OCSPRequest.load(der)["tbs_request"]["request_list"][0]["req_cert"].dump()
        )
        assert single["cert_status"].name == "good"
        assert basic["tbs_response_data"]["responder_id"].chosen.native == issuer.public_key.sha1
        assert [c.dump() for c in basic["certs"]] == [issuer.dump()]
        (tmp_path / f"{name}.der").write_bytes(body)
        checked = _run(
            "openssl",
            "ocsp",
            "-respin",
            str(tmp_path / f"{name}.der"),
            "-issuer",
            str(ca_files / "issuing.pem"),
            "-cert",
            str(pem_cert),
            "-CAfile",
            str(ca_files / "chain.pem"),
        )
        assert "Response verify OK" in checked.stderr, checked.stderr
        assert f"{pem_cert}: good" in checked.stdout, checked.stdout
