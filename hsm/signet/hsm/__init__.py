"""PKCS#11 access for Signet: one token, a bounded session pool, non-extractable keys."""

from signet.hsm.config import SOFTHSM_MODULE, HsmConfig, load_pin
from signet.hsm.errors import HsmUnavailable, KeyExists, KeyNotFound
from signet.hsm.token import Hsm, KeyAlgorithm, KeyInfo

__all__ = [
    "SOFTHSM_MODULE",
    "Hsm",
    "HsmConfig",
    "HsmUnavailable",
    "KeyAlgorithm",
    "KeyExists",
    "KeyInfo",
    "KeyNotFound",
    "load_pin",
]
