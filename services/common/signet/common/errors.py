"""The error hierarchy every Signet component raises and every HTTP edge maps.

Code deep inside a service raises one of these; the FastAPI exception handler
(`signet.common.http.install_error_handlers`) turns it into one HTTP status and
a JSON body ``{"error": code, "detail": message}``.  Messages are shown to API
callers and admins, so they must never contain secrets (PINs, tokens, keys).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

#: ``<_io.BytesIO object at 0x7f…>`` and the like: a library's repr of what it was given.
_REPR = re.compile(r"<(?:[\w.]+\.)?(\w+) object at 0x[0-9a-fA-F]+>")
#: ``0x0x2aff01``: pyHanko writes ``0x{hex(offset)}`` (its reader's "byte 0x0x…").
_DOUBLE_HEX = re.compile(r"\b0x0x(?=[0-9a-fA-F])")


def tidy_detail(detail: str) -> str:
    """A message fit for a reader, from one a library made: no object reprs (they say
    nothing to a caller and show memory addresses; the class name stays) and no doubled
    ``0x`` prefix.  Applied to every `SignetError`, so a message wrapping a library's
    exception (``f"malformed PDF: {exc}"``) is tidied wherever it was raised."""
    return _DOUBLE_HEX.sub("0x", _REPR.sub(r"(\1)", detail))


class SignetError(Exception):
    """Base of all expected failures; anything else is a bug (HTTP 500)."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, detail: str) -> None:
        detail = tidy_detail(detail)
        super().__init__(detail)
        self.detail = detail


class InvalidRequest(SignetError):
    """The caller sent something we cannot act on; retrying unchanged will not help."""

    status_code = 400
    code = "invalid_request"


class Unauthorized(SignetError):
    status_code = 401
    code = "unauthorized"


class Forbidden(SignetError):
    status_code = 403
    code = "forbidden"


class NotFound(SignetError):
    status_code = 404
    code = "not_found"


class Conflict(SignetError):
    """The request contradicts current state (already exists, already revoked, …)."""

    status_code = 409
    code = "conflict"


class PayloadTooLarge(SignetError):
    status_code = 413
    code = "payload_too_large"


class UnprocessableDocument(SignetError):
    """A document arrived intact but cannot be processed (malformed, encrypted PDF)."""

    status_code = 422
    code = "unprocessable_document"


class ServiceUnavailable(SignetError):
    """A dependency (HSM, object store, TSA) is down; the caller may retry later."""

    status_code = 503
    code = "service_unavailable"


def summarize_validation(errors: Iterable[Mapping[str, Any]], default: str = "spec") -> str:
    """pydantic's errors as one line an admin can act on: ``field.path: what is wrong; …``.

    Never pydantic's own text, which echoes the input (``input_value=…``) and a URL:
    these messages land in status conditions, Events and HTTP answers.
    """
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or default}: {error['msg']}" for error in errors
    )
