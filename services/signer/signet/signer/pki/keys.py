"""An HSM key seen as a signing primitive for X.509, CMS and PDF code.

Everything above this module deals in `HsmKey`; only this module knows that
ECDSA signatures go through a raw mechanism and RSA through PKCS#1 v1.5.
Every signature of the CA, the TSA and the signer passes here, so this is where
failed HSM signatures are counted (``signet_hsm_errors_total{operation="sign"}``).
"""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import algos
from signet.hsm import Hsm, KeyAlgorithm
from signet.signer import metrics


@dataclass(frozen=True)
class HsmKey:
    hsm: Hsm
    label: str
    algorithm: KeyAlgorithm

    @classmethod
    def lookup(cls, hsm: Hsm, label: str) -> HsmKey:
        with metrics.hsm_operation("lookup"):
            return cls(hsm, label, hsm.algorithm_of(label))

    @property
    def digest_algorithm(self) -> str:
        return "sha384" if self.algorithm is KeyAlgorithm.EC_P384 else "sha256"

    @property
    def signature_algorithm(self) -> algos.SignedDigestAlgorithm:
        """The X.509/CMS AlgorithmIdentifier of what `sign` produces."""
        suffix = "ecdsa" if self.algorithm.is_ec else "rsa"
        return algos.SignedDigestAlgorithm({"algorithm": f"{self.digest_algorithm}_{suffix}"})

    def sign(self, data: bytes) -> bytes:
        """Sign `data` with this key's default digest; DER for ECDSA, PKCS#1 v1.5 for RSA."""
        return self.sign_with(data, self.digest_algorithm)

    def sign_digest(self, digest: bytes, digest_algorithm: str = "sha256") -> bytes:
        """Sign a digest computed elsewhere (other services' evidence: only the digest
        crosses the wire); counted like every other signature."""
        try:
            return self.hsm.sign_digest(self.label, digest, digest_algorithm)
        except Exception as exc:
            metrics.hsm_failed("sign", exc)
            raise

    def sign_with(self, data: bytes, digest_algorithm: str) -> bytes:
        try:  # not a context manager: this is the hot path of every signature
            return self.hsm.sign(self.label, data, digest_algorithm)
        except Exception as exc:
            metrics.hsm_failed("sign", exc)
            raise
