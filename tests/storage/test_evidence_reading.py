"""verify-evidence on hostile zips: bombs, lying sizes and crafted names are refused, named.

No server: each zip is crafted here and must be refused before anything is
inflated past its bound, with a message that is safe to print.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable

import pytest
from asn1crypto import pem
from cryptography.hazmat.primitives.asymmetric import ec
from signet.common.contracts.storage import unsafe_character
from signet.storage import evidence_reading
from signet.storage.evidence import verify_package
from signet.storage.evidence_reading import PackageReader, PackageRefused, crafted

from tests.support.selfsigned import self_signed

ROOT = pem.armor("CERTIFICATE", self_signed(ec.generate_private_key(ec.SECP256R1())).dump())


def _zip(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as archive:
        for name, data in members:
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return out.getvalue()


def _refused(package: bytes) -> str:
    checks = verify_package(io.BytesIO(package), ROOT)
    assert len(checks) == 1 and checks[0].what == "package" and not checks[0].ok, checks
    assert unsafe_character(checks[0].detail) is None  # printable as it is
    return checks[0].detail


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../evil.json", "outside the package"),
        ("ledger/../../evil", "outside the package"),
        ("/etc/passwd", "absolute path"),
        ("C:/Windows/evil", "absolute path"),
        ("documents\\..\\evil", "backslash"),
        ("documents//x.pdf", "empty segment"),
        ("./summary.txt", "outside the package"),
        ("summary\u202etxt.exe", "U+202E"),
        ("docs/\u2066x", "U+2066"),
        ("a\nb", "U+000A"),
        ("a\x1b[31mred", "U+001B"),
        ("a\x7f", "U+007F"),
        ("caf\u0065\u0301.pdf", "normal form C"),
        ("x" * 256, "more than 255"),
    ],
)
def test_a_crafted_member_name_is_refused_and_named(name: str, reason: str) -> None:
    assert crafted(name) is not None
    detail = _refused(_zip([("manifest.json", b"{}"), (name, b"x")]))
    assert reason in detail and "member name" in detail


def test_ordinary_names_pass() -> None:
    for name in ("manifest.json", "documents/" + "a" * 64 + ".pdf", "ledger/entries/1.json"):
        assert crafted(name) is None


def test_the_same_name_twice_or_in_two_cases_is_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive, pytest.warns(UserWarning):
        archive.writestr("summary.txt", b"one")
        archive.writestr("summary.txt", b"two")
    assert "appears twice" in _refused(out.getvalue())
    detail = _refused(_zip([("summary.txt", b"a"), ("SUMMARY.txt", b"b")]))
    assert "differ only in case" in detail


def test_a_zip_bomb_is_refused_from_its_directory() -> None:
    bomb = _zip([("manifest.json", b"{}"), ("summary.txt", b"\0" * (20 * 1024 * 1024))])
    assert len(bomb) < 100_000
    detail = _refused(bomb)
    assert "summary.txt" in detail and ("compressed more than" in detail or "at most" in detail)


def test_a_member_declared_too_large_is_refused() -> None:
    detail = _refused(_zip([("manifest.json", b"{}"), ("pki/root.cer", b"\1" * (9 * 1024**2))]))
    assert "pki/root.cer declares" in detail and "at most" in detail


def _lie_about_size(package: bytes, name: bytes, size: int) -> bytes:
    """The directory (central and local) claims `size` bytes inflated for `name`."""
    data = bytearray(package)
    for signature, offset in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            name_at = start + (46 if signature == b"PK\x01\x02" else 30)
            if data[name_at : name_at + len(name)] == name:
                struct.pack_into("<I", data, start + offset, size)
            start += 4
    return bytes(data)


def test_a_directory_that_lies_about_sizes_is_caught_while_inflating(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(evidence_reading, "MAX_RATIO", 10**9)  # past the directory's check
    honest = _zip([("manifest.json", b"{}"), ("summary.txt", b"\0" * (4 * 1024 * 1024))])
    lying = _lie_about_size(honest, b"summary.txt", 1000)
    reader = PackageReader(io.BytesIO(lying))
    with pytest.raises(PackageRefused, match=r"summary\.txt is unreadable"):
        reader.read("summary.txt")


def test_inflating_past_the_ratio_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    package = _zip([("manifest.json", b"{}"), ("summary.txt", b"\0" * (8 * 1024 * 1024))])
    monkeypatch.setattr(evidence_reading, "MAX_RATIO", 10**9)
    reader = PackageReader(io.BytesIO(package))
    monkeypatch.setattr(evidence_reading, "MAX_RATIO", 2)  # as if the directory had lied
    with pytest.raises(PackageRefused, match="inflates past its bound"):
        reader.read("summary.txt")


def test_inflating_past_the_total_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evidence_reading, "MAX_TOTAL_BYTES", 3 * 1024 * 1024)
    package = _zip(
        [
            ("manifest.json", b"{}"),
            ("a.txt", b"\1" * (2 * 1024**2)),
            ("b.txt", b"\2" * (2 * 1024**2)),
        ],
        zipfile.ZIP_STORED,
    )
    assert "at most" in _refused(package)
    monkeypatch.setattr(evidence_reading, "MAX_TOTAL_BYTES", 5 * 1024 * 1024)
    reader = PackageReader(io.BytesIO(package))
    reader._budget = 3 * 1024 * 1024  # as if the directory had under-declared
    reader.read("a.txt")
    with pytest.raises(PackageRefused, match="inflate past"):
        reader.read("b.txt")


def test_too_many_members_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evidence_reading, "MAX_MEMBERS", 10)
    members = [(f"ledger/entries/{n:012d}.json", b"{}") for n in range(11)]
    assert "11 members" in _refused(_zip(members))


@pytest.mark.parametrize(
    "package",
    [
        b"not a zip at all",
        b"PK\x05\x06" + b"\0" * 18,  # an empty zip: no manifest
    ],
)
def test_not_a_package(package: bytes) -> None:
    checks = verify_package(io.BytesIO(package), ROOT)
    assert [c.what for c in checks] == ["package"] and not checks[0].ok


@pytest.mark.parametrize(
    "manifest",
    [b"not json", b"[]", b'{"format": "other"}', b'{"format": "signet-evidence/2", "files": 1}'],
)
def test_a_malformed_manifest_is_named(manifest: bytes) -> None:
    detail = _refused(_zip([("manifest.json", manifest)]))
    assert "manifest.json" in detail


def test_a_malformed_member_is_a_failed_check_never_a_crash() -> None:
    manifest = b'{"format": "signet-evidence/1", "envelope_id": "e", "files": {}}'
    members: list[tuple[str, bytes]] = [
        ("manifest.json", manifest),
        ("ledger/tree-head.json", b'{"tree_size": "x"}'),
    ]
    checks = verify_package(io.BytesIO(_zip(members)), ROOT)
    assert any(c.what == "tree head" and not c.ok for c in checks)
    proofs: Callable[[bytes], list[tuple[str, bytes]]] = lambda p: [  # noqa: E731
        ("manifest.json", manifest),
        ("pki/issuing.crl", b"\x30\x03garbage"),
        ("ledger/proofs.json", p),
    ]
    for proof in (b"[1]", b'{"x": 1}', b"nope"):
        checks = verify_package(io.BytesIO(_zip(proofs(proof))), ROOT)
        assert checks and not all(c.ok for c in checks)
