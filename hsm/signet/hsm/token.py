"""A typed, thread-safe handle on one PKCS#11 token.

Why a pool: a PKCS#11 session serialises its operations, and opening one per
request costs a round trip to the HSM.  `Hsm` keeps at most
`HsmConfig.pool_size` sessions open and hands each to one thread at a time;
each pooled session also caches the key handles it has looked up, since a
C_FindObjects per signature would cost more than the signature itself on
SoftHSM.

Why raw ECDSA: SoftHSM (and several other HSMs) lack ``CKM_ECDSA_SHA256``, so
ECDSA keys sign a digest we compute with ``CKM_ECDSA``; the result is the same.

Why one call at a time: python-pkcs11 initialises every module with
``C_Initialize(NULL)``, which tells the module the application will not call
it from several threads at once; SoftHSM then runs without its mutexes and
crashes under concurrent calls (seen: a segfault with 12 threads).  So every
PKCS#11 call of a process is serialised by `_MODULE_LOCKS`; throughput comes
from several worker processes, each with its own sessions (the HSM side is
not the bottleneck: SoftHSM signs ~15,000 ECDSA P-256 digests/s on one core).

Private keys are generated with ``CKA_SENSITIVE=true`` and
``CKA_EXTRACTABLE=false``: the token refuses to export them, and nothing in
Signet ever asks.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

import pkcs11
from asn1crypto import keys as asn1_keys
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.types import SignMixin
from pkcs11.util.ec import (
    encode_ec_public_key,
    encode_ecdsa_signature,
    encode_named_curve_parameters,
)
from pkcs11.util.rsa import encode_rsa_public_key
from signet.hsm.config import HsmConfig
from signet.hsm.errors import HsmUnavailable, KeyExists, KeyNotFound

log = logging.getLogger(__name__)
_MODULE_LOCKS: dict[str, threading.RLock] = {}
_MODULE_LOCKS_GUARD = threading.Lock()


def _module_lock(path: str) -> threading.RLock:
    with _MODULE_LOCKS_GUARD:
        return _MODULE_LOCKS.setdefault(path, threading.RLock())


class KeyAlgorithm(StrEnum):
    """Key types Signet generates; names are what the API and CLI accept."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"

    @property
    def is_ec(self) -> bool:
        return self.value.startswith("ec-")


_CURVES = {KeyAlgorithm.EC_P256: "secp256r1", KeyAlgorithm.EC_P384: "secp384r1"}
_RSA_BITS = {KeyAlgorithm.RSA_2048: 2048, KeyAlgorithm.RSA_3072: 3072}
_RSA_MECHANISMS = {
    "sha256": Mechanism.SHA256_RSA_PKCS,
    "sha384": Mechanism.SHA384_RSA_PKCS,
    "sha512": Mechanism.SHA512_RSA_PKCS,
}


@dataclass(frozen=True)
class KeyInfo:
    """What may be known of a key outside the HSM: never the private part."""

    label: str
    key_id: bytes
    algorithm: KeyAlgorithm
    #: DER SubjectPublicKeyInfo.
    public_key_der: bytes
    sensitive: bool
    extractable: bool

    @property
    def public_key(self) -> asn1_keys.PublicKeyInfo:
        return asn1_keys.PublicKeyInfo.load(self.public_key_der)


@dataclass
class _PooledSession:
    session: pkcs11.Session
    private_keys: dict[str, pkcs11.PrivateKey] = field(default_factory=dict)


