"""Minimal DER assembly for hot paths: splice pre-encoded constant parts with fresh ones.

asn1crypto is the reference for every structure we emit; building a whole
CMS with it costs milliseconds because it re-serialises nested objects that
never change (certificates, identifiers).  Hot paths (timestamps) encode the
constant parts once with asn1crypto and join them here with a few fresh
values.  Tests parse every output back with asn1crypto and check it with
OpenSSL, so this module never decides what a structure means, only its bytes.
"""

from __future__ import annotations

from collections.abc import Iterable

SEQUENCE, SET, OCTET_STRING, INTEGER = 0x30, 0x31, 0x04, 0x02


def length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + length(len(content)) + content


def sequence(*parts: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(parts))


def set_of(parts: Iterable[bytes]) -> bytes:
    """DER SET OF: elements sorted by their encodings (X.690 §11.6)."""
    return tlv(SET, b"".join(sorted(parts)))


def integer(value: int) -> bytes:
    if value == 0:
        return tlv(INTEGER, b"\x00")
    size = (value.bit_length() + 8) // 8  # room for the sign bit
    return tlv(INTEGER, value.to_bytes(size, "big", signed=True))


def octet_string(value: bytes) -> bytes:
    return tlv(OCTET_STRING, value)


def explicit(number: int, content: bytes) -> bytes:
    """[number] EXPLICIT (constructed, context-specific)."""
    return tlv(0xA0 | number, content)
