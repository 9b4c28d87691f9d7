"""AWS Signature Version 4 for the storage API's hot path to the object store.

The same signature as minio's `sign_v4_s3` (a test holds them equal), with the
work that does not change between requests done once: the signing key is
derived once per UTC day (four HMACs), the credential scope and the date
strings once per day and per second.  What remains per request is one SHA-256
of the canonical request and one HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping

#: The payload hash of a request whose body the signature does not cover.  The vault
#: uses it only for a PUT that carries ``x-amz-checksum-sha256``: a signed header with
#: which the store checks the body itself (a body that differs is refused, `BadDigest`).
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


class SigV4:
    """Signs requests for one key pair and region (S3 service)."""

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        region: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._access_key = access_key
        self._clock = clock
        self._secret = ("AWS4" + secret_key).encode()
        self._region = region
        self._day = ""
        self._key = b""
        self._scope = ""
        self._second = -1
        self._amz_date = ""

    def _now(self) -> tuple[str, str]:
        """``x-amz-date`` and the day (UTC); the signing key follows the day."""
        second = int(self._clock())
        if second != self._second:
            self._amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
            self._second = second
            day = self._amz_date[:8]
            if day != self._day:
                key = self._secret
                for part in (day, self._region, "s3", "aws4_request"):
                    key = hmac.digest(key, part.encode(), "sha256")
                self._key, self._day = key, day
                self._scope = f"{day}/{self._region}/s3/aws4_request"
        return self._amz_date, self._day

    def sign(
        self, method: str, path: str, headers: Mapping[str, str], content_sha256: str
    ) -> dict[str, str]:
        """`headers` plus ``x-amz-date``, ``x-amz-content-sha256`` and ``Authorization``.

        `path` is the request's URI path, already encoded (S3 encodes it once).
        Every header given is signed; `headers` must hold ``Host``, and no query is
        supported (the hot path sends none).
        """
        amz_date, _ = self._now()
        signed = {**headers, "x-amz-date": amz_date, "x-amz-content-sha256": content_sha256}
        canonical = sorted(
            (name.lower(), " ".join(value.split())) for name, value in signed.items()
        )
        names = ";".join(name for name, _ in canonical)
        request = "\n".join(
            (
                method,
                path,
                "",
                *(f"{name}:{value}" for name, value in canonical),
                "",
                names,
                content_sha256,
            )
        )
        to_sign = (
            f"AWS4-HMAC-SHA256\n{amz_date}\n{self._scope}\n"
            f"{hashlib.sha256(request.encode()).hexdigest()}"
        )
        signature = hmac.digest(self._key, to_sign.encode(), "sha256").hex()
        signed["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self._access_key}/{self._scope}, "
            f"SignedHeaders={names}, Signature={signature}"
        )
        return signed