class Hsm:
    """One token, logged in, with a bounded session pool.  Safe to share between threads."""

    def __init__(self, config: HsmConfig) -> None:
        self.config = config
        self._idle: queue.LifoQueue[_PooledSession] = queue.LifoQueue()
        self._open = 0
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(config.pool_size)
        self._call_lock = _module_lock(str(config.module_path))
        with self._call_lock:
            self._token = self._find_token()
        self._algorithms: dict[str, KeyAlgorithm] = {}

    def _find_token(self) -> pkcs11.Token:
        try:
            lib = pkcs11.lib(str(self.config.module_path))
        except (OSError, RuntimeError, pkcs11.PKCS11Error) as exc:
            raise HsmUnavailable(
                f"cannot load PKCS#11 module {self.config.module_path}: {exc}"
            ) from exc
        try:
            return lib.get_token(token_label=self.config.token_label)
        except pkcs11.NoSuchToken as exc:
            raise HsmUnavailable(f"HSM token {self.config.token_label!r} not found") from exc
        except pkcs11.PKCS11Error as exc:
            raise HsmUnavailable(f"HSM token lookup failed: {type(exc).__name__}") from exc

    # -- sessions ---------------------------------------------------------------------------

    def _open_session(self) -> _PooledSession:
        try:
            try:
                session = self._token.open(rw=True, user_pin=self.config.pin.get_secret_value())
            except pkcs11.UserAlreadyLoggedIn:
                # PKCS#11 login state belongs to the application, not the session:
                # another pool in this process has logged in already.
                session = self._token.open(rw=True)
        except pkcs11.PinIncorrect as exc:
            raise HsmUnavailable("HSM login refused: wrong PIN") from exc
        except pkcs11.PKCS11Error as exc:
            raise HsmUnavailable(f"cannot open an HSM session: {type(exc).__name__}") from exc
        with self._lock:
            self._open += 1
        return _PooledSession(session)

    @contextmanager
    def _pooled(self) -> Iterator[_PooledSession]:
        self._slots.acquire()
        self._call_lock.acquire()
        try:
            try:
                entry = self._idle.get_nowait()
            except queue.Empty:
                entry = self._open_session()
            healthy = True
            try:
                yield entry
            except (
                pkcs11.SessionClosed,
                pkcs11.SessionHandleInvalid,
                pkcs11.DeviceRemoved,
                pkcs11.DeviceError,
                pkcs11.TokenNotPresent,
            ) as exc:
                healthy = False
                raise HsmUnavailable(f"HSM session lost: {type(exc).__name__}") from exc
            finally:
                if healthy:
                    self._idle.put(entry)
                else:
                    with self._lock:
                        self._open -= 1
        finally:
            self._call_lock.release()
            self._slots.release()

    @contextmanager
    def session(self) -> Iterator[pkcs11.Session]:
        """Borrow a logged-in session for operations this class does not wrap."""
        with self._pooled() as entry:
            yield entry.session

    def ping(self) -> None:
        """Raise `HsmUnavailable` unless a session can be borrowed and the token answers."""
        with self._pooled() as entry:
            try:
                entry.session.generate_random(64)
            except pkcs11.PKCS11Error as exc:
                raise HsmUnavailable(f"HSM does not answer: {type(exc).__name__}") from exc

    def close(self) -> None:
        """Close idle sessions; borrowed ones close when returned to a closed pool's GC."""
        while True:
            try:
                entry = self._idle.get_nowait()
            except queue.Empty:
                break
            try:
                with self._call_lock:
                    entry.session.close()
            except pkcs11.PKCS11Error:  # pragma: no cover - closing a dead session
                log.debug("closing an HSM session failed", exc_info=True)

    # -- keys -------------------------------------------------------------------------------

    def generate_key(
        self, label: str, algorithm: KeyAlgorithm, *, key_id: bytes | None = None
    ) -> KeyInfo:
        """Create a non-extractable key pair on the token under `label` (unique)."""
        key_id = key_id or hashlib.sha256(label.encode()).digest()[:16]
        private_template: dict[Attribute, Any] = {
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.PRIVATE: True,
            Attribute.TOKEN: True,
        }
        common: dict[str, Any] = {
            "label": label,
            "id": key_id,
            "store": True,
            "capabilities": MechanismFlag.SIGN | MechanismFlag.VERIFY,
            "private_template": private_template,
        }
        with self._pooled() as entry:
            if self._find(entry.session, label, ObjectClass.PRIVATE_KEY) is not None:
                raise KeyExists(f"a key labelled {label!r} already exists in the HSM")
            if algorithm.is_ec:
                params = entry.session.create_domain_parameters(
                    KeyType.EC,
                    {Attribute.EC_PARAMS: encode_named_curve_parameters(_CURVES[algorithm])},
                    local=True,
                )
                public, _ = params.generate_keypair(**common)
            else:
                public, _ = entry.session.generate_keypair(
                    KeyType.RSA, _RSA_BITS[algorithm], **common
                )
            return self._describe(entry.session, label, public)

    def find_key(self, label: str) -> KeyInfo:
        with self._pooled() as entry:
            public = self._find(entry.session, label, ObjectClass.PUBLIC_KEY)
            if public is None:
                raise KeyNotFound(f"no key labelled {label!r} in the HSM")
            return self._describe(entry.session, label, public)

    def list_keys(self) -> list[KeyInfo]:
        with self._pooled() as entry:
            found = entry.session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY})
            publics = [obj for obj in found if isinstance(obj, pkcs11.PublicKey)]
            infos = [self._describe(entry.session, str(p.label), p) for p in publics]
        return sorted(infos, key=lambda info: info.label)

    def destroy_key(self, label: str) -> None:
        """Destroy both halves of a key pair (event keys after their one signature)."""
        with self._pooled() as entry:
            objects = list(entry.session.get_objects({Attribute.LABEL: label}))
            if not objects:
                raise KeyNotFound(f"no key labelled {label!r} in the HSM")
            for obj in objects:
                obj.destroy()
        self._forget(label)

    def sign(self, label: str, data: bytes, digest_algorithm: str = "sha256") -> bytes:
        """Sign `data` (hashing it with `digest_algorithm`); returns a DER/PKCS#1 signature.

        ECDSA signatures come back DER-encoded (``ECDSA-Sig-Value``), ready for
        X.509 and CMS.
        """
        return self.sign_digest(
            label, hashlib.new(digest_algorithm, data).digest(), digest_algorithm, message=data
        )

    def sign_digest(
        self,
        label: str,
        digest: bytes,
        digest_algorithm: str = "sha256",
        *,
        message: bytes | None = None,
    ) -> bytes:
        """Sign a precomputed digest.  RSA needs the message, because PKCS#1 v1.5
        mechanisms that take a bare digest differ between HSMs; pass `message` for RSA keys."""
        with self._pooled() as entry:
            key = entry.private_keys.get(label)
            if key is None:
                key = self._find(entry.session, label, ObjectClass.PRIVATE_KEY)
                if not isinstance(key, pkcs11.PrivateKey):
                    raise KeyNotFound(f"no private key labelled {label!r} in the HSM")
                entry.private_keys[label] = key
            if key.key_type == KeyType.EC:
                return encode_ecdsa_signature(
                    cast(SignMixin, key).sign(digest, mechanism=Mechanism.ECDSA)
                )
            if message is None:
                raise ValueError(
                    "RSA signing through the HSM needs the message, not only its digest"
                )
            mechanism = _RSA_MECHANISMS[digest_algorithm]
            return bytes(cast(SignMixin, key).sign(message, mechanism=mechanism))

    def algorithm_of(self, label: str) -> KeyAlgorithm:
        cached = self._algorithms.get(label)
        if cached is None:
            cached = self.find_key(label).algorithm
            self._algorithms[label] = cached
        return cached

    # -- helpers ----------------------------------------------------------------------------

    def _forget(self, label: str) -> None:
        self._algorithms.pop(label, None)
        # Idle sessions only: a borrowed one cannot be holding a destroyed key for long,
        # and its stale handle fails with ObjectHandleInvalid rather than signing.
        entries: list[_PooledSession] = []
        while True:
            try:
                entries.append(self._idle.get_nowait())
            except queue.Empty:
                break
        for entry in entries:
            entry.private_keys.pop(label, None)
            self._idle.put(entry)

    @staticmethod
    def _find(session: pkcs11.Session, label: str, object_class: ObjectClass) -> Any:
        matches = list(session.get_objects({Attribute.LABEL: label, Attribute.CLASS: object_class}))
        return matches[0] if matches else None

    @staticmethod
    def _describe(session: pkcs11.Session, label: str, public: Any) -> KeyInfo:
        private = Hsm._find(session, label, ObjectClass.PRIVATE_KEY)
        if public.key_type == KeyType.EC:
            spki = encode_ec_public_key(public)
            curve = asn1_keys.PublicKeyInfo.load(spki).curve[1]
            algorithm = KeyAlgorithm.EC_P256 if curve == "secp256r1" else KeyAlgorithm.EC_P384
        else:
            rsa = asn1_keys.RSAPublicKey.load(encode_rsa_public_key(public))
            spki = asn1_keys.PublicKeyInfo(
                {"algorithm": {"algorithm": "rsa", "parameters": None}, "public_key": rsa}
            ).dump()
            bits = rsa["modulus"].native.bit_length()
            algorithm = KeyAlgorithm.RSA_3072 if bits > 2048 else KeyAlgorithm.RSA_2048
        return KeyInfo(
            label=label,
            key_id=bytes(public[Attribute.ID]),
            algorithm=algorithm,
            public_key_der=spki,
            sensitive=bool(private[Attribute.SENSITIVE]) if private is not None else True,
            extractable=bool(private[Attribute.EXTRACTABLE]) if private is not None else False,
        )
