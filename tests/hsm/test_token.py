"""The HSM layer against a real SoftHSM2 token."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import uuid

import pkcs11
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from pydantic import SecretStr
from signet.hsm import Hsm, HsmConfig, HsmUnavailable, KeyAlgorithm, KeyExists, KeyNotFound
from signet.hsm.softhsm import DevToken


def _label() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def _verify(public_der: bytes, signature: bytes, data: bytes) -> None:
    public = serialization.load_der_public_key(public_der)
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    else:
        public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr]


@pytest.mark.parametrize("algorithm", [KeyAlgorithm.EC_P256, KeyAlgorithm.RSA_3072])
def test_generated_key_signs_and_verifies_outside(hsm: Hsm, algorithm: KeyAlgorithm) -> None:
    info = hsm.generate_key(_label(), algorithm)
    assert info.algorithm is algorithm
    signature = hsm.sign(info.label, b"contract bytes")
    _verify(info.public_key_der, signature, b"contract bytes")
    with pytest.raises(InvalidSignature):
        _verify(info.public_key_der, signature, b"contract bytez")


def test_private_keys_are_sensitive_and_refuse_export(hsm: Hsm) -> None:
    info = hsm.generate_key(_label(), KeyAlgorithm.EC_P256)
    assert info.sensitive and not info.extractable
    with hsm.session() as session:
        private = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label=info.label)
        with pytest.raises(pkcs11.AttributeSensitive):
            private[pkcs11.Attribute.VALUE]
        # Even a wrapping key cannot get it out.
        wrapper = session.generate_key(
            pkcs11.KeyType.AES, 256, store=False, capabilities=pkcs11.MechanismFlag.WRAP
        )
        with pytest.raises((pkcs11.KeyUnextractable, pkcs11.KeyNotWrappable)):
            wrapper.wrap_key(private, mechanism=pkcs11.Mechanism.AES_KEY_WRAP_PAD)
        with pytest.raises(pkcs11.PKCS11Error):
            private[pkcs11.Attribute.EXTRACTABLE] = True


def test_labels_are_unique_and_destroy_is_final(hsm: Hsm) -> None:
    label = _label()
    hsm.generate_key(label, KeyAlgorithm.EC_P256)
    with pytest.raises(KeyExists):
        hsm.generate_key(label, KeyAlgorithm.EC_P256)
    assert label in {k.label for k in hsm.list_keys()}
    hsm.sign(label, b"once")
    hsm.destroy_key(label)
    with pytest.raises(KeyNotFound):
        hsm.find_key(label)
    with pytest.raises(KeyNotFound):
        hsm.sign(label, b"twice")


def test_pool_is_bounded_and_safe_under_concurrency(dev_token: DevToken) -> None:
    config = HsmConfig(
        dev_token.config.module_path,
        dev_token.config.token_label,
        dev_token.config.pin,
        pool_size=3,
    )
    pool = Hsm(config)
    info = pool.generate_key(_label(), KeyAlgorithm.EC_P256)
    failures: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                data = f"{n}-{i}".encode()
                _verify(info.public_key_der, pool.sign(info.label, data), data)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert pool._open <= 3
    pool.close()


def test_unreachable_token_and_wrong_pin_are_clear(dev_token: DevToken) -> None:
    with pytest.raises(HsmUnavailable, match="not found"):
        Hsm(HsmConfig(dev_token.config.module_path, "no-such-token", SecretStr("1234")))
    with pytest.raises(HsmUnavailable, match="cannot load"):
        Hsm(HsmConfig(dev_token.config.module_path.with_name("missing.so"), "x", SecretStr("1234")))
    # SoftHSM keeps a token logged in per process, so a wrong PIN can only fail in a
    # process that has not logged in yet: a fresh interpreter, as a real service starts.
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from pydantic import SecretStr\n"
        "from signet.hsm import Hsm, HsmConfig, HsmUnavailable\n"
        "try:\n"
        "    Hsm(HsmConfig(Path(sys.argv[1]), sys.argv[2], SecretStr('wrong-pin-value'))).ping()\n"
        "except HsmUnavailable as exc:\n"
        "    print(exc.detail)\n"
        "    sys.exit(3)\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            probe,
            str(dev_token.config.module_path),
            dev_token.config.token_label,
        ],
        env={**os.environ, "SOFTHSM2_CONF": str(dev_token.conf_file)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stderr
    assert "wrong PIN" in result.stdout
    assert "wrong-pin-value" not in result.stdout + result.stderr


def test_pin_never_reaches_logs_or_reprs(
    dev_token: DevToken, caplog: pytest.LogCaptureFixture
) -> None:
    pin = dev_token.config.pin.get_secret_value()
    caplog.set_level(logging.DEBUG)
    token = Hsm(dev_token.config)
    token.ping()
    token.generate_key(_label(), KeyAlgorithm.EC_P256)
    with pytest.raises(HsmUnavailable):
        Hsm(HsmConfig(dev_token.config.module_path, "absent", dev_token.config.pin))
    logging.getLogger("signet").debug("config is %r", dev_token.config)
    token.close()
    assert caplog.records, "the test must have captured something"
    assert pin not in caplog.text
    assert pin not in repr(dev_token.config)
