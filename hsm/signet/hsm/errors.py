"""Errors of the HSM layer, mapped onto the shared hierarchy so HTTP edges need no special case."""

from __future__ import annotations

from signet.common.errors import Conflict, NotFound, ServiceUnavailable


class HsmUnavailable(ServiceUnavailable):
    """The PKCS#11 module cannot be loaded, the token is absent, or login failed."""

    code = "hsm_unavailable"


class KeyNotFound(NotFound):
    code = "key_not_found"


class KeyExists(Conflict):
    code = "key_exists"
